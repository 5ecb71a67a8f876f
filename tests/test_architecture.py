"""The architecture is written down and checked: import-linter's contracts (pyproject.toml),
ruff's lint and format, and the size of modules and classes."""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return path


def _lint_imports(cwd: pathlib.Path, pythonpath: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_import_contracts_are_kept():
    proc = _lint_imports(ROOT, ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    "module, line, contract, broken",
    [
        # upward, and a cycle (the CLI imports the layer)
        ("layers.py", "import attn_search.cli", "Layers: the CLI on top", 2),
        ("engines/base.py", "import attn_search.layers", "Engines know search, not Keras", 1),
        # two siblings of one layer
        ("datasets/_spec.py", "import attn_search.engines", "Layers: the CLI on top", 1),
    ],
)
def test_a_forbidden_import_breaks_a_contract(module, line, contract, broken, tmp_path):
    """The contracts can fail: a copy of the package with one forbidden import is refused."""
    shutil.copytree(ROOT / "attn_search", tmp_path / "attn_search")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "attn_search" / module
    target.write_text(target.read_text() + f"\n{line}  # injected by the test\n")
    proc = _lint_imports(tmp_path, tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"{contract}" in proc.stdout and "BROKEN" in proc.stdout
    assert f"Contracts: {3 - broken} kept, {broken} broken." in proc.stdout


def test_ruff_lint_and_format_are_clean():
    lint = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run(
        [_tool("ruff"), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]


def _sources():
    return sorted((ROOT / "attn_search").rglob("*.py"))


def test_no_module_over_about_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _sources()}
    assert {name: n for name, n in sizes.items() if n > 420} == {}


def test_no_class_over_about_200_lines():
    big = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 210:
                big[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert big == {}

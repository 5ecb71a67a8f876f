"""The README's Python code blocks, executed in order, so the docs cannot drift from the code.

Every ```python block of README.md runs on its own, in a fresh namespace, with a temporary
folder as the working directory (nothing is written into the repository). Searches run with
small budgets: a prelude patches `run_search` and KerasTuner's `Tuner.search`, never the
README's numbers. Two HTML comments, on the line just above a block, change how it runs:

- ``<!-- readme-test: skip (REASON) -->``: the block cannot run here (e.g. it downloads a
  dataset); the test reports it as skipped with REASON.
- ``<!-- readme-test: continue -->``: the block continues the previous one and runs together
  with it, in one namespace.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# What a search in a README example may cost here; the README shows the real settings. Two
# trials: the plain trial 0 and one attention trial. No finalists: their fits would double the
# time of this file, and tests/test_runner.py covers them.
SMALL_RUN = {
    "limit": 200,
    "trials": 2,
    "max_epochs": 1,
    "finalists": 0,
    "repeats": 1,
    "quiet": True,
    "verbose": 0,
}
SMALL_TUNER = {"max_trials": 2, "epochs": 1}

_MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|continue)\b\s*(.*?)\s*-->")


@dataclasses.dataclass
class Block:
    """One runnable unit: a ```python block (with its continuations) of a Markdown file."""

    line: int  # 1-based line of the block's first code line
    heading: str
    code: str  # the code, preceded by blank lines so that line numbers match the file
    skip: str | None = None

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"line{self.line}-{slug}"


def python_blocks(text: str) -> list[Block]:
    """Splits Markdown into its ```python blocks, with the markers above them applied.

    Raises:
        ValueError: A block is not closed, a `continue` marker has no block before it, or a
            marker is not followed by a ```python block.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    heading, marker, i = "", None, 0
    while i < len(lines):
        line = lines[i].strip()
        found = _MARKER.fullmatch(line)
        if found:
            marker = (found[1], found[2].strip("() ") or "no reason given")
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise ValueError(f"line {i + 1}: the {line} block is not closed")
            if line != "```python" and marker:
                raise ValueError(
                    f"line {i + 1}: a readme-test marker must precede a ```python block"
                )
            if line == "```python":
                # Blank lines first, so that tracebacks give the README's line numbers.
                code = "\n" * (i + 1) + "\n".join(lines[i + 1 : end]) + "\n"
                _add(blocks, Block(i + 2, heading, code), marker, i + 1)
                marker = None
            i = end
        elif marker and line:
            raise ValueError(f"line {i + 1}: a readme-test marker must precede a ```python block")
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
        i += 1
    return blocks


def _add(blocks: list[Block], block: Block, marker: tuple[str, str] | None, line: int) -> None:
    kind, reason = marker or (None, None)
    if kind != "continue":
        blocks.append(dataclasses.replace(block, skip=reason if kind == "skip" else None))
    elif not blocks:
        raise ValueError(f"line {line}: `readme-test: continue` with no block before it")
    else:
        # The padding past the previous block's last line, then the code: line numbers stay.
        blocks[-1].code += block.code[blocks[-1].code.count("\n") :]


@pytest.fixture
def small_budgets(monkeypatch):
    """Every search a README block starts runs with the small budgets above."""
    import keras_tuner

    import attn_search
    import attn_search.runner

    run_search = attn_search.runner.run_search

    def small_run_search(config=None, **overrides):
        result = run_search(config, **{**overrides, **SMALL_RUN})
        assert len(result.leaderboard) <= SMALL_RUN["trials"]  # the small budget was applied
        return result

    monkeypatch.setattr(attn_search, "run_search", small_run_search, raising=False)
    monkeypatch.setattr(attn_search.runner, "run_search", small_run_search)

    search = keras_tuner.Tuner.search

    def small_search(self, *args, **kwargs):
        self.oracle.max_trials = min(self.oracle.max_trials or 10**9, SMALL_TUNER["max_trials"])
        search(self, *args, **{**kwargs, "epochs": SMALL_TUNER["epochs"]})
        assert len(self.oracle.trials) <= SMALL_TUNER["max_trials"]  # the small budget applied

    monkeypatch.setattr(keras_tuner.Tuner, "search", small_search)


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_python_block_runs(block, tmp_path, monkeypatch, small_budgets):
    if block.skip:
        pytest.skip(f"README.md:{block.line}: {block.skip}")
    monkeypatch.chdir(tmp_path)
    exec(compile(block.code, str(README), "exec"), {"__name__": "__readme__"})


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5
    assert [b.line for b in BLOCKS] == sorted(b.line for b in BLOCKS)


# -- the block splitter itself ---------------------------------------------------------------

SAMPLE = """# Title

```python
a = 1
```

```bash
echo hi
```

<!-- readme-test: continue -->
```python
b = a + 1
```

## Data
<!-- readme-test: skip (downloads CIFAR-10) -->
```python
raise RuntimeError("not run")
```
"""


def test_python_blocks_applies_skip_and_continue_markers():
    first, skipped = python_blocks(SAMPLE)
    assert (first.line, first.heading, first.skip) == (4, "Title", None)
    assert (skipped.line, skipped.heading, skipped.skip) == (19, "Data", "downloads CIFAR-10")
    # the continuation joins the first block, each line at its own line number
    code_lines = first.code.split("\n")
    assert (code_lines[3], code_lines[12]) == ("a = 1", "b = a + 1")
    namespace: dict = {}
    exec(compile(first.code, "README.md", "exec"), namespace)
    assert namespace["b"] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```python\na = 1\n", "line 1: the ```python block is not closed"),
        (
            "<!-- readme-test: continue -->\n```python\na = 1\n```\n",
            "line 2: `readme-test: continue` with no block before it",
        ),
        (
            "<!-- readme-test: skip (x) -->\n\n## A heading\n",
            "line 3: a readme-test marker must precede a ```python block",
        ),
        (
            "<!-- readme-test: skip (x) -->\n```bash\nls\n```\n",
            "line 2: a readme-test marker must precede a ```python block",
        ),
    ],
)
def test_python_blocks_rejects_misplaced_markers(text, message):
    with pytest.raises(ValueError) as info:
        python_blocks(text)
    assert str(info.value) == message

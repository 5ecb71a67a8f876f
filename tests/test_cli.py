"""The `attn-search` command line: in-process for logic, a few subprocesses for the wiring."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from attn_search import __version__
from attn_search.cli import main
from attn_search.errors import DatasetError, RunDirError, TrialFailedError

SUBCOMMANDS = [
    "run",
    "leaderboard",
    "export",
    "report",
    "explain",
    "predict",
    "dashboard",
    "datasets",
    "spaces",
]


def _python_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def _console_script() -> pathlib.Path:
    return pathlib.Path(sys.executable).parent / "attn-search"


def _run_cli(*args: str, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Runs the installed console script (or `python -m attn_search` if it is missing)."""
    script = _console_script()
    command = [str(script)] if script.exists() else [sys.executable, "-m", "attn_search"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=_python_env(),
        timeout=timeout,
        cwd=cwd,
    )


# --------------------------------------------------------------------------- start-up speed
def test_help_version_and_usage_errors_do_not_import_tensorflow():
    """--help, --version and argument errors answer without TensorFlow or Keras."""
    argvs = [
        ["--help"],
        ["--version"],
        *[[command, "--help"] for command in SUBCOMMANDS],
        ["run", "--trials", "0"],
        ["run", "--engine", "pytorch"],
        ["run", "--tuner", "annealing"],
        ["export", "somewhere", "--format", "onnx", "--to", "x"],
        ["leaderboard"],
        [],
        ["datasets"],
        ["spaces"],
    ]
    # The console script imports attn_search with argv[0] == "attn-search"; do the same.
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        sys.argv[0] = "attn-search"
        from attn_search.cli import main
        codes = []
        for argv in {argvs!r}:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                codes.append(main(argv))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras",
                       "keras_tuner", "optuna", "jax", "torch"))
        print(json.dumps({{"codes": codes, "heavy": heavy}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_python_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["codes"] == [0, 0] + [0] * len(SUBCOMMANDS) + [2, 2, 2, 2, 2, 2, 0, 0]


def test_console_script_version():
    proc = _run_cli("--version", timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"attn-search {__version__}\n", "")


def test_console_script_help_imports_no_framework():
    script = _console_script()
    if not script.exists():
        pytest.skip("the attn-search console script is not installed (pip install -e .)")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "run", "--help"],
        capture_output=True,
        text=True,
        env=_python_env(),
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: attn-search run")
    # -X importtime lists every imported module on stderr: "import time: ... | name".
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "attn_search.cli" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "optuna"))
    assert heavy == []


# --------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: attn-search {command} [-h] [--debug]")


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: attn-search [-h] [--version] [--debug] COMMAND ...")
    for command in SUBCOMMANDS:
        assert f"\n    {command}" in out


def test_run_help_lists_every_run_config_flag(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    flags = [
        "--dataset",
        "--space",
        "--backbone",
        "--engine",
        "--tuner",
        "--sampler",
        "--pruner",
        "--trials",
        "--max-epochs",
        "--time-budget",
        "--seed",
        "--finalists",
        "--repeats",
        "--out",
        "--resume",
        "--overwrite",
        "--storage",
        "--study",
        "--limit",
        "--image-size",
        "--skip-corrupt",
        "--cache",
        "--keep-cache",
        "--memory-budget-mb",
        "--max-consecutive-failures",
        "--verbose",
        "--quiet",
        "--debug",
    ]
    assert [flag for flag in flags if flag not in out] == []


def test_run_flags_are_generated_from_every_run_config_field(capsys):
    """One flag per RunConfig field, its default and the engines' help in --help."""
    import dataclasses

    from attn_search.engines import engine_options
    from attn_search.runner import RunConfig

    assert main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    fields = dataclasses.fields(RunConfig)
    missing = [f.name for f in fields if f"--{f.name.replace('_', '-')}" not in out]
    assert missing == []
    assert (
        "--tuner TUNER keras-tuner only: random, bayesian, hyperband or grid. Defaults to "
        "random." in out
    )
    assert "--trials TRIALS search trials, baselines included. Defaults to 10." in out
    assert "--engine ENGINE the search engine: optuna or keras-tuner. Defaults to optuna." in out
    for option in engine_options().values():
        assert option.help in out, option.name


def test_report_help_says_what_it_writes(capsys):
    assert main(["report", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "matplotlib" not in out
    assert (
        "Write report.html and report.md into RUN_DIR, also for a run still going or "
        "interrupted: the verdict beside each finalist's difference to its twins, validation "
        "accuracy by family and placement, the finalists' test accuracy per seed, accuracy "
        "against parameters and training time, the optimisation history, the learned gamma, "
        "attention maps of the best model, and the settings, timings and best trials."
    ) in out


# --------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--trials", "0"], "--trials must be a positive integer. Received: --trials=0"),
        (
            ["run", "--trials", "many"],
            "--trials must be a positive integer. Received: --trials='many'",
        ),
        (
            ["run", "--engine", "pytorch"],
            "--engine must be one of optuna, keras-tuner. Received: --engine='pytorch'",
        ),
        (
            ["run", "--tuner", "annealing"],
            "--tuner must be one of random, bayesian, hyperband, grid. "
            "Received: --tuner='annealing'",
        ),
        (
            ["run", "--time-budget", "-5"],
            "--time-budget must be a positive number. Received: --time-budget=-5",
        ),
        (
            ["run", "--image-size", "big"],
            "--image-size must be SIZE or HEIGHTxWIDTH with positive integers, e.g. 32 or "
            "32x48. Received: --image-size='big'",
        ),
        (["run", "--repeats", "0"], "--repeats must be a positive integer. Received: --repeats=0"),
        (
            ["run", "--finalists", "-1"],
            "--finalists must be a non-negative integer. Received: --finalists=-1",
        ),
        (["run", "-v", "-q"], "argument -q/--quiet: not allowed with argument -v/--verbose"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
        (
            ["leaderboard", "r", "--family", "transformer"],
            "--family must be one of attention, plain, matched. Received: --family='transformer'",
        ),
        (["leaderboard", "r", "--top", "0"], "--top must be a positive integer. Received: --top=0"),
        (["leaderboard"], "the following arguments are required: RUN_DIR"),
        (
            ["export", "r", "--format", "onnx", "--to", "x"],
            "--format must be one of keras, savedmodel, tflite. Received: --format='onnx'",
        ),
        (["export", "r", "--format", "keras"], "the following arguments are required: --to"),
        (
            ["fly"],
            "unknown command 'fly': choose from run, leaderboard, export, report, explain, "
            "predict, dashboard, datasets or spaces",
        ),
        (
            [],
            "a command is required: run, leaderboard, export, report, explain, predict, "
            "dashboard, datasets or spaces. See 'attn-search --help'.",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"attn-search: error: {message}\n"


def test_flags_are_case_insensitive_choices():
    from attn_search.cli import build_parser

    args = build_parser().parse_args(["run", "--engine", "Keras-Tuner", "--tuner", "GRID"])
    assert (args.engine, args.tuner) == ("keras-tuner", "grid")
    args = build_parser().parse_args(["run", "--engine", "keras_tuner"])
    assert args.engine == "keras-tuner"
    args = build_parser().parse_args(["run", "--image-size", "32x48"])
    assert args.image_size == (32, 48)
    args = build_parser().parse_args(["run", "--image-size", "28"])
    assert args.image_size == (28, 28)
    args = build_parser().parse_args(["run", "--pruner", "SHA", "--sampler", "Random"])
    assert (args.pruner, args.sampler) == ("successive-halving", "random")


def test_verbose_counts_up_to_keras_highest_level(monkeypatch):
    import attn_search.runner

    calls = []
    monkeypatch.setattr(attn_search.runner, "run_search", _fake_run_search(calls))
    assert main(["run", "-vvv"]) == 0
    assert calls[0].verbose == 2


# ------------------------------------------------------------------------ run: flags -> RunConfig
def _fake_run_search(calls, status="complete"):
    import types

    import pandas as pd

    def run_search(config):
        calls.append(config)
        return types.SimpleNamespace(
            run_dir=pathlib.Path("results/fake"),
            leaderboard=pd.DataFrame(),
            comparison=pd.DataFrame(),
            best_model_path=None,
            status=status,
        )

    return run_search


def test_run_flags_become_the_run_config(monkeypatch, capsys):
    import dataclasses

    import attn_search.runner

    calls = []
    monkeypatch.setattr(attn_search.runner, "run_search", _fake_run_search(calls))
    argv = [
        "run",
        "--dataset",
        "pathfinder",
        "--space",
        "mnist",
        "--engine",
        "optuna",
        "--tuner",
        "hyperband",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--trials",
        "7",
        "--max-epochs",
        "3",
        "--time-budget",
        "90.5",
        "--seed",
        "4",
        "--finalists",
        "2",
        "--repeats",
        "5",
        "--out",
        "runs/x",
        "--resume",
        "--storage",
        "sqlite:///s.db",
        "--study",
        "s1",
        "--limit",
        "300",
        "--image-size",
        "16x20",
        "--skip-corrupt",
        "--cache",
        "--keep-cache",
        "--memory-budget-mb",
        "64",
        "--max-consecutive-failures",
        "2",
        "-vv",
        "--debug",
    ]
    assert main(argv) == 0
    (config,) = calls
    assert dataclasses.asdict(config) == dataclasses.asdict(
        attn_search.runner.RunConfig(
            dataset="pathfinder",
            space="mnist",
            engine="optuna",
            tuner="hyperband",
            sampler="random",
            pruner="none",
            trials=7,
            max_epochs=3,
            time_budget=90.5,
            seed=4,
            finalists=2,
            repeats=5,
            out="runs/x",
            resume=True,
            overwrite=False,
            storage="sqlite:///s.db",
            study="s1",
            limit=300,
            image_size=(16, 20),
            skip_corrupt=True,
            cache=True,
            keep_cache=True,
            memory_budget_mb=64.0,
            max_consecutive_failures=2,
            verbose=2,
            quiet=False,
        )
    )
    assert capsys.readouterr().out == "\nRun folder: results/fake (status: complete)\n"


def test_run_defaults_and_quiet(monkeypatch, capsys):
    import dataclasses

    import attn_search.runner

    calls = []
    monkeypatch.setattr(attn_search.runner, "run_search", _fake_run_search(calls, "stopped"))
    assert main(["run", "--quiet"]) == 0
    expected = dataclasses.replace(attn_search.runner.RunConfig(), quiet=True)
    assert dataclasses.asdict(calls[0]) == dataclasses.asdict(expected)
    assert capsys.readouterr().out == "results/fake\n"


# --------------------------------------------------------------------------- library errors
@pytest.mark.parametrize(
    "error, code, line",
    [
        (
            RunDirError("`run_dir` does not exist. Received: run_dir='x'"),
            2,
            "attn-search: error: `run_dir` does not exist. Received: run_dir='x'",
        ),
        (
            DatasetError("`dataset` is unknown.\nReceived: dataset='x'"),
            2,
            "attn-search: error: `dataset` is unknown. Received: dataset='x'",
        ),
        (
            TrialFailedError("5 consecutive trials failed; stopping."),
            1,
            "attn-search: error: 5 consecutive trials failed; stopping.",
        ),
        (KeyboardInterrupt(), 130, "attn-search: error: interrupted"),
        (
            PermissionError(13, "Permission denied", "/ro/m.keras"),
            1,
            "attn-search: error: Permission denied: '/ro/m.keras'",
        ),
        (
            RuntimeError("disk on fire"),
            1,
            "attn-search: error: RuntimeError: disk on fire (run with --debug for the traceback)",
        ),
    ],
)
def test_errors_become_one_line_and_an_exit_code(error, code, line, capsys, monkeypatch):
    import attn_search.export

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(attn_search.export, "export_model", fail)
    assert main(["export", "r", "--format", "keras", "--to", "m.keras"]) == code
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", line + "\n")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, capsys, monkeypatch):
    import attn_search.export

    def fail(*args, **kwargs):
        raise RunDirError("`run_dir` does not exist. Received: run_dir='r'")

    monkeypatch.setattr(attn_search.export, "export_model", fail)
    argv = ["export", "r", "--format", "keras", "--to", "m.keras"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith(
        "attn_search.errors.RunDirError: `run_dir` does not exist. Received: run_dir='r'\n"
        "attn-search: error: `run_dir` does not exist. Received: run_dir='r'\n"
    )


# --------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder holding only a tiny best_model.keras (enough for `export`)."""
    import keras

    import attn_search.layers  # noqa: F401

    path = tmp_path_factory.mktemp("run")
    inputs = keras.Input((8, 8, 1))  # the shape of the built-in digits
    x = attn_search.layers.SelfAttentionConv2D(filters=2, gamma=0.25, kv_pool=2)(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(path / "best_model.keras")
    (path / "config.yaml").write_text("dataset: digits\nlimit: 200\nseed: 0\n")
    (path / "leaderboard.csv").write_text(
        "trial_id,status,family,placement,best_val_accuracy,gamma_0,error\n"
        "1,complete,attention,1,0.9,0.25,\n"
        "3,complete,matched,none,0.85,,\n"
        "0,complete,plain,none,0.8,,\n"
        "2,failed,attention,2,,,ResourceExhaustedError: out of memory\n"
    )
    return path


def test_export_command(tiny_run, tmp_path, capsys):
    to = tmp_path / "model.keras"
    assert main(["export", str(tiny_run), "--format", "keras", "--to", str(to)]) == 0
    assert capsys.readouterr().out == f"Exported the best model (keras) to {to}\n"
    assert to.read_bytes() == (tiny_run / "best_model.keras").read_bytes()

    # A second export to the same path is refused, then allowed with --overwrite.
    assert main(["export", str(tiny_run), "--format", "keras", "--to", str(to)]) == 2
    assert capsys.readouterr().err == (
        "attn-search: error: `to` already exists; choose another path or pass overwrite=True "
        f"(--overwrite) to replace it. Received: to='{to}'\n"
    )
    argv = ["export", str(tiny_run), "--format", "keras", "--to", str(to), "--overwrite"]
    assert main(argv) == 0


# --------------------------------------------------------------------------- bad input, exit 2
# Each case: the argv and the whole error line, built from a folder that is not a run
# (`empty`), one that does not exist (`missing`), and a run without comparison.csv (`run`).
_BAD_INPUT_CASES = {
    "run: resume and overwrite": (
        ["run", "--resume", "--overwrite"],
        "`resume` and `overwrite` cannot both be set: resume continues the run in the folder, "
        "overwrite deletes it. Received: resume=True, overwrite=True",
    ),
    "report: missing folder": (
        ["report", "{missing}"],
        "`run_dir` does not exist. Received: run_dir='{missing}'",
    ),
    "leaderboard: missing folder": (
        ["leaderboard", "{missing}"],
        "`run_dir` must be a run folder (one `attn-search run` wrote). "
        "Received: run_dir='{missing}', which is not a folder",
    ),
    "leaderboard: no comparison.csv": (
        ["leaderboard", "{run}", "--comparison"],
        "`run_dir` must be a run folder (one `attn-search run` wrote); it has no "
        "comparison.csv. Received: run_dir='{run}'",
    ),
    "export: not a run folder": (
        ["export", "{empty}", "--format", "savedmodel", "--to", "{empty}/m"],
        "`run_dir` is not an attn-search run folder (it has no run.json, config.yaml, "
        "leaderboard.csv or best_model.keras). Received: run_dir='{empty}'",
    ),
}


@pytest.mark.parametrize("case", list(_BAD_INPUT_CASES))
def test_bad_input_is_one_line_and_exit_2(case, tiny_run, tmp_path, capsys):
    where = {"empty": tmp_path, "missing": tmp_path / "nope", "run": tiny_run}
    argv, message = _BAD_INPUT_CASES[case]
    argv = [arg.format(**where) for arg in argv]
    before = sorted(tmp_path.iterdir())
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"attn-search: error: {message.format(**where)}\n")
    assert sorted(tmp_path.iterdir()) == before  # nothing written


# --------------------------------------------------------------------------- listings
def test_datasets_command_lists_the_built_in_names(capsys):
    from attn_search.datasets import available

    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "shape", "classes", "size", "download", "description"]
    assert [line.split()[0] for line in lines[1:]] == [d["name"] for d in available()]
    digits = next(line for line in lines if line.startswith("digits "))
    assert digits.split()[1:5] == ["8x8x1", "10", "1797", "no"]


def test_spaces_command_lists_the_shipped_spaces(capsys):
    from attn_search.spaces import list_spaces

    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "description", "path"]
    assert [line.split()[0] for line in lines[1:]] == [s["name"] for s in list_spaces()]
    assert "default" in [line.split()[0] for line in lines[1:]]


# --------------------------------------------------------------------------- report
def test_report_command(tiny_run, capsys):
    assert main(["report", str(tiny_run)]) == 0
    assert capsys.readouterr().out == (
        f"Report written to {tiny_run / 'report.html'} (and report.md)\n"
    )
    text = (tiny_run / "report.md").read_text()
    assert text.startswith(f"# attn-search report: {tiny_run.name}\n")
    assert (
        "| family | placement | trials | best val accuracy | mean val accuracy |\n"
        "|---|---|---|---|---|\n"
        "| attention | 1 | 1 | 0.9 | 0.9 |\n"
        "| matched | none | 1 | 0.85 | 0.85 |\n"
        "| plain | none | 1 | 0.8 | 0.8 |\n"
    ) in text
    assert "| self_attention_conv2d | 1 | 2 | 8x8x1 | 0.25 |" in text
    assert "![attention maps](report_attention.png)" in text
    assert "No comparison.csv yet (the run has not reached its finalists)." in text
    from PIL import Image

    for name in ("report_attention.png", "report_families.png"):
        with Image.open(tiny_run / name) as image:
            image.load()  # decodes
            assert image.format == "PNG" and min(image.size) > 100


# --------------------------------------------------------------------------- leaderboard
def test_leaderboard_command(tiny_run, capsys):
    assert main(["leaderboard", str(tiny_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == [
        "trial_id",
        "status",
        "family",
        "placement",
        "best_val_accuracy",
    ]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["1", "complete", "attention", "1"],
        ["3", "complete", "matched", "none"],
        ["0", "complete", "plain", "none"],
        ["2", "failed", "attention", "2"],
    ]
    assert lines[-1].endswith("ResourceExhaustedError: out of memory")


def test_leaderboard_command_top_and_family(tiny_run, capsys):
    assert main(["leaderboard", str(tiny_run), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["1", "3"]
    assert main(["leaderboard", str(tiny_run), "--family", "attention", "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [
        ["1", "complete", "attention"],
        ["2", "failed", "attention"],
    ]


# --------------------------------------------------------------------------- real runs
_TINY = [
    "--limit",
    "200",
    "--trials",
    "2",
    "--max-epochs",
    "1",
    "--finalists",
    "1",
    "--repeats",
    "2",
]


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """`attn-search run` for both engines, as subprocesses started together (2 CPU cores)."""
    root = tmp_path_factory.mktemp("runs")
    script = _console_script()
    command = [str(script)] if script.exists() else [sys.executable, "-m", "attn_search"]
    procs = {}
    for engine in ("optuna", "keras-tuner"):
        out = root / engine
        procs[engine] = (
            out,
            subprocess.Popen(
                [*command, "run", "--engine", engine, *_TINY, "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_python_env(),
                cwd=root,
            ),
        )
    runs = {}
    for engine, (out, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        runs[engine] = (out, proc.returncode, stdout, stderr)
    return runs


@pytest.mark.parametrize("engine", ["optuna", "keras-tuner"])
def test_run_command_writes_every_output(real_runs, engine, capsys):
    import pandas as pd

    out, code, stdout, stderr = real_runs[engine]
    assert code == 0, stderr[-3000:]
    assert stderr == ""  # progress on stdout; no TensorFlow start-up chatter, no warnings
    assert "\r" not in stdout and "\x1b" not in stdout  # piped: no refreshing line within fits
    assert f"\nRun folder: {out} (status: complete)\n" in stdout
    assert f"\nBest model: {out / 'best_model.keras'}\n" in stdout
    assert f"\nReport: {out / 'report.html'} (and report.md)\n" in stdout
    for name in (
        "leaderboard.csv",
        "comparison.csv",
        "best_model.keras",
        "config.yaml",
        "run.json",
    ):
        assert (out / name).is_file(), name
    assert (out / ("study.db" if engine == "optuna" else "keras_tuner")).exists()

    board = pd.read_csv(out / "leaderboard.csv")
    expected = [
        "trial_id",
        "status",
        "family",
        "placement",
        "best_val_accuracy",
        "best_val_loss",
        "epochs",
        "params",
        "train_seconds",
    ]
    assert list(board.columns[: len(expected)]) == expected
    assert sorted(board["trial_id"]) == [0, 1]
    assert sorted(board["family"]) == ["attention", "plain"]
    assert set(board["status"]) == {"complete"}

    comparison = pd.read_csv(out / "comparison.csv")
    finalists = comparison[comparison["section"] == "finalist"]
    assert sorted(finalists["family"]) == ["attention", "matched", "plain"]
    assert list(finalists["repeats"]) == [2, 2, 2]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    # The answer in words: run.json, the end of the terminal output, `leaderboard --verdict`.
    assert len(info["verdict"]) == 2
    assert "\nVerdict:\n" + "".join(f"  {line}\n" for line in info["verdict"]) in stdout
    assert main(["leaderboard", str(out), "--verdict"]) == 0
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in info["verdict"])
    for line in info["verdict"]:
        assert line.startswith("Finalist 1 (trial #1). Attention after block")


def test_export_and_report_of_a_real_run(real_runs, tmp_path, capsys):
    import warnings

    import numpy as np
    import tensorflow as tf

    from attn_search.datasets import load_dataset
    from attn_search.export import load_best_model

    out = real_runs["optuna"][0]
    to = tmp_path / "best.tflite"
    assert main(["export", str(out), "--format", "tflite", "--to", str(to)]) == 0
    assert capsys.readouterr().out == f"Exported the best model (tflite) to {to}\n"
    x, _ = load_dataset("digits", limit=200, seed=0).arrays("val")
    x = x[:8].astype("float32")
    expected = load_best_model(out).predict(x, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(to))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "### Finalists\n" in text
    assert "## Learned gamma (best model)\n" in text
    # The "Run" table shows run.json's status, start and timings (its documented schema).
    info = json.loads((out / "run.json").read_text())
    assert "## Verdict\n\n" + "".join(f"- {line}\n" for line in info["verdict"]) in text
    timings = info["timings"]
    assert (
        "| setting | value |\n|---|---|\n| status | complete |\n"
        f"| started_at | {info['sessions'][0]['started_at']} |\n"
        f"| updated_at | {info['updated_at']} |\n"
        f"| search_seconds | {timings['search_seconds']:.1f} |\n"
        f"| finalists_seconds | {timings['finalists_seconds']:.1f} |\n"
        f"| total_seconds | {timings['total_seconds']:.1f} |\n"
        "| trials | 2 complete |\n"
    ) in text
    assert timings["total_seconds"] > 0


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["run", "--engine", "sklearn"],
            "attn-search: error: --engine must be one of optuna, keras-tuner. "
            "Received: --engine='sklearn'",
        ),
        (
            ["run", "--engine", "keras-tuner", "--tuner", "evolution"],
            "attn-search: error: --tuner must be one of random, bayesian, hyperband, grid. "
            "Received: --tuner='evolution'",
        ),
        (
            ["run", "--trials", "0"],
            "attn-search: error: --trials must be a positive integer. Received: --trials=0",
        ),
        (
            ["run", "--pruner", "patient"],
            "attn-search: error: `pruner` must be one of 'median', 'hyperband', "
            "'successive-halving', 'none'. Received: pruner='patient'",
        ),
        (
            ["run", "--dataset", "digitz"],
            None,  # the datasets module's message, checked below
        ),
        (
            ["run", "--space", "defualt"],
            "attn-search: error: Unknown search space 'defualt'. Did you mean 'default'? "
            "Shipped spaces: {shipped}; or give the path of a YAML file.",
        ),
    ],
)
def test_bad_arguments_in_a_subprocess(argv, line, tmp_path):
    proc = _run_cli(*argv, timeout=120, cwd=tmp_path)
    if line is None:
        from attn_search.datasets import check_spec

        with pytest.raises(DatasetError) as info:
            check_spec(argv[-1])
        line = f"attn-search: error: {info.value}"
    from attn_search.spaces import list_spaces

    line = line.replace("{shipped}", ", ".join(sorted(s["name"] for s in list_spaces())))
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_run_refuses_a_folder_of_another_run(real_runs, capsys):
    # In-process: TensorFlow is already loaded here, and the wiring of exit codes and stderr
    # is what the subprocess tests above check.
    out = real_runs["optuna"][0]
    before = (out / "leaderboard.csv").read_bytes()
    assert main(["run", *_TINY, "--seed", "7", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "attn-search: error: `out` holds a run with another configuration (seed: 0 there, 7 "
        "here). Resume it with the same configuration, choose another folder, or pass "
        f"overwrite=True to replace it. Received: out='{out}'\n"
    )
    assert (out / "leaderboard.csv").read_bytes() == before


def test_ctrl_c_writes_the_tables_and_exits_130(tmp_path):
    import signal

    import pandas as pd

    out = tmp_path / "run"
    script = _console_script()
    command = [str(script)] if script.exists() else [sys.executable, "-m", "attn_search"]
    argv = ["run", "--limit", "200", "--trials", "20", "--max-epochs", "1", "--finalists", "0"]
    proc = subprocess.Popen(
        [*command, *argv, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_python_env(), "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    try:
        for line in proc.stdout:  # wait for the first finished trial
            if line.replace(" ", "").startswith("[1/20]"):
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "attn-search: error: interrupted"
    assert f"Interrupted: the tables in {out} hold every finished trial." in stdout
    board = pd.read_csv(out / "leaderboard.csv")
    assert 1 <= len(board) < 20
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"

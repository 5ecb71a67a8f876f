"""The runner: a small run per engine (contract), faults, Ctrl-C, kill -9 and resume, tables.

Runs are tiny (digits cut to 200 examples, 3 trials, 1-2 epochs, 1 finalist x 2 seeds), so the
whole file stays within a couple of minutes on 2 CPU cores.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from attn_search import stats
from attn_search.comparison import verdict_sentences
from attn_search.errors import AttnSearchError, ConfigError, RunDirError
from attn_search.runner import ProgressPrinter, RunConfig, run_search

SMALL = dict(
    dataset="digits", limit=200, trials=3, max_epochs=1, finalists=1, repeats=2, quiet=True
)


def _config(engine: str, out: pathlib.Path, **kw) -> RunConfig:
    return RunConfig(**{**SMALL, "engine": engine, "out": str(out), **kw})


@pytest.mark.parametrize("engine", ["keras-tuner", "optuna"])
def test_small_run_contract(engine, tmp_path):
    """One small run per engine: outputs, tables, model; then re-run it, then refuse another."""
    out = tmp_path / "run"
    run = (engine, out, run_search(_config(engine, out)))
    _check_outputs(run)
    _check_leaderboard(run)
    _check_comparison(run)
    _check_best_model_config_and_run_json(run)
    _check_rerun_resumes_without_retraining(run)
    _check_folder_of_another_run_is_refused(run)


# ------------------------------------------------------------------------------- contract


def _check_outputs(small_run):
    engine, out, result = small_run
    assert result.run_dir == out and result.status == "complete"
    names = {
        "leaderboard.csv",
        "comparison.csv",
        "best_model.keras",
        "config.yaml",
        "run.json",
        "report.md",
    }
    assert names <= {p.name for p in out.iterdir()}
    assert (out / ("study.db" if engine == "optuna" else "keras_tuner")).exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def _check_leaderboard(small_run):
    from attn_search.leaderboard import LEADERBOARD_COLUMNS, read_leaderboard

    engine, out, result = small_run
    board = read_leaderboard(out)
    assert list(board.columns[:9]) == list(LEADERBOARD_COLUMNS[:9])
    assert list(board.columns[-4:]) == ["seed", "twin_of", "engine", "error"]
    assert "gamma_0" in board.columns
    for hp in ("attention/placement", "train/learning_rate", "train/batch_size", "backbone/blocks"):
        assert hp in board.columns
    assert sorted(board["trial_id"]) == [0, 1, 2]
    assert set(board["engine"]) == {engine}
    assert set(board["family"]) == {"plain", "attention"}
    assert set(board["status"]) <= {"complete", "pruned", "failed", "skipped"}
    # Trial 0 is the plain backbone with default values, on every engine.
    first = board[board["trial_id"] == 0].iloc[0]
    assert first["family"] == "plain" and first["placement"] == "none"
    assert first["backbone/blocks"] == 2 and first["train/learning_rate"] == 0.001
    assert math.isnan(first["gamma_0"])
    att = board[board["family"] == "attention"]
    assert att["gamma_0"].notna().all() and (att["placement"] != "none").all()
    assert (board["epochs"] == 1).all() and (board["params"] > 0).all()
    complete = board[board["status"] == "complete"]["best_val_accuracy"].tolist()
    assert complete == sorted(complete, reverse=True)
    assert board.equals(read_leaderboard(out))  # reading is stable
    assert len(result.leaderboard) == len(board)


def _check_comparison(small_run):
    from scipy import stats

    from attn_search.leaderboard import COMPARISON_COLUMNS, read_comparison

    engine, out, result = small_run
    comp = read_comparison(out)
    assert list(comp.columns) == list(COMPARISON_COLUMNS)
    fam = comp[comp["section"] == "family"].set_index("family")
    assert fam.loc["plain", "trials"] == 1 and fam.loc["attention", "trials"] == 2
    assert set(comp[comp["section"] == "placement"]["family"]) == {"plain", "attention"}
    fin = comp[comp["section"] == "finalist"].set_index("family")
    assert list(fin.index) == ["attention", "plain", "matched"]
    assert (fin["repeats"] == 2).all() and (fin["finalist"] == 1).all()
    runs = json.loads((out / "finalists.json").read_text())["runs"]
    assert len(runs) == 6 and {r["seed"] for r in runs} == {1000, 2000}
    acc = {(r["family"], r["seed"]): r["test_accuracy"] for r in runs}
    for twin in ("plain", "matched"):
        a = [acc["attention", s] for s in (1000, 2000)]
        t = [acc[twin, s] for s in (1000, 2000)]
        diffs = [x - y for x, y in zip(a, t, strict=True)]
        assert fin.loc[twin, "diff_mean"] == pytest.approx(sum(diffs) / 2)
        p = stats.ttest_rel(a, t).pvalue
        assert (math.isnan(p) and math.isnan(fin.loc[twin, "p_value"])) or fin.loc[
            twin, "p_value"
        ] == pytest.approx(p)
    assert math.isnan(fin.loc["attention", "diff_mean"])


def _check_best_model_config_and_run_json(small_run):
    import keras
    import numpy as np
    import yaml

    from attn_search.leaderboard import read_leaderboard

    engine, out, result = small_run
    model = keras.models.load_model(result.best_model_path, safe_mode=True)
    assert model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 10)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["dataset"]["name"] == "digits" and config["dataset"]["limit"] == 200
    assert config["space"]["name"] == "default" and config["engine"]["name"] == engine
    assert config["budget"]["trials"] == 3 and config["seeds"]["finalists"] == [1000, 2000]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["versions"]["keras"] == keras.__version__
    assert set(run["timings"]) == {"search_seconds", "finalists_seconds", "total_seconds"}
    best = read_leaderboard(out).iloc[0]
    assert run["best_model"]["trial_id"] == best["trial_id"]


def _record_fits(monkeypatch) -> list[int]:
    """Records the seed of every network trained from now on: fitted alone (`training.fit`,
    search trials) or in a finalist fit group (`_fused.fit_group`, once per network)."""
    from attn_search.runner import _fused, training

    seeds: list[int] = []
    fit, fit_group = training.fit, _fused.fit_group

    def group(g, *a, **k):
        seeds.extend([k["seed"]] * len(g.networks))
        return fit_group(g, *a, **k)

    monkeypatch.setattr(training, "fit", lambda *a, **k: seeds.append(k["seed"]) or fit(*a, **k))
    monkeypatch.setattr(_fused, "fit_group", group)
    return seeds


def _check_rerun_resumes_without_retraining(small_run):
    engine, out, result = small_run

    before = (out / "leaderboard.csv").read_text()
    with pytest.MonkeyPatch.context() as monkeypatch:
        fits = _record_fits(monkeypatch)
        again = run_search(_config(engine, out))
    assert fits == []  # nothing trained again
    assert (out / "leaderboard.csv").read_text() == before
    assert len(json.loads((out / "finalists.json").read_text())["runs"]) == 6
    run = json.loads((out / "run.json").read_text())
    assert again.status == "complete" and len(run["sessions"]) == 2


def _check_folder_of_another_run_is_refused(small_run):
    engine, out, result = small_run
    with pytest.raises(RunDirError) as info:
        run_search(_config(engine, out, seed=1))
    assert str(info.value) == (
        "`out` holds a run with another configuration (seed: 0 there, 1 here). Resume it with "
        "the same configuration, choose another folder, or pass overwrite=True to replace it. "
        f"Received: out={str(out)!r}"
    )
    with pytest.raises(RunDirError) as info:  # held-out finalists, then folds: not mixed
        run_search(_config(engine, out, cv=3))
    assert str(info.value) == (
        "`out` holds a run with another configuration (cv: 0 there, 3 here). Resume it with "
        "the same configuration, choose another folder, or pass overwrite=True to replace it. "
        f"Received: out={str(out)!r}"
    )


def test_folder_that_is_not_a_run_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunDirError) as info:
        run_search(RunConfig(**{**SMALL, "resume": True}))
    assert str(info.value) == (
        "`resume` found no earlier run of dataset 'digits' in results/ (folders "
        "results/<dataset>-<timestamp> holding config.yaml); pass `out` to name the run folder. "
        "Received: resume=True, out=None"
    )
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError) as info:
        run_search(_config("optuna", tmp_path))
    assert str(info.value) == (
        "`out` holds files but no run (no readable config.yaml); choose an empty or new folder, "
        f"or pass overwrite=True to write the run there. Received: out={str(tmp_path)!r}"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------- faults


@pytest.fixture
def patched_build(monkeypatch):
    """Makes the n-th model build (0-based, search trials only) misbehave as asked."""
    import keras

    from attn_search.hypermodels import AttentionCNN

    original = AttentionCNN.build
    plan: dict[int, str] = {}
    calls = {"n": 0}

    def build(self, hp):
        n = calls["n"]
        calls["n"] += 1
        what = plan.get(n, plan.get("*"))
        if what == "raise":
            raise RuntimeError("boom")
        if what == "interrupt":
            raise KeyboardInterrupt
        model = original(self, hp)
        if what == "nan":
            model.compile(
                optimizer="adam",
                loss=lambda y, p: keras.ops.mean(p) * float("nan"),
                metrics=["accuracy"],
            )
        return model

    monkeypatch.setattr(AttentionCNN, "build", build)
    return plan


def test_nan_and_raising_trials_fail_alone(tmp_path, patched_build):
    patched_build.update({1: "nan", 2: "raise"})
    result = run_search(_config("optuna", tmp_path / "run", trials=4, finalists=0))
    board = result.leaderboard.set_index("trial_id")
    assert list(board["status"].sort_index()) == ["complete", "failed", "failed", "complete"]
    assert board.loc[1, "error"] == (
        "NaN loss at epoch 1, batch 1 (TerminateOnNaN): lower the learning rate or check the data"
    )
    assert board.loc[2, "error"] == "RuntimeError: boom"
    assert board.loc[2, "family"] == "attention"
    assert result.status == "complete"
    assert list(result.leaderboard["status"]) == ["complete", "complete", "failed", "failed"]


def test_consecutive_failures_stop_the_run(tmp_path, patched_build):
    patched_build["*"] = "raise"
    out = tmp_path / "run"
    with pytest.raises(AttnSearchError) as info:
        run_search(_config("optuna", out, trials=5, finalists=0, max_consecutive_failures=2))
    assert str(info.value) == (
        "The search stopped: the last 2 trials failed in a row (max_consecutive_failures=2). "
        f"Last error: RuntimeError: boom. The tables in {out} list every trial."
    )
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_ctrl_c_writes_tables_then_resume_reruns_the_trial(tmp_path, patched_build):
    patched_build[1] = "interrupt"
    out = tmp_path / "run"
    config = _config("optuna", out, trials=2, finalists=0)
    with pytest.raises(KeyboardInterrupt):
        run_search(config)
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial_id"], r["status"]) for r in rows] == [("0", "complete"), ("1", "failed")]
    assert rows[1]["error"] == "interrupted by the user (KeyboardInterrupt); re-run as trial 2"
    patched_build.clear()
    result = run_search(config)
    board = result.leaderboard.set_index("trial_id")
    assert list(board.index.sort_values()) == [0, 1, 2]
    assert board.loc[2, "status"] == "complete" and board.loc[1, "status"] == "failed"
    assert board.loc[0, "train_seconds"] == float(rows[0]["train_seconds"])  # kept, not re-run


_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    out, engine, when = sys.argv[1:4]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if when.startswith("writing_"):
        # Kill in the middle of KerasTuner writing its 2nd oracle.json / trial.json in place:
        # half the text is on disk, as after a SIGKILL during the write.
        from keras_tuner.src import utils  # checked against keras-tuner 1.4.8
        name, calls, original = when[len("writing_"):] + ".json", [], utils.save_json

        def save_json(path, obj):
            if str(path).endswith(name):
                calls.append(path)
                if len(calls) == 2:
                    import json
                    text = json.dumps(obj)
                    with open(path, "w") as f:
                        f.write(text[: len(text) // 2])
                    die()
            return original(path, obj)

        utils.save_json = save_json
    if when == "in_second_trial":
        from attn_search.runner import training
        begin = training.EpochCallback.on_epoch_begin

        def on_epoch_begin(self, epoch, logs=None):
            if self.trial is not None and self.trial.number >= 1:
                die()
            return begin(self, epoch, logs)

        training.EpochCallback.on_epoch_begin = on_epoch_begin
    from attn_search.runner import run_search
    run_search(dict(dataset="digits", limit=200, trials=2, max_epochs=2, finalists=0,
                    quiet=True, engine=engine, out=out))
    """
)


def _complete_rows(out):
    try:
        with open(out / "leaderboard.csv") as f:
            return [r for r in csv.DictReader(f) if r["status"] == "complete"]
    except (OSError, csv.Error):
        return []


@pytest.mark.parametrize(
    "engine, when",
    [
        ("keras-tuner", "after_first_trial"),
        ("optuna", "after_first_trial"),
        ("keras-tuner", "in_second_trial"),
        ("optuna", "in_second_trial"),
        ("keras-tuner", "writing_oracle"),
        ("keras-tuner", "writing_trial"),
    ],
)
def test_kill_9_then_resume_to_full_count(engine, when, tmp_path):
    """A SIGKILL at several points of a trial (during a file write included), then resume."""
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(out), engine, when],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    try:
        while when == "after_first_trial" and time.monotonic() < deadline and proc.poll() is None:
            if _complete_rows(out):
                break
            time.sleep(0.1)
        if when != "after_first_trial":
            proc.wait(timeout=180)  # the worker kills itself at the chosen point
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    before = _complete_rows(out)
    if when in ("after_first_trial", "in_second_trial"):
        assert len(before) == 1, err.decode()[-2000:]

    result = run_search(
        RunConfig(
            **{
                **SMALL,
                "trials": 2,
                "max_epochs": 2,
                "finalists": 0,
                "engine": engine,
                "out": str(out),
            }
        )
    )
    board = result.leaderboard
    counted = board[~board["error"].str.startswith("interrupted")]
    assert len(counted) == 2 and counted["trial_id"].is_unique
    assert (counted["status"] == "complete").all()
    for first in before:  # a trial finished before the kill is kept, not re-run
        again = board.set_index("trial_id").loc[int(first["trial_id"])]
        assert again["train_seconds"] == float(first["train_seconds"])
        assert again["best_val_accuracy"] == float(first["best_val_accuracy"])
    interrupted = board[board["error"].str.startswith("interrupted")]
    if engine == "optuna":  # if the kill hit a running trial, it is recorded and re-run
        assert len(interrupted) <= 1 and len(board) == 2 + len(interrupted)
        if when == "in_second_trial":
            assert len(interrupted) == 1
    else:  # KerasTuner retries it under the same id
        assert len(interrupted) == 0 and len(board) == 2


# --------------------------------------------------------------------------------- config


_CONFIG_ERRORS = [
    (
        dict(engine="hyperopt"),
        "`engine` must be one of 'optuna', 'keras-tuner'. Received: engine='hyperopt'",
    ),
    (
        dict(tuner="evolution"),
        "`tuner` must be one of 'random', 'bayesian', 'hyperband', 'grid'. "
        "Received: tuner='evolution'",
    ),
    (dict(trials=0), "`trials` must be a positive integer. Received: trials=0"),
    (
        dict(skip_corrupt="yes"),
        "`skip_corrupt` must be True or False. Received: skip_corrupt='yes'",
    ),
    (dict(repeats=0), "`repeats` must be a positive integer. Received: repeats=0"),
    (dict(finalists=-1), "`finalists` must be an integer >= 0. Received: finalists=-1"),
    (dict(max_epochs=0), "`max_epochs` must be a positive integer or None. Received: max_epochs=0"),
    (
        dict(time_budget=-5),
        "`time_budget` must be a positive number or None. Received: time_budget=-5",
    ),
    (
        dict(image_size=(8,)),
        "`image_size` must be (height, width), two positive integers. Received: image_size=(8,)",
    ),
    (dict(verbose=3), "`verbose` must be 0, 1 or 2. Received: verbose=3"),
    (
        dict(resume=True, overwrite=True),
        "`resume` and `overwrite` cannot both be set: resume continues the run in the folder, "
        "overwrite deletes it. Received: resume=True, overwrite=True",
    ),
]


def test_config_errors_name_the_field():
    for kwargs, message in _CONFIG_ERRORS:
        with pytest.raises(ConfigError) as info:
            RunConfig(**kwargs).validate()
        assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        run_search({"trails": 3})
    assert str(info.value).startswith(
        "`config` has unknown field(s) 'trails'; RunConfig accepts dataset, "
    )


# ---------------------------------------------------------------------------- tables, progress


def _rec(i, status, family, acc, **kw):
    return {
        "trial_id": i,
        "engine": "optuna",
        "status": status,
        "family": family,
        "best_val_accuracy": acc,
        "hp": {"train/batch_size": 32},
        **kw,
    }


def test_records_to_frame_sorts_best_first_and_keeps_every_status():
    from attn_search.leaderboard import records_to_frame

    df = records_to_frame(
        [
            _rec(0, "complete", "plain", 0.8, placements=[]),
            _rec(1, "failed", "attention", None, error="RuntimeError: boom"),
            _rec(2, "complete", "attention", 0.9, placements=[1, 2], gammas=[0.1, -0.2]),
            _rec(3, "pruned", "attention", 0.95, placements=[2], gammas=[0.0]),
            _rec(4, "skipped", "attention", 0.9, placements=[1, 2]),
        ]
    )
    assert list(df["trial_id"]) == [2, 0, 4, 3, 1]
    assert list(df["placement"]) == ["1+2", "none", "1+2", "2", "none"]
    assert list(df.columns[9:11]) == ["gamma_0", "gamma_1"] and df.loc[0, "gamma_1"] == -0.2
    assert df.loc[4, "error"] == "RuntimeError: boom"


def test_comparison_paired_difference_and_p_value():
    from scipy import stats

    from attn_search.leaderboard import comparison_frame, records_to_frame

    att, plain = [0.90, 0.92, 0.95], [0.88, 0.91, 0.90]
    runs = [
        {"finalist": 1, "trial_id": 5, "family": f, "placement": p, "seed": s, "test_accuracy": a}
        for f, p, accs in (("attention", "2", att), ("plain", "none", plain))
        for s, a in zip((10, 20, 30), accs, strict=True)
    ]
    comp = comparison_frame(
        records_to_frame([_rec(5, "complete", "attention", 0.9, placements=[2])]), runs
    )
    fin = comp[comp["section"] == "finalist"].set_index("family")
    assert fin.loc["attention", "test_accuracy_mean"] == pytest.approx(sum(att) / 3)
    assert fin.loc["plain", "diff_mean"] == pytest.approx((0.02 + 0.01 + 0.05) / 3)
    assert fin.loc["plain", "p_value"] == pytest.approx(stats.ttest_rel(att, plain).pvalue)
    one = comparison_frame(records_to_frame([]), [r for r in runs if r["seed"] == 10])
    row = one[one["family"] == "plain"].iloc[0]
    assert row["repeats"] == 1 and math.isnan(row["p_value"]) and math.isnan(row["diff_std"])


def test_format_table_and_read_errors(tmp_path):
    import pandas as pd

    from attn_search.leaderboard import format_table, read_leaderboard

    df = pd.DataFrame(
        {
            "trial_id": [3, 1],
            "status": ["complete", "failed"],
            "best_val_accuracy": [0.91234, float("nan")],
            "error": ["", "boom"],
        }
    )
    assert (
        format_table(df, top=1)
        == "trial_id  status    best_val_accuracy\n       3  complete             0.9123"
    )
    with pytest.raises(RunDirError) as info:
        read_leaderboard(tmp_path)
    assert str(info.value) == (
        "`run_dir` must be a run folder (one `attn-search run` wrote); it has no leaderboard.csv. "
        f"Received: run_dir={str(tmp_path)!r}"
    )

    _check_progress_line()


def _check_progress_line():
    stream = io.StringIO()
    printer = ProgressPrinter(10, stream=stream)
    record = {
        "trial_id": 4,
        "status": "complete",
        "family": "attention",
        "placements": [2],
        "best_val_accuracy": 0.9123,
        "hp": {"attention/0/num_heads": 2, "train/learning_rate": 0.0031},
    }
    printer.trial(5, record, {"trial_id": 2, "family": "plain", "best_val_accuracy": 0.95}, 2.0)
    line = stream.getvalue().strip()
    assert line.startswith(
        "[ 5/10] #4 attention@2 heads=2 lr=0.0031 | val_acc 0.9123 | best 0.9500 (#2 plain) | "
        "0:00:00 elapsed, ~0:00:10 left"
    )
    quiet = ProgressPrinter(10, quiet=True, stream=stream)
    quiet.trial(1, record, None, 1.0)
    assert stream.getvalue().strip() == line


def test_time_budget_stops_starting_trials(tmp_path):
    out = tmp_path / "run"
    result = run_search(_config("optuna", out, time_budget=1e-6))
    assert result.status == "stopped" and len(result.leaderboard) == 0
    assert result.best_model_path is None
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "stopped" and run["stopped_by"] == "time_budget"


def test_folder_dataset_with_a_corrupt_image_stops_or_is_skipped(tmp_path):
    """skip_corrupt reaches the dataset loader: without it the run stops before any trial."""
    from PIL import Image

    from attn_search.errors import DatasetError

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            pixels = (rng.random((8, 8)) * 255).astype("uint8")
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.png")
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"not a png")
    config = dict(SMALL, dataset=str(tmp_path / "data"), engine="optuna", trials=1, finalists=0)
    with pytest.raises(DatasetError):
        run_search(config, out=str(tmp_path / "stopped"))
    assert not (tmp_path / "stopped").exists()  # nothing written
    with pytest.warns(
        UserWarning, match=r"Skipped 1 unreadable image file\(s\) in .*: a/broken\.png\."
    ):
        result = run_search(config, out=str(tmp_path / "skipped"), skip_corrupt=True)
    assert result.status == "complete"
    assert list(result.leaderboard["status"]) == ["complete"]


def test_unknown_fields_name_the_closest_field():
    with pytest.raises(ConfigError) as info:
        run_search(trails=3)
    text = str(info.value)
    assert text.startswith("`overrides` has unknown field(s) 'trails'; RunConfig accepts dataset, ")
    assert text.endswith(" Did you mean 'trails' -> 'trials'? Received: overrides={'trails': 3}")


def test_config_check_reads_the_space_and_the_dataset_spec(tmp_path):
    from attn_search.errors import DatasetError, SearchSpaceError

    RunConfig(dataset="digits", space="default").check()
    with pytest.raises(SearchSpaceError):
        RunConfig(space=str(tmp_path / "missing.yaml")).check()
    with pytest.raises(DatasetError):
        RunConfig(dataset=str(tmp_path / "missing")).check()


def test_resume_keeps_finalist_fits_whose_rank_changed(tmp_path, monkeypatch):
    """A fit is keyed by (trial, family, seed): a resume that reorders the finalists keeps
    every finished fit, and both finalists stay in comparison.csv with their new ranks."""
    from attn_search.runner import planning

    out = tmp_path / "run"
    config = _config("optuna", out, trials=3, finalists=2, repeats=1, pruner="none")
    run_search(config)
    first = json.loads((out / "finalists.json").read_text())["runs"]
    ranks = {r["trial_id"]: r["finalist"] for r in first}
    assert len(first) == 6 and sorted(ranks.values()) == [1, 2]  # 2 finalists x 3 families

    choose = planning.choose_finalists
    monkeypatch.setattr(planning, "choose_finalists", lambda records, n: choose(records, n)[::-1])
    fits = _record_fits(monkeypatch)
    result = run_search(config)
    assert fits == []  # nothing trained again
    rows = result.comparison[result.comparison["section"] == "finalist"]
    assert len(rows) == 6
    swapped = {int(t): int(f) for t, f in zip(rows["trial_id"], rows["finalist"], strict=True)}
    assert swapped == {t: 3 - r for t, r in ranks.items()}


def test_resume_with_more_repeats_adds_only_the_new_seeds(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = _config("optuna", out, trials=2, finalists=1, repeats=2, pruner="none")
    first = run_search(config)
    assert len(first.verdict) == 2  # one sentence per baseline twin
    assert json.loads((out / "run.json").read_text())["verdict"] == first.verdict
    seeds = _record_fits(monkeypatch)
    result = run_search(dataclasses.replace(config, repeats=3))
    assert seeds == [3000, 3000, 3000]  # the new seed, once per family; nothing else
    fin = result.comparison[result.comparison["section"] == "finalist"]
    assert list(fin["repeats"]) == [3, 3, 3] and list(fin["pairs"].iloc[1:]) == [3, 3]
    assert all(v in stats.VERDICTS for v in fin["verdict"].iloc[1:])
    assert result.verdict == verdict_sentences(result.comparison)

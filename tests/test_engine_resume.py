"""Resume after a kill at any instant: files a kill left half-written, trials a dead process held.

KerasTuner writes its JSON files in place, so each test writes a project (two trials told, a
third running), damages one file the way a SIGKILL during its write would (empty or truncated),
reopens, and checks that the finished trials survive, the count is right, and the search
finishes. Optuna's storage is transactional; its test kills a real process mid-trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from attn_search.engines import KerasTunerEngine, OptunaEngine, TrialPlan, _private
from attn_search.errors import RunDirError

TRIALS = 4


@pytest.fixture(scope="module")
def hypermodel():
    from attn_search.hypermodels import AttentionCNN

    return AttentionCNN("default", (8, 8, 1), 10)


def _open(engine, run_dir, hypermodel):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine.open(run_dir, hypermodel=hypermodel, trials=TRIALS, seed=0, max_epochs=2)
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _told(trial, hypermodel, acc):
    hp = trial.make_hp(TrialPlan("attention"))
    hypermodel.build(hp)
    values = trial.hp_values(hp)
    record = {"status": "complete", "family": "attention", "hp": values, "epochs": 1}
    return {**record, "best_val_accuracy": acc, "best_val_loss": 1 - acc}


def _write_project(run_dir, hypermodel):
    """Two trials told, a third asked and planned; then the process "dies" (no interrupt)."""
    engine = KerasTunerEngine()
    assert _open(engine, run_dir, hypermodel) == []
    for acc in (0.5, 0.6):
        trial = engine.ask()
        engine.tell(trial, _told(trial, hypermodel, acc))
    running = engine.ask()
    running.make_hp(TrialPlan("attention"))
    values = dict(running.trial.hyperparameters.values)
    engine.close()
    return values


def _finish(engine, hypermodel):
    """Runs the search to its end; returns the trial numbers it ran."""
    ran = []
    while (trial := engine.ask()) is not None:
        plan = trial.plan or TrialPlan("attention")
        trial.make_hp(plan)
        engine.tell(
            trial,
            {
                "status": "complete",
                "family": plan.family,
                "hp": {},
                "best_val_accuracy": 0.7,
                "epochs": 1,
            },
        )
        ran.append(trial.number)
    return ran


def _damage(path, how):
    text = path.read_text()
    path.write_text("" if how == "empty" else text[: len(text) // 2])


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize(
    "file, note",
    [
        ("oracle.json", "{p}/oracle.json was unreadable: restored from its last good copy"),
        ("tuner0.json", "{p}/tuner0.json was unreadable: rewritten (it holds no state)"),
        (
            "trial_0/trial.json",
            "{p}/trial_0/trial.json was unreadable: restored from its last good copy",
        ),
        (
            "trial_2/trial.json",
            "{p}/trial_2/trial.json was unreadable: restored from its last good copy",
        ),
    ],
)
def test_keras_tuner_resumes_from_a_damaged_file(file, note, how, tmp_path, hypermodel):
    values = _write_project(tmp_path, hypermodel)
    project = tmp_path / "keras_tuner"
    _damage(project / file, how)

    engine = KerasTunerEngine()
    assert _open(engine, tmp_path, hypermodel) == [note.format(p=project)]
    assert [(r["trial_id"], r["best_val_accuracy"]) for r in engine.records()] == [
        (0, 0.5),
        (1, 0.6),
    ]
    assert engine.n_counted() == 2
    rerun = engine.ask()  # the trial that was running when the process died
    assert (rerun.number, rerun.plan) == (2, TrialPlan("attention"))
    assert dict(rerun.trial.hyperparameters.values) == values
    engine.tell(rerun, _told(rerun, hypermodel, 0.8))
    assert _finish(engine, hypermodel) == [3]
    assert [r["trial_id"] for r in engine.records()] == [0, 1, 2, 3]
    assert engine.n_counted() == TRIALS


def test_keras_tuner_drops_a_trial_killed_while_being_created(tmp_path, hypermodel):
    # A kill during KerasTuner's first write of trial.json, before any good copy exists.
    _write_project(tmp_path, hypermodel)
    folder = tmp_path / "keras_tuner" / "trial_2"
    (folder / "trial.last-good.json").unlink()
    _damage(folder / "trial.json", "truncated")

    engine = KerasTunerEngine()
    assert _open(engine, tmp_path, hypermodel) == [
        f"{folder}/trial.json was unreadable and the trial had not started: dropped"
    ]
    assert engine.n_counted() == 2 and len(engine.records()) == 2
    assert _finish(engine, hypermodel) == [2, 3]  # trial 2 created afresh, then trial 3
    assert engine.n_counted() == TRIALS


def test_keras_tuner_keeps_a_trial_whose_record_was_written(tmp_path, hypermodel):
    # Killed inside `tell`, after record.json and before KerasTuner ended the trial: its
    # record stands, and it is not trained again.
    _write_project(tmp_path, hypermodel)
    engine = KerasTunerEngine()
    _open(engine, tmp_path, hypermodel)
    trial = engine.ask()
    record = _told(trial, hypermodel, 0.9)
    engine.write_trial_file("2", "record.json", {**record, "trial_id": 2, "engine": engine.name})
    engine.close()

    engine = KerasTunerEngine()
    assert _open(engine, tmp_path, hypermodel) == []
    assert [(r["trial_id"], r["best_val_accuracy"]) for r in engine.records()] == [
        (0, 0.5),
        (1, 0.6),
        (2, 0.9),
    ]
    assert engine.n_counted() == 3
    assert _finish(engine, hypermodel) == [3]


def test_keras_tuner_oracle_without_a_good_copy_says_so(tmp_path, hypermodel):
    _write_project(tmp_path, hypermodel)
    project = tmp_path / "keras_tuner"
    (project / "oracle.last-good.json").unlink()
    _damage(project / "oracle.json", "empty")
    with pytest.raises(RunDirError) as info:
        _open(KerasTunerEngine(), tmp_path, hypermodel)
    assert str(info.value) == (
        f"{project}/oracle.json is unreadable (a run killed while writing it?) and has no "
        "last-good copy: it cannot be resumed. Start it again with `overwrite=True` "
        "(--overwrite)."
    )


def test_optuna_reruns_a_trial_whose_process_was_killed(tmp_path):
    # A real SIGKILL mid-trial: the trial stays RUNNING in the storage, held by a dead pid.
    script = textwrap.dedent(
        f"""
        import os, signal
        from attn_search.engines import OptunaEngine, TrialPlan
        engine = OptunaEngine(sampler="random", pruner="none")
        engine.open({str(tmp_path)!r}, trials=3, seed=0, max_epochs=2)
        hp = engine.ask().make_hp(TrialPlan("matched", fixed={{"b": 2}}, twin_of=7))
        print(hp.Int("a", 1, 100), hp.Int("b", 1, 9), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == -9, out.stderr
    a, b = map(int, out.stdout.split())

    engine = OptunaEngine(sampler="random", pruner="none")
    engine.open(tmp_path, trials=3, seed=0, max_epochs=2)
    (dead,) = engine.records()
    assert (dead["trial_id"], dead["status"], dead["family"], dead["interrupted"]) == (
        0,
        "failed",
        "matched",
        True,
    )
    assert dead["error"].startswith("interrupted: the process running this trial stopped (")
    assert dead["error"].endswith("); re-run as trial 1")
    assert engine.n_counted() == 0
    rerun = engine.ask()
    assert rerun.number == 1 and rerun.plan == TrialPlan("matched", fixed={"b": 2}, twin_of=7)
    hp = rerun.make_hp(rerun.plan)
    assert (hp.Int("a", 1, 100), hp.Int("b", 1, 9)) == (a, b)
    assert engine.n_counted() == 1
    engine.close()


def test_optuna_reruns_a_trial_killed_between_ask_and_claim(tmp_path):
    # `ask` creates the trial, then writes its worker: a kill in between leaves a running trial
    # without a worker, which the next session of the run folder's own study re-runs.
    engine = OptunaEngine(sampler="random", pruner="none")
    engine.open(tmp_path, trials=3, seed=0, max_epochs=2)
    engine.study.ask()  # created, never claimed
    engine.close()
    engine = OptunaEngine(sampler="random", pruner="none")
    engine.open(tmp_path, trials=3, seed=0, max_epochs=2)
    (dead,) = engine.records()
    assert dead["status"] == "failed" and dead["interrupted"] is True
    assert dead["error"] == (
        "interrupted: the process running this trial stopped (unknown worker); re-run as trial 1"
    )
    assert engine.n_counted() == 0 and engine.ask().number == 1
    engine.close()


def test_optuna_reruns_a_later_trial_killed_before_its_slot_was_written(tmp_path):
    # Killed after `ask` created trial 1 but before it wrote its slot: the re-run takes slot 1
    # (the slot trial 1 would have had), not a slot past the budget (surplus, then re-queued
    # again and again: a resumed run that never ended).
    engine = OptunaEngine(sampler="random", pruner="none")
    engine.open(tmp_path, trials=2, seed=0, max_epochs=2)
    first = engine.ask()
    engine.tell(first, {"status": "complete", "best_val_accuracy": 0.5})
    engine.study.ask()  # trial 1: created, never given its slot
    engine.close()
    engine = OptunaEngine(sampler="random", pruner="none")
    engine.open(tmp_path, trials=2, seed=0, max_epochs=2)
    assert engine.n_counted() == 1
    rerun = engine.ask()
    assert (rerun.number, rerun.slot) == (2, 1)
    engine.tell(rerun, {"status": "complete", "best_val_accuracy": 0.6})
    assert engine.n_counted() == 2 and engine.ask() is None and not engine.others_running()
    engine.close()


def test_optuna_requeues_a_trial_failed_elsewhere_once(tmp_path):
    # Another worker's heartbeat check failed this trial (no record): it is re-run once.
    from optuna.trial import TrialState

    from attn_search.engines.base import worker_id

    def reopen():
        engine = OptunaEngine(sampler="random", pruner="none")
        engine.open(tmp_path, trials=3, seed=0, max_epochs=2)
        return engine

    engine = reopen()
    trial = engine.ask()
    trial.make_hp(TrialPlan("plain", use_defaults=True)).Int("a", 1, 9)
    engine.study.tell(trial.number, state=TrialState.FAIL)  # as `fail_stale_trials` does
    engine.close()
    for _ in range(2):  # the second reopen queues nothing more
        engine = reopen()
        assert engine.records() == [
            {
                "status": "failed",
                "family": "plain",
                "hp": {},
                "error": "interrupted: the process running this trial stopped "
                f"({worker_id()}); re-run as trial 1",
                "interrupted": True,
                "trial_id": 0,
                "engine": "optuna",
            }
        ]
        assert engine.n_counted() == 0 and len(engine.study.trials) == 2
        engine.close()
    rerun = reopen().ask()
    assert (rerun.number, rerun.plan) == (1, TrialPlan("plain", use_defaults=True))


# ---------------------------------------------------------- the private APIs, pinned


def test_private_keras_tuner_state_format(tmp_path, hypermodel):
    import keras_tuner

    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=2, seed=0
    )
    tuner = keras_tuner.Tuner(oracle=oracle, hypermodel=hypermodel, directory=str(tmp_path))
    assert tuner.get_state() == json.loads(_private.EMPTY_TUNER_STATE)
    state = oracle.get_state()
    assert set(_private.ORACLE_TRIAL_KEYS) <= set(state)
    assert state["ongoing_trials"] == {} and state["retry_queue"] == []

    # The repair it makes: a dead process's trial queued, a missing one forgotten, a told one
    # ended, whatever the saved state said.
    state.update(
        ongoing_trials={"tuner0": "1", "other": "5"},
        start_order=["0", "1", "5"],
        end_order=[],
        retry_queue=["5"],
    )
    statuses = {"0": "COMPLETED", "1": "RUNNING", "2": "RUNNING", "3": "RUNNING"}
    assert _private.reconcile_oracle_state(state, statuses, recorded={"1"})
    assert state["ongoing_trials"] == {"recovered-2": "2", "recovered-3": "3"}
    assert (state["start_order"], state["end_order"], state["retry_queue"]) == (
        ["0", "1", "2", "3"],
        ["0"],
        [],
    )
    assert not _private.reconcile_oracle_state(state, statuses, recorded={"1"})


def test_a_dead_workers_reused_process_id_does_not_keep_its_trial_alive():
    """On a busy machine a dead worker's process id is soon another process's: the start time
    recorded with the trial's worker tells them apart."""
    import socket

    from attn_search.engines.base import process_start, worker_is_dead

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker = f"{socket.gethostname()}:{other.pid}"
        started = process_start(other.pid)
        assert isinstance(started, int)
        assert not worker_is_dead(worker, started)  # the very process: alive
        assert not worker_is_dead(worker)  # no start time recorded: the id alone decides
        assert worker_is_dead(worker, started - 1)  # the id now names a later process
    finally:
        other.kill()
        other.wait()
    assert worker_is_dead(worker, started)

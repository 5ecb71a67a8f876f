"""The KerasTuner engine: a KerasTuner oracle proposes, the runner trains, records live beside.

The oracle (random search, Bayesian optimization, Hyperband or grid search) and its project
directory (`keras_tuner/` in the run folder) are KerasTuner's own, so KerasTuner's reloading
and its distributed mode (`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT`) work as usual. Each trial's record is written as `record.json` in
the trial's own folder, next to KerasTuner's `trial.json`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import time
import warnings
from typing import Any

from attn_search._atomic import write_text_atomic
from attn_search.engines import _keras_tuner_files as files
from attn_search.engines.base import (
    Engine,
    EngineOption,
    EngineTrial,
    TrialPlan,
    clean_record,
)
from attn_search.errors import ConfigError

__all__ = ["TUNERS", "KerasTunerEngine"]

TUNERS = ("random", "bayesian", "hyperband", "grid")
PROJECT = files.PROJECT
_OBJECTIVE = "val_accuracy"


def _quiet():
    # KerasTuner prints "Reloading Tuner from ..." and a table per trial: the runner prints
    # its own progress instead.
    return contextlib.redirect_stdout(io.StringIO())


_DISTRIBUTED = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def _distributed_role() -> str | None:
    """`"chief"`, `"worker"` or `None`, by KerasTuner's documented environment variables.

    Raises:
        ConfigError: Some of the three variables are set but not all, or one is malformed.
    """
    given = {name: os.environ[name] for name in _DISTRIBUTED if name in os.environ}
    if not given:
        return None
    received = ", ".join(f"{k}={v!r}" for k, v in given.items())
    missing = [name for name in _DISTRIBUTED if not given.get(name, "").strip()]
    if missing:
        raise ConfigError(
            "KerasTuner's chief/worker mode needs all of KERASTUNER_TUNER_ID ('chief' for the "
            "chief, any other name for each worker), KERASTUNER_ORACLE_IP and "
            f"KERASTUNER_ORACLE_PORT; {' and '.join(missing)} missing or empty. Set the three, "
            f"or none for a search in one process. Received: {received}"
        )
    port = given["KERASTUNER_ORACLE_PORT"].strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            "KERASTUNER_ORACLE_PORT must be a port number from 1 to 65535 (the chief's). "
            f"Received: KERASTUNER_ORACLE_PORT={given['KERASTUNER_ORACLE_PORT']!r}"
        )
    return "chief" if "chief" in given["KERASTUNER_TUNER_ID"] else "worker"


_OPTIONS = (
    EngineOption(
        "tuner",
        TUNERS,
        "random",
        help="keras-tuner only: random, bayesian, hyperband or grid.",
        aliases={
            "randomsearch": "random",
            "bayesianoptimization": "bayesian",
            "gridsearch": "grid",
        },
    ),
)


def _make_oracle(tuner: str, trials: int, seed: int, max_epochs: int | None) -> Any:
    import keras_tuner

    objective = keras_tuner.Objective(_OBJECTIVE, direction="max")
    common = dict(objective=objective, seed=seed, max_consecutive_failed_trials=10**9)
    if tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=trials, **common)
    if tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=trials, num_initial_points=max(2, min(5, trials // 3)), **common
        )
    if tuner == "grid":
        return keras_tuner.oracles.GridSearchOracle(max_trials=trials, **common)
    return keras_tuner.oracles.HyperbandOracle(
        max_epochs=max(2, max_epochs or 10), factor=3, hyperband_iterations=1, **common
    )


def _ask_past_the_end(oracle: Any, tuner_id: str) -> None:
    """A worker's last word to its chief, which exits once every worker has asked past the
    last trial (keras-tuner #254): ask once more, and hand back a retry it would give."""
    from keras_tuner.engine.trial import TrialStatus

    with _quiet():
        trial = oracle.create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING:
            trial.status = TrialStatus.FAILED
            oracle.end_trial(trial)


class _KerasTunerTrial(EngineTrial):
    def __init__(self, engine: KerasTunerEngine, trial: Any):
        self._engine = engine
        self.trial = trial
        self.number = int(trial.trial_id)
        self.hp = None
        values = trial.hyperparameters.values
        self.max_epochs = int(values["tuner/epochs"]) if "tuner/epochs" in values else None
        plan = files.read_json(engine.trial_dir(trial.trial_id) / files.PLAN)
        self._plan = TrialPlan.from_dict(plan) if plan else None

    def make_hp(self, plan: TrialPlan) -> Any:
        import keras_tuner

        self._engine.write_trial_file(self.trial.trial_id, files.PLAN, plan.to_dict())
        self._plan = plan
        hp = self.hp = keras_tuner.HyperParameters()
        if not plan.use_defaults:
            # A fresh container pre-filled with the oracle's values: the hypermodel registers
            # what it asks for, so `hp_values` lists only the hyperparameters really used.
            hp.values = {
                k: v
                for k, v in self.trial.hyperparameters.values.items()
                if not k.startswith("tuner/")
            }
        hp.values.update(plan.fixed)
        return hp

    def hp_values(self, hp: Any) -> dict[str, Any]:
        active = [h.name for h in hp.space if hp.is_active(h)]
        return {name: hp.values[name] for name in active if name in hp.values}


class KerasTunerEngine(Engine):
    """KerasTuner: random search, Bayesian optimization, Hyperband or grid search.

    Resuming survives a process killed at any instant: KerasTuner writes its JSON files in
    place, so the engine keeps an atomic last-good copy of each, and a file that a kill left
    empty or truncated is restored from it (or its unstarted trial dropped), with a warning.

    Args:
        tuner: `"random"`, `"bayesian"`, `"hyperband"` or `"grid"`. Defaults to `"random"`.

    Raises:
        ConfigError: An unknown tuner name.

    Example:

    >>> KerasTunerEngine(tuner="bayesian").describe()
    {'name': 'keras-tuner', 'tuner': 'bayesian', 'project': 'keras_tuner'}
    """

    name = "keras-tuner"
    files = (PROJECT,)
    options = _OPTIONS

    def __init__(self, tuner: str = "random"):
        self.tuner_name = self.check_options({"tuner": tuner})["tuner"]
        self.tuner = None
        self.oracle = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "tuner": self.tuner_name, "project": PROJECT}

    def open(self, run_dir, *, hypermodel, trials, seed, max_epochs, overwrite=False):
        import keras_tuner

        self.run_dir = pathlib.Path(run_dir)
        self._interrupted: set[str] = set()
        role = _distributed_role()
        if not overwrite and role != "worker":  # a worker's oracle lives with the chief
            tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
            for note in files.repair(self.run_dir / PROJECT, f"{tuner_id}.json"):
                warnings.warn(note, RuntimeWarning, stacklevel=2)
        oracle = _make_oracle(self.tuner_name, trials, seed, max_epochs)
        with _quiet():
            self.tuner = keras_tuner.Tuner(
                oracle=oracle,
                hypermodel=hypermodel,
                directory=str(self.run_dir),
                project_name=PROJECT,
                overwrite=overwrite,
            )
        self.oracle = self.tuner.oracle
        with contextlib.suppress(AttributeError):
            self.oracle.verbose = 0
        self._chief = role == "chief"
        self._worker = role == "worker"  # its oracle is the chief's, over gRPC
        self._stopped = False
        if self._chief:
            # The chief serves the oracle until every worker asked past the last trial, then
            # the runner goes on to the finalists with every trial's record.
            self.tuner.search()
            return
        if not self._worker:
            self._finish_recorded()
            self._save_good_copies()

    def _finish_recorded(self) -> None:
        """Ends the trials a kill left running after their record was written (in `tell`)."""
        from keras_tuner.engine.trial import TrialStatus

        ongoing = {t.trial_id for t in self.oracle.ongoing_trials.values()}
        for trial_id, t in self.oracle.trials.items():
            if t.status == TrialStatus.RUNNING and trial_id not in ongoing:
                record = files.read_json(self.trial_dir(trial_id) / files.RECORD)
                if files.is_complete(record):
                    self._end(t, record, None)

    def _save_good_copies(self, trial_id: str | None = None) -> None:
        if self._worker:
            return  # the chief keeps the oracle's state
        files.save_good_copies(
            self.run_dir / PROJECT,
            self.oracle.get_state(),
            None if trial_id is None else self.oracle.trials[trial_id].get_state(),
        )

    @property
    def runs_finalists(self) -> bool:
        return not getattr(self, "_worker", False)  # a worker leaves them to its chief

    def trial_dir(self, trial_id: str) -> pathlib.Path:
        """The folder of trial `trial_id` in the KerasTuner project."""
        return self.run_dir / PROJECT / f"trial_{trial_id}"

    def write_trial_file(self, trial_id: str, name: str, data: Any) -> None:
        """Writes `data` as JSON (atomically) to the file `name` in the trial's folder."""
        folder = self.trial_dir(trial_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / name, json.dumps(clean_record(data), indent=1, sort_keys=True))

    def ask(self) -> EngineTrial | None:
        from keras_tuner.engine.trial import TrialStatus

        if self._chief:
            return None
        while True:
            with _quiet():
                trial = self.oracle.create_trial(self.tuner.tuner_id)
            if trial.status == TrialStatus.STOPPED:
                self._stopped = True
                return None
            if trial.status == TrialStatus.IDLE:
                time.sleep(1.0 if self._worker else 0.0)
                continue  # another worker's round must finish first (Hyperband)
            self._interrupted.discard(trial.trial_id)
            self._save_good_copies(trial.trial_id)
            return _KerasTunerTrial(self, trial)

    def tell(self, trial: EngineTrial, record: dict[str, Any]) -> None:
        record = clean_record({**record, "trial_id": trial.number, "engine": self.name})
        self.write_trial_file(trial.trial.trial_id, files.RECORD, record)
        self._end(trial.trial, record, trial.hp)
        self._save_good_copies(trial.trial.trial_id)

    def _end(self, t: Any, record: dict[str, Any], hp: Any) -> None:
        from keras_tuner.engine.trial import TrialStatus

        if hp is not None:
            # Like KerasTuner's own tuners, let the oracle learn hyperparameters the build met
            # for the first time (conditional ones), then record the values really used.
            t.hyperparameters.merge(hp.space, overwrite=False)
        t.hyperparameters.values.update(record.get("hp") or {})
        value = record.get("best_val_accuracy")
        with _quiet():
            if record.get("status") in ("complete", "skipped", "pruned") and value is not None:
                metrics = {_OBJECTIVE: float(value)}
                if record.get("best_val_loss") is not None:
                    metrics["val_loss"] = float(record["best_val_loss"])
                step = max(0, int(record.get("epochs") or 1) - 1)
                self.oracle.update_trial(t.trial_id, metrics, step=step)
                t.status = TrialStatus.COMPLETED
            else:
                t.status = TrialStatus.FAILED
                t.message = record.get("error") or "failed"
            self.oracle.end_trial(t)
            if not self._worker:
                self.tuner.save()

    def interrupt(self, trial: EngineTrial, error: str) -> None:
        # The trial stays "running" in KerasTuner's state: reloading the project queues it
        # for a retry under the same id, whose record then replaces this one.
        from keras_tuner.engine.trial import TrialStatus

        if trial.trial.status != TrialStatus.RUNNING:
            return  # it was told already: its record stands
        record = {
            "trial_id": trial.number,
            "engine": self.name,
            "status": "failed",
            "family": trial.plan.family if trial.plan else None,
            "hp": trial.hp_values(trial.hp) if trial.hp is not None else {},
            "error": f"{error}; it is re-run when the run resumes",
            "interrupted": True,
        }
        self.write_trial_file(trial.trial.trial_id, files.RECORD, record)
        self._interrupted.add(trial.trial.trial_id)
        if self._worker:
            return  # the chief re-runs it when this worker (same tuner id) asks again
        with _quiet():
            self.oracle.save()
        self._save_good_copies()

    def records(self) -> list[dict[str, Any]]:
        from keras_tuner.engine.trial import TrialStatus

        if self._worker:
            return files.shared_records(self.run_dir / PROJECT, self.name)
        out = []
        for trial_id, t in sorted(self.oracle.trials.items(), key=lambda kv: int(kv[0])):
            record = files.read_json(self.trial_dir(trial_id) / files.RECORD)
            if t.status == TrialStatus.RUNNING and not (record or {}).get("interrupted"):
                continue  # running here or on another worker
            if not record:
                error = t.message or "no record: the trial ended outside attn-search"
                record = {"status": "failed", "hp": dict(t.hyperparameters.values), "error": error}
            record.update(trial_id=int(trial_id), engine=self.name)
            out.append(record)
        return out

    def n_counted(self) -> int:
        # A running trial counts while it runs; one waiting for its re-run (interrupted here,
        # or queued by KerasTuner's reload) does not.
        from keras_tuner.engine.trial import TrialStatus

        if self._worker:  # the chief saves each trial's folder when it hands the trial out
            return len(list((self.run_dir / PROJECT).glob(f"trial_*/{files.TRIAL}")))
        running = {t.trial_id for t in self.oracle.ongoing_trials.values()} - self._interrupted
        return sum(
            1
            for trial_id, t in self.oracle.trials.items()
            if t.status != TrialStatus.RUNNING or trial_id in running
        )

    def close(self) -> None:
        if getattr(self, "_worker", False) and not self._stopped and self.oracle is not None:
            _ask_past_the_end(self.oracle, self.tuner.tuner_id)
        self.tuner = None
        self.oracle = None

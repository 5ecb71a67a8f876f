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
import pathlib
from typing import Any

from attn_search.engines.base import Engine, EngineTrial, TrialPlan, clean_record
from attn_search._atomic import write_text_atomic
from attn_search.errors import ConfigError

__all__ = ["TUNERS", "KerasTunerEngine"]

TUNERS = ("random", "bayesian", "hyperband", "grid")
PROJECT = "keras_tuner"
_OBJECTIVE = "val_accuracy"


def write_json_atomic(path: pathlib.Path, data: Any) -> None:
    """Writes `data` as JSON to `path` through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


class _KerasTunerTrial(EngineTrial):
    def __init__(self, engine: KerasTunerEngine, trial: Any):
        self._engine = engine
        self.trial = trial
        self.number = int(trial.trial_id)
        values = trial.hyperparameters.values
        self.max_epochs = int(values["tuner/epochs"]) if "tuner/epochs" in values else None
        plan = engine._read_trial_file(trial.trial_id, "plan.json")
        self.plan = TrialPlan.from_dict(plan) if plan else None

    def make_hp(self):
        import keras_tuner

        plan = self.plan or TrialPlan()
        self._engine._write_trial_file(self.trial.trial_id, "plan.json", plan.to_dict())
        hp = self._hp = keras_tuner.HyperParameters()
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

    def hp_values(self, hp) -> dict[str, Any]:
        return {h.name: hp.values[h.name] for h in hp.space if hp.is_active(h) and h.name in hp.values}


class KerasTunerEngine(Engine):
    """KerasTuner: random search, Bayesian optimization, Hyperband or grid search.

    Args:
        tuner: `"random"`, `"bayesian"`, `"hyperband"` or `"grid"`. Defaults to `"random"`.

    Raises:
        ConfigError: An unknown tuner name.

    Example:

    >>> KerasTunerEngine(tuner="bayesian").describe()
    {'name': 'keras-tuner', 'tuner': 'bayesian', 'project': 'keras_tuner'}
    """

    name = "keras-tuner"

    def __init__(self, tuner: str = "random"):
        key = tuner.strip().lower() if isinstance(tuner, str) else tuner
        key = {"randomsearch": "random", "bayesianoptimization": "bayesian", "gridsearch": "grid"}.get(
            key, key
        )
        if key not in TUNERS:
            raise ConfigError(
                f"`tuner` must be one of {', '.join(map(repr, TUNERS))}. Received: tuner={tuner!r}"
            )
        self.tuner_name = key
        self.tuner = None
        self.oracle = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "tuner": self.tuner_name, "project": PROJECT}

    def _make_oracle(self, trials: int, seed: int, max_epochs: int | None):
        import keras_tuner

        objective = keras_tuner.Objective(_OBJECTIVE, direction="max")
        common = dict(objective=objective, seed=seed, max_consecutive_failed_trials=10**9)
        if self.tuner_name == "random":
            return keras_tuner.oracles.RandomSearchOracle(max_trials=trials, **common)
        if self.tuner_name == "bayesian":
            return keras_tuner.oracles.BayesianOptimizationOracle(
                max_trials=trials, num_initial_points=max(2, min(5, trials // 3)), **common
            )
        if self.tuner_name == "grid":
            return keras_tuner.oracles.GridSearchOracle(max_trials=trials, **common)
        return keras_tuner.oracles.HyperbandOracle(
            max_epochs=max(2, max_epochs or 10), factor=3, hyperband_iterations=1, **common
        )

    def open(self, run_dir, *, hypermodel, trials, seed, max_epochs, overwrite=False):
        import keras_tuner

        self.run_dir = pathlib.Path(run_dir)
        oracle = self._make_oracle(trials, seed, max_epochs)
        # KerasTuner prints "Reloading Tuner from ..." and a table per trial: the runner
        # prints its own progress instead.
        with contextlib.redirect_stdout(io.StringIO()):
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
        self._max_trials = trials
        from keras_tuner.src.distribute import utils as dist_utils

        if dist_utils.has_chief_oracle() and dist_utils.is_chief_oracle():
            # The chief only serves the oracle to the workers until they finish.
            self.tuner.search()
            self._chief = True
        else:
            self._chief = False

    def _trial_dir(self, trial_id: str) -> pathlib.Path:
        path = self.run_dir / PROJECT / f"trial_{trial_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_trial_file(self, trial_id: str, name: str, data: Any) -> None:
        write_json_atomic(self._trial_dir(trial_id) / name, clean_record(data))

    def _read_trial_file(self, trial_id: str, name: str) -> Any:
        path = self.run_dir / PROJECT / f"trial_{trial_id}" / name
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def ask(self) -> EngineTrial | None:
        from keras_tuner.src.engine import trial as trial_module

        if self._chief:
            return None
        while True:
            with contextlib.redirect_stdout(io.StringIO()):
                trial = self.oracle.create_trial(self.tuner.tuner_id)
            if trial.status == trial_module.TrialStatus.STOPPED:
                return None
            if trial.status == trial_module.TrialStatus.IDLE:
                continue  # another worker's round must finish first (Hyperband)
            return _KerasTunerTrial(self, trial)

    def tell(self, trial: EngineTrial, record: dict[str, Any]) -> None:
        from keras_tuner.src.engine import trial as trial_module

        record = clean_record({**record, "trial_id": trial.number, "engine": self.name})
        t = trial.trial
        self._write_trial_file(t.trial_id, "record.json", record)
        # Like KerasTuner's own tuners, let the oracle learn hyperparameters the build met
        # for the first time (conditional ones), then record the values really used.
        hp = getattr(trial, "_hp", None)
        if hp is not None:
            new = [h for h in hp.space if not t.hyperparameters._exists(h.name, h.conditions)]
            t.hyperparameters.merge(new)
        t.hyperparameters.values.update(record.get("hp") or {})
        value = record.get("best_val_accuracy")
        if record.get("status") in ("complete", "skipped", "pruned") and value is not None:
            metrics = {_OBJECTIVE: float(value)}
            if record.get("best_val_loss") is not None:
                metrics["val_loss"] = float(record["best_val_loss"])
            self.oracle.update_trial(t.trial_id, metrics, step=max(0, int(record.get("epochs") or 1) - 1))
            t.status = trial_module.TrialStatus.COMPLETED
        else:
            t.status = trial_module.TrialStatus.FAILED
            t.message = record.get("error") or "failed"
        with contextlib.redirect_stdout(io.StringIO()):
            self.oracle.end_trial(t)
            self.tuner.save()

    def interrupt(self, trial: EngineTrial, error: str) -> None:
        # The trial stays "running" in KerasTuner's state: reloading the project queues it
        # for a retry under the same id, whose record then replaces this one.
        from keras_tuner.src.engine import trial as trial_module

        if trial.trial.status != trial_module.TrialStatus.RUNNING:
            return  # it was told already: its record stands
        plan = trial.plan.to_dict() if trial.plan else {}
        record = {
            "trial_id": trial.number,
            "engine": self.name,
            "status": "failed",
            "family": plan.get("family"),
            "hp": trial.hp_values(trial._hp) if getattr(trial, "_hp", None) is not None else {},
            "error": f"{error}; it is re-run when the run resumes",
            "interrupted": True,
        }
        self._write_trial_file(trial.trial.trial_id, "record.json", record)
        with contextlib.redirect_stdout(io.StringIO()):
            self.oracle.save()

    def records(self) -> list[dict[str, Any]]:
        from keras_tuner.src.engine import trial as trial_module

        out = []
        for trial_id, t in sorted(self.oracle.trials.items(), key=lambda kv: int(kv[0])):
            record = self._read_trial_file(trial_id, "record.json")
            if t.status == trial_module.TrialStatus.RUNNING and not (record or {}).get("interrupted"):
                continue  # running here or on another worker
            if not record:
                if t.status == trial_module.TrialStatus.RUNNING:
                    continue
                record = {
                    "status": "failed",
                    "hp": dict(t.hyperparameters.values),
                    "error": (t.message or "no record: the trial ended outside attn-search").strip(),
                }
            record.update(trial_id=int(trial_id), engine=self.name)
            out.append(record)
        return out

    def n_counted(self) -> int:
        retry = getattr(self.oracle, "_retry_queue", [])
        return len(self.oracle.trials) - len(retry)

    def close(self) -> None:
        self.tuner = None
        self.oracle = None

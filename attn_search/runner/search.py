"""The search stage: ask the engine for a trial, train it, tell the engine, check the budget.

The loop is a few small functions (as in Optuna's `_optimize`): `search` loops,
`run_trial` trains one trial into a record, `Budget` says whether and why to stop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from attn_search.engines.base import EngineTrial, worker_id
from attn_search.errors import AttnSearchError
from attn_search.runfolder import now
from attn_search.runner import planning
from attn_search.runner._interrupt import raise_if_interrupted
from attn_search.runner._undertraining import still_improving
from attn_search.runner.progress import error_text
from attn_search.runner.setup import Run

__all__ = ["Budget", "run_trial", "search"]

_POLL_SECONDS = 2.0  # how often a worker done with its trials looks at the others'


@dataclasses.dataclass
class Budget:
    """When the search stops: enough trials, time up, or too many failures in a row.

    Args:
        trials: Trials to reach (counted by the engine: finished here or elsewhere).
        time_budget: Seconds after which no new trial starts, or `None`.
        max_consecutive_failures: Failed trials in a row that end the search.
    """

    trials: int
    time_budget: float | None
    max_consecutive_failures: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    failures: int = 0

    def count(self, record: Mapping[str, Any]) -> None:
        """Counts a finished trial's outcome toward the consecutive failures."""
        self.failures = self.failures + 1 if record.get("status") == "failed" else 0

    def failed_out(self) -> bool:
        return self.failures >= self.max_consecutive_failures

    def stop_reason(self, counted: int) -> str | None:
        """`"trials"`, `"time_budget"`, or `None` to go on, before a new trial starts."""
        if counted >= self.trials:
            return "trials"
        if self.time_budget is not None and time.monotonic() - self.started >= self.time_budget:
            return "time_budget"
        return None


def search(run: Run, state: dict[str, Any]) -> str | None:
    """Runs search trials until the budget is spent.

    Args:
        run: The run's parts.
        state: Where the trial in progress is kept (`state["trial"]`), so that an interrupt
            can mark it for a re-run.

    Returns:
        Why the search stopped early: `"time_budget"`, `"engine"` (it had no trial left to
        give), or `None` (the trials were reached).

    Raises:
        AttnSearchError: `max_consecutive_failures` trials failed in a row.
    """
    c, engine = run.config, run.engine
    budget = Budget(c.trials, c.time_budget, c.max_consecutive_failures)
    records = engine.records()
    finalist_runs = run.folder.read_finalists()  # unchanged while the search runs
    run.write_tables(records, finalist_runs)
    _announce(run, records)
    while True:
        reason = budget.stop_reason(engine.n_counted())
        if reason == "trials" and engine.others_running():
            time.sleep(_POLL_SECONDS)  # other workers' trials: a dead one's is re-run here
            continue
        if reason == "time_budget":
            run.progress.note(f"Time budget of {c.time_budget:g} s reached: no new trials.")
        if reason is not None:
            return None if reason == "trials" else reason
        trial = engine.ask()
        if trial is None:
            if engine.n_counted() >= c.trials:
                continue  # other workers took the last trials meanwhile
            return "engine"
        state["trial"] = trial
        t0 = time.monotonic()
        record = run_trial(run, trial, records)
        engine.tell(trial, record)
        state["trial"] = None
        records = engine.records()
        run.write_tables(records, finalist_runs)
        run.progress.trial_finished(
            min(engine.n_counted(), c.trials),
            record,
            planning.best_record(records),
            time.monotonic() - t0,
        )
        budget.count(record)
        if budget.failed_out():
            raise AttnSearchError(
                f"The search stopped: the last {budget.failures} trials failed in a row "
                f"(max_consecutive_failures={c.max_consecutive_failures}). Last error: "
                f"{record.get('error')}. The tables in {run.folder.path} list every trial."
            )


def _announce(run: Run, records: list[dict[str, Any]]) -> None:
    c = run.config
    if run.resumed:
        todo = max(0, c.trials - run.engine.n_counted())
        run.progress.search_started(
            f"Resuming {run.folder.path}: {len(records)} trial(s) recorded, {todo} to run."
        )
    else:
        info = run.data.info
        run.progress.search_started(
            f"Searching {info.name} {tuple(info.input_shape)} with {run.engine.name} "
            f"({c.trials} trials, space {run.space.name!r}) -> {run.folder.path}"
        )


def run_trial(run: Run, trial: EngineTrial, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Builds, trains and measures one search trial; returns its record. Never raises for a
    failed trial (NaN, out of memory, any exception): the record says `failed` and why."""
    from attn_search.runner._compute import clear_session
    from attn_search.runner._seeds import set_seed
    from attn_search.runner.training import fit

    c = run.config
    k = trial.slot if trial.slot is not None else max(0, run.engine.n_counted() - 1)
    plan = trial.plan or planning.plan_for(
        k,
        trials=c.trials,
        share=run.space.baseline_share,
        baselines=run.baselines,
        records=records,
    )
    seed = c.seed + trial.number
    clear_session()  # and garbage collection: memory stays flat over trials
    set_seed(seed)
    record: dict[str, Any] = {
        "trial_id": trial.number,
        "engine": run.engine.name,
        "status": "failed",
        "family": plan.family,
        "placements": None,
        "seed": seed,
        "twin_of": plan.twin_of,
        "started_at": now(),
        "worker": worker_id(),
    }
    hp = trial.make_hp(plan)
    hypermodel = run.hypermodels.get(plan.family) or run.hypermodels["attention"].with_family(
        plan.family
    )
    try:
        model = hypermodel.build(hp)
        record["hp"] = trial.hp_values(hp)
        duplicate = planning.duplicate_of(plan.family, record["hp"], records)
        if duplicate is not None:
            return _skipped(record, duplicate)
        epochs = planning.epochs_for(
            record["hp"],
            space_epochs=run.space_epochs,
            max_epochs=c.max_epochs,
            engine_epochs=trial.max_epochs,
        )
        result = fit(
            hypermodel,
            hp,
            model,
            run.data,
            seed=seed,
            epochs=epochs,
            trial=trial,
            verbose=c.verbose,
            progress=run.progress,
        )
        record["hp"] = trial.hp_values(hp)
        _measured(record, hypermodel.describe(hp, model), result, plan.family)
        record["still_improving"] = still_improving(
            result.history.get("val_accuracy", []),
            epochs=epochs,
            num_classes=run.data.info.num_classes,
        )
        if record["status"] == "complete":
            _maybe_save_best(run, model, record, records)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - a trial fails alone
        raise_if_interrupted(error)  # a Ctrl-C that TensorFlow turned into a TypeError
        record.update(
            status="failed", error=error_text(error), hp=record.get("hp") or trial.hp_values(hp)
        )
    finally:
        record["finished_at"] = now()
    return record


def _skipped(record: dict[str, Any], duplicate: Mapping[str, Any]) -> dict[str, Any]:
    for key in ("placements", "params", "epochs", "best_val_accuracy", "best_val_loss", "gammas"):
        record[key] = duplicate.get(key)
    record.update(
        status="skipped",
        train_seconds=0.0,
        error=f"same configuration as trial {duplicate['trial_id']}: not trained again",
        finished_at=now(),
    )
    return record


def _measured(record: dict[str, Any], desc: Mapping[str, Any], result: Any, family: str) -> None:
    """Fills `record` from the model's description and the fit's result, with its status."""
    record.update(
        family=desc.get("family", family),
        placements=list(desc.get("placements") or []),
        n_attention=desc.get("n_attention"),
        params=desc.get("params"),
        gammas=list(desc.get("gammas") or []),
        epochs=result.epochs,
        best_val_accuracy=result.best("val_accuracy", "max"),
        best_val_loss=result.best("val_loss", "min"),
        train_seconds=round(result.seconds, 3),
    )
    if result.nan_at is not None:
        epoch, batch = result.nan_at
        record.update(
            status="failed",
            error=(
                f"NaN loss at epoch {epoch + 1}, batch {batch + 1} (TerminateOnNaN): "
                "lower the learning rate or check the data"
            ),
        )
    elif record["best_val_accuracy"] is None:
        record.update(status="failed", error="no validation accuracy was measured")
    else:
        record["status"] = "pruned" if result.pruned else "complete"


def _maybe_save_best(run: Run, model: Any, record: dict[str, Any], records: list) -> None:
    """Saves `model` as the best model when it beats every trial recorded so far."""
    best = planning.best_record(records)
    if (
        best is not None
        and best["best_val_accuracy"] >= record["best_val_accuracy"]
        and run.folder.best_model_path.exists()
    ):
        return
    run.folder.save_best_model(model)
    run.log.info["best_model"] = {
        "file": run.folder.best_model_path.name,
        "trial_id": record["trial_id"],
        "family": record.get("family"),
        "best_val_accuracy": record["best_val_accuracy"],
    }

"""The finalist stage: the best attention configurations retrained with several seeds, each
beside its plain and matched twins on the same seeds, and evaluated once on the test split.

Each fit is keyed by (trial_id, family, seed) in finalists.json, so a resumed run keeps every
finished fit, even when more trials changed the finalists' ranks.
"""

from __future__ import annotations

import math
import time
from typing import Any

from attn_search.engines.base import clean_record
from attn_search.runner import planning
from attn_search.runner.progress import error_text, shorten
from attn_search.runner.setup import Run

__all__ = ["retrain_finalists"]


def retrain_finalists(run: Run, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs every finalist fit not yet recorded; returns all the fits of the current finalists.

    Args:
        run: The run's parts.
        records: Every search trial's record (the finalists are chosen from them).

    Returns:
        The finalist fits (finalists.json's `runs`) of the finalists chosen now, each with its
        current rank; fits of configurations that are no longer finalists stay in
        finalists.json (a later resume may choose them again) but are not returned.
    """
    stored = run.folder.read_finalists()
    if run.config.finalists < 1:
        return []
    chosen = planning.choose_finalists(records, run.config.finalists)
    if not chosen:
        run.progress.note("No attention trial completed: no finalists to retrain.")
        return []
    todo = planning.finalist_fits(chosen, run.families, run.seeds, stored)
    total = len(chosen) * len(run.seeds) * len(run.families)
    if todo:
        run.progress.finalists_started(
            f"Finalists: {len(chosen)} attention configuration(s) x {len(run.seeds)} seed(s), "
            f"each beside its {' and '.join(run.baselines)} twin(s): {len(todo)} fit(s)"
            + (f" ({total - len(todo)} done earlier)" if total > len(todo) else "")
        )
    t0 = time.monotonic()
    reuse: tuple[tuple[int, str], Any] | None = None
    for i, fit in enumerate(todo, start=1):
        entry, reuse = _fit_one(run, fit, reuse)
        stored.append(entry)
        run.folder.write_finalists(stored)
        current = current_fits(stored, chosen)
        run.write_tables(records, current)
        acc = entry["test_accuracy"]
        result = (
            f"test_acc {acc:.4f}" if acc is not None else f"failed ({shorten(entry['error'], 60)})"
        )
        run.progress.finalist_finished(
            f"finalist {fit.rank} (trial #{fit.record['trial_id']}) {fit.family:<9} "
            f"seed {fit.seed}: {result}",
            i,
            len(todo),
            time.monotonic() - t0,
        )
    return current_fits(stored, chosen)


def current_fits(stored: list[dict[str, Any]], chosen: list) -> list[dict[str, Any]]:
    """The stored fits of the `chosen` finalists, each with its current rank."""
    rank = {int(r["trial_id"]): i for i, r in enumerate(chosen, start=1)}
    return [
        {**fit, "finalist": rank[int(fit["trial_id"])]}
        for fit in stored
        if int(fit["trial_id"]) in rank
    ]


def _fit_one(run: Run, fit: planning.FinalistFit, reuse):
    """Trains and tests one finalist fit; returns its entry and what the next fit may reuse."""
    import keras
    import keras_tuner

    from attn_search.formatting import placement_label
    from attn_search.runner.training import fit as fit_model
    from attn_search.runner.training import reinitialize

    if reuse is None or reuse[0] != (fit.rank, fit.family):
        reuse = None
        keras.backend.clear_session()  # collects garbage too
    keras.utils.set_random_seed(fit.seed)
    hypermodel = run.hypermodels[fit.family]
    hp = keras_tuner.HyperParameters()
    hp.values = dict(fit.record.get("hp") or {})
    entry: dict[str, Any] = {
        "finalist": fit.rank,
        "trial_id": int(fit.record["trial_id"]),
        "family": fit.family,
        "seed": fit.seed,
        "placement": None,
        "test_accuracy": None,
        "test_loss": None,
        "error": "",
    }
    try:
        model = hypermodel.build(hp)  # the seed's fresh weights
        if reuse is not None:
            model = reinitialize(reuse[1], model)
        reuse = ((fit.rank, fit.family), model)
        epochs = planning.epochs_for(
            hp.values, space_epochs=run.space_epochs, max_epochs=run.config.max_epochs
        )
        result = fit_model(
            hypermodel,
            hp,
            model,
            run.data,
            seed=fit.seed,
            epochs=epochs,
            verbose=run.config.verbose,
        )
        desc = hypermodel.describe(hp, model)
        val = result.best("val_accuracy", "max")
        entry.update(
            placement=placement_label(desc.get("placements")),
            params=desc.get("params"),
            epochs=result.epochs,
            gammas=desc.get("gammas"),
            train_seconds=round(result.seconds, 3),
            val_accuracy=math.nan if val is None else val,
        )
        if result.nan_at is not None:
            entry["error"] = "NaN loss (TerminateOnNaN)"
        else:
            batch = int(hp.values.get("train/batch_size") or 32)
            loss, acc = model.evaluate(run.data.test(batch), verbose=0)[:2]
            entry.update(test_accuracy=float(acc), test_loss=float(loss))
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - one failed fit does not end the run
        entry["error"] = error_text(error)
        reuse = None
    return clean_record(entry), reuse

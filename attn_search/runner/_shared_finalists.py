"""The finalist stage shared by the workers of one study (an Optuna storage URL).

Once the search is over, every worker computes the same list of units (the fit groups)
from the storage's records; each is a unit of the engine's work queue, claimed by exactly one
worker (`Engine.work_queue`); a worker with nothing left to claim waits for the others, then
every worker writes the same finalists.json (every fit, from the storage) and tables.
`attn_search.runner.workers.tables_from_storage` derives them from the storage alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

__all__ = ["STAGE", "retrain_shared", "stored_fits", "unit_key"]

STAGE = "finalists"
_POLL_SECONDS = 2.0


def unit_key(unit: Any) -> str:
    """A unit's key in the work queue: its `key` tuple (never its rank), as JSON text."""
    return json.dumps(list(unit.key))


def retrain_shared(
    run: Any, queue: Any, chosen: list, units: list, run_one: Callable, current_fits: Callable
) -> list[dict[str, Any]]:
    """Runs the units this worker claims, waits for the others', returns every stored fit.

    Args:
        run: The run's parts.
        queue: The engine's work queue of `units` (their `unit_key`s, in order).
        chosen: The finalists.
        units: Every unit of the stage (each with `key` and `rank`), the same on every worker.
        run_one: Runs one unit: `run_one(run, unit, reuse) -> (entries, reuse)`.
        current_fits: `current_fits(stored, chosen)`: the stored fits of the finalists.
    """
    by_key = {unit_key(u): u for u in units}
    total = sum(len(getattr(u, "families", ("one",))) for u in units)  # fits, over all units
    records = run.engine.records()
    reuse, done = None, 0
    t0 = time.monotonic()
    while True:
        claimed = queue.claim()
        if claimed is None:
            if queue.others_running():
                time.sleep(_POLL_SECONDS)  # another worker's unit: a dead one's is re-run
                continue
            break
        handle, key = claimed
        unit = by_key[key]
        try:
            entries, reuse = run_one(run, unit, reuse)
        except KeyboardInterrupt:
            queue.interrupt(handle, "interrupted by the user (KeyboardInterrupt)")
            raise
        queue.done(handle, entries)
        run.write_tables(records, current_fits(stored_fits(queue.entries()), chosen))
        for entry in entries:
            done += 1
            acc = entry["test_accuracy"]
            result = f"test_acc {acc:.4f}" if acc is not None else f"failed ({entry['error']})"
            run.progress.finalist_finished(
                f"finalist {unit.rank} (trial #{entry['trial_id']}) {entry['family']:<9} "
                f"seed {entry['seed']}: {result}",
                done,
                total,
                time.monotonic() - t0,
            )
    stored = stored_fits(queue.entries())
    run.folder.write_finalists(stored)
    return current_fits(stored, chosen)


def stored_fits(entries: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every stored fit, in one order for every worker (by trial, family and seed)."""
    return [e for key in sorted(entries) for e in entries[key]]

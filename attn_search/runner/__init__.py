"""The search runner: dataset + search space + engine + budget -> a run folder of answers.

`run_search(config)` is the product's main job (`attn-search run` is a thin layer over it):

1. open the run (`setup.open_run`): load the dataset and the search space, resolve the engine,
   open (or reopen) the run folder (`folder.RunFolder`) and the engine's storage;
2. search (`search.search`): trial 0 is the plain backbone with default values, a share of the
   trials (`baseline_share` of the space) goes to plain and matched twins of the best attention
   configurations so far (`planning.plan_for`), the engine proposes everything else; each
   trial trains with early stopping (`training.fit`), fails alone (NaN, out of memory, any
   exception) and is recorded in the engine's storage; the tables are rewritten after every
   trial;
3. finalists (`finalists.retrain_finalists`): the top attention configurations are retrained
   from scratch with `repeats` seeds beside their plain and matched twins on the same seeds,
   and evaluated once on the test split;
4. write `leaderboard.csv`, `comparison.csv`, `best_model.keras`, `config.yaml`, `run.json`
   and the report.

Progress is printed by an observer (`progress.ProgressPrinter`). Importing this package imports
no TensorFlow, Keras or engine library, so building and validating a `RunConfig` is instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import pathlib
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from attn_search.errors import AttnSearchError
from attn_search.runfolder import RunFolder
from attn_search.runner.config import RunConfig, as_config
from attn_search.runner.progress import Progress, ProgressPrinter, error_text, short_config

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from attn_search.runner.setup import Run

__all__ = [
    "Progress",
    "ProgressPrinter",
    "RunConfig",
    "RunFolder",
    "RunResult",
    "run_search",
    "short_config",
]


@dataclasses.dataclass
class RunResult:
    """What `run_search` returns.

    Attributes:
        run_dir: The run folder.
        leaderboard: The leaderboard, best trial first (as in leaderboard.csv).
        comparison: The comparison (as in comparison.csv).
        best_model_path: `best_model.keras`, or `None` when no trial completed.
        status: `"complete"`, or `"stopped"` (the time budget or the engine ended the search
            before `trials`; the finalists still ran).
        verdict: The answer in words: one sentence per finalist and baseline twin (see
            `attn_search.stats.sentence`), also in run.json and the report.
    """

    run_dir: pathlib.Path
    leaderboard: pd.DataFrame
    comparison: pd.DataFrame
    best_model_path: pathlib.Path | None
    status: str
    verdict: list[str] = dataclasses.field(default_factory=list)


def run_search(
    config: RunConfig | Mapping[str, Any] | None = None,
    *,
    progress: Progress | None = None,
    **overrides: Any,
) -> RunResult:
    """Runs a search: trials, baselines, finalists, and the tables that compare them.

    Args:
        config: A `RunConfig`, or a dict of its fields. Defaults to `RunConfig()`.
        progress: The observer of the run's events. Defaults to a `ProgressPrinter` (silent
            with `quiet=True`).
        **overrides: Fields to change, e.g. `run_search(trials=4, out="runs/a")`.

    Returns:
        A `RunResult`: the run folder, the leaderboard and comparison DataFrames, the best
        model's path and the status (`"complete"` or `"stopped"`).

    Raises:
        ConfigError: A field of `config` is invalid or unknown.
        DatasetError: The dataset cannot be loaded.
        SearchSpaceError: The search space is invalid.
        RunDirError: The run folder holds another run (pass `overwrite=True`) or is not a
            run folder.
        AttnSearchError: `max_consecutive_failures` trials failed in a row (the tables are
            written first).
        KeyboardInterrupt: Ctrl-C, re-raised after the tables and run.json are written; the
            trial it interrupted is re-run when the run resumes.

    Example:

    >>> result = run_search(RunConfig(dataset="digits", limit=300, trials=3, finalists=1,
    ...                               repeats=2, max_epochs=1, out="runs/demo", quiet=True))
    >>> list(result.leaderboard["family"])[:1]
    ['attention']
    """
    config = as_config(config, overrides)
    from attn_search.runner.setup import open_run

    if progress is None:
        progress = ProgressPrinter(config.trials, quiet=config.quiet)
    if config.workers > 1:
        from attn_search.runner.workers import run_workers

        return run_workers(config, progress)
    from attn_search.runner._compute import compute_options, graph_optimizer_off_on_cpu

    t_start = time.monotonic()
    accelerate = compute_options(config.mixed_precision, config.jit_compile)
    with _quiet_retracing(config.verbose), graph_optimizer_off_on_cpu(), accelerate:
        run = open_run(config, progress)
        with _frozen_heap():
            try:
                return _execute(run, t_start)
            finally:
                if config.cache and not config.keep_cache:
                    run.folder.remove_cache()


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    # Every trial clears Keras' session, which runs a full garbage collection: on the heap of
    # TensorFlow's modules (about half a million objects) that is most of a second each time,
    # and the collector's automatic full passes during tracing cost the same. Freezing what
    # exists once the run is open leaves the collector only the run's own objects.
    from attn_search.runner import _reference

    if _reference.GC_UNFROZEN:
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _quiet_retracing(verbose: int) -> Iterator[None]:
    # Every trial builds new models, so TensorFlow's "retracing" warning would fire on every
    # run; it says nothing a user can act on here.
    logger = logging.getLogger("tensorflow")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _execute(run: Run, t_start: float, report: bool = True) -> RunResult:
    """Search, finalists, and the end of the run whatever happens."""
    from attn_search.runner.finalists import retrain_finalists
    from attn_search.runner.search import search

    timings: dict[str, float] = {}
    state: dict[str, Any] = {"trial": None, "stopped_by": None}
    try:
        t0 = time.monotonic()
        state["stopped_by"] = search(run, state)
        timings["search_seconds"] = round(time.monotonic() - t0, 3)
        t1 = time.monotonic()
        retrain_finalists(run, run.engine.records())
        timings["finalists_seconds"] = round(time.monotonic() - t1, 3)
    except KeyboardInterrupt:
        if state["trial"] is not None:
            run.engine.interrupt(state["trial"], "interrupted by the user (KeyboardInterrupt)")
        _finish(run, "interrupted", timings, t_start, state)
        run.progress.note(
            f"Interrupted: the tables in {run.folder.path} hold every finished trial."
        )
        raise
    except AttnSearchError as error:
        _finish(run, "failed", timings, t_start, state, error=str(error))
        raise
    except BaseException as error:
        _finish(run, "failed", timings, t_start, state, error=error_text(error))
        raise
    status = "stopped" if state["stopped_by"] else "complete"
    board, comparison = _finish(run, status, timings, t_start, state)
    verdict = run.log.info.get("verdict") or []
    if report and run.engine.runs_finalists:  # a KerasTuner worker leaves it to its chief
        _write_report(run)
    best = run.folder.best_model_path
    return RunResult(
        run_dir=run.folder.path,
        leaderboard=board,
        comparison=comparison,
        best_model_path=best if best.exists() else None,
        status=status,
        verdict=list(verdict),
    )


def _finish(run: Run, status: str, timings: dict, t_start: float, state: dict, **extra: Any):
    """Writes the tables and run.json's final state, and closes the engine."""
    from attn_search.comparison import verdict_sentences
    from attn_search.runner.finalists import current_fits
    from attn_search.runner.planning import best_record, choose_finalists

    timings["total_seconds"] = round(time.monotonic() - t_start, 3)
    run.log.session["timings"] = timings
    records: list[dict[str, Any]] = []
    board = comparison = None
    verdict: list[str] = []
    try:
        records = run.engine.records()
        chosen = choose_finalists(records, run.config.finalists)
        fits = current_fits(run.folder.read_finalists(), chosen)
        board, comparison = run.write_tables(records, fits)
        if run.config.finalists:
            verdict = verdict_sentences(comparison)
    except Exception:  # noqa: BLE001 - never hide the original error behind this one
        fits = []
    warnings = _warnings(run, records, fits)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "failed")] = counts.get(r.get("status", "failed"), 0) + 1
    best = best_record(records)
    run.log.write(
        status,
        timings=timings,
        trials=counts,
        stopped_by=state["stopped_by"],
        best_trial=(
            {k: best.get(k) for k in ("trial_id", "family", "placements", "best_val_accuracy")}
            if best
            else None
        ),
        finalist_fits=len(fits),
        verdict=verdict,
        warnings=warnings,
        **extra,
    )
    run.engine.close()
    return board, comparison


def _warnings(run: Run, records: list[dict[str, Any]], fits: list[dict[str, Any]]) -> list[str]:
    """What the run warns about at its end (printed, and kept in run.json)."""
    from attn_search.runner._undertraining import undertraining_warning

    found = [undertraining_warning(records, fits)]
    for text in filter(None, found):
        run.progress.note(text)
    return [text for text in found if text]


def _write_report(run: Run) -> None:
    """The report; a run's results never depend on the report succeeding."""
    from attn_search.report import write_report

    try:
        images = next(iter(run.data.val(4)))[0]
        write_report(run.folder.path, images=images)
    except Exception as error:  # noqa: BLE001 - the tables and model are already written
        run.progress.note(f"Report skipped: {error_text(error)}")

"""The finalist stage: the best attention configurations retrained with several seeds, each
beside its plain and matched twins on the same seeds, and evaluated once on the test split.

The stage is a loop over fit groups (`planning.FitGroup`: one finalist and one seed), each run
by `run_group`: the group's networks (the attention model and its twins, independent, each with
its own initial weights from the seed) are trained together as one model and tested together,
and each gives what a fit of it alone with that seed and those batches gives (see
`attn_search.runner._fused`). Each network leaves its own entry, keyed by (trial_id, family,
seed) in finalists.json, so a resumed run keeps every finished fit, even when more trials
changed the finalists' ranks.

With cross-validation (`Run.cv`, small datasets), a group is one finalist, one seed (a
repetition) and one fold: every family of the group is trained and tested on that fold's data,
and its entries carry `fold`, `repetition`, `n_train`, `n_test` and `test_train_ratio`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from attn_search.engines.base import clean_record
from attn_search.runner import _reference, planning
from attn_search.runner._interrupt import raise_if_interrupted
from attn_search.runner._shared_finalists import STAGE, retrain_shared, unit_key
from attn_search.runner._undertraining import still_improving
from attn_search.runner.progress import error_text, shorten
from attn_search.runner.setup import Run

__all__ = ["current_fits", "retrain_finalists", "run_group"]


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
    if not run.engine.runs_finalists:  # a KerasTuner worker: its chief retrains them
        return current_fits(stored, chosen)
    seeds, folds = _units(run)
    units = planning.fit_groups(chosen, run.families, seeds, folds=folds)  # all, done or not
    queue = run.engine.work_queue(STAGE, [unit_key(u) for u in units])
    if queue is not None:  # workers share the study: each group is claimed by one of them
        return retrain_shared(run, queue, chosen, units, run_group, current_fits)
    groups = planning.fit_groups(chosen, run.families, seeds, stored, folds)
    if _reference.SOLO_FINALISTS:  # one network per group, in the order it reused traces
        groups = [
            planning.FitGroup(f.rank, f.record, f.seed, (f.family,), f.fold)
            for f in planning.finalist_fits(chosen, run.families, seeds, stored, folds)
        ]
    n_todo = sum(len(g.families) for g in groups)
    total = len(chosen) * len(seeds) * max(1, folds) * len(run.families)
    per = (
        f"{len(seeds)} repetition(s) of stratified {folds}-fold cross-validation"
        if folds
        else f"{len(seeds)} seed(s)"
    )
    if groups:
        run.progress.finalists_started(
            f"Finalists: {len(chosen)} attention configuration(s) x {per}, "
            f"each beside its {' and '.join(run.baselines)} twin(s): {n_todo} fit(s)"
            + (f" ({total - n_todo} done earlier)" if total > n_todo else "")
        )
    t0 = time.monotonic()
    reuse: Any = None
    done = 0
    for group in groups:
        entries, reuse = run_group(run, group, reuse)
        stored.extend(entries)
        run.folder.write_finalists(stored)
        current = current_fits(stored, chosen)
        run.write_tables(records, current)
        for entry in entries:
            done += 1
            acc = entry["test_accuracy"]
            result = (
                f"test_acc {acc:.4f}"
                if acc is not None
                else f"failed ({shorten(entry['error'], 60)})"
            )
            run.progress.finalist_finished(
                f"finalist {group.rank} (trial #{entry['trial_id']}) {entry['family']:<9} "
                f"seed {group.seed}{_fold_text(group.fold)}: {result}",
                done,
                n_todo,
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


def run_group(run: Run, group: planning.FitGroup, reuse: Any = None) -> tuple[list, Any]:
    """Trains and tests one fit group; returns its entries and what the next group may reuse.

    The group's networks are trained together (`attn_search.runner._fused`). When that is not
    possible (a network cannot be built, the fit raises), each network is fitted alone (the
    reference path, `_reference.SOLO_FINALISTS`), so a failure is recorded for the network that
    caused it and its siblings still get results.

    Args:
        run: The run's parts.
        group: The finalist, seed and families to fit.
        reuse: What the previous call returned (traced functions of the same finalist).

    Returns:
        `(entries, reuse)`: one finalists.json entry per family of the group, in its order.
    """
    if not _reference.SOLO_FINALISTS:
        try:
            return _fused_group(run, group, reuse)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - fitted alone below, where the error is recorded
            reuse = None
    entries = []
    for fit in group.fits():
        entry, reuse = _fit_one(run, fit, reuse)
        entries.append(entry)
    return entries, reuse


def _fused_group(run: Run, group: planning.FitGroup, reuse: Any) -> tuple[list, Any]:
    """The group's networks trained and tested together, each as it would be alone."""

    from attn_search.hypermodels import early_stopping_callback
    from attn_search.runner import _fused
    from attn_search.runner._compute import clear_session

    key = ("group", int(group.record["trial_id"]), group.families)
    hp = _hp(group.record)
    hypermodels = {f: run.hypermodels[f] for f in group.families}
    same = reuse is not None and reuse[0] == key
    if same and _fused.renew_group(reuse[1], hypermodels, hp, group.seed):
        built = reuse[1]  # the seed's fresh weights in the previous group's traced model
    else:
        clear_session()  # collects garbage too
        built = _fused.build_group(hypermodels, hp, group.seed)
    early = run.space.early_stopping
    batch = _batch(hp)
    data = _data(run, group.seed, group.fold)
    fits = _fused.fit_group(
        built,
        data,
        early_stopping=lambda _: early_stopping_callback(early, validation=True) if early else None,
        batch=batch,
        seed=group.seed,
        epochs=_epochs(run, hp),
        verbose=run.config.verbose,
        progress=run.progress,
    )
    finite = any(f.nan_at is None for f in fits.values())
    tests = _fused.evaluate_group(built, data, batch) if finite else {}
    entries = []
    for fit in group.fits():
        entry = _entry(fit, run, data)
        network, result = built.networks[fit.family], fits[fit.family]
        _measured(entry, hypermodels[fit.family], hp, network, result, _epochs(run, hp))
        entry["trained_with"] = list(group.families)
        if fits[fit.family].nan_at is None:
            loss, acc = tests[fit.family]
            entry.update(test_accuracy=acc, test_loss=loss)
        entries.append(clean_record(entry))
    return entries, (key, built)


def _units(run: Run) -> tuple[list[int], int]:
    """The seeds and folds of the finalist fits: every seed on the held-out split, or with
    cross-validation one seed per repetition of the k folds."""
    if run.cv is None:
        return list(run.seeds), 0
    return list(run.seeds[: run.cv.repetitions]), run.cv.k


def _data(run: Run, seed: int, fold: int | None) -> Any:
    """The data of a fit: the dataset, or the fold's (the same for every family)."""
    if fold is None:
        return run.data
    return run.cv.dataset(run.seeds.index(seed), fold)


def _fold_text(fold: int | None) -> str:
    return "" if fold is None else f" fold {fold}"


def _hp(record):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.values = dict(record.get("hp") or {})
    return hp


def _batch(hp) -> int:
    return int(hp.values.get("train/batch_size") or 32)


def _epochs(run: Run, hp) -> int:
    return planning.epochs_for(
        hp.values, space_epochs=run.space_epochs, max_epochs=run.config.max_epochs
    )


def _entry(fit: planning.FinalistFit, run: Run, data: Any) -> dict[str, Any]:
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
    if fit.fold is not None:  # which fold, and what the corrected resampled t-test needs
        entry.update(
            fold=fit.fold,
            repetition=run.seeds.index(fit.seed),
            n_train=int(data.info.sizes["train"]),
            n_test=int(data.info.sizes["test"]),
            test_train_ratio=round(run.cv.test_train_ratio, 6),
        )
    return entry


def _measured(entry: dict[str, Any], hypermodel, hp, model, result, epochs: int) -> None:
    """Adds what a fit measured to its entry (and the NaN error, if its loss was not finite);
    `epochs`: the epochs it was given (for its `still_improving` flag)."""
    from attn_search.formatting import placement_label

    desc = hypermodel.describe(hp, model)
    val = result.best("val_accuracy")
    entry.update(
        placement=placement_label(desc.get("placements")),
        params=desc.get("params"),
        epochs=result.epochs,
        gammas=desc.get("gammas"),
        train_seconds=round(result.seconds, 3),
        val_accuracy=math.nan if val is None else val,
        still_improving=still_improving(
            result.history.get("val_accuracy", []),
            epochs=epochs,
            num_classes=hypermodel.num_classes,
        ),
    )
    if result.nan_at is not None:
        entry["error"] = "NaN loss (TerminateOnNaN)"


def _fit_one(run: Run, fit: planning.FinalistFit, reuse):
    """Trains and tests one network alone; returns its entry and what the next fit may reuse."""
    from attn_search.runner._compute import clear_session
    from attn_search.runner._seeds import set_seed
    from attn_search.runner.training import fit as fit_model
    from attn_search.runner.training import reinitialize

    if reuse is None or reuse[0] != (fit.rank, fit.family):
        reuse = None
        clear_session()  # collects garbage too
    set_seed(fit.seed)
    hypermodel = run.hypermodels[fit.family]
    hp = _hp(fit.record)
    data = _data(run, fit.seed, fit.fold)
    entry = _entry(fit, run, data)
    try:
        model = hypermodel.build(hp)  # the seed's fresh weights
        if reuse is not None:
            model = reinitialize(reuse[1], model)
        reuse = ((fit.rank, fit.family), model)
        result = fit_model(
            hypermodel,
            hp,
            model,
            data,
            seed=fit.seed,
            epochs=_epochs(run, hp),
            verbose=run.config.verbose,
            progress=run.progress,
        )
        _measured(entry, hypermodel, hp, model, result, _epochs(run, hp))
        if result.nan_at is None:
            loss, acc = model.evaluate(data.test(_batch(hp)), verbose=0)[:2]
            entry.update(test_accuracy=float(acc), test_loss=float(loss))
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - one failed fit does not end the run
        raise_if_interrupted(error)  # a Ctrl-C that TensorFlow turned into a TypeError
        entry["error"] = error_text(error)
        reuse = None
    return clean_record(entry), reuse

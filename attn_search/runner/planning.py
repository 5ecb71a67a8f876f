"""The runner's decisions, as pure functions of the trial records: no TensorFlow, no I/O.

- `plan_for`: which family trial k is (the plain backbone first, baseline twins at evenly
  spaced slots, attention otherwise) and which attention trial a twin copies;
- `duplicate_of`: a finished trial with the same family and values (not trained again);
- `best_record`, `choose_finalists`, `finalist_fits`, `fit_groups`: what the finalist stage
  retrains, and in which groups (a finalist's networks for one seed are trained together);
- `epochs_for`: how many epochs a fit trains.

A *record* is the plain dict a trial leaves in the engine's storage (see
`attn_search.leaderboard` for its fields).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from attn_search.engines.base import TrialPlan, clean_record

__all__ = [
    "FinalistFit",
    "FitGroup",
    "baseline_slots",
    "best_record",
    "choose_finalists",
    "duplicate_of",
    "epochs_for",
    "finalist_fits",
    "finalist_seeds",
    "fit_groups",
    "plan_for",
]


def _complete(records: Iterable[Mapping[str, Any]], family: str | None = None) -> list:
    return [
        r
        for r in records
        if r.get("status") == "complete"
        and r.get("best_val_accuracy") is not None
        and (family is None or r.get("family") == family)
    ]


def _hp_key(values: Mapping[str, Any] | None) -> str:
    return json.dumps(clean_record(dict(values or {})), sort_keys=True)


def baseline_slots(trials: int, share: float) -> list[int]:
    """The trial indices (from 0) that go to baseline twins: `share` of `trials`, spread out.

    Slot 0 is always a baseline (the plain backbone with default values).
    """
    n_base = max(1, round(trials * share)) if share > 0 else 1
    return sorted({round(i * trials / n_base) for i in range(n_base)})


def plan_for(
    k: int,
    *,
    trials: int,
    share: float,
    baselines: Sequence[str],
    records: Sequence[Mapping[str, Any]],
) -> TrialPlan:
    """The plan of trial k (from 0, in the order trials started) of the search.

    Args:
        k: The trial's index in the search.
        trials: The search's budget of trials.
        share: The share of trials that go to baseline twins (`SearchSpace.baseline_share`).
        baselines: The baseline families, in turn (e.g. `("plain", "matched")`).
        records: Every finished trial's record so far.

    Returns:
        Trial 0: the plain backbone with default values. A baseline slot: a twin of the best
        complete attention trial not yet twinned in that family (its values fixed), or a
        sampled model of that family when there is none. Otherwise: attention, sampled.
    """
    if k == 0:
        return TrialPlan(family="plain", use_defaults=True)
    slots = baseline_slots(trials, share)
    if k not in slots:
        return TrialPlan(family="attention")
    family = baselines[slots.index(k) % len(baselines)]
    twinned = {
        r.get("twin_of")
        for r in records
        if r.get("family") == family and r.get("twin_of") is not None
    }
    candidates = [r for r in _complete(records, "attention") if r.get("trial_id") not in twinned]
    if not candidates:
        return TrialPlan(family=family)
    best = max(candidates, key=lambda r: (r["best_val_accuracy"], -int(r["trial_id"])))
    return TrialPlan(family=family, fixed=dict(best.get("hp") or {}), twin_of=int(best["trial_id"]))


def duplicate_of(
    family: str, values: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The first complete trial of `family` whose hyperparameters equal `values`, if any."""
    key = _hp_key(values)
    for r in _complete(records, family):
        if _hp_key(r.get("hp")) == key:
            return r
    return None


def best_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The complete trial with the best validation accuracy (the earliest on a tie)."""
    done = _complete(records)
    return max(done, key=lambda r: (r["best_val_accuracy"], -int(r["trial_id"]))) if done else None


def choose_finalists(records: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The `n` best complete attention trials with distinct hyperparameters, best first."""
    chosen, seen = [], set()
    ranked = sorted(
        _complete(records, "attention"),
        key=lambda r: (-r["best_val_accuracy"], int(r["trial_id"])),
    )
    for r in ranked:
        key = _hp_key(r.get("hp"))
        if key in seen:
            continue
        seen.add(key)
        chosen.append(r)
        if len(chosen) == n:
            break
    return chosen


def finalist_seeds(seed: int, repeats: int) -> list[int]:
    """The seeds of the finalists' repeats: far from the search trials' `seed + trial_id`."""
    return [seed + 1000 * (r + 1) for r in range(repeats)]


class FinalistFit(NamedTuple):
    """One fit of the finalist stage: finalist `rank` (from 1), its family twin, one seed, and
    with cross-validation one fold (`None`: the held-out test split)."""

    rank: int
    record: Mapping[str, Any]
    family: str
    seed: int
    fold: int | None = None

    @property
    def key(self) -> tuple:
        """What identifies a fit across sessions: (trial_id, family, seed), plus the fold with
        cross-validation; never the rank."""
        return _fit_key(self.record["trial_id"], self.family, self.seed, self.fold)


def _fit_key(trial_id: Any, family: str, seed: Any, fold: Any) -> tuple:
    base = (int(trial_id), family, int(seed))
    return base if fold is None else (*base, int(fold))


def finalist_fits(
    chosen: Sequence[Mapping[str, Any]],
    families: Sequence[str],
    seeds: Sequence[int],
    done: Iterable[Mapping[str, Any]] = (),
    folds: int = 0,
) -> list[FinalistFit]:
    """The fits still to run: every finalist x family x seed (x fold) not in `done`.

    A fit is keyed by (trial_id, family, seed), so a finished fit is kept whatever rank its
    finalist has now (a resume with more trials may reorder the finalists).
    Fits of one finalist and family are adjacent (they can share traced functions).

    Args:
        folds: With cross-validation, the folds k: each seed is then one repetition of the k
            folds, and a fit is keyed by (trial_id, family, seed, fold). Defaults to 0 (a
            held-out test split).
    """
    finished = {_fit_key(r["trial_id"], r["family"], r["seed"], r.get("fold")) for r in done}
    units = (
        [(seed, fold) for seed in seeds for fold in range(folds)]
        if folds
        else [(seed, None) for seed in seeds]
    )
    fits = [
        FinalistFit(rank, rec, fam, seed, fold)
        for rank, rec in enumerate(chosen, start=1)
        for fam in families
        for seed, fold in units
    ]
    return [f for f in fits if f.key not in finished]


class FitGroup(NamedTuple):
    """The finalist stage's unit of work: finalist `rank`'s networks for one seed (and with
    cross-validation one fold: every family is trained and tested on the same fold).

    The attention model and its twins (`families`: those not yet fitted) are independent
    networks, each with its own initial weights from `seed`; they are trained together on the
    same batches and tested together, and each leaves its own finalists.json entry.
    """

    rank: int
    record: Mapping[str, Any]
    seed: int
    families: tuple[str, ...]
    fold: int | None = None

    @property
    def key(self) -> tuple:
        """What identifies a group across sessions: (trial_id, seed), plus the fold with
        cross-validation; never the rank."""
        base = (int(self.record["trial_id"]), int(self.seed))
        return base if self.fold is None else (*base, int(self.fold))

    def fits(self) -> list[FinalistFit]:
        """The group's fits, one per family."""
        return [FinalistFit(self.rank, self.record, f, self.seed, self.fold) for f in self.families]


def fit_groups(
    chosen: Sequence[Mapping[str, Any]],
    families: Sequence[str],
    seeds: Sequence[int],
    done: Iterable[Mapping[str, Any]] = (),
    folds: int = 0,
) -> list[FitGroup]:
    """The groups still to run: one per finalist x seed (x fold) with a family not in `done`.

    Each group holds only the families still to fit (an earlier session may have finished
    some). Groups of one finalist are adjacent (they can share traced functions). `folds` as
    in `finalist_fits`.
    """
    todo = finalist_fits(chosen, families, seeds, done, folds)
    groups: dict[tuple, list[FinalistFit]] = {}
    for fit in todo:
        groups.setdefault((fit.rank, fit.seed, -1 if fit.fold is None else fit.fold), []).append(
            fit
        )
    return [
        FitGroup(
            fits[0].rank, fits[0].record, fits[0].seed, tuple(f.family for f in fits), fits[0].fold
        )
        for _, fits in sorted(groups.items(), key=lambda item: item[0])
    ]


def epochs_for(
    hp_values: Mapping[str, Any],
    *,
    space_epochs: int | None,
    max_epochs: int | None,
    engine_epochs: int | None = None,
) -> int:
    """The epochs of one fit: the trial's `train/epochs`, else the space's, capped twice.

    Args:
        hp_values: The trial's hyperparameter values.
        space_epochs: The space's lowest `training.epochs` (used when the trial has none).
        max_epochs: The run's cap (`RunConfig.max_epochs`), or `None`.
        engine_epochs: The engine's cap for this trial (Hyperband brackets), or `None`.
    """
    epochs = hp_values.get("train/epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        epochs = space_epochs if space_epochs else 10
    for cap in (max_epochs, engine_epochs):
        if cap:
            epochs = min(epochs, cap)
    return int(epochs)

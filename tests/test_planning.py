"""The runner's pure planning, tested without TensorFlow (a subprocess checks it stays so)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attn_search.engines.base import TrialPlan
from attn_search.runner import planning


def _rec(i, family="attention", acc=0.5, status="complete", **hp):
    return {
        "trial_id": i,
        "family": family,
        "status": status,
        "best_val_accuracy": acc,
        "hp": hp or {"x": i},
    }


def test_planning_imports_no_framework():
    # As the console script does: `import attn_search` then skips registering the layer.
    code = (
        "import sys; sys.argv[0] = 'attn-search'; "
        "import attn_search.runner.planning, attn_search.runner; "
        "import attn_search.runfolder; "
        "heavy = [m for m in ('tensorflow', 'keras', 'optuna', 'keras_tuner', 'pandas') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "trials, share, slots",
    [(10, 0.2, [0, 5]), (10, 0.0, [0]), (3, 0.25, [0]), (12, 0.25, [0, 4, 8]), (1, 0.5, [0])],
)
def test_baseline_slots_are_spread_and_start_at_zero(trials, share, slots):
    assert planning.baseline_slots(trials, share) == slots


def test_plan_for_trial_zero_is_the_plain_backbone_with_defaults():
    plan = planning.plan_for(0, trials=10, share=0.2, baselines=("plain",), records=[])
    assert plan == TrialPlan(family="plain", use_defaults=True)


def test_plan_for_twins_the_best_attention_trial_not_yet_twinned():
    records = [
        _rec(0, "plain", 0.4),
        _rec(1, acc=0.7, lr=1),
        _rec(2, acc=0.9, lr=2),
        _rec(3, acc=0.95, status="pruned"),
        _rec(4, "plain", 0.5, lr=2) | {"twin_of": 2},
    ]
    kw = dict(trials=10, share=0.3, baselines=("plain", "matched"))
    slots = planning.baseline_slots(10, 0.3)
    assert slots == [0, 3, 7]
    assert planning.plan_for(1, records=records, **kw) == TrialPlan(family="attention")
    # slot 3 -> "matched" (the second baseline in turn): the best attention trial, #2
    assert planning.plan_for(3, records=records, **kw) == TrialPlan(
        family="matched", fixed={"lr": 2}, twin_of=2
    )
    # slot 7 -> "plain": #2 already has a plain twin, so #1
    assert planning.plan_for(7, records=records, **kw) == TrialPlan(
        family="plain", fixed={"lr": 1}, twin_of=1
    )
    # no complete attention trial yet: a sampled baseline
    assert planning.plan_for(3, records=records[:1], **kw) == TrialPlan(family="matched")


def test_duplicate_of_matches_family_and_values_of_complete_trials_only():
    records = [_rec(1, lr=1), _rec(2, "plain", lr=2), _rec(3, status="failed", lr=3)]
    assert planning.duplicate_of("attention", {"lr": 1}, records)["trial_id"] == 1
    assert planning.duplicate_of("attention", {"lr": 2}, records) is None
    assert planning.duplicate_of("attention", {"lr": 3}, records) is None


def test_best_record_prefers_accuracy_then_the_earliest():
    records = [_rec(3, acc=0.9), _rec(1, acc=0.9), _rec(2, acc=0.95, status="pruned")]
    assert planning.best_record(records)["trial_id"] == 1
    assert planning.best_record([_rec(1, status="failed")]) is None


def test_choose_finalists_skips_duplicate_values_and_other_families():
    records = [
        _rec(1, acc=0.8, lr=1),
        _rec(2, acc=0.9, lr=1),
        _rec(3, acc=0.7, lr=3),
        _rec(4, "plain", 0.99, lr=4),
        _rec(5, acc=0.6, lr=5),
    ]
    assert [r["trial_id"] for r in planning.choose_finalists(records, 2)] == [2, 3]
    assert [r["trial_id"] for r in planning.choose_finalists(records, 9)] == [2, 3, 5]


def test_finalist_fits_are_keyed_by_trial_family_and_seed_not_rank():
    a, b = _rec(7, acc=0.9), _rec(9, acc=0.8)
    done = [
        {"finalist": 1, "trial_id": 9, "family": "attention", "seed": 1000},
        {"finalist": 1, "trial_id": 9, "family": "plain", "seed": 1000},
    ]
    # Trial 9 was finalist 1 in an earlier session; now trial 7 ranks first.
    todo = planning.finalist_fits([a, b], ("attention", "plain"), [1000, 2000], done)
    keys = [f.key for f in todo]
    assert (9, "attention", 1000) not in keys and (9, "plain", 1000) not in keys
    assert len(todo) == 2 * 2 * 2 - 2
    assert [(f.rank, f.family, f.seed) for f in todo[:4]] == [
        (1, "attention", 1000),
        (1, "attention", 2000),
        (1, "plain", 1000),
        (1, "plain", 2000),
    ]


def test_fit_groups_hold_a_finalists_unfinished_families_for_one_seed():
    a, b = _rec(7, acc=0.9), _rec(9, acc=0.8)
    done = [
        {"finalist": 1, "trial_id": 9, "family": "attention", "seed": 1000},
        {"finalist": 1, "trial_id": 9, "family": "plain", "seed": 1000},
        {"finalist": 2, "trial_id": 7, "family": "plain", "seed": 2000},
    ]
    families = ("attention", "plain", "matched")
    groups = planning.fit_groups([a, b], families, [1000, 2000], done)
    assert [(g.rank, g.key, g.families) for g in groups] == [
        (1, (7, 1000), families),
        (1, (7, 2000), ("attention", "matched")),
        (2, (9, 1000), ("matched",)),
        (2, (9, 2000), families),
    ]
    assert [f.key for f in groups[1].fits()] == [(7, "attention", 2000), (7, "matched", 2000)]
    finished = [
        dict(zip(("trial_id", "family", "seed"), f.key, strict=True)) for f in groups[0].fits()
    ]
    assert planning.fit_groups([a], families, [1000], finished) == []


def test_finalist_seeds_are_far_from_search_seeds():
    assert planning.finalist_seeds(3, 3) == [1003, 2003, 3003]


@pytest.mark.parametrize(
    "hp, space, cap, engine, epochs",
    [
        ({"train/epochs": 8}, 6, None, None, 8),
        ({"train/epochs": 8}, 6, 3, None, 3),
        ({"train/epochs": 8}, 6, 5, 2, 2),
        ({}, 6, None, None, 6),
        ({}, None, None, None, 10),
        ({"train/epochs": True}, 4, None, None, 4),
    ],
)
def test_epochs_for(hp, space, cap, engine, epochs):
    got = planning.epochs_for(hp, space_epochs=space, max_epochs=cap, engine_epochs=engine)
    assert got == epochs

"""Cross-validation of the finalists on small datasets: the folds (every image tested once per
repetition, stratified, the same for everyone), the automatic choice, and a small run whose
families share their folds and whose verdict uses the corrected resampled t-test."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from attn_search import stats
from attn_search.datasets import CrossValidation, load_dataset
from attn_search.errors import ConfigError
from attn_search.space_auto import CV_FOLDS, CV_THRESHOLD, resolve_cv


@pytest.fixture(scope="module")
def digits300():
    return load_dataset("digits", limit=300, seed=0)


def test_each_image_is_tested_once_per_repetition_and_folds_are_stratified(digits300):
    cv = CrossValidation(digits300, k=5, repetitions=2, seed=0)
    y = np.concatenate([digits300.arrays(s)[1] for s in ("train", "val", "test")])
    for rep in range(2):
        tested = np.concatenate([cv.test_indices(rep, f) for f in range(5)])
        assert sorted(tested) == list(range(300))  # each image once in this repetition
        for f in range(5):
            counts = np.bincount(y[cv.test_indices(rep, f)], minlength=10)
            assert (np.abs(counts - np.bincount(y, minlength=10) / 5) <= 1).all()
    assert not np.array_equal(cv.test_indices(0, 0), cv.test_indices(1, 0))  # new partitions


def test_a_fold_is_its_test_part_and_the_rest_split_into_train_and_val(digits300):
    cv = CrossValidation(digits300, k=5, repetitions=1, seed=0)
    fold = cv.dataset(0, 2)
    sizes = fold.info.sizes
    assert sizes["test"] == 60 and sizes["train"] + sizes["val"] == 240
    assert sizes["val"] == math.ceil(240 * 45 / 255)  # the dataset's own share of validation
    xs = {
        s: fold.arrays(s)[0].reshape(len(fold.arrays(s)[0]), -1) for s in ("train", "val", "test")
    }
    rows = {s: {row.tobytes() for row in x} for s, x in xs.items()}
    assert not (rows["train"] & rows["test"]) and not (rows["val"] & rows["test"])
    assert cv.test_train_ratio == pytest.approx(60 / (240 * 210 / 255))


def test_the_same_folds_for_every_caller(digits300):
    a, b = (CrossValidation(digits300, k=3, repetitions=2, seed=7) for _ in range(2))
    for rep in range(2):
        for f in range(3):
            np.testing.assert_array_equal(a.test_indices(rep, f), b.test_indices(rep, f))
            np.testing.assert_array_equal(a.dataset(rep, f).arrays("train")[1],
                                          b.dataset(rep, f).arrays("train")[1])  # fmt: skip
    # More repetitions later (a resume with more --repeats) keep the first ones.
    more = CrossValidation(digits300, k=3, repetitions=3, seed=7)
    np.testing.assert_array_equal(more.test_indices(1, 2), a.test_indices(1, 2))


def test_too_many_folds_for_the_smallest_class(digits300):
    with pytest.raises(ConfigError) as info:
        CrossValidation(digits300, k=40, repetitions=1, seed=0)
    assert str(info.value) == (
        "`cv` must be 0 (a held-out test split) or a number of folds from 2 to the number of "
        "examples of the smallest class (29), so that every fold holds every class. "
        "Received: cv=40"
    )


def _info(n, name="mine", source="folder:/data/mine"):
    sizes = {"train": int(n * 0.7), "val": n - int(n * 0.7), "test": 0}
    return SimpleNamespace(name=name, source=source, streaming=False, sizes=sizes)


def test_cross_validation_is_chosen_for_small_datasets():
    assert CV_THRESHOLD == 1000 and CV_FOLDS == 5
    assert resolve_cv(None, _info(300), repeats=5) == (5, 1)
    assert resolve_cv(None, _info(999), repeats=8) == (5, 2)
    assert resolve_cv(None, _info(1000), repeats=5) == (0, 0)
    assert resolve_cv(None, _info(300, "digits", "sklearn.datasets.load_digits"), 5) == (0, 0)
    assert resolve_cv(0, _info(300), repeats=5) == (0, 0)
    assert resolve_cv(3, _info(50_000), repeats=5) == (3, 2)


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from attn_search.runner import run_search

    # Forced to 1 epoch: also the undertraining warning's run (tests/test_undertraining.py).
    out = tmp_path_factory.mktemp("cv")
    return run_search(
        dataset="digits", limit=150, trials=2, epochs=1, finalists=1, repeats=2, cv=2,
        quiet=True, out=str(out),
    )  # fmt: skip


def test_a_cross_validated_run_trains_every_family_on_the_same_folds(cv_run):
    import yaml

    config = yaml.safe_load((cv_run.run_dir / "config.yaml").read_text())
    assert config["cv"] == {
        "k": 2, "repetitions": 1, "seed": 0,
        "evaluation": "1 x stratified 2-fold cross-validation",
        "test_train_ratio": config["cv"]["test_train_ratio"],
    }  # fmt: skip
    fits = json.loads((cv_run.run_dir / "finalists.json").read_text())["runs"]
    by_family: dict[str, set] = {}
    for fit in fits:
        assert fit["test_accuracy"] is not None, fit
        by_family.setdefault(fit["family"], set()).add((fit["seed"], fit["fold"], fit["n_test"]))
    assert set(by_family) == {"attention", "plain", "matched"}
    (folds,) = {frozenset(v) for v in by_family.values()}  # every family: the same folds
    assert {fold for _, fold, _ in folds} == {0, 1}
    assert sum(n_test for _, _, n_test in folds) == 150  # each image tested once
    for fit in fits:
        assert sorted(fit["trained_with"]) == ["attention", "matched", "plain"]


def test_a_cross_validated_verdict_uses_the_corrected_test(cv_run):
    fits = json.loads((cv_run.run_dir / "finalists.json").read_text())["runs"]
    ratio = fits[0]["test_train_ratio"]
    comparison = cv_run.comparison
    rows = comparison[(comparison["section"] == "finalist") & (comparison["family"] != "attention")]
    assert set(rows["test"]) == {"corrected resampled t"}
    for row in rows.to_dict("records"):
        acc = {
            (f["family"], f["fold"]): f["test_accuracy"] for f in fits
        }  # paired by (seed, fold): one seed here
        a = [acc[("attention", k)] for k in (0, 1)]
        b = [acc[(row["family"], k)] for k in (0, 1)]
        want = stats.corrected_paired(a, b, ratio)
        assert row["pairs"] == 2
        assert row["diff_mean"] == pytest.approx(want["diff_mean"])
        if not np.isnan(want["p_value"]):
            assert row["p_value"] == pytest.approx(want["p_value"])
    assert all((" folds, " in s) or "cannot compare" in s for s in cv_run.verdict)


def test_a_run_forced_to_one_epoch_warns_and_cautions_its_verdict(cv_run):
    import yaml

    info = json.loads((cv_run.run_dir / "run.json").read_text())
    (warning,) = info["warnings"]
    assert warning.startswith("Undertrained: ")
    assert warning.endswith(
        "were still improving when their epochs ran out, so the comparison is of undertrained "
        "models. Train longer: pass `--epochs N` with N above the epochs they had "
        "(`--max-epochs` only caps them)."
    )
    config = yaml.safe_load((cv_run.run_dir / "config.yaml").read_text())
    assert config["space"]["training"]["epochs"] == 1 and config["budget"]["epochs"] == 1
    complete = cv_run.leaderboard[cv_run.leaderboard["status"] == "complete"]
    assert len(complete) and (complete["epochs"] == 1).all()
    assert complete["still_improving"].astype(bool).sum() > len(complete) / 2
    fits = json.loads((cv_run.run_dir / "finalists.json").read_text())["runs"]
    assert all(fit["still_improving"] for fit in fits)
    assert cv_run.verdict and all(s.endswith(stats.UNDERTRAINED_NOTE) for s in cv_run.verdict)

"""The verdict's statistics: unit checks, the sentences, and simulations (no training) that
measure the false-verdict rate under the null and the power at the promised difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attn_search import stats


def test_paired_difference_interval_and_p_value():
    a, b = [0.90, 0.92, 0.91, 0.95], [0.85, 0.90, 0.88, 0.90]
    row = stats.paired(a, b)
    d = np.array(a) - np.array(b)  # 0.05, 0.02, 0.03, 0.05
    assert row["n"] == 4
    assert row["diff_mean"] == pytest.approx(d.mean())
    assert row["diff_std"] == pytest.approx(d.std(ddof=1))
    half = 3.182446305284263 * d.std(ddof=1) / 2  # t(0.975, df=3) * sd / sqrt(4)
    assert row["diff_ci_low"] == pytest.approx(d.mean() - half)
    assert row["diff_ci_high"] == pytest.approx(d.mean() + half)
    t = d.mean() / (d.std(ddof=1) / 2)
    assert t == pytest.approx(5.0)
    assert row["p_value"] == pytest.approx(0.0153924, abs=1e-6)  # two-sided, t = 5, df = 3


@pytest.mark.parametrize(
    "a, b",
    [([0.9], [0.8]), ([], []), ([0.9, 0.8], [0.8, 0.7])],  # one pair, none, no spread
)
def test_paired_leaves_undefined_intervals_nan_and_no_verdict(a, b):
    row = stats.paired(a, b)
    assert math.isnan(row["diff_ci_low"]) and math.isnan(row["diff_ci_high"])
    (compared,) = stats.compare([(a, b)])
    assert compared["verdict"] == "cannot compare" and math.isnan(compared["p_adjusted"])


def test_holm_matches_the_step_down_rule_and_keeps_nan():
    got = stats.holm([0.01, math.nan, 0.04, 0.03])
    # sorted p: 0.01 (x3), 0.03 (x2), 0.04 (x1), each at least the previous
    assert got[0] == pytest.approx(0.03)
    assert got[3] == pytest.approx(0.06) and got[2] == pytest.approx(0.06)
    assert math.isnan(got[1])


def test_holm_agrees_with_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for m in (1, 2, 4, 7):
        p = rng.uniform(0, 0.2, m)
        assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def test_detectable_difference_shrinks_with_seeds_and_grows_with_comparisons():
    d3, d5, d10 = (stats.detectable_difference(n, 0.02) for n in (3, 5, 10))
    assert d3 > d5 > d10 > 0
    assert stats.detectable_difference(5, 0.02, comparisons=4) > d5
    assert math.isnan(stats.detectable_difference(1, 0.02))
    assert math.isnan(stats.detectable_difference(5, 0.0))


def test_compare_verdicts():
    rows = stats.compare(
        [
            ([0.90, 0.92, 0.91, 0.93, 0.92], [0.80, 0.83, 0.80, 0.82, 0.81]),
            ([0.80, 0.83, 0.80, 0.82, 0.81], [0.90, 0.92, 0.91, 0.93, 0.92]),
            ([0.90, 0.85, 0.91, 0.84, 0.88], [0.88, 0.87, 0.90, 0.86, 0.88]),
            ([0.9], [0.8]),
        ]
    )
    assert [r["verdict"] for r in rows] == [
        "attention better",
        "baseline better",
        "no detectable difference",
        "cannot compare",
    ]
    assert all(r["p_adjusted"] >= r["p_value"] for r in rows[:3])


_ROW = {"finalist": 2, "trial_id": 7, "placement": "1+2", "repeats": 5}


@pytest.mark.parametrize(
    "row, text",
    [
        (
            {
                **_ROW,
                "family": "matched",
                "diff_mean": -0.021,
                "diff_ci_low": -0.03,
                "diff_ci_high": -0.012,
                "p_adjusted": 0.0123,
                "verdict": "baseline better",
            },
            "Finalist 2 (trial #7). Attention after blocks 1 and 2 vs the same network with a "
            "parameter-matched conv block instead: -2.1 points [-3.0, -1.2], 5 seeds, "
            "adjusted p = 0.0123: baseline better.",
        ),
        (
            {
                **_ROW,
                "family": "plain",
                "diff_mean": 0.004,
                "diff_ci_low": -0.01,
                "diff_ci_high": 0.018,
                "p_adjusted": 0.9,
                "detectable_diff": 0.026,
                "verdict": "no detectable difference",
            },
            "Finalist 2 (trial #7). Attention after blocks 1 and 2 vs the same network without "
            "it: +0.4 points [-1.0, +1.8], 5 seeds, adjusted p = 0.9: no detectable difference "
            "(this run could have detected 2.6 points or more; add seeds with `--repeats` to "
            "detect less).",
        ),
        (
            {**_ROW, "family": "plain", "diff_mean": 0.1, "verdict": "cannot compare"},
            "Finalist 2 (trial #7). Attention after blocks 1 and 2 vs the same network without "
            "it: cannot compare (the 5 seeds' differences are all equal, so their spread cannot "
            "be estimated: raise `--repeats`).",
        ),
        (
            {**_ROW, "family": "plain", "repeats": 1, "verdict": "cannot compare"},
            "Finalist 2 (trial #7). Attention after blocks 1 and 2 vs the same network without "
            "it: cannot compare (1 seed(s) finished by both; at least 2 are needed: raise "
            "`--repeats` or resume the run).",
        ),
    ],
)
def test_sentences(row, text):
    assert stats.sentence(row) == text


# ----------------------------------------------------------------------------- simulations
# A run here: 2 finalists x 2 twins = 4 comparisons, 5 seeds each. Paired scores are drawn
# with a shared per-seed effect (the seed's data order) plus each network's own noise.
_RUNS, _SEEDS, _M, _SIGMA = 2000, 5, 4, 0.02


def _simulated_runs(effects, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(_RUNS):
        pairs = []
        for effect in effects:
            shared = rng.normal(0.8, 0.03, _SEEDS)
            att = shared + effect + rng.normal(0, _SIGMA / math.sqrt(2), _SEEDS)
            twin = shared + rng.normal(0, _SIGMA / math.sqrt(2), _SEEDS)
            pairs.append((att, twin))
        out.append(stats.compare(pairs))
    return out


def test_false_verdicts_stay_at_or_under_five_percent_under_the_null():
    runs = _simulated_runs([0.0] * _M, seed=1)
    wrong = [any(r["verdict"] != "no detectable difference" for r in rows) for rows in runs]
    rate = float(np.mean(wrong))
    # Holm controls the family-wise rate at 5%; 2,000 runs: a standard error of about 0.5%.
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / _RUNS), rate


def test_a_planted_effect_of_the_detectable_size_is_found_at_the_promised_power():
    # The difference the design promises to detect with 80% power (sd of the differences is
    # _SIGMA), planted in one comparison of four.
    delta = stats.detectable_difference(_SEEDS, _SIGMA, comparisons=_M)
    runs = _simulated_runs([delta, 0.0, 0.0, 0.0], seed=2)
    found = float(np.mean([rows[0]["verdict"] == "attention better" for rows in runs]))
    assert 0.75 <= found <= 0.88, found
    # The same effect against the other direction is never called a baseline win.
    assert not any(rows[0]["verdict"] == "baseline better" for rows in runs)


# --------------------------------------------------------- cross-validation (Nadeau & Bengio)
# Repeated k-fold: the folds' training sets overlap, so their differences share a component.
# Nadeau and Bengio model it as a correlation rho = n_test / (n_test + n_train) between any two
# folds' differences; drawn that way, the corrected test is exact and the plain one is not.
_K, _REPS = 5, 2


def _cv_differences(rng, effect):
    ratio = 1 / (_K - 1)
    rho = ratio / (1 + ratio)
    n = _K * _REPS
    return effect + _SIGMA * (
        math.sqrt(rho) * rng.normal() + math.sqrt(1 - rho) * rng.normal(size=n)
    )


def test_corrected_resampled_t_test_keeps_five_percent_where_the_paired_one_does_not():
    rng = np.random.default_rng(3)
    ratio = 1 / (_K - 1)
    corrected, plain = [], []
    for _ in range(_RUNS):
        d = _cv_differences(rng, 0.0)
        zeros = np.zeros_like(d)
        corrected.append(stats.corrected_paired(d, zeros, ratio)["p_value"] < 0.05)
        plain.append(stats.paired(d, zeros)["p_value"] < 0.05)
    margin = 2 * math.sqrt(0.05 * 0.95 / _RUNS)
    assert abs(np.mean(corrected) - 0.05) <= margin, np.mean(corrected)
    assert np.mean(plain) > 0.15, np.mean(plain)  # the uncorrected test: false findings


def test_corrected_test_is_what_compare_uses_with_folds_and_its_interval_is_wider():
    d = np.array([0.02, 0.05, 0.01, 0.04, 0.03, 0.02, 0.06, 0.0, 0.03, 0.04])
    zeros = np.zeros_like(d)
    ratio = 0.25
    row = stats.compare([(d, zeros)], test_train_ratio=ratio)[0]
    want = stats.corrected_paired(d, zeros, ratio)
    sd = float(d.std(ddof=1))
    t = d.mean() / (sd * math.sqrt(1 / len(d) + ratio))
    from scipy import stats as scipy_stats

    assert row["p_value"] == pytest.approx(2 * scipy_stats.t.sf(t, len(d) - 1))
    assert row["p_value"] == want["p_value"] > stats.paired(d, zeros)["p_value"]
    plain = stats.compare([(d, zeros)])[0]
    assert row["diff_ci_high"] - row["diff_ci_low"] > plain["diff_ci_high"] - plain["diff_ci_low"]
    assert row["detectable_diff"] == pytest.approx(
        plain["detectable_diff"] * math.sqrt(1 + len(d) * ratio)
    )


def test_corrected_paired_rejects_a_bad_ratio():
    with pytest.raises(ValueError) as info:
        stats.corrected_paired([0.1, 0.2], [0.0, 0.1], -1.0)
    assert str(info.value) == (
        "`test_train_ratio` must be a finite number >= 0. Received: test_train_ratio=-1.0"
    )

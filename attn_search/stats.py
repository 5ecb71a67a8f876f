"""The statistics behind the verdict: paired differences, intervals, adjusted p-values, the
smallest difference a run could detect, and the verdict in words.

Each finalist's attention model is compared with each baseline twin over the seeds both
finished (a paired design: the same seed gives both the same data order). For every comparison:

- `diff_mean`: mean of attention - twin (accuracy on the 0..1 scale);
- `diff_ci_low`, `diff_ci_high`: its 95% confidence interval, t-based (n - 1 degrees of freedom);
- `p_value`: the paired t-test's two-sided p-value;
- `p_adjusted`: Holm's step-down adjustment over every comparison of the run (the family-wise
  error rate stays at 5% however many finalists and twins a run compares; a comparison whose
  pairs all differ by the same amount has no spread to test and is left out);
- `detectable_diff`: the smallest true difference that this design (these n seeds, this spread
  of the differences) detects with 80% power when the comparison must pass the strictest
  Holm threshold (5% divided by the number of comparisons);
- `verdict`: `attention better` or `baseline better` when the adjusted p-value is below 5% (the
  interval then lies wholly on that side of zero), else `no detectable difference`; `cannot
  compare` with fewer than 2 pairs or no spread.

When the finalists were compared by repeated k-fold cross-validation (small datasets), the pairs
are the folds of every repetition: their training sets overlap, so their differences are
correlated and the plain paired t-test would be far too confident. `compare(...,
test_train_ratio=r)` then uses the corrected resampled t-test of Nadeau and Bengio (2003): the
variance of the mean difference is `(1/n + r) * s**2` instead of `s**2 / n`, where `r` is the
ratio of test to training examples of one fold (`corrected_paired`).

The t distribution and test are scipy's, the power calculation statsmodels'. This module imports
them on first use.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from attn_search.formatting import as_float

__all__ = [
    "ALPHA",
    "POWER",
    "UNDERTRAINED_NOTE",
    "VERDICTS",
    "compare",
    "corrected_paired",
    "detectable_difference",
    "holm",
    "paired",
    "sentence",
]

ALPHA = 0.05
POWER = 0.8
VERDICTS = ("attention better", "baseline better", "no detectable difference", "cannot compare")
_NAN = math.nan


def paired(a: Sequence[float], b: Sequence[float], *, alpha: float = ALPHA) -> dict[str, Any]:
    """The paired difference `a - b`: mean, spread, interval and t-test.

    Args:
        a: Attention's scores, one per seed.
        b: The twin's scores on the same seeds, in the same order.
        alpha: 1 - the interval's confidence. Defaults to 0.05.

    Returns:
        A dict with `n`, `diff_mean`, `diff_std`, `diff_ci_low`, `diff_ci_high` (NaN with
        fewer than 2 pairs, or when every pair differs by the same amount) and `p_value`
        (scipy's paired t-test; NaN with fewer than 2 pairs).
    """
    import numpy as np
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(len(d))
    out = {"n": n, "diff_mean": float(d.mean()) if n else _NAN, "diff_std": _NAN}
    out.update(diff_ci_low=_NAN, diff_ci_high=_NAN, p_value=_NAN)
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["diff_std"] = sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no spread: scipy's t is infinite or undefined
        out["p_value"] = float(stats.ttest_rel(a, b).pvalue)
    if not _has_spread(sd):
        return out  # every pair differs by the same amount: no interval, no verdict
    se = sd / math.sqrt(n)
    t_crit = float(stats.t.ppf(1 - alpha / 2, n - 1))
    out["diff_ci_low"] = out["diff_mean"] - t_crit * se
    out["diff_ci_high"] = out["diff_mean"] + t_crit * se
    return out


def corrected_paired(
    a: Sequence[float], b: Sequence[float], test_train_ratio: float, *, alpha: float = ALPHA
) -> dict[str, Any]:
    """`paired`, with the corrected resampled t-test of Nadeau and Bengio (2003).

    For scores from resampled (e.g. repeated k-fold) evaluations, whose training sets overlap:
    the variance of the mean difference is estimated as `(1/n + test_train_ratio) * s**2`
    (`s` the differences' standard deviation) instead of `s**2 / n`; the t statistic and the
    interval use it, with n - 1 degrees of freedom.

    Args:
        a: Attention's scores, one per fold of every repetition.
        b: The twin's scores on the same folds, in the same order.
        test_train_ratio: Test examples / training examples of one fold (1 / (k - 1) for
            k-fold cross-validation).
        alpha: 1 - the interval's confidence. Defaults to 0.05.

    Returns:
        `paired`'s keys; `p_value` and the interval are the corrected ones.

    Example:

    >>> row = corrected_paired([0.9, 0.92, 0.91, 0.95], [0.85, 0.9, 0.88, 0.9], 1 / 3)
    >>> round(row["p_value"], 3) > round(paired([0.9, 0.92, 0.91, 0.95],
    ...                                        [0.85, 0.9, 0.88, 0.9])["p_value"], 3)
    True
    """
    from scipy import stats

    if not (test_train_ratio >= 0 and math.isfinite(test_train_ratio)):
        raise ValueError(
            "`test_train_ratio` must be a finite number >= 0. "
            f"Received: test_train_ratio={test_train_ratio!r}"
        )
    out = paired(a, b, alpha=alpha)
    n, sd = out["n"], out["diff_std"]
    if n < 2 or not _has_spread(sd):
        return out
    se = sd * math.sqrt(1.0 / n + test_train_ratio)
    t = out["diff_mean"] / se
    out["p_value"] = float(2 * stats.t.sf(abs(t), n - 1))
    t_crit = float(stats.t.ppf(1 - alpha / 2, n - 1))
    out["diff_ci_low"] = out["diff_mean"] - t_crit * se
    out["diff_ci_high"] = out["diff_mean"] + t_crit * se
    return out


def _has_spread(sd: float) -> bool:
    return sd > 1e-12  # float noise of equal differences is ~1e-16


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of the p-values of one family of tests; NaN stays NaN.

    The k-th smallest of m p-values is multiplied by m - k + 1, each at least the one before
    and at most 1 (the values statsmodels' `multipletests(method="holm")` returns; written out
    here because that function runs a full garbage collection on every call).
    """
    values = [float(p) for p in p_values]
    ranked = sorted((p, i) for i, p in enumerate(values) if not math.isnan(p))
    m = len(ranked)
    out = [_NAN] * len(values)
    running = 0.0
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


@functools.lru_cache(maxsize=256)
def _effect_size(n: int, alpha: float, power: float) -> float:
    """Cohen's d a paired t-test on n pairs detects with `power` at level `alpha`."""
    from statsmodels.stats.power import TTestPower

    return float(
        TTestPower().solve_power(
            effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided"
        )
    )


def detectable_difference(
    n: int,
    sd: float,
    comparisons: int = 1,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
    test_train_ratio: float | None = None,
) -> float:
    """The smallest true mean difference detected with `power` by n pairs with spread `sd`.

    Args:
        n: Pairs (seeds both finished).
        sd: Standard deviation of the paired differences.
        comparisons: Comparisons in the run; the level is `alpha / comparisons`, Holm's
            strictest threshold. Defaults to 1.
        alpha: The family-wise level. Defaults to 0.05.
        power: The probability of detecting a difference of that size. Defaults to 0.8.
        test_train_ratio: For cross-validated pairs (`corrected_paired`): the spread of the
            mean is inflated by `sqrt(1 + n * test_train_ratio)`. Defaults to `None` (seeds).

    Returns:
        The difference (same units as `sd`), or NaN with fewer than 2 pairs or no spread.
    """
    if n < 2 or not _has_spread(sd) or comparisons < 1:
        return _NAN
    inflation = math.sqrt(1 + n * test_train_ratio) if test_train_ratio else 1.0
    return _effect_size(int(n), alpha / comparisons, power) * float(sd) * inflation


def _verdict(n: int, p_adjusted: float, low: float, high: float, alpha: float) -> str:
    if n < 2 or math.isnan(low):
        return "cannot compare"
    if not math.isnan(p_adjusted) and p_adjusted < alpha:
        if low > 0:
            return "attention better"
        if high < 0:
            return "baseline better"
    return "no detectable difference"


def compare(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    alpha: float = ALPHA,
    test_train_ratio: float | None = None,
):
    """Every comparison of a run at once: `paired`, then Holm, detectable differences, verdicts.

    Args:
        pairs: One `(attention scores, twin scores)` per comparison, paired by seed (or by
            fold and repetition, with `test_train_ratio`).
        alpha: The family-wise level. Defaults to 0.05.
        test_train_ratio: The pairs come from cross-validation folds with this ratio of test
            to training examples: the corrected resampled t-test (`corrected_paired`) replaces
            the paired t-test. Defaults to `None` (seeds on one split).

    Returns:
        One dict per comparison: `paired`'s keys plus `p_adjusted`, `detectable_diff`,
        `verdict`.

    Example:

    >>> rows = compare([([0.9, 0.92, 0.91], [0.8, 0.83, 0.8])])
    >>> rows[0]["verdict"], round(rows[0]["diff_mean"], 3)
    ('attention better', 0.1)
    """
    if test_train_ratio is None:
        rows = [paired(a, b, alpha=alpha) for a, b in pairs]
    else:
        rows = [corrected_paired(a, b, test_train_ratio, alpha=alpha) for a, b in pairs]
    # The family: comparisons with at least 2 pairs and a spread (the others cannot be tested).
    testable = [r["n"] >= 2 and _has_spread(r["diff_std"]) for r in rows]
    adjusted = holm([r["p_value"] if ok else _NAN for r, ok in zip(rows, testable, strict=True)])
    m = sum(testable)
    for row, p_adj in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = p_adj
        row["detectable_diff"] = detectable_difference(
            row["n"], row["diff_std"], m, alpha=alpha, test_train_ratio=test_train_ratio
        )
        row["verdict"] = _verdict(row["n"], p_adj, row["diff_ci_low"], row["diff_ci_high"], alpha)
    return rows


_TWIN_WORDS = {
    "plain": "the same network without it",
    "matched": "the same network with a parameter-matched conv block instead",
}


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def _where(placement: Any) -> str:
    text = "" if placement is None else str(placement)
    if text in ("", "none", "nan"):
        return "Attention"
    blocks = text.split("+")
    if not all(b.isdigit() for b in blocks):  # a backbone's points: "conv3_block4_out (8x8)"
        return f"Attention after {' and '.join(blocks)}"
    word = "block" if len(blocks) == 1 else "blocks"
    return f"Attention after {word} {' and '.join(blocks)}"


#: Appended to a verdict sentence whose row is `undertrained`.
UNDERTRAINED_NOTE = (
    "Caution: models compared here were still improving when their epochs ran out, so this "
    "compares undertrained models; train longer with `--epochs`."
)


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def sentence(row: Mapping[str, Any]) -> str:
    """The verdict of one comparison (a finalist twin row of comparison.csv) in one sentence.

    A row marked `undertrained` gets `UNDERTRAINED_NOTE` after it.

    Example:

    >>> text = sentence({"finalist": 1, "trial_id": 4, "placement": "2", "family": "plain",
    ...                  "repeats": 5, "diff_mean": 0.018, "diff_ci_low": 0.009,
    ...                  "diff_ci_high": 0.027, "p_adjusted": 0.004,
    ...                  "verdict": "attention better"})
    >>> import textwrap
    >>> print(textwrap.fill(text, 88))
    Finalist 1 (trial #4). Attention after block 2 vs the same network without it: +1.8
    points [+0.9, +2.7], 5 seeds, adjusted p = 0.004: attention better.
    """
    text = _sentence(row)
    return f"{text} {UNDERTRAINED_NOTE}" if _flag(row.get("undertrained")) else text


def _sentence(row: Mapping[str, Any]) -> str:
    """The sentence before any note."""
    family = str(row.get("family"))
    head = (
        f"Finalist {row.get('finalist')} (trial #{row.get('trial_id')}). "
        f"{_where(row.get('placement'))} vs {_TWIN_WORDS.get(family, f'its {family} twin')}: "
    )
    n = _int(row.get("pairs", row.get("repeats")))
    verdict = row.get("verdict") or "cannot compare"
    if verdict == "cannot compare" and n >= 2:
        return head + (
            f"cannot compare (the {n} seeds' differences are all equal, so their spread cannot "
            "be estimated: raise `--repeats`)."
        )
    if verdict == "cannot compare":
        return head + (
            f"cannot compare ({n} seed(s) finished by both; at least 2 are needed: "
            "raise `--repeats` or resume the run)."
        )
    mean, low, high = (as_float(row.get(k)) for k in ("diff_mean", "diff_ci_low", "diff_ci_high"))
    p_adj = as_float(row.get("p_adjusted"))
    interval = f" [{_points(low)}, {_points(high)}]" if not math.isnan(low) else ""
    p_text = f"adjusted p = {p_adj:.3g}" if not math.isnan(p_adj) else "no spread between seeds"
    # Cross-validated pairs are folds (comparison.csv's `test` names the corrected test).
    unit = "folds" if str(row.get("test", "")).startswith("corrected") else "seeds"
    text = f"{head}{_points(mean)} points{interval}, {n} {unit}, {p_text}: {verdict}"
    if verdict == "no detectable difference":
        detectable = as_float(row.get("detectable_diff"))
        if not math.isnan(detectable):
            text += (
                f" (this run could have detected {detectable * 100:.1f} points or more; add "
                "seeds with `--repeats` to detect less)"
            )
    return text + "."


def _int(value: Any) -> int:
    x = as_float(value)
    return 0 if math.isnan(x) else int(x)

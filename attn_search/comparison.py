"""comparison.csv: attention against its baselines, per family, per placement, and for the
finalists with the verdict's statistics (see `attn_search.stats`).

pandas is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from attn_search import stats

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["COMPARISON_COLUMNS", "comparison_frame", "verdict_sentences"]

#: comparison.csv's columns, in order (documented in the README, "Reading comparison.csv").
COMPARISON_COLUMNS = (
    "section",
    "family",
    "placement",
    "finalist",
    "trial_id",
    "trials",
    "complete",
    "best_val_accuracy",
    "mean_val_accuracy",
    "repeats",
    "test_accuracy_mean",
    "test_accuracy_std",
    "pairs",
    "diff_mean",
    "diff_std",
    "diff_ci_low",
    "diff_ci_high",
    "p_value",
    "p_adjusted",
    "detectable_diff",
    "verdict",
    "undertrained",
    "test",
)
_INTS = ("finalist", "trial_id", "trials", "complete", "repeats", "pairs")
_TEXT = ("section", "family", "placement", "verdict", "undertrained", "test")
#: comparison.csv's `test`: how a twin row's p-value was computed.
PAIRED_TEST = "paired t"
CV_TEST = "corrected resampled t"


def comparison_frame(
    leaderboard: pd.DataFrame,
    finalist_runs: Sequence[dict[str, Any]] = (),
    families: Sequence[str] = ("attention", "plain", "matched"),
) -> pd.DataFrame:
    """Attention against its baselines: per family, per placement, and for the finalists.

    Args:
        leaderboard: The leaderboard (`records_to_frame`).
        finalist_runs: One dict per finalist fit: `finalist` (rank from 1), `trial_id`,
            `family`, `placement`, `seed`, `test_accuracy` (NaN or `None` if it failed).
        families: The families in the order the rows should follow.

    Returns:
        A DataFrame with `COMPARISON_COLUMNS`. `section` is `"family"` (every trial of a
        family), `"placement"` (per family and placement) or `"finalist"` (test accuracy over
        the repeats; `undertrained`: a fit of it, or for a twin of attention, was still
        improving when its epochs ran out). A finalist's twin row compares attention with
        that twin over the seeds both finished (`pairs`): `diff_*`, `p_value`, `p_adjusted`
        (Holm, over every twin row of the run), `detectable_diff` and `verdict`, as
        `attn_search.stats.compare` defines; `test` says which: the paired t-test over seeds,
        or, when the fits are cross-validation folds (a `fold` and `test_train_ratio` each),
        pairs by seed and fold and the corrected resampled t-test.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    order = {f: i for i, f in enumerate(families)}
    rows += _search_rows(leaderboard, order)
    runs = pd.DataFrame(list(finalist_runs))
    twins: list[tuple[dict[str, Any], Any, Any]] = []
    ratio = _test_train_ratio(runs)
    # A fit is paired by its seed, and with cross-validation by its seed (the repetition) and
    # fold: attention and its twins were trained and tested on the same fold.
    pair_on = ["seed", "fold"] if ratio is not None else ["seed"]
    if len(runs):
        runs["test_accuracy"] = pd.to_numeric(runs["test_accuracy"], errors="coerce")
        for (rank, trial_id), fin in runs.groupby(["finalist", "trial_id"], sort=True):
            att = fin[fin["family"] == "attention"].set_index(pair_on)["test_accuracy"]
            fams = sorted(fin["family"].unique(), key=lambda f: (order.get(f, 99), f))
            for fam in fams:
                part = fin[fin["family"] == fam]
                acc = part["test_accuracy"].dropna().to_numpy(dtype=float)
                row = {
                    "section": "finalist",
                    "family": fam,
                    "placement": str(part["placement"].iloc[0]),
                    "finalist": int(rank),
                    "trial_id": int(trial_id),
                    "repeats": int(len(acc)),
                    "test_accuracy_mean": float(acc.mean()) if len(acc) else math.nan,
                    "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
                    "undertrained": _improving(fin, fam),
                }
                if fam != "attention":
                    twin = part.set_index(pair_on)["test_accuracy"]
                    both = pd.concat([att, twin], axis=1, keys=["a", "t"]).dropna()
                    twins.append((row, both["a"].to_numpy(), both["t"].to_numpy()))
                rows.append(row)
    results = stats.compare([(a, t) for _, a, t in twins], test_train_ratio=ratio)
    for (row, _, _), result in zip(twins, results, strict=True):
        row.update({("pairs" if k == "n" else k): v for k, v in result.items()})
        row["test"] = PAIRED_TEST if ratio is None else CV_TEST
    return _typed(pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS)))


def _test_train_ratio(runs: pd.DataFrame) -> float | None:
    """The fits' mean test/train ratio when they are cross-validation folds, else `None`."""
    if not len(runs) or "fold" not in runs.columns or runs["fold"].isna().all():
        return None
    import pandas as pd

    if "test_train_ratio" not in runs.columns:
        return None
    ratio = pd.to_numeric(runs["test_train_ratio"], errors="coerce").dropna()
    return float(ratio.mean()) if len(ratio) else None


def _improving(fits: pd.DataFrame, family: str) -> bool:
    """Whether a fit of `family` (and, for a twin, of attention) was still improving."""
    if "still_improving" not in fits.columns:
        return False
    part = fits[fits["family"].isin({family, "attention"})]
    return bool(part["still_improving"].fillna(False).astype(bool).any())


def _search_rows(lb: pd.DataFrame, order: dict[str, int]) -> list[dict[str, Any]]:
    if not len(lb):
        return []
    rows = []
    fam_keys = sorted(lb["family"].dropna().unique(), key=lambda f: (order.get(f, 99), f))
    for fam in fam_keys:
        rows.append(_group_row("family", fam, "", lb[lb["family"] == fam]))
    groups = lb.dropna(subset=["family"]).groupby(["family", "placement"], sort=False)
    keys = sorted(groups.groups, key=lambda k: (order.get(k[0], 99), k[0], str(k[1])))
    for fam, place in keys:
        rows.append(_group_row("placement", fam, place, groups.get_group((fam, place))))
    return rows


def _group_row(section: str, family: str, placement: str, part: pd.DataFrame) -> dict:
    acc = part.loc[part["status"] == "complete", "best_val_accuracy"].astype(float).dropna()
    return {
        "section": section,
        "family": family,
        "placement": placement,
        "trials": int(len(part)),
        "complete": int((part["status"] == "complete").sum()),
        "best_val_accuracy": float(acc.max()) if len(acc) else math.nan,
        "mean_val_accuracy": float(acc.mean()) if len(acc) else math.nan,
    }


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    for col in COMPARISON_COLUMNS:
        if col in _INTS:
            df[col] = pd.array(df[col], dtype="Int64")
        elif col not in _TEXT:
            df[col] = df[col].astype(float)
    df["verdict"] = df["verdict"].astype(object).where(df["verdict"].notna(), None)
    return df


def verdict_sentences(comparison: pd.DataFrame) -> list[str]:
    """The run's answer in words: one sentence per finalist and twin, or why there is none.

    Args:
        comparison: A comparison (`comparison_frame` or `read_comparison`).

    Returns:
        The sentences (`attn_search.stats.sentence`), finalists in rank order.
    """
    if not len(comparison) or "section" not in comparison.columns:
        return ["No comparison: the run has no finalists yet."]
    twins = comparison[
        (comparison["section"] == "finalist") & (comparison["family"] != "attention")
    ]
    if not len(twins):
        return [
            "No comparison: no finalist was retrained beside its twins (run with --finalists 1 "
            "or more, and at least one complete attention trial)."
        ]
    finalists = comparison[comparison["section"] == "finalist"]
    # A twin row's own placement is its own model's ("none" for plain): name attention's.
    where = {
        (r["finalist"], r["trial_id"]): r["placement"]
        for r in finalists[finalists["family"] == "attention"].to_dict("records")
    }
    return [
        stats.sentence({**row, "placement": where.get((row["finalist"], row["trial_id"]))})
        for row in twins.to_dict("records")
    ]

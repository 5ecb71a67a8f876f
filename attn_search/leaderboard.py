"""Trial records -> pandas -> `leaderboard.csv` and `comparison.csv`, and back.

A *trial record* is the plain dict the runner hands an engine after each trial (see
`attn_search.runner`); the leaderboard is one row per record. The comparison summarises the
leaderboard per family and per placement, and, for the finalists retrained with several seeds,
sets each attention model's test accuracy against its plain and matched twins on the same
seeds (paired difference and paired t-test).

pandas is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from attn_search.comparison import COMPARISON_COLUMNS, comparison_frame
from attn_search.errors import RunDirError
from attn_search.formatting import as_float, frame_cells, placement_label, text_table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "LEADERBOARD_FILE",
    "COMPARISON_FILE",
    "LEADERBOARD_COLUMNS",
    "COMPARISON_COLUMNS",
    "records_to_frame",
    "comparison_frame",
    "write_table",
    "read_leaderboard",
    "read_comparison",
    "format_table",
    "placement_label",
]

LEADERBOARD_FILE = "leaderboard.csv"
COMPARISON_FILE = "comparison.csv"

#: The leaderboard's fixed columns, in order; `gamma_<i>` (one per attention layer) follow
#: `train_seconds`, and one column per hyperparameter (its name) follows `gamma_*`.
LEADERBOARD_COLUMNS = (
    "trial_id",
    "status",
    "family",
    "placement",
    "best_val_accuracy",
    "best_val_loss",
    "epochs",
    "params",
    "train_seconds",
    "still_improving",
    "seed",
    "twin_of",
    "engine",
    "error",
)
_HEAD = LEADERBOARD_COLUMNS[:9]  # before gamma_* and the hyperparameters
_TAIL = LEADERBOARD_COLUMNS[9:]

_STATUS_ORDER = {"complete": 0, "skipped": 1, "pruned": 2, "failed": 3}
_TEXT = ("status", "family", "placement", "engine", "error", "section", "verdict")


def records_to_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial record, best first.

    Rows are sorted by status (complete, skipped, pruned, failed), then best validation
    accuracy (highest first), then trial id.

    Args:
        records: Trial records, as `Engine.records()` returns them.

    Returns:
        A DataFrame with `LEADERBOARD_COLUMNS`, `gamma_0 ...` and one column per
        hyperparameter.
    """
    import pandas as pd

    rows, hp_names, n_gamma = [], [], 0
    for rec in records:
        row = {
            "trial_id": rec.get("trial_id"),
            "status": rec.get("status") or "failed",
            "family": rec.get("family"),
            "placement": placement_label(rec.get("placements", rec.get("placement"))),
            "best_val_accuracy": as_float(rec.get("best_val_accuracy")),
            "best_val_loss": as_float(rec.get("best_val_loss")),
            "epochs": rec.get("epochs"),
            "params": rec.get("params"),
            "train_seconds": as_float(rec.get("train_seconds")),
            "seed": rec.get("seed"),
            "twin_of": rec.get("twin_of"),
            "engine": rec.get("engine"),
            "still_improving": rec.get("still_improving"),
            "error": rec.get("error") or "",
        }
        gammas = rec.get("gammas") or []
        n_gamma = max(n_gamma, len(gammas))
        for i, g in enumerate(gammas):
            row[f"gamma_{i}"] = as_float(g)
        for name, value in (rec.get("hp") or {}).items():
            if name in row or name.startswith("gamma_"):
                continue  # e.g. "family" in an auto hypermodel: the column already says it
            if name not in hp_names:
                hp_names.append(name)
            row[name] = value
        rows.append(row)
    columns = [*_HEAD, *(f"gamma_{i}" for i in range(n_gamma)), *sorted(hp_names), *_TAIL]
    df = pd.DataFrame(rows, columns=columns)
    if len(df):
        order = df["status"].map(_STATUS_ORDER).fillna(9)
        acc = df["best_val_accuracy"].astype(float).fillna(-1.0)
        df = (
            df.assign(_o=order, _a=-acc)
            .sort_values(["_o", "_a", "trial_id"], kind="stable")
            .drop(columns=["_o", "_a"])
            .reset_index(drop=True)
        )
    integers = [n for n in hp_names if _all_integers(r.get(n) for r in rows)]
    for col in ("trial_id", "epochs", "params", "seed", "twin_of", *integers):
        df[col] = pd.array(df[col], dtype="Int64")
    return df


def _all_integers(values: Iterable[Any]) -> bool:
    """Whether the values are integers or missing, with at least one integer (an Int64 column:
    8, not 8.0, in the CSV)."""
    import numbers

    found = False
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return False
        found = True
    return found


def write_table(df: pd.DataFrame, path: os.PathLike | str) -> pathlib.Path:
    """Writes `df` as CSV atomically: a temporary file in the same folder, then a rename.

    A reader (or a run killed mid-write) sees the old table or the new one, never half.
    """
    from attn_search._atomic import atomic_path

    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _read(run_dir: os.PathLike | str, name: str, int_columns: tuple[str, ...]) -> pd.DataFrame:
    """Reads `name` from a run folder, with `int_columns` as nullable integers."""
    import pandas as pd

    path = pathlib.Path(run_dir) / name
    if not pathlib.Path(run_dir).is_dir():
        raise RunDirError(
            f"`run_dir` must be a run folder (one `attn-search run` wrote). "
            f"Received: run_dir={str(run_dir)!r}, which is not a folder"
        )
    if not path.is_file():
        raise RunDirError(
            f"`run_dir` must be a run folder (one `attn-search run` wrote); it has no {name}. "
            f"Received: run_dir={str(run_dir)!r}"
        )
    try:
        df = pd.read_csv(path, dtype={c: "string" for c in _TEXT}, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise RunDirError(
            f"{name} in `run_dir` is empty. Received: run_dir={str(run_dir)!r}"
        ) from None
    for col in _TEXT:
        if col in df.columns:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    if "error" in df.columns:
        df["error"] = df["error"].fillna("")
    if name == LEADERBOARD_FILE:
        int_columns += _integer_hyperparameters(df, path)
    for col in int_columns:
        if col in df.columns:
            df[col] = _pd_int(df[col])
    return df


def _integer_hyperparameters(df: pd.DataFrame, path: pathlib.Path) -> tuple[str, ...]:
    """The hyperparameter columns of leaderboard.csv written as integers (`8`, or empty).

    pandas reads an integer column with gaps as floats; the CSV's text tells an integer
    hyperparameter (`8`) from a float one that happens to be whole (`2.0`).
    """
    import pandas as pd

    numeric = [
        c
        for c in df.columns
        if c not in LEADERBOARD_COLUMNS
        and not str(c).startswith("gamma_")
        and df[c].dtype.kind in "if"
        and df[c].notna().any()
    ]
    if not numeric:
        return ()
    text = pd.read_csv(path, dtype=str, usecols=numeric)
    return tuple(c for c in numeric if text[c].dropna().str.fullmatch(r"-?\d+").all())


def read_leaderboard(run_dir: os.PathLike | str) -> pd.DataFrame:
    """Reads a run's `leaderboard.csv` (best trial first).

    Args:
        run_dir: The run folder.

    Returns:
        The leaderboard DataFrame (see `records_to_frame` for its columns).

    Raises:
        RunDirError: `run_dir` is not a folder or holds no leaderboard.csv.
    """
    return _read(run_dir, LEADERBOARD_FILE, ("trial_id", "epochs", "params", "seed", "twin_of"))


def read_comparison(run_dir: os.PathLike | str) -> pd.DataFrame:
    """Reads a run's `comparison.csv` (see `comparison_frame` for its columns).

    Raises:
        RunDirError: `run_dir` is not a folder or holds no comparison.csv.
    """
    df = _read(
        run_dir, COMPARISON_FILE, ("finalist", "trial_id", "trials", "complete", "repeats", "pairs")
    )
    if "placement" in df.columns:
        df["placement"] = df["placement"].fillna("")
    return df


def _pd_int(series: pd.Series) -> Any:
    import pandas as pd

    return pd.array(pd.to_numeric(series, errors="coerce"), dtype="Int64")


#: The leading columns a terminal shows (the leaderboard's fixed columns up to train_seconds).
SUMMARY_COLUMNS = LEADERBOARD_COLUMNS[: LEADERBOARD_COLUMNS.index("train_seconds") + 1]


def format_table(df: pd.DataFrame, top: int | None = None, *, max_width: int = 48) -> str:
    """Renders a leaderboard or comparison as a fixed-width text table.

    Numbers are rounded (accuracies and losses to 4 places, seconds to 1, p-values to 3
    significant digits); missing values show as `-`; long text is cut to `max_width`.
    Columns that are empty in every shown row are left out. Cells and layout come from
    `attn_search.formatting`.

    Args:
        df: A leaderboard, a comparison, or any DataFrame.
        top: Show only the first `top` rows. Defaults to `None` (all).
        max_width: The widest a cell may be. Defaults to 48.

    Returns:
        The table as a string (no trailing newline); `"(no rows)"` for an empty table.

    Example:

    >>> import pandas as pd
    >>> print(format_table(pd.DataFrame({"trial_id": [1], "best_val_accuracy": [0.91234]})))
    trial_id  best_val_accuracy
           1             0.9123
    """
    if top is not None:
        df = df.head(int(top))
    if not len(df):
        return "(no rows)"
    if "error" in df.columns and not df["error"].fillna("").astype(str).str.len().any():
        df = df.drop(columns=["error"])
    if {"trial_id", "best_val_accuracy", "status"} <= set(df.columns) and "section" not in df:
        # A leaderboard: the essentials, then gammas and hyperparameters, error last.
        lead = [c for c in SUMMARY_COLUMNS if c in df.columns]
        rest = [c for c in df.columns if c not in lead and c not in ("engine", "seed", "twin_of")]
        df = df[lead + rest]
    columns, rows = frame_cells(df, max_width=max_width)
    keep = [
        i
        for i, c in enumerate(columns)
        if c in ("trial_id", "family", "status") or any(row[i] != "-" for row in rows)
    ]
    return text_table([columns[i] for i in keep], ([row[i] for i in keep] for row in rows))

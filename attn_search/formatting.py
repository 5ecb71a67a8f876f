"""Tables as text: one cell formatter and two renderers (fixed-width text and markdown).

The CLI's listings and `attn-search leaderboard`, `attn_search.leaderboard.format_table` and
the report all render cells and tables here, so a number reads the same everywhere.

pandas is not imported here: a value from pandas (`pd.NA`, a NumPy float) is recognised
through the pandas module already loaded by whoever made it.

Example:

>>> print(text_table(["name", "size"], [["digits", "1797"], ["cifar10", "60000"]]))
name      size
digits    1797
cifar10  60000
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "as_float",
    "is_finite",
    "mask_url",
    "format_cell",
    "is_missing",
    "is_number_cell",
    "text_table",
    "markdown_table",
    "records_table",
    "frame_cells",
    "placement_label",
    "point_label",
]

#: Words in a column name that mark a measured quantity: its floats always keep decimals.
_MEASURED = ("accuracy", "loss", "gamma", "diff", "seconds")


def as_float(value: Any) -> float:
    """`value` as a float; NaN for `None` or anything that is not a number."""
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def is_finite(value: Any) -> bool:
    """Whether `value` is a finite number (`None`, NaN, text: no)."""
    return math.isfinite(as_float(value))


def is_missing(value: Any) -> bool:
    """Whether `value` is `None`, NaN, or pandas' `NA` / `NaT`."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    pd = sys.modules.get("pandas")  # a pandas missing value implies pandas is loaded
    if pd is None:
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays and other non-scalars
        return False


def format_cell(
    value: Any,
    column: str = "",
    *,
    missing: str = "-",
    significant: int | None = None,
    max_width: int | None = None,
    yes_no: bool = False,
    markdown: bool = False,
) -> str:
    """Renders one table cell as text.

    Floats are rounded by what their column measures, unless `significant` is given: p-values
    (`p_value`) to 3 significant digits; seconds (`*seconds`) to 1 place; accuracies, losses,
    gammas and differences to 4 places (3 significant digits when very large or small); an
    integral float in any other column (an integer column with gaps, read back as floats) as
    an integer. A tuple or list (a shape) is joined with `x`: `(8, 8, 1)` -> `8x8x1`.

    Args:
        value: The value.
        column: The column's name (chooses the float rounding). Defaults to `""`.
        missing: The text of a missing value (`None`, NaN, `pd.NA`). Defaults to `"-"`.
        significant: Round every float to this many significant digits instead. Defaults to
            `None` (by column).
        max_width: Cut longer text to this width, ending in `...`. Defaults to `None`.
        yes_no: Booleans as `yes` / `no` instead of `True` / `False`. Defaults to `False`.
        markdown: Escape `|` for a markdown table cell. Defaults to `False`.

    Returns:
        The text, on one line.

    Example:

    >>> format_cell(0.912345, "best_val_accuracy"), format_cell(8.0, "filters")
    ('0.9123', '8')
    """
    if is_missing(value):
        return missing
    if isinstance(value, bool):
        text = ("yes" if value else "no") if yes_no else str(value)
    elif isinstance(value, float):
        text = f"{value:.{significant}g}" if significant else _float_text(value, column)
    elif isinstance(value, (tuple, list)):
        text = "x".join(str(v) for v in value)
    else:
        text = str(value).replace("\n", " ")
    if max_width is not None and len(text) > max_width:
        text = text[: max_width - 3] + "..."
    return text.replace("|", "\\|") if markdown else text


def _float_text(value: float, column: str) -> str:
    if column == "p_value":
        return f"{value:.3g}"
    if column.endswith("seconds"):
        return f"{value:.1f}"
    if value.is_integer() and abs(value) < 1e9 and not any(m in column for m in _MEASURED):
        return str(int(value))  # an int column with gaps (NaN) reads back as float
    if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4f}"


def is_number_cell(text: str) -> bool:
    """Whether a rendered cell reads as a number (or is the missing mark `-`)."""
    if text == "-":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def text_table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], *, align_numbers: bool = True
) -> str:
    """A fixed-width text table: columns two spaces apart, no trailing spaces.

    Args:
        columns: The header.
        rows: The rendered cells, one sequence per row (see `format_cell`).
        align_numbers: Right-align the columns whose every cell is a number. Defaults to
            `True`; `False` left-aligns everything.

    Returns:
        The table as a string, without a trailing newline.
    """
    columns = [str(c) for c in columns]
    body = [list(row) for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in body)]) for i, c in enumerate(columns)]
    right = [
        align_numbers and all(is_number_cell(row[i]) for row in body) for i in range(len(columns))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = (
            text.rjust(width) if r else text.ljust(width)
            for text, width, r in zip(cells, widths, right, strict=True)
        )
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), *(line(row) for row in body)])


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown (GitHub) table, as lines: header, separator, one line per row.

    Args:
        columns: The header (escaped here).
        rows: The rendered cells (see `format_cell(..., markdown=True)`).
    """
    header = [format_cell(str(c), markdown=True) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def frame_cells(df: Any, **options: Any) -> tuple[list[str], list[list[str]]]:
    """A DataFrame's header and its cells rendered by `format_cell(value, column, **options)`.

    Returns:
        `(columns, rows)`, ready for `text_table` or `markdown_table`.
    """
    columns = [str(c) for c in df.columns]
    cells = [
        [format_cell(v, c, **options) for v in df[name].tolist()]
        for c, name in zip(columns, df.columns, strict=True)
    ]
    return columns, [list(row) for row in zip(*cells, strict=True)]


def records_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A left-aligned text table of dicts (e.g. `attn-search datasets`), without pandas.

    Args:
        rows: One dict per row.
        columns: The columns wanted, in order; those no row has are left out (all of the
            first row's keys when none is present).

    Returns:
        The table, or `"(none)"` when there are no rows.
    """
    if not rows:
        return "(none)"
    columns = [c for c in columns if any(c in r for r in rows)] or list(rows[0])
    body = [[format_cell(r.get(c), missing="", yes_no=True) for c in columns] for r in rows]
    return text_table(columns, body, align_numbers=False)


def placement_label(placements: Any) -> str:
    """`[1, 2]` -> `"1+2"`; an empty list or `None` -> `"none"` (no attention layer)."""
    if placements is None:
        return "none"
    if isinstance(placements, str):
        return placements
    items = [str(p) for p in placements]
    return "+".join(items) if items else "none"


def point_label(name: str, shape: Any) -> str:
    """A backbone's attention point and its resolution: `"conv3_block4_out (8x8)"`."""
    height, width = shape[:2]
    return f"{name} ({height}x{width})"


def mask_url(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    if ":" in credentials:
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# --- helpers ----------------------------------------------------------------------------------

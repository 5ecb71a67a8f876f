"""attn_search.formatting: one cell formatter, a text and a markdown renderer; integer columns."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

from attn_search.formatting import (
    format_cell,
    frame_cells,
    markdown_table,
    records_table,
    text_table,
)
from attn_search.leaderboard import format_table, read_leaderboard, records_to_frame, write_table


@pytest.mark.parametrize(
    "value, column, options, text",
    [
        (None, "x", {}, "-"),
        (math.nan, "best_val_accuracy", {}, "-"),
        (pd.NA, "params", {}, "-"),
        (None, "x", {"missing": ""}, ""),
        (0.912345, "best_val_accuracy", {}, "0.9123"),
        (0.0004321, "diff_mean", {}, "0.000432"),
        (12345.678, "best_val_loss", {}, "1.23e+04"),
        (0.0123456, "p_value", {}, "0.0123"),
        (4.87123, "train_seconds", {}, "4.9"),
        (8.0, "attention/0/filters", {}, "8"),
        (2.0, "gamma_0", {}, "2.0000"),
        (0.912345, "best val accuracy", {"significant": 4}, "0.9123"),
        (0.9, "best val accuracy", {"significant": 4}, "0.9"),
        (True, "x", {}, "True"),
        (False, "download", {"yes_no": True}, "no"),
        ((8, 8, 1), "shape", {}, "8x8x1"),
        ("two\nlines", "error", {}, "two lines"),
        ("a" * 10, "error", {"max_width": 8}, "aaaaa..."),
        ("a|b", "x", {"markdown": True}, "a\\|b"),
        (1797, "size", {}, "1797"),
    ],
)
def test_format_cell(value, column, options, text):
    assert format_cell(value, column, **options) == text


def test_text_table_aligns_numbers_right_and_strips_trailing_spaces():
    rows = [["digits", "1797", "x"], ["cifar10", "60000", ""]]
    assert text_table(["name", "size", "note"], rows) == (
        "name      size  note\ndigits    1797  x\ncifar10  60000"
    )
    assert text_table(["name", "size"], [r[:2] for r in rows], align_numbers=False) == (
        "name     size\ndigits   1797\ncifar10  60000"
    )


def test_markdown_table():
    assert markdown_table(["a|b", "c"], [["1", "x"]]) == ["| a\\|b | c |", "|---|---|", "| 1 | x |"]


def test_frame_cells_renders_by_column():
    df = pd.DataFrame({"trial_id": pd.array([1, None], dtype="Int64"), "loss": [0.5, math.nan]})
    assert frame_cells(df) == (["trial_id", "loss"], [["1", "0.5000"], ["-", "-"]])


def test_records_table():
    rows = [{"name": "digits", "shape": (8, 8, 1), "download": False}, {"name": "cifar10"}]
    assert records_table(rows, ["name", "shape", "download", "absent"]) == (
        "name     shape  download\ndigits   8x8x1  no\ncifar10"
    )
    assert records_table([], ["name"]) == "(none)"


def test_format_table_keeps_its_layout():
    df = pd.DataFrame(
        {
            "trial_id": [3, 1],
            "status": ["complete", "failed"],
            "best_val_accuracy": [0.91234, math.nan],
            "empty": [None, None],
            "error": ["", "boom"],
        }
    )
    assert format_table(df) == (
        "trial_id  status    best_val_accuracy  error\n"
        "       3  complete             0.9123\n"
        "       1  failed                    -  boom"
    )
    assert format_table(df.head(0)) == "(no rows)"


def _record(trial_id, hp):
    return {"trial_id": trial_id, "status": "complete", "family": "attention", "hp": hp}


def test_integer_hyperparameters_are_written_and_read_as_integers(tmp_path):
    """A missing value in an integer column must not turn 8 into 8.0 in leaderboard.csv."""
    records = [
        _record(0, {"attention/0/filters": 8, "growth": 2.0, "heads": 2, "act": "relu"}),
        _record(1, {"growth": 1.5, "heads": 4}),  # no attention filters (a baseline)
        _record(2, {"attention/0/filters": 16, "growth": 2.0, "heads": 1, "flag": True}),
    ]
    board = records_to_frame(records)
    assert str(board["attention/0/filters"].dtype) == "Int64"
    assert str(board["heads"].dtype) == "Int64"
    assert str(board["growth"].dtype) == "float64"  # a float hyperparameter stays float
    assert board["flag"].dtype == object  # booleans are not integers

    path = write_table(board, tmp_path / "leaderboard.csv")
    text = path.read_text().splitlines()
    header = text[0].split(",")
    filters = [line.split(",")[header.index("attention/0/filters")] for line in text[1:]]
    growth = [line.split(",")[header.index("growth")] for line in text[1:]]
    assert sorted(filters) == ["", "16", "8"]
    assert sorted(growth) == ["1.5", "2.0", "2.0"]

    back = read_leaderboard(tmp_path)
    assert str(back["attention/0/filters"].dtype) == "Int64"
    assert str(back["heads"].dtype) == "Int64"
    assert str(back["growth"].dtype) == "float64"
    filters = back.set_index("trial_id")["attention/0/filters"]
    assert (filters[0], filters[2], filters[1] is pd.NA) == (8, 16, True)


def test_importing_formatting_and_leaderboard_stays_cheap():
    script = (
        "import sys, attn_search.formatting, attn_search.leaderboard;"
        "print(sorted(m for m in ('pandas', 'numpy', 'scipy') if m in sys.modules))"
    )
    # attn_search/__init__ may import Keras; load the two modules without it.
    code = (
        "import importlib.util, sys, types; pkg = types.ModuleType('attn_search');"
        "pkg.__path__ = [__import__('pathlib').Path(importlib.util.find_spec('attn_search')"
        ".origin).parent.as_posix()]; sys.modules['attn_search'] = pkg;" + script
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://ada:s3cret@db/attn", "postgresql://ada:***@db/attn"),
        ("mysql://root:p@ss@host:3306/x", "mysql://root:***@host:3306/x"),
        ("postgresql://ada@db/attn", "postgresql://ada@db/attn"),  # no password
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url_hides_the_password_only(url, shown):
    from attn_search.formatting import mask_url

    assert mask_url(url) == shown


def test_run_config_writes_the_storage_password_masked():
    from attn_search.runner import RunConfig

    config = RunConfig(storage="postgresql://ada:s3cret@db/attn")
    assert config.to_dict()["storage"] == "postgresql://ada:***@db/attn"
    assert config.storage == "postgresql://ada:s3cret@db/attn"  # the run still connects with it

"""A run's report: ``report.html`` and ``report.md``, with matplotlib figures beside them.

Example:

```python
from attn_search.report import write_report

path = write_report("results/digits-20260101-120000")   # -> .../report.md (and report.html)
```

Both files hold the same text, tables and figures (PNG files in the run folder, linked by
relative name, so the folder opens from disk or from a copy): the run's status, times and
settings; the verdict (a forest plot of each finalist's paired difference to its twins, beside
the verdict sentences); the finalists' test accuracy per seed; attention against its baselines
(``comparison.csv``); validation accuracy by family and placement; accuracy against parameter
count and training time; the optimisation history; the learned gamma of every attention layer;
the best model's attention maps on a few validation images; the best trials; the versions.
It can be written for a finished, running or interrupted run: a part whose data is not there
yet (or a figure that cannot be drawn) is replaced by one sentence saying what is missing. The
run folder is read through `attn_search.runfolder.RunFolder` and its schema (`RUN_SCHEMA`).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from attn_search import _report_plots as plots
from attn_search._atomic import write_text_atomic
from attn_search._report_attention import model_sections
from attn_search._report_doc import Document
from attn_search._report_trials import trial_sections
from attn_search.formatting import format_cell, frame_cells, is_finite
from attn_search.runfolder import RunFolder

__all__ = ["write_report"]

#: run.json's timings (`RUN_SCHEMA`), in the order the "Run" table shows them.
_TIMINGS = ("search_seconds", "finalists_seconds", "total_seconds")
#: The leaderboard columns of the "best trials" table (gamma_* follow).
_TOP_COLUMNS = (
    "trial_id",
    "family",
    "placement",
    "status",
    "best_val_accuracy",
    "best_val_loss",
    "params",
    "epochs",
    "train_seconds",
)
_NO_COMPARISON = "No comparison.csv yet (the run has not reached its finalists)."
_FAMILY_ORDER = {"attention": 0, "plain": 1, "matched": 2}


def write_report(
    run_dir: str | os.PathLike | Any,
    *,
    images: Any = None,
    num_images: int = 3,
    top: int = 10,
) -> pathlib.Path:
    """Writes ``report.html``, ``report.md`` and their figures into a run folder.

    Args:
        run_dir: a run folder written by `attn_search.run_search`, or a `RunResult`.
        images: float32 images, `(N, H, W, C)`, for the attention maps. Defaults to `None`: the
            first validation images of the run's dataset (as config.yaml describes it).
        num_images: how many images the attention maps show. Defaults to 3.
        top: how many trials the "best trials" table shows. Defaults to 10.

    Returns:
        The path of ``report.md`` (``report.html`` is beside it).

    Raises:
        RunDirError: `run_dir` does not exist or is not a run folder.
    """
    folder = RunFolder.existing(run_dir)
    config = folder.read_config() or {}
    info = folder.read_run_info()
    board = folder.read_table("leaderboard")
    comparison = folder.read_table("comparison")
    runs = folder.read_finalists()

    doc = Document(f"attn-search report: {folder.path.name}")
    _settings_section(doc, config, info)
    _verdict_section(doc, folder, comparison)
    _finalists_section(doc, folder, runs)
    _comparison_section(doc, comparison)
    _families_section(doc, folder, board)
    trial_sections(doc, folder, board)
    model_sections(doc, folder, config, images, num_images)
    _top_section(doc, board, top)
    _versions_section(doc, info)
    write_text_atomic(folder.report_path("report.html"), doc.to_html())
    path = folder.report_path("report.md")
    write_text_atomic(path, doc.to_markdown())
    return path


# --------------------------------------------------------------------------- helpers
def _cells(df: Any) -> tuple[list[str], list[list[str]]]:
    """A DataFrame's cells: floats to 4 significant digits, missing cells empty."""
    return frame_cells(df, missing="", significant=4)


def _has(board: Any, *columns: str) -> bool:
    return board is not None and len(board) > 0 and all(c in board.columns for c in columns)


def _placement_words(family: str, placement: Any) -> str:
    text = format_cell(placement)
    if family != "attention" and text == "none":
        return family
    return f"{family} @ {text}"


# --------------------------------------------------------------------------- sections
def _settings_section(doc: Document, config: dict, info: dict) -> None:
    """The run's state from run.json (`RUN_SCHEMA`), then its settings from config.yaml."""
    rows = _run_rows(info)
    for key, value in config.items():
        if not isinstance(value, (dict, list)):
            rows.append((key, format_cell(value, missing="None")))
        elif key in ("dataset", "space", "engine") and isinstance(value, dict):
            name = value.get("name") or value.get("spec") or value.get("source")
            if name is not None:
                rows.append((key, format_cell(name)))
    for key, value in (config.get("budget") or {}).items():
        if not isinstance(value, (dict, list)) and value is not None:
            rows.append((f"budget.{key}", format_cell(value)))
    doc.heading(2, "Run")
    if not rows:
        doc.note("No run.json or config.yaml yet: the run's settings and state are unknown.")
        return
    doc.table(["setting", "value"], rows)


def _run_rows(info: dict) -> list[tuple[str, str]]:
    """run.json's status, times, trial counts and best trial, as (setting, cell) rows."""
    from attn_search.engines import STATUSES
    from attn_search.leaderboard import placement_label

    rows = []
    if info.get("status"):
        rows.append(("status", format_cell(info["status"])))
    sessions = [s for s in info.get("sessions") or [] if isinstance(s, dict)]
    if sessions and sessions[0].get("started_at"):
        rows.append(("started_at", format_cell(sessions[0]["started_at"])))
    if info.get("updated_at"):
        rows.append(("updated_at", format_cell(info["updated_at"])))
    if len(sessions) > 1:
        rows.append(("sessions", f"{len(sessions)} (the run was resumed; times: the last)"))
    timings = info.get("timings") if isinstance(info.get("timings"), dict) else {}
    for key in _TIMINGS:
        if isinstance(timings.get(key), (int, float)):
            rows.append((key, format_cell(float(timings[key]), key)))
    counts = info.get("trials") if isinstance(info.get("trials"), dict) else {}
    if counts:
        order = sorted(counts, key=lambda k: (STATUSES.index(k) if k in STATUSES else 99, k))
        rows.append(("trials", ", ".join(f"{counts[k]} {k}" for k in order)))
    if info.get("stopped_by"):
        rows.append(("stopped_by", format_cell(info["stopped_by"])))
    best = info.get("best_trial")
    if isinstance(best, dict) and best.get("trial_id") is not None:
        text = (
            f"#{best['trial_id']} {best.get('family')}, placement "
            f"{placement_label(best.get('placements'))}, best_val_accuracy "
            f"{format_cell(best.get('best_val_accuracy'), 'best_val_accuracy')}"
        )
        rows.append(("best_trial", text))
    return rows


def _verdict_section(doc: Document, folder: RunFolder, comparison: Any) -> None:
    from attn_search.comparison import verdict_sentences

    doc.heading(2, "Verdict")
    if comparison is None or not len(comparison):
        doc.note(_NO_COMPARISON)
        return
    sentences = verdict_sentences(comparison)
    explain = (
        "Each sentence: attention minus the baseline twin, in points of test accuracy, its 95% "
        "interval, the seeds both finished, and the p-value adjusted (Holm) over every "
        "comparison of the run."
    )
    twins = _twin_rows(comparison)
    if not twins:
        doc.bullets(sentences)
        doc.para(explain)
        return
    doc.drawn_figure(
        folder.report_path("report_verdict.png"),
        plots.verdict_forest,
        twins,
        **_FIGURE_TEXT["report_verdict.png"],
        beside=sentences,
    )
    if not any(b[0] == "figure" and b[1] == "report_verdict.png" for b in doc.blocks):
        doc.bullets(sentences)
    doc.para(explain)


def _twin_rows(comparison: Any) -> list[dict]:
    if "section" not in comparison.columns:
        return []
    finalists = comparison[comparison["section"] == "finalist"]
    where = {
        (r["finalist"], r["trial_id"]): r["placement"]
        for r in finalists[finalists["family"] == "attention"].to_dict("records")
    }
    rows = []
    for r in finalists[finalists["family"] != "attention"].to_dict("records"):
        key = (r["finalist"], r["trial_id"])
        label = (
            f"finalist {format_cell(r['finalist'])} (#{format_cell(r['trial_id'])}, "
            f"@ {format_cell(where.get(key))}) vs {r['family']}, "
            f"{format_cell(r.get('pairs'))} seeds"
        )
        rows.append({**r, "label": label})
    return rows


def _finalists_section(doc: Document, folder: RunFolder, runs: list[dict]) -> None:
    doc.heading(2, "Finalists per seed")
    runs = [r for r in runs if is_finite(r.get("test_accuracy"))]
    if not runs:
        doc.note("No finalist fit recorded yet (finalists.json is missing or empty).")
        return
    groups: dict[Any, dict[str, dict]] = {}
    titles: dict[Any, str] = {}
    for run in sorted(runs, key=lambda r: (r.get("finalist"), _FAMILY_ORDER.get(r["family"], 9))):
        key = run.get("finalist")
        groups.setdefault(key, {}).setdefault(run["family"], {})[run.get("seed")] = float(
            run["test_accuracy"]
        )
        if run["family"] == "attention":
            titles[key] = (
                f"finalist {key}: trial #{run.get('trial_id')}, attention @ {run.get('placement')}"
            )
    panels = [(titles.get(k, f"finalist {k}"), by) for k, by in groups.items()]
    doc.drawn_figure(
        folder.report_path("report_finalists.png"),
        plots.finalists_paired,
        panels,
        **_FIGURE_TEXT["report_finalists.png"],
    )


def _comparison_section(doc: Document, comparison: Any) -> None:
    doc.heading(2, "Attention against its baselines")
    if comparison is None or not len(comparison):
        doc.note(_NO_COMPARISON)
        return
    doc.para(
        "From `comparison.csv`. Search rows: validation accuracy per family and placement. "
        "Finalist rows: test accuracy over repeated seeds, each baseline twin trained on the "
        "same seeds as its attention model; `diff_mean` is attention minus that baseline, paired "
        "over the seeds (positive: attention wins), with its interval, `p_adjusted` and the "
        "`verdict`."
    )
    if "section" not in comparison.columns:
        doc.table(*_cells(comparison))
        return
    titles = {"family": "By family", "placement": "By placement", "finalist": "Finalists"}
    for section, part in comparison.groupby("section", sort=False):
        part = part.drop(columns=["section"]).dropna(axis=1, how="all")
        part = part.loc[:, [c for c in part.columns if part[c].astype(str).str.len().any()]]
        doc.heading(3, titles.get(str(section), str(section)))
        doc.table(*_cells(part))


def _families_section(doc: Document, folder: RunFolder, board: Any) -> None:
    doc.heading(2, "Validation accuracy by family and placement")
    if not _has(board, "status", "family", "placement", "best_val_accuracy"):
        doc.note("No trials in leaderboard.csv yet.")
        return
    board = board.assign(placement=board["placement"].map(format_cell))
    df = board[board["status"] == "complete"]
    if not len(df):
        doc.note("No complete trial yet.")
        return
    keys = ["family", "placement"]
    label = "val accuracy"
    best, mean = f"best {label}", f"mean {label}"
    grouped = df.groupby(keys, sort=True)["best_val_accuracy"].agg(["count", "max", "mean"])
    grouped = grouped.reset_index().rename(columns={"count": "trials", "max": best, "mean": mean})
    grouped = grouped.sort_values(best, ascending=False, kind="stable")
    doc.table(*_cells(grouped))
    shown = board[board["status"].isin(["complete", "pruned"])]
    pairs = sorted(
        set(zip(shown["family"], shown["placement"], strict=True)),
        key=lambda p: (_FAMILY_ORDER.get(p[0], 9), p[1]),
    )
    groups = [(f, p, _placement_words(f, p)) for f, p in pairs]
    doc.drawn_figure(
        folder.report_path("report_families.png"),
        plots.families_strip,
        board,
        groups,
        **_FIGURE_TEXT["report_families.png"],
    )


def _top_section(doc: Document, board: Any, top: int) -> None:
    doc.heading(2, f"Best {top} trials")
    if board is None or not len(board):
        doc.note("No trials yet.")
        return
    gammas = [c for c in board.columns if str(c).startswith("gamma_")]
    columns = [c for c in (*_TOP_COLUMNS, *gammas) if c in board.columns]
    doc.para("All trials, every status, are in `leaderboard.csv`.")
    doc.table(*_cells(board[columns].head(top)))


def _versions_section(doc: Document, info: dict) -> None:
    doc.heading(2, "Versions")
    versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
    command = info.get("command")
    if not versions and not command:
        doc.note("run.json records no versions yet.")
        return
    rows = [(k, format_cell(v)) for k, v in versions.items()]
    if isinstance(command, list):
        rows.append(("command", " ".join(str(c) for c in command)))
    doc.table(["package", "version"], rows)


#: Each figure's alt text and caption (how to read it), by file name.
_FIGURE_TEXT = {
    "report_verdict.png": {
        "alt": "verdict",
        "caption": (
            "One line per finalist and twin: the dot is the mean paired difference over seeds, the "
            "bar its 95% interval; right of the dashed zero line attention is more accurate, and a "
            "bar that crosses zero is no detectable difference."
        ),
    },
    "report_finalists.png": {
        "alt": "finalists per seed",
        "caption": (
            "Each grey line joins the models trained with one seed (same data order); the black "
            "dash is the mean. Lines falling from attention to a twin: attention won on that seed."
        ),
    },
    "report_families.png": {
        "alt": "validation accuracy by family and placement",
        "caption": (
            "Each dot is one trial (hollow: pruned, stopped early); the star marks the best trial "
            "of each family; `@ k` is the block the attention layer follows (0: the first layer). "
            "The axis is zoomed to the complete trials; triangles on the bottom edge lie below it."
        ),
    },
}

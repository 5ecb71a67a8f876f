"""The report's figures over all trials of the search: accuracy against cost, the optimisation
history, and the learned gamma of every attention layer (from leaderboard.csv)."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from attn_search._report_plots import (
    ACC_LABEL,
    below_note,
    legend_statuses,
    new_figure,
    percent,
    save_figure,
    scatter_points,
    status_style,
    zoom,
)
from attn_search.formatting import format_cell, is_finite

if TYPE_CHECKING:  # pragma: no cover
    from attn_search._report_doc import Document
    from attn_search.runfolder import RunFolder

__all__ = ["gamma_strip", "history", "trade_off", "trial_sections"]


def trial_sections(doc: Document, folder: RunFolder, board: Any) -> None:
    """Accuracy against cost, the optimisation history and the learned gammas, in order."""
    _tradeoff_section(doc, folder, board)
    _history_section(doc, folder, board)
    _gamma_section(doc, folder, board)


def _has(board: Any, *columns: str) -> bool:
    return board is not None and len(board) > 0 and all(c in board.columns for c in columns)


def _tradeoff_section(doc: Document, folder: RunFolder, board: Any) -> None:
    needs = ("status", "family", "best_val_accuracy", "params", "train_seconds")
    missing = "No trials with parameter counts and training times in leaderboard.csv yet."
    _board_figure(doc, folder, board, "Accuracy against cost", needs, missing, trade_off)


def _history_section(doc: Document, folder: RunFolder, board: Any) -> None:
    needs = ("trial_id", "status", "family", "best_val_accuracy")
    missing = "No trials in leaderboard.csv yet."
    _board_figure(doc, folder, board, "Optimisation history", needs, missing, history)


_FILES = {
    "Accuracy against cost": "report_tradeoff.png",
    "Optimisation history": "report_history.png",
}


def _board_figure(doc, folder, board, title, needs, missing, draw) -> None:
    """A section with one figure of the leaderboard, or a sentence when its columns are missing."""
    doc.heading(2, title)
    if not _has(board, *needs):
        doc.note(missing)
        return
    name = _FILES[title]
    doc.drawn_figure(folder.report_path(name), draw, board, **_FIGURE_TEXT[name])


def _gamma_section(doc: Document, folder: RunFolder, board: Any) -> None:
    doc.heading(2, "Learned gamma (all trials)")
    gammas = [c for c in (board.columns if board is not None else []) if c.startswith("gamma_")]
    points = []
    if _has(board, "status", "placement") and gammas:
        for row in board[board["status"].isin(["complete", "pruned"])].to_dict("records"):
            blocks = format_cell(row["placement"]).split("+")
            for i, column in enumerate(gammas):
                if not is_finite(row.get(column)):
                    continue
                where = blocks[i] if i < len(blocks) else "?"
                group = f"after block {where}" if where != "0" else "first layer"
                group = group if where.isdigit() or where == "?" else f"after {where}"
                if len(blocks) > 1:
                    group += f"\n(of {'+'.join(blocks)})"
                init = row.get(f"attention/{i}/gamma")
                init = float(init) if is_finite(init) else math.nan
                order = (int(where) if where.isdigit() else 99, len(blocks), group)
                points.append((order, group, init, float(row[column]), row["status"]))
    if not points:
        doc.note("No attention trial with a learned gamma in leaderboard.csv yet.")
        return
    doc.drawn_figure(
        folder.report_path("report_gamma.png"),
        gamma_strip,
        [p[1:] for p in sorted(points)],
        **_FIGURE_TEXT["report_gamma.png"],
    )


# ---------------------------------------------------------------------------------- trade-off
def trade_off(board: Any, path: pathlib.Path) -> None:
    """Accuracy against parameter count and training time; each Pareto front marked."""
    fig, axes = new_figure(10.5, 4.2, ncols=2, sharey=True)
    done = board[board["status"] == "complete"]
    lo, hi = zoom(percent(done["best_val_accuracy"]))
    for ax, column, label in (
        (axes[0][0], "params", "parameters (count, log scale)"),
        (axes[0][1], "train_seconds", "training time of the trial (s, log scale)"),
    ):
        for status in ("complete", "pruned"):
            for family, part in board[board["status"] == status].groupby("family", sort=False):
                xs = [float(v) for v in part[column]]
                scatter_points(
                    ax,
                    xs,
                    percent(part["best_val_accuracy"]),
                    lo,
                    **status_style(status, str(family)),
                )
        front = _pareto(
            [
                (float(c), float(a) * 100)
                for c, a in zip(done[column], done["best_val_accuracy"], strict=True)
            ]
        )
        if front:
            xs, ys = zip(*front, strict=True)
            ax.step(
                xs, ys, where="post", color="black", lw=1, ls="--", zorder=1, label="Pareto front"
            )
            ax.scatter(xs, ys, s=110, facecolors="none", edgecolors="black", zorder=4)
        ax.set_xscale("log")
        _plain_log_ticks(ax, column == "params")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylim(lo, hi)
    below_note(axes[0][0], board, lo)
    axes[0][0].set_ylabel(ACC_LABEL)
    legend_statuses(axes[0][0], list(dict.fromkeys(board["family"])), list(board["status"]))
    fig.suptitle("Accuracy against cost (complete trials on the dashed Pareto front are circled)")
    save_figure(fig, path)


def _plain_log_ticks(ax: Any, thousands: bool) -> None:
    """Log-axis tick labels as 6k, 20k (or 7, 8 s), not 6x10^3."""
    from matplotlib.ticker import FuncFormatter

    def text(value: float, _: Any) -> str:
        return f"{value / 1000:g}k" if thousands and value >= 1000 else f"{value:g}"

    def minor(value: float, _: Any) -> str:  # 2 and 5 of each decade, to keep it readable
        lead = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        return text(value, _) if lead in (2, 5) else ""

    ax.xaxis.set_major_formatter(FuncFormatter(text))
    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(p for p in points if all(math.isfinite(v) for v in p)):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


# ------------------------------------------------------------------------------------ history
def history(board: Any, path: pathlib.Path) -> None:
    """Each trial's accuracy by trial id; the best so far (complete trials) as a step line."""
    board = board.sort_values("trial_id")
    fig, axes = new_figure(8.5, 4.0)
    ax = axes[0][0]
    done = board[board["status"] == "complete"]
    lo, hi = zoom(percent(done["best_val_accuracy"]))
    for status in ("complete", "pruned"):
        for family, part in board[board["status"] == status].groupby("family", sort=False):
            scatter_points(
                ax,
                [float(t) for t in part["trial_id"]],
                percent(part["best_val_accuracy"]),
                lo,
                **status_style(status, str(family)),
            )
    skipped = board[board["status"] == "skipped"]
    if len(skipped):
        scatter_points(
            ax,
            [float(t) for t in skipped["trial_id"]],
            percent(skipped["best_val_accuracy"]),
            lo,
            marker="D",
            s=22,
            color="#bbb",
            zorder=2,
        )
    failed = board[board["status"] == "failed"]
    if len(failed):
        ax.scatter(
            failed["trial_id"],
            [lo] * len(failed),
            marker="x",
            color="#555",
            s=40,
            clip_on=False,
            zorder=3,
        )
    if len(done):
        ids = [float(t) for t in done["trial_id"]]
        best = list(_running_max(percent(done["best_val_accuracy"])))
        last = float(board["trial_id"].max())
        ax.step(
            [*ids, last],
            [*best, best[-1]],
            where="post",
            color="black",
            lw=1.4,
            label="best so far",
        )
    ax.set_ylim(lo, hi)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial id (order of the search)")
    ax.set_ylabel(ACC_LABEL)
    below_note(ax, board, lo)
    ax.set_title("Optimisation history: each trial, and the best complete trial so far")
    ax.grid(alpha=0.3)
    legend_statuses(ax, list(dict.fromkeys(board["family"])), list(board["status"]))
    save_figure(fig, path)


def _running_max(values: Sequence[float]):
    best = -math.inf
    for v in values:
        best = max(best, v) if math.isfinite(v) else best
        yield best


# -------------------------------------------------------------------------------------- gamma
def gamma_strip(points: Sequence[tuple[str, float, float, str]], path: pathlib.Path) -> None:
    """points: `(group label, initial gamma, learned gamma, status)`, one per attention layer."""
    groups = list(dict.fromkeys(p[0] for p in points))
    fig, axes = new_figure(max(7.0, 1.3 * len(groups) + 2.5), 4.2)
    ax = axes[0][0]
    for i, (group, init, learned, status) in enumerate(points):
        x = groups.index(group) + 0.3 * ((i * 0.618) % 1 - 0.5)
        if math.isfinite(init):
            ax.plot([x, x], [init, learned], color="#bbb", lw=1, zorder=1)
            ax.scatter([x], [init], marker="_", s=80, color="#777", zorder=2)
        ax.scatter([x], [learned], **status_style(status, "attention"))
    values = [v for p in points for v in p[1:3] if math.isfinite(v)] + [0.0]
    span = max(values) - min(values)
    ax.set_ylim(min(values) - 0.1 * span - 0.02, max(values) + 0.1 * span + 0.02)
    ax.axhline(0, color="#333", ls="--", lw=1)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xlabel("attention layer (its position in the network)")
    ax.set_ylabel("gamma, the attention branch's scale (unitless)")
    ax.set_title("Learned gamma per attention layer (grey dash: its initial value)")
    ax.grid(axis="y", alpha=0.3)
    if any(p[3] != "complete" for p in points):
        legend_statuses(ax, ["attention"], [p[3] for p in points])
    save_figure(fig, path)


#: Each figure's alt text and caption (how to read it), by file name.
_FIGURE_TEXT = {
    "report_tradeoff.png": {
        "alt": "accuracy against parameters and training time",
        "caption": (
            "Up and to the left is better: circled trials on the dashed Pareto front are the most "
            "accurate for their cost; a trial right of the front costs more for no more accuracy. "
            "Pruned trials (hollow) stopped early, so their time is partial."
        ),
    },
    "report_history.png": {
        "alt": "optimisation history",
        "caption": (
            "Trials in the order the search ran them; the black step is the best complete trial so "
            "far (flat: the search found nothing better). Hollow: pruned; x on the bottom edge: "
            "failed (see the error column of leaderboard.csv)."
        ),
    },
    "report_gamma.png": {
        "alt": "learned gamma per layer",
        "caption": (
            "gamma scales each attention branch (`y = shortcut(x) + gamma * attention`); the "
            "further a trained layer's gamma is from the dashed zero line, the more that network "
            "uses attention. Grey dash: the value it started from; hollow: pruned trials."
        ),
    },
}

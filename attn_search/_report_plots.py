"""The report's figures, drawn with matplotlib (Agg, no pyplot state): one function per figure.

Each function takes the run's data (a leaderboard DataFrame, finalist records, comparison rows)
and a path, draws one PNG there atomically, and raises when it cannot; the report turns that
into a sentence. Accuracies are drawn in percent; axes are zoomed to the trials that finished
(`zoom`), and trials below that range (pruned early) are drawn on the bottom edge as
down-pointing triangles with a count, so that a pruned trial at 10% does not squash the
differences that matter into one pixel.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

from attn_search._atomic import atomic_path
from attn_search.formatting import is_finite

__all__ = [
    "ACC_LABEL",
    "FAMILY_COLORS",
    "below_note",
    "family_color",
    "families_strip",
    "finalists_paired",
    "legend_statuses",
    "new_figure",
    "percent",
    "save_figure",
    "scatter_points",
    "status_style",
    "verdict_forest",
    "zoom",
]

FAMILY_COLORS = {"attention": "#c0392b", "plain": "#2e86c1", "matched": "#7d7d7d"}
_VERDICT_COLORS = {
    "attention better": "#1e8449",
    "baseline better": "#c0392b",
    "no detectable difference": "#34495e",
    "cannot compare": "#aaaaaa",
}
ACC_LABEL = "validation accuracy (%)"


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kw: Any):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend), and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_figure(fig: Any, path: pathlib.Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def family_color(family: Any) -> str:
    return FAMILY_COLORS.get(str(family), "#8e44ad")


def zoom(values: Sequence[float], *, pad: float = 0.6) -> tuple[float, float]:
    """An axis range around `values` (percent), padded, at least 2 points wide."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 100.0
    lo, hi = min(finite), max(finite)
    margin = max(pad, 0.12 * (hi - lo))
    lo, hi = lo - margin, hi + margin
    if hi - lo < 2.0:
        mid = (hi + lo) / 2
        lo, hi = mid - 1.0, mid + 1.0
    return max(lo, -1.0 if lo < 0 else 0.0), min(hi, 100.5)


def percent(series: Any) -> list[float]:
    return [
        float(v) * 100 if v is not None and math.isfinite(float(v)) else math.nan for v in series
    ]


def scatter_points(
    ax: Any, xs: list[float], ys: list[float], lo: float, *, below_label: bool = False, **style: Any
) -> None:
    """Scatter; points under `lo` go on the bottom edge as triangles (with a count)."""
    inside = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y) and y >= lo]
    under = [x for x, y in zip(xs, ys, strict=True) if math.isfinite(y) and y < lo]
    if inside:
        ax.scatter(*zip(*inside, strict=True), **style)
    if under:
        style = {**style, "marker": "v"}
        ax.scatter(under, [lo] * len(under), clip_on=False, **style)
        if below_label:
            ax.annotate(
                f"{len(under)} below",
                (under[0], lo),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=7,
                color="#555",
            )


def below_note(ax: Any, board: Any, lo: float) -> None:
    """Says how many trials lie below the zoomed axis (drawn as triangles on its edge)."""
    values = percent(board["best_val_accuracy"])
    under = sum(1 for v in values if math.isfinite(v) and v < lo)
    if under:
        ax.annotate(
            f"\u25bc on the bottom edge: {under} trial(s) below {lo:.1f}%",
            (0.01, 0.02),
            xycoords="axes fraction",
            fontsize=7,
            color="#555",
        )


def status_style(status: str, family: str) -> dict:
    color = family_color(family)
    if status == "complete":
        return {"color": color, "edgecolors": "white", "linewidths": 0.6, "s": 40, "zorder": 3}
    return {"facecolors": "none", "edgecolors": color, "linewidths": 1.2, "s": 36, "zorder": 2}


def legend_statuses(ax: Any, families: Sequence[str], statuses: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=family_color(f), label=f) for f in families]
    if "pruned" in statuses:
        handles.append(
            Line2D(
                [], [], ls="", marker="o", mfc="none", color="#555", label="pruned (stopped early)"
            )
        )
    if "failed" in statuses:
        handles.append(Line2D([], [], ls="", marker="x", color="#555", label="failed"))
    if "skipped" in statuses:
        handles.append(Line2D([], [], ls="", marker="D", color="#bbb", label="skipped (a repeat)"))
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)


# ------------------------------------------------------------------------------------ verdict
def verdict_forest(rows: Sequence[dict], path: pathlib.Path) -> None:
    """rows: `label`, `diff_mean`, `diff_ci_low`, `diff_ci_high`, `verdict` (0..1 scale)."""
    fig, axes = new_figure(9.0, 0.55 * len(rows) + 1.6)
    ax = axes[0][0]
    spans = [0.5]
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        mean, low, high = (row.get(k) for k in ("diff_mean", "diff_ci_low", "diff_ci_high"))
        color = _VERDICT_COLORS.get(str(row.get("verdict")), "#34495e")
        if is_finite(low) and is_finite(high):
            ax.plot([low * 100, high * 100], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            spans += [abs(low * 100), abs(high * 100)]
        if is_finite(mean):
            ax.plot([mean * 100], [y], "o", color=color, ms=8)
            spans.append(abs(mean * 100))
            text = f"{mean * 100:+.1f}"
            if is_finite(low):
                text += f" [{low * 100:+.1f}, {high * 100:+.1f}]"
            ax.annotate(
                f"{text}  {row.get('verdict')}",
                (1.0, y),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=color,
            )
    limit = max(spans) * 1.15
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(0, color="#333", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel("attention minus twin: test accuracy (percentage points)")
    ax.set_title("Verdict: each finalist against its twins (mean and 95% interval over seeds)")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


# ----------------------------------------------------------------------------------- families
def families_strip(board: Any, groups: Sequence[tuple[str, str, str]], path: pathlib.Path) -> None:
    """Every trial's validation accuracy, one column per (family, placement) group.

    groups: `(family, placement, label)` in display order.
    """
    import numpy as np

    fig, axes = new_figure(max(5.5, 1.2 * len(groups) + 2), 4.2)
    ax = axes[0][0]
    done = board[board["status"] == "complete"]
    lo, hi = zoom(percent(done["best_val_accuracy"]) or [0.0])
    rng = np.random.default_rng(0)
    best: dict[str, tuple[float, float]] = {}
    for x, (family, placement, _) in enumerate(groups):
        part = board[(board["family"] == family) & (board["placement"] == placement)]
        for status in ("complete", "pruned"):
            sub = part[part["status"] == status]
            ys = percent(sub["best_val_accuracy"])
            xs = list(x + rng.uniform(-0.15, 0.15, len(ys)))
            scatter_points(ax, xs, ys, lo, below_label=True, **status_style(status, family))
            for px, py in zip(xs, ys, strict=True):
                if status == "complete" and math.isfinite(py) and py > best.get(family, (0, -1))[1]:
                    best[family] = (px, py)
    for family, (x, y) in best.items():
        ax.scatter(
            [x],
            [y],
            marker="*",
            s=220,
            color=family_color(family),
            edgecolors="black",
            linewidths=0.8,
            zorder=4,
        )
        ax.annotate(
            f"best {family} {y:.1f}%",
            (x, y),
            xytext=(9, -3),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_ylim(lo, hi)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xticks(range(len(groups)), [g[2] for g in groups], fontsize=8)
    ax.set_xlabel("family and placement of the attention layer(s)")
    ax.set_ylabel(ACC_LABEL)
    ax.set_title("Validation accuracy of every trial, by family and placement")
    ax.grid(axis="y", alpha=0.3)
    legend_statuses(ax, list(dict.fromkeys(g[0] for g in groups)), list(board["status"]))
    save_figure(fig, path)


# ---------------------------------------------------------------------------------- finalists
def finalists_paired(groups: Sequence[tuple[str, dict]], path: pathlib.Path) -> None:
    """groups: `(title, {family: {seed: test_accuracy}})`, one panel per finalist."""
    fig, axes = new_figure(
        max(6.5, min(4.2 * len(groups), 12) + 0.6), 4.0, ncols=len(groups), sharey=True
    )
    values = [v * 100 for _, by in groups for seeds in by.values() for v in seeds.values()]
    lo, hi = zoom(values)
    for ax, (title, by) in zip(axes[0], groups, strict=True):
        families = list(by)
        seeds = sorted({s for fam in by.values() for s in fam})
        for seed in seeds:
            ys = [by[f].get(seed, math.nan) * 100 for f in families]
            ax.plot(range(len(families)), ys, color="#999", lw=1, zorder=1)
        for x, family in enumerate(families):
            ys = [v * 100 for v in by[family].values()]
            ax.scatter(
                [x] * len(ys),
                ys,
                color=family_color(family),
                s=36,
                zorder=3,
                edgecolors="white",
                linewidths=0.6,
            )
            if ys:
                ax.plot([x - 0.22, x + 0.22], [sum(ys) / len(ys)] * 2, color="black", lw=2)
        ax.set_xticks(range(len(families)), families)
        ax.set_xlim(-0.5, len(families) - 0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("model (same seeds)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylim(lo, hi)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle("Finalists' test accuracy per seed (a grey line joins one seed's models)")
    save_figure(fig, path)

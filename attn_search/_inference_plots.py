"""The picture `attn_search.inference.explain` draws: one attention head on one image."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np

from attn_search._atomic import atomic_path

_HEAT = "magma"
_MARKERS = "123456789"


def query_positions(grid: tuple[int, int], n: int) -> list[tuple[int, int]]:
    """`n` query cells spread along the diagonal of a (H, W) grid, without repeats."""
    height, width = grid
    cells = []
    for k in range(n):
        fraction = (k + 1) / (n + 1)
        cell = (min(height - 1, int(fraction * height)), min(width - 1, int(fraction * width)))
        if cell not in cells:
            cells.append(cell)
    return cells


def attention_figure(
    image: np.ndarray,
    scores: np.ndarray,
    *,
    grid: tuple[int, int],
    kv_pool: int,
    queries: int,
    title: str,
    path: pathlib.Path,
) -> None:
    """Writes one head's attention on one image as a PNG (atomically).

    Panels: the image with the query cells marked; the mean attention over every query; then
    each marked query's attention. Every map is drawn over a grey copy of the image, in image
    pixels, on one colour scale from the smallest weight shown to the largest, with uniform
    attention marked on it.

    Args:
        image: (H, W, C) float in [0, 1].
        scores: (Hq*Wq, Hk*Wk) one head's attention; each row sums to 1.
        grid: (Hq, Wq), the layer's feature map (the query grid).
        kv_pool: the layer's pooling of keys: Hk = ceil(Hq / kv_pool).
        queries: how many query cells to mark.
        title: the figure's title.
        path: the PNG to write.
    """
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    hq, wq = grid
    hk, wk = math.ceil(hq / kv_pool), math.ceil(wq / kv_pool)
    if scores.shape != (hq * wq, hk * wk):
        raise ValueError(
            f"`scores` must have shape {(hq * wq, hk * wk)} for grid={grid} and "
            f"kv_pool={kv_pool}. Received: scores.shape={scores.shape}"
        )
    cells = query_positions(grid, queries)
    maps = [scores.mean(axis=0)] + [scores[r * wq + c] for r, c in cells]
    maps = [m.reshape(hk, wk) for m in maps]
    # One scale for every panel, from the smallest weight shown to the largest: attention
    # often differs from uniform by a few percent, which a 0-based scale would hide.
    vmin = min(float(m.min()) for m in maps)
    vmax = max(float(m.max()) for m in maps)
    vmax = vmax if vmax > vmin else vmin + 1e-6
    uniform = 1.0 / (hk * wk)
    # One feature cell spans (sy, sx) image pixels; a key cell spans kv_pool feature cells.
    sy, sx = height / hq, width / wq
    key_extent = (-0.5, -0.5 + wk * kv_pool * sx, -0.5 + hk * kv_pool * sy, -0.5)
    points = [((c + 0.5) * sx - 0.5, (r + 0.5) * sy - 0.5) for r, c in cells]
    grey = image.mean(axis=-1)

    panels = 2 + len(cells)
    fig = Figure(figsize=(2.6 * panels + 1.0, 3.9), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _show_image(axes[0], image)
    axes[0].set_title("input, queries marked", fontsize=9)
    for k, (x, y) in enumerate(points):
        _mark(axes[0], x, y, _MARKERS[k % len(_MARKERS)])
    heat = None
    for i, (ax, values) in enumerate(zip(axes[1:], maps, strict=True)):
        ax.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        heat = ax.imshow(
            values,
            cmap=_HEAT,
            vmin=vmin,
            vmax=vmax,
            alpha=0.75,
            extent=key_extent,
            interpolation="nearest",
        )
        if i == 0:
            ax.set_title("mean over all queries", fontsize=9)
        else:
            x, y = points[i - 1]
            _mark(ax, x, y, _MARKERS[(i - 1) % len(_MARKERS)])
            ax.set_title(f"query {i} (row {cells[i - 1][0]}, col {cells[i - 1][1]})", fontsize=9)
    for ax in axes:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_xlabel("x (pixels)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("y (pixels)", fontsize=8)
    bar = fig.colorbar(heat, ax=list(axes[1:]), shrink=0.8, label="attention weight")
    if vmin <= uniform <= vmax:
        bar.ax.axhline(uniform, color="cyan", linewidth=1.5)
    fig.suptitle(title, fontsize=10)
    pooled = f", keys pooled {kv_pool}x{kv_pool}" if kv_pool > 1 else ""
    fig.text(
        0.5,
        0.0,
        f"How to read: brighter = more attention from the marked query cell to that place. "
        f"Queries on a {hq}x{wq} feature grid, keys on a {hk}x{wk} grid{pooled}; each query's "
        f"weights sum to 1 (uniform: {uniform:.3g} per key cell, the cyan line on the scale).",
        ha="center",
        va="bottom",
        fontsize=7,
        wrap=True,
    )
    fig.get_layout_engine().set(rect=(0, 0.07, 1, 0.93))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _show_image(ax: Any, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")


def _mark(ax: Any, x: float, y: float, label: str) -> None:
    ax.plot([x], [y], marker="x", markersize=9, markeredgewidth=2.5, color="cyan")
    ax.annotate(
        label,
        (x, y),
        xytext=(5, 5),
        textcoords="offset points",
        color="cyan",
        fontsize=9,
        fontweight="bold",
    )

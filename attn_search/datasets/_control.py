"""The colour-lookup control: `make_lookup`, a task that needs content-based lookup far away.

A function of its arguments and seed alone: numpy only, no download, no TensorFlow.
"""

from __future__ import annotations

import numpy as np

from attn_search.errors import DatasetError

# The four bars, one per class, each three pixels in a 3x3 cell: the same mass, the same extent.
BARS = np.array(
    [
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],  # horizontal
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],  # vertical
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],  # diagonal
        [[0, 0, 1], [0, 1, 0], [1, 0, 0]],  # antidiagonal
    ],
    bool,
)
BAR_NAMES = ("horizontal", "vertical", "diagonal", "antidiagonal")
# The marker: a 2x2 square in the top-left of its 3x3 cell, unlike every bar.
MARKER = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], bool)
# One colour per bar: red, green, blue, yellow (RGB).
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
_CELL = 3
_ITEMS = len(BARS)


def make_lookup(
    n: int = 4000, size: int = 24, gap: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The colour-lookup positive control: which bar has the marker's colour?

    Each image (``size`` x ``size``, RGB, black background) holds four bars (3 pixels in a 3x3
    cell: horizontal, vertical, diagonal, antidiagonal), each in a different colour (red, green,
    blue, yellow), and one marker (a 2x2 square) in one of those colours. The label is the
    orientation of the bar whose colour is the marker's. The marker is at least ``gap`` pixels
    from every bar (Chebyshev distance between their cells' corners), so no small window holds
    both.

    Made for content-based lookup, and against shortcuts: every image holds each colour and each
    orientation exactly once, so colour and orientation counts are the same in every image;
    positions are drawn independently of colours and orientations; the marker's colour is
    uniform and independent of the label (classes balanced). Only the binding "marker colour ->
    bar of that colour -> its orientation" gives the answer. The pixels of the marker and of
    any bar are at least ``gap - 2`` apart, so a convnet whose receptive field before global
    pooling is smaller sees at most one of the two; global average pooling sums local
    features, and a linear classifier on that sum scores each (colour, orientation) pair apart
    from the marker's colour: an exclusive-or it cannot express (a hidden layer after the
    pooling can, given enough epochs: keep the head linear). A self-attention layer binds
    directly: the marker's query finds the key of the bar with the same colour, and its value
    carries the orientation back to the marker.

    Args:
        n: number of images; the four classes as equal as ``n`` allows. Defaults to 4000.
        size: height and width in pixels; at least ``max(12, gap + 6)``. Defaults to 24.
        gap: least distance between the marker and any bar. Defaults to ``size // 3``.
        seed: the images are a function of (n, size, gap, seed). Defaults to 0.

    Returns:
        ``(x, y)``: x uint8 (n, size, size, 3), y int32 (n,) in 0..3 (`BAR_NAMES`).

    Raises:
        DatasetError: when ``size`` is too small for ``gap``.
    """
    if gap is None:
        gap = size // 3
    if size < max(12, gap + 6):
        raise DatasetError(
            "lookup needs size >= max(12, gap + 6) to place the marker and the four bars. "
            f"Received: size={size}, gap={gap}"
        )
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % _ITEMS).astype(np.int32)[rng.permutation(n)]
    marker_colour = rng.integers(0, _ITEMS, size=n)
    # bar_of[i, c]: the orientation drawn in colour c; uniform among the permutations that
    # give the marker's colour the label's orientation.
    bar_of = np.argsort(rng.random((n, _ITEMS)), axis=1)
    rows = np.arange(n)
    at = np.argmax(bar_of == y[:, None], axis=1)  # the colour that has orientation y
    bar_of[rows, at] = bar_of[rows, marker_colour]
    bar_of[rows, marker_colour] = y
    corners = _place(rng, n, size, gap)  # (n, 1 + items, 2): the marker, then colour c's bar
    x = np.zeros((n, size, size, 3), np.uint8)
    cell_r, cell_c = np.divmod(np.arange(_CELL * _CELL), _CELL)
    for k in range(_ITEMS + 1):
        if k == 0:
            mask, colour = MARKER.reshape(1, -1), COLOURS[marker_colour]
        else:
            mask, colour = BARS[bar_of[:, k - 1]].reshape(n, -1), COLOURS[np.full(n, k - 1)]
        r = corners[:, k, 0:1] + cell_r[None, :]  # (n, 9)
        c = corners[:, k, 1:2] + cell_c[None, :]
        pix = np.where(mask[..., None], colour[:, None, :], x[rows[:, None], r, c])
        x[rows[:, None], r, c] = pix
    return x, y


def _place(rng: np.random.Generator, n: int, size: int, gap: int) -> np.ndarray:
    """Top-left corners of the marker and the bars: bars apart by >= 1 free pixel, the marker
    at least ``gap`` from each bar; -> int64 (n, 1 + items, 2)."""
    corners = np.empty((n, 1 + _ITEMS, 2), np.int64)
    todo = np.arange(n)
    while len(todo):
        corners[todo] = rng.integers(0, size - _CELL + 1, size=(len(todo), 1 + _ITEMS, 2))
        c = corners[todo]
        dist = np.abs(c[:, :, None, :] - c[:, None, :, :]).max(axis=-1)  # (m, k, k) Chebyshev
        bars = dist[:, 1:, 1:] + _CELL * 2 * np.eye(_ITEMS, dtype=np.int64)[None]
        ok = (dist[:, 0, 1:].min(axis=1) >= gap) & (bars.min(axis=(1, 2)) >= _CELL + 1)
        todo = todo[~ok]
    return corners


def matching_bar(x: np.ndarray) -> np.ndarray:
    """Reads the label back from images by the rule, with no model: the orientation of the bar
    whose colour is the marker's. For tests and checks; -> int32 (n,)."""
    n = x.shape[0]
    out = np.empty(n, np.int32)
    windows = np.lib.stride_tricks.sliding_window_view(x, (_CELL, _CELL), axis=(1, 2))
    lit = windows.any(axis=3)  # (n, S-2, S-2, 3, 3): lit pixels of every 3x3 window
    for i in range(n):
        marker = np.argwhere((lit[i] == MARKER).all(axis=(-2, -1)))
        r, c = marker[0]
        colour = x[i, r, c]
        same = (x[i] == colour).all(axis=-1)
        same[r : r + 2, c : c + 2] = False
        for b, bar in enumerate(BARS):
            hits = np.lib.stride_tricks.sliding_window_view(same, (_CELL, _CELL))
            if (hits == bar).all(axis=(-2, -1)).any():
                out[i] = b
    return out

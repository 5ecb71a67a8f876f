"""The synthetic controls: `make_pathfinder` and `make_same_different` (here) and `make_lookup`
(in ``_control``), and the table of synthetic tasks (their ``name:k=v`` parameters and
generator functions) that specs resolve to.

Both generators are functions of their arguments and seed alone: no download, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from attn_search.datasets._control import BAR_NAMES, make_lookup
from attn_search.datasets._dataset import Source
from attn_search.datasets._splits import allocate
from attn_search.errors import DatasetError

_PATH_VALUE = 128  # curve pixels; the two marks are 255
_BORDER_BINS = 4  # distance of the marks from the border, matched as 1, 2, 3, >= 4 pixels


def make_pathfinder(
    n: int = 6000, size: int = 16, paths: int = 2, length: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The Pathfinder-style positive control: are the two marked dots joined by one curve?

    Each image (``size`` x ``size``, one channel, black background) holds ``paths`` smooth
    random curves (grey, value 128) that never touch one another, and two marks (3x3 white
    squares, value 255) on curve ends. Label 1 ("connected"): both marks sit on the two ends of
    the same curve; label 0 ("disconnected"): they sit on ends of two different curves. To solve
    it a model must follow a curve from one mark and find out whether it reaches the other: the
    marks can be far apart (up to the whole image), so the answer depends on relating distant
    positions: a stack of small convolutions relates them only once its receptive field spans
    the curve, while an attention layer relates any two positions directly.

    Fair by construction, not tuned to flatter attention: the classes are balanced; both classes
    are drawn by the same process, with the same number of curves, marks and unmarked curve
    ends (two), and whole marks (never cut by the border); the distance between the two marks,
    and their distance from the border, have the same distribution in both classes (matched in
    1-pixel bins), so neither clutter, distance nor position gives the answer away; images
    where curves touch are redrawn, so the label always equals the connectivity of the lit
    pixels.

    Args:
        n: number of images; ``n // 2`` of label 1, the rest of label 0. Defaults to 6000.
        size: height and width in pixels. Defaults to 16, where a small convnet learns the
            task in a few epochs on a CPU; at 24 or 32 it needs many more images and epochs.
        paths: curves per image: the two that carry marks plus ``paths - 2`` distractors.
            Defaults to 2 (more curves make it harder and slower to generate).
        length: unit steps per curve. Defaults to ``round(1.25 * size)``.
        seed: the images are a function of (n, size, paths, length, seed). Defaults to 0.

    Returns:
        ``(x, y)``: x uint8 (n, size, size), y int32 (n,).
    """
    from scipy import ndimage

    if length is None:
        length = max(4, round(1.25 * size))
    rng = np.random.default_rng(seed)
    want = {1: n // 2, 0: n - n // 2}
    # Matching key: mark distance (1-pixel bins) x distance of the marks from the border.
    n_keys = (int(math.hypot(size, size)) + 1) * _BORDER_BINS
    pools: dict[tuple[int, int], list[int]] = {}
    images: list[np.ndarray] = []
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connectivity within each image, none across images
    drawn, budget = 0, 50 * n + 20_000  # candidates drawn, and the most we are willing to draw
    batch = max(256, 2 * n)
    while True:
        img, label, key, valid = _pathfinder_batch(rng, batch, size, paths, length)
        drawn += batch
        lab, _ = ndimage.label(img > 0, structure=structure)
        flat = lab.reshape(batch, -1)
        top = flat.max(axis=1)
        masked = np.where(flat > 0, flat, np.iinfo(flat.dtype).max)
        components = top - masked.min(axis=1) + 1
        # No two curves (or a mark and another curve) touch, and the marks are whole and apart.
        ok = (components == paths) & valid
        start = len(images)
        images.extend(img[ok])
        for j, (b, c) in enumerate(zip(key[ok], label[ok], strict=True)):
            pools.setdefault((int(b), int(c)), []).append(start + j)
        # Matched counts per key: the same number of each class for every key.
        matched = np.array(
            [min(len(pools.get((b, 0), [])), len(pools.get((b, 1), []))) for b in range(n_keys)]
        )
        if matched.sum() >= want[0]:
            break
        if drawn >= budget:
            raise DatasetError(
                f"Could not draw {n} pathfinder images of size {size} with {paths} curves of "
                f"length {length} that do not touch (kept {2 * int(matched.sum())} of {drawn} "
                "drawn); use fewer or shorter curves, or a larger size."
            )
        # Size the next batch from the yield so far.
        rate = max(int(matched.sum()), 1) / drawn
        batch = int(min(max(256, 1.2 * (want[0] - matched.sum()) / rate), 4 * n + 256))
    per_bin = {}
    for c in (0, 1):
        per_bin[c] = allocate(matched, want[c], np.zeros_like(matched), matched)
    chosen, y = [], []
    for c in (0, 1):
        for b in range(n_keys):
            chosen.extend(pools.get((b, c), [])[: per_bin[c][b]])
            y.extend([c] * int(per_bin[c][b]))
    order = rng.permutation(len(chosen))
    x = np.stack([images[chosen[i]] for i in order])
    return x, np.asarray(y, np.int32)[order]


def _pathfinder_batch(rng: np.random.Generator, m: int, size: int, paths: int, length: int):
    """Draws m candidates; -> (uint8 images (m, S, S), labels, matching keys, valid)."""
    hi = size - 1
    p = rng.uniform(1, hi - 1, size=(m, paths, 2))  # (x, y) start of every curve
    angle = rng.uniform(0, 2 * np.pi, size=(m, paths))
    trace = np.empty((length + 1, m, paths, 2))
    trace[0] = p
    for t in range(1, length + 1):
        angle = angle + rng.normal(0.0, 0.35, size=angle.shape)  # smooth bending
        p = p + np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        # Bounce off the borders: reflect the position and the heading.
        for d in range(2):
            low, high = p[..., d] < 0, p[..., d] > hi
            p[..., d] = np.where(low, -p[..., d], np.where(high, 2 * hi - p[..., d], p[..., d]))
            flip = low | high
            angle = np.where(flip, (np.pi - angle) if d == 0 else -angle, angle)
        trace[t] = p
    # Unit steps round to 8-connected pixel chains.
    pix = np.clip(np.floor(trace + 0.5).astype(np.int64), 0, hi)  # (L+1, m, P, 2)
    img = np.zeros((m, size, size), np.uint8)
    which = np.broadcast_to(np.arange(m)[None, :, None], pix.shape[:3])
    img[which, pix[..., 1], pix[..., 0]] = _PATH_VALUE
    label = (rng.random(m) < 0.5).astype(np.int32)
    rows = np.arange(m)
    a = pix[0, :, 0]  # first end of curve 0
    other = np.where(rng.random(m) < 0.5, 0, length)
    b = np.where(label[:, None] == 1, pix[length, :, 0], pix[other, rows, 1])
    for mark in (a, b):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                img[rows, np.clip(mark[:, 1] + dy, 0, hi), np.clip(mark[:, 0] + dx, 0, hi)] = 255
    gap = np.abs(a - b)
    border = np.minimum(np.minimum(a, hi - a).min(axis=1), np.minimum(b, hi - b).min(axis=1))
    # Both 3x3 marks lie whole inside the image, and they do not touch each other.
    valid = (gap.max(axis=1) >= 4) & (border >= 1)
    dist = np.hypot(*gap.T.astype(np.float64))
    key = dist.astype(np.int64) * _BORDER_BINS + np.clip(border, 1, _BORDER_BINS) - 1
    return img, label, key, valid


def make_same_different(
    n: int = 6000, size: int = 16, patch: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The same-different control: are the two patterns in the image identical?

    Each image (``size`` x ``size``, one channel, black background) holds two square
    ``patch`` x ``patch`` patterns of grey (value 96) and white (255) pixels, far apart: their
    distance along the rows or the columns is at least ``size // 2``. Label 1 ("same"): the
    second pattern is an exact copy of the first; label 0 ("different"): it has the same number
    of white pixels in another arrangement. To solve it a model must compare the contents of two
    distant places, pixel by pixel. This is SVRT problem 1 (Fleuret et al., 2011), the task on
    which Kim, Ricci and Serre (2018, "Not-so-CLEVR") found feed-forward convnets struggle when
    the shapes are many and varied (here there are up to 2^(patch^2) patterns), and which a layer
    that relates every position to every other can do in one step.

    Fair by construction, not tuned to flatter attention: the classes are balanced; both classes
    draw positions the same way and have the same number of white and grey pixels, so neither
    place, distance nor brightness gives the answer away. A convnet may still solve it (for
    example by global pooling of rich enough features); the comparison measures whether the
    attention layer helps. It is much harder than `make_pathfinder`: with a few thousand images
    and a few epochs, small models of either kind can stay at chance; give it more images.

    Args:
        n: number of images; ``n // 2`` of label 1, the rest of label 0. Defaults to 6000.
        size: height and width in pixels; at least ``2 * patch + 4``. Defaults to 16.
        patch: side of each pattern. Defaults to 4.
        seed: the images are a function of (n, size, patch, seed). Defaults to 0.

    Returns:
        ``(x, y)``: x uint8 (n, size, size), y int32 (n,).
    """
    if size < 2 * patch + 4:
        raise DatasetError(
            f"same_different needs size >= 2 * patch + 4 to keep the patterns apart. "
            f"Received: size={size}, patch={patch}"
        )
    rng = np.random.default_rng(seed)
    cells = patch * patch
    y = np.zeros(n, np.int32)
    y[: n // 2] = 1
    y = y[rng.permutation(n)]
    # First pattern: each cell white with probability 1/2, the count kept within
    # 1 .. cells - 1 so that a different arrangement with the same count always exists.
    on = np.clip(rng.binomial(cells, 0.5, size=n), 1, cells - 1)
    ranks = np.argsort(rng.random((n, cells)), axis=1)
    first = ranks < on[:, None]  # (n, cells) bool, exactly on[i] white cells
    # Second pattern: a copy, or a reshuffle of the same cells that differs from the first.
    second = first.copy()
    todo = np.flatnonzero(y == 0)
    while len(todo):
        shuffled = np.argsort(rng.random((len(todo), cells)), axis=1)
        second[todo] = np.take_along_axis(first[todo], shuffled, axis=1)
        todo = todo[np.all(second[todo] == first[todo], axis=1)]
    # Positions: top-left corners, apart by >= size // 2 along rows or columns.
    span = size - patch + 1
    corners = np.empty((n, 2, 2), np.int64)
    todo = np.arange(n)
    while len(todo):
        corners[todo] = rng.integers(0, span, size=(len(todo), 2, 2))
        gap = np.abs(corners[todo, 0] - corners[todo, 1]).max(axis=1)
        todo = todo[gap < size // 2]
    x = np.zeros((n, size, size), np.uint8)
    rows = np.arange(n)[:, None]
    grid_r, grid_c = np.divmod(np.arange(cells), patch)
    for k, pattern in enumerate((first, second)):
        r = corners[:, k, 0:1] + grid_r[None, :]
        c = corners[:, k, 1:2] + grid_c[None, :]
        x[rows, r, c] = np.where(pattern, 255, 96)
    return x, y


# --------------------------------------------------------------------------------------------
# The table that specs resolve to


@dataclasses.dataclass(frozen=True)
class Param:
    """One ``name=value`` parameter of a synthetic task: an integer in [minimum, maximum].

    ``default`` is a number, None (filled in by the loader: the seed), or a function of the
    other values (``length`` follows ``size``).
    """

    default: int | None | Callable[[dict[str, int]], int]
    minimum: int
    maximum: int
    help: str


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """A synthetic task: its parameters, and the function that draws its images (``channels``
    per pixel: grey tasks return (n, H, W), colour ones (n, H, W, channels))."""

    name: str
    params: dict[str, Param]
    description: str
    make: Callable[..., tuple[np.ndarray, np.ndarray]]
    class_names: tuple[str, ...]
    channels: int = 1

    @property
    def classes(self) -> int:
        return len(self.class_names)

    def resolve(self, given: dict[str, int]) -> dict[str, int | None]:
        """Every parameter's value, in table order: the given ones, else the defaults."""
        values = {k: given.get(k, p.default) for k, p in self.params.items()}
        for k, v in values.items():
            if callable(v):
                values[k] = v(values)
        return values


_SIZE = Param(16, 12, 256, "image height and width")
_N = Param(6000, 20, 1_000_000, "number of images (half of each class)")
_SEED = Param(None, 0, 2**31 - 1, "generator seed (default: the load seed)")

SYNTHETIC = {
    task.name: task
    for task in (
        SyntheticTask(
            "pathfinder",
            {
                "size": _SIZE,
                "n": _N,
                "paths": Param(2, 2, 8, "curves per image (the marked ones + distractors)"),
                "length": Param(
                    lambda v: max(4, round(1.25 * v["size"])),
                    4,
                    4096,
                    "steps per curve (default 1.25 * size)",
                ),
                "seed": _SEED,
            },
            "positive control: are the two marked dots joined by one curve? (long-range)",
            make_pathfinder,
            ("disconnected", "connected"),
        ),
        SyntheticTask(
            "same_different",
            {
                "size": _SIZE,
                "n": _N,
                "patch": Param(4, 2, 8, "side of the two square patterns"),
                "seed": _SEED,
            },
            "harder control: are two distant patterns identical? (relational; needs many images)",
            make_same_different,
            ("different", "same"),
        ),
        SyntheticTask(
            "lookup",
            {
                "size": Param(24, 12, 256, "image height and width"),
                "n": Param(4000, 20, 1_000_000, "number of images (a quarter of each class)"),
                "gap": Param(
                    lambda v: v["size"] // 3, 1, 250, "least marker-bar distance (size // 3)"
                ),
                "seed": _SEED,
            },
            "positive control: which bar has the marker's colour? (content-based lookup)",
            make_lookup,
            BAR_NAMES,
            channels=3,
        ),
    )
}


def load_synthetic(name: str, given: dict[str, int], seed: int) -> Source:
    """Draws the synthetic task ``name`` with the ``given`` parameters -> a `Source`.

    The generator seed defaults to ``seed``, the load seed.
    """
    task = SYNTHETIC[name]
    values = task.resolve(given)
    if values["seed"] is None:
        values["seed"] = seed
    x, y = task.make(**values)
    params = ",".join(f"{k}={v}" for k, v in values.items())
    return Source(
        name=name,
        source=f"synthetic:{name}({params})",
        class_names=task.class_names,
        parts={"train": (x if x.ndim == 4 else x[..., None], y)},
        scale=1.0 / 255.0,
    )

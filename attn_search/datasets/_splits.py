"""Splitting a `Source` into train/val/test: stratified quotas, `limit`, and the final resize."""

from __future__ import annotations

import numpy as np

from attn_search.datasets._dataset import SPLITS, Dataset, DatasetInfo, Source, scaled
from attn_search.errors import DatasetError

_Parts = dict[str, tuple[np.ndarray, np.ndarray]]


def allocate(counts: np.ndarray, k: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per-class quotas summing to ``k``, near ``k * counts / counts.sum()``, within [low, high].

    Largest remainder; the caller makes sure ``low.sum() <= k <= high.sum()``.
    """
    ideal = k * counts / max(counts.sum(), 1)
    quota = np.clip(np.floor(ideal).astype(np.int64), low, high)
    while quota.sum() < k:
        gap = np.where(quota < high, ideal - quota, -np.inf)
        quota[int(np.argmax(gap))] += 1
    while quota.sum() > k:
        gap = np.where(quota > low, ideal - quota, np.inf)
        quota[int(np.argmin(gap))] -= 1
    return quota


def _take(y: np.ndarray, quota: np.ndarray, rng: np.random.Generator, num_classes: int):
    """Splits indices of ``y`` into (taken, rest), ``quota[c]`` taken at random from class c."""
    taken, rest = [], []
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        taken.append(idx[: quota[c]])
        rest.append(idx[quota[c] :])
    taken = np.concatenate(taken) if taken else np.zeros(0, np.int64)
    rest = np.concatenate(rest) if rest else np.zeros(0, np.int64)
    return np.sort(taken), np.sort(rest)


class _Splitter:
    """Stratified splitting of one source: every non-empty split gets each class at least once.

    ``carve`` lists the splits cut out of the source's "train" part (test first, then val);
    ``need`` is how many examples of each class a part must hold for that.
    """

    def __init__(self, source: Source, val_fraction: float, test_fraction: float) -> None:
        self.source = source
        self.k = len(source.class_names)
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.carve = [s for s in ("test", "val") if s not in source.parts and self.fractions[s] > 0]
        self.need = {"train": 1 + len(self.carve), "val": 1, "test": 1}

    def counts(self, parts: _Parts) -> dict[str, np.ndarray]:
        return {s: np.bincount(y, minlength=self.k) for s, (_, y) in parts.items()}

    def check_counts(self, parts: _Parts, stage: str) -> None:
        c = self.counts(parts)["train"]
        bad = np.flatnonzero(c < self.need["train"])
        if len(bad):
            i = int(bad[0])
            label = self.source.class_names[i] if i < self.k else str(i)
            raise DatasetError(
                f"Class {label!r} has only {int(c[i])} example(s) in "
                f"{self.source.name}{stage}; a stratified train/val/test split needs at least "
                f"{self.need['train']} per class. Add examples to that class or remove it, "
                "raise `limit`, or set val_fraction/test_fraction to 0."
            )

    def limit(self, parts: _Parts, limit: int, rng: np.random.Generator) -> _Parts:
        """One cap over all parts, shared in proportion to their sizes, stratified in each."""
        names = list(parts)
        counts = self.counts(parts)
        sizes = np.array([len(parts[s][1]) for s in names])
        lows = {s: np.minimum(counts[s], self.need[s]) for s in names}
        low_total = int(sum(low.sum() for low in lows.values()))
        if limit < low_total:
            raise DatasetError(
                f"`limit` is too small for a stratified split of {self.k} classes in "
                f"{self.source.name}: it needs at least {low_total} examples. Raise `limit`, "
                f"or set val_fraction/test_fraction to 0. Received: limit={limit}"
            )
        shares = allocate(sizes, limit, np.array([lows[s].sum() for s in names]), sizes)
        out = {}
        for s, share in zip(names, shares, strict=True):
            x, y = parts[s]
            quota = allocate(counts[s], int(share), lows[s], counts[s])
            idx, _ = _take(y, quota, rng, self.k)
            out[s] = (x[idx], y[idx])
        return out

    def carve_out(self, parts: _Parts, rng: np.random.Generator) -> _Parts:
        """Cuts test, then val, out of the train part."""
        parts = dict(parts)
        x, y = parts.pop("train")
        n = len(y)
        remaining = np.bincount(y, minlength=self.k)
        for i, split in enumerate(self.carve):
            k = max(round(self.fractions[split] * n), self.k)
            high = remaining - (len(self.carve) - i)  # leave one per class for later splits
            k = min(k, int(high.sum()))
            quota = allocate(remaining, k, np.ones(self.k, np.int64), high)
            idx, rest = _take(y, quota, rng, self.k)
            parts[split] = (x[idx], y[idx])
            x, y = x[rest], y[rest]
            remaining = remaining - quota
        parts["train"] = (x, y)
        return parts


def split(
    source: Source,
    size: tuple[int, int] | None,
    val_fraction: float,
    test_fraction: float,
    limit: int | None,
    seed: int,
) -> Dataset:
    """A `Dataset` from ``source``: limited, split, shuffled within each split, resized."""
    rng = np.random.default_rng(seed)
    splitter = _Splitter(source, val_fraction, test_fraction)
    parts = dict(source.parts)
    splitter.check_counts(parts, "")
    total = sum(len(y) for _, y in parts.values())
    if limit is not None and limit < total:
        parts = splitter.limit(parts, limit, rng)
        splitter.check_counts(parts, f" after limit={limit}")
    parts = splitter.carve_out(parts, rng)

    # Shuffle within each split once, so arrays() is not sorted by class.
    splits = {}
    for s in SPLITS:
        if s in parts:
            xs, ys = parts[s]
            order = rng.permutation(len(ys))
            splits[s] = (xs[order], ys[order].astype(np.int32))
        else:
            x0 = parts["train"][0]
            splits[s] = (np.zeros((0, *x0.shape[1:]), dtype=x0.dtype), np.zeros(0, np.int32))

    scale = source.scale
    if source.streaming:
        input_shape = source.input_shape
    else:
        if size is not None and source.resizable and splits["train"][0].shape[1:3] != size:
            splits = {s: (_resize(xs, size, scale), ys) for s, (xs, ys) in splits.items()}
            scale = 1.0
        input_shape = tuple(int(d) for d in splits["train"][0].shape[1:])
    info = DatasetInfo(
        name=source.name,
        source=source.source,
        input_shape=input_shape,
        num_classes=splitter.k,
        class_names=tuple(source.class_names),
        sizes={s: int(len(splits[s][1])) for s in SPLITS},
        streaming=source.streaming,
    )
    return Dataset(info, splits, scale=scale, seed=seed, reader=source.reader)


def _resize(x: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """Bilinear (antialiased) resize of in-memory images to ``size``; float32 in [0, 1]."""
    import tensorflow as tf

    out = np.empty((len(x), *size, x.shape[-1]), np.float32)
    for start in range(0, len(x), 1024):
        chunk = scaled(x[start : start + 1024], scale)
        out[start : start + 1024] = tf.image.resize(chunk, size, antialias=True).numpy()
    return np.clip(out, 0.0, 1.0)

"""Repeated stratified k-fold cross-validation over a whole dataset: `CrossValidation`.

For small datasets the finalists are compared on folds instead of one held-out test split: every
example of the dataset (train, validation and test pooled) is in the test fold of exactly one of
the k folds of each repetition, so each is evaluated once per repetition. The folds come from
scikit-learn's `RepeatedStratifiedKFold` (every class spread evenly over the folds), seeded, so
every family, every session and every worker gets the same folds. Within a fold, the examples
outside the test fold are split again, stratified and seeded by the fold, into training and
validation parts (early stopping watches the validation part), in the dataset's own proportions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from attn_search.datasets._dataset import SPLITS, Dataset
from attn_search.errors import ConfigError

__all__ = ["CrossValidation"]


class CrossValidation:
    """The folds of `repetitions` x `k`-fold stratified cross-validation of `data`.

    Args:
        data: The `Dataset`, its splits held in memory or as file paths.
        k: Folds per repetition (>= 2).
        repetitions: Repetitions, each a new stratified partition (>= 1).
        seed: Seed of the partitions.

    Raises:
        ConfigError: `k` is below 2 or above the number of examples of the smallest class.

    Example:

    >>> from attn_search.datasets import CrossValidation, load_dataset
    >>> cv = CrossValidation(load_dataset("digits", limit=300), k=5, repetitions=2, seed=0)
    >>> fold = cv.dataset(0, 3)
    >>> fold.info.sizes["test"], cv.k * cv.repetitions
    (60, 10)
    """

    def __init__(self, data: Dataset, k: int, repetitions: int, seed: int):
        from sklearn.model_selection import RepeatedStratifiedKFold

        xs, ys = zip(*(data._splits[s] for s in SPLITS if s in data._splits), strict=True)
        self._x, self._y = np.concatenate(xs), np.concatenate(ys)
        counts = np.bincount(self._y.astype(int))
        smallest = int(counts[counts > 0].min()) if counts.size else 0
        if not isinstance(k, int) or k < 2 or k > smallest:
            raise ConfigError(
                "`cv` must be 0 (a held-out test split) or a number of folds from 2 to the "
                f"number of examples of the smallest class ({smallest}), so that every fold "
                f"holds every class. Received: cv={k!r}"
            )
        self.data, self.k, self.repetitions, self.seed = data, k, repetitions, seed
        splitter = RepeatedStratifiedKFold(n_splits=k, n_repeats=repetitions, random_state=seed)
        self._splits = [test for _, test in splitter.split(np.zeros(len(self._y)), self._y)]
        sizes = data.info.sizes
        self._val_share = sizes.get("val", 0) / max(1, sizes.get("train", 0) + sizes.get("val", 0))

    def test_indices(self, repetition: int, fold: int) -> np.ndarray:
        """The pooled indices of the examples in fold `fold`'s test part of `repetition`."""
        return self._splits[repetition * self.k + fold]

    @property
    def test_train_ratio(self) -> float:
        """Test examples / training examples of a fold (for the corrected resampled t-test)."""
        n = len(self._y)
        n_test = n / self.k
        n_train = (n - n_test) * (1 - self._val_share)
        return float(n_test / max(1.0, n_train))

    def dataset(self, repetition: int, fold: int) -> Dataset:
        """The `Dataset` of one fold: its test part, and the rest split into train and val."""
        from sklearn.model_selection import train_test_split

        test = self.test_indices(repetition, fold)
        rest = np.setdiff1d(np.arange(len(self._y)), test)
        split_seed = self.seed + 1000 * repetition + fold
        if self._val_share > 0:
            try:
                train, val = train_test_split(
                    rest, test_size=self._val_share, random_state=split_seed, stratify=self._y[rest]
                )
            except ValueError:  # a class too small to stratify: split without
                train, val = train_test_split(
                    rest, test_size=self._val_share, random_state=split_seed
                )
        else:
            train, val = rest, rest[:0]
        parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
        splits = {name: (self._x[idx], self._y[idx]) for name, idx in parts.items()}
        info = dataclasses.replace(
            self.data.info,
            sizes={name: int(len(idx)) for name, idx in parts.items()},
        )
        return Dataset(
            info, splits, scale=self.data._scale, seed=split_seed, reader=self.data._reader
        )

"""The disk cache of a streamed dataset: each split's decoded images in one uint8 .npy file.

A folder too large for memory is decoded from its image files at every pass. With a cache
(`Dataset.cached(directory)`), each split is decoded once, in parallel, into
``<directory>/<split>-<fingerprint>.npy``; later passes, and later trials that use the same
directory, read the decoded images back through a memory map, so the operating system keeps in
memory what fits and reads the rest from disk. The fingerprint covers the split's files, their
order and the image shape, so a cache of other data is never read.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

FILL_BATCH = 256  # images decoded per step while the cache is written


def cache_file(
    directory: pathlib.Path, split: str, paths: np.ndarray, shape: tuple
) -> pathlib.Path:
    """Where ``split``'s decoded images are cached, named after what they are."""
    digest = hashlib.sha256()
    digest.update(repr(tuple(int(d) for d in shape)).encode())
    for path in paths:
        digest.update(str(path).encode() + b"\0")
    return pathlib.Path(directory) / f"{split}-{digest.hexdigest()[:16]}.npy"


def cached_images(path: pathlib.Path, decoded: tf.data.Dataset, n: int, shape: tuple) -> np.ndarray:
    """The cached images of one split, read-only and memory-mapped; written first if missing.

    Args:
        path: The cache file (see `cache_file`).
        decoded: The split's batches ``(uint8 images, labels)``, in the split's order.
        n: The number of images.
        shape: ``(H, W, C)``.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name, then renamed: a reader (another worker sharing the
        # run folder, or a later trial after a crash) never sees half a cache.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(n, *shape))
        start = 0
        for batch, _ in decoded.prefetch(2):
            images[start : start + len(batch)] = batch.numpy()
            start += len(batch)
        images.flush()
        del images
        os.replace(partial, path)
    return np.load(path, mmap_mode="r")


def batches(
    directory: pathlib.Path,
    split: str,
    xy: tuple[np.ndarray, np.ndarray],
    shape: tuple,
    decoded: tf.data.Dataset,
    order: tf.data.Dataset,
    batch_size: int,
) -> tf.data.Dataset:
    """A split's batches ``(float32 images in [0, 1], int32 labels)`` from its cache file.

    Args:
        directory: The cache's folder.
        split: The split's name.
        xy: The split's file paths and labels.
        shape: ``(H, W, C)``.
        decoded: The split's batches ``(uint8 images, labels)`` in order, read only to write
            the cache file when it is missing.
        order: The indices (int64) in the order to read them, shuffled or not: the same order
            as data held in memory.
        batch_size: Examples per batch.
    """
    import tensorflow as tf

    paths, y = xy
    images = cached_images(cache_file(directory, split, paths, shape), decoded, len(y), shape)
    labels = tf.constant(y.astype(np.int32))

    def gather(i):
        batch = tf.numpy_function(lambda idx: images[idx], [i], tf.uint8, stateful=False)
        batch.set_shape((None, *shape))
        return tf.cast(batch, tf.float32) * (1.0 / 255.0), tf.gather(labels, i)

    return order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)

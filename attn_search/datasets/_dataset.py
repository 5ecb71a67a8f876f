"""The dataset objects: `DatasetInfo`, `Dataset` and its `tf.data` pipelines, and `_Source`,
what a loader hands to the splitter."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from attn_search.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a `Dataset` holds.

    Args:
        name: short name, e.g. ``"digits"``, a folder's or file's name, ``"pathfinder"``.
        source: where the data came from, e.g. ``"sklearn.datasets.load_digits"``,
            ``"folder:/data/pets"``, ``"npz:/data/x.npz"``,
            ``"synthetic:pathfinder(size=16,n=6000,paths=2,length=20,seed=0)"``.
        input_shape: ``(H, W, C)`` of one image.
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
        class_names: the name of each label, in label order.
        sizes: examples per split, ``{"train": n, "val": n, "test": n}``.
        streaming: True when images are read from disk batch by batch.
    """

    name: str
    source: str
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    sizes: dict[str, int]
    streaming: bool = False

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples), safe to dump to YAML or JSON."""
        return {
            "name": self.name,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "sizes": dict(self.sizes),
            "streaming": self.streaming,
        }


class Dataset:
    """Train, validation and test splits of an image classification dataset.

    Build one with `load_dataset`. Each split comes out as a batched, prefetched `tf.data`
    pipeline of ``(x, y)``: ``x`` float32 in [0, 1] with shape ``(B, H, W, C)``, ``y`` int32
    with shape ``(B,)``. Data held in memory is stored once (as uint8 where the source is 8-bit)
    and scaled batch by batch; a folder too large for memory is read from disk.

    Example:

    >>> from attn_search.datasets import load_dataset
    >>> data = load_dataset("digits")
    >>> data.info.input_shape, data.info.num_classes
    ((8, 8, 1), 10)
    >>> x, y = next(iter(data.train(32)))
    >>> tuple(x.shape), tuple(y.shape)
    ((32, 8, 8, 1), (32,))
    """

    def __init__(
        self,
        info: DatasetInfo,
        splits: dict[str, tuple[np.ndarray, np.ndarray]],
        *,
        scale: float = 1.0,
        seed: int = 0,
        reader: Callable[[str], np.ndarray] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        # splits: name -> (x, y); x is an image array (in memory) or an array of file paths
        # (streaming, read by `reader`). cache_dir: see `cached`.
        self.info = info
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else None
        self.seed = seed
        self._splits = splits
        self._scale = float(scale)
        self._reader = reader
        self._tensors: dict[str, Any] = {}

    def __repr__(self) -> str:
        i = self.info
        return (
            f"Dataset(name={i.name!r}, input_shape={i.input_shape}, "
            f"num_classes={i.num_classes}, sizes={i.sizes}, streaming={i.streaming})"
        )

    def train(
        self, batch_size: int, *, shuffle: bool = True, seed: int | None = None
    ) -> tf.data.Dataset:
        """The training split, shuffled each epoch.

        Args:
            batch_size: examples per batch.
            shuffle: reshuffle the whole split at every pass. Defaults to True.
            seed: shuffle seed; the same seed gives the same order. Defaults to the seed the
                dataset was loaded with.

        Returns:
            A `tf.data.Dataset` of ``(x, y)`` batches.
        """
        return self._pipeline("train", batch_size, shuffle, self.seed if seed is None else seed)

    def val(self, batch_size: int) -> tf.data.Dataset:
        """The validation split, in a fixed order (empty when ``val_fraction=0``)."""
        return self._pipeline("val", batch_size, False, None)

    def test(self, batch_size: int) -> tf.data.Dataset:
        """The test split, in a fixed order; keep it for the final evaluation."""
        return self._pipeline("test", batch_size, False, None)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """One split as NumPy arrays: ``x`` float32 in [0, 1] (N, H, W, C), ``y`` int32 (N,).

        Raises:
            DatasetError: for an unknown split, or a dataset that streams from disk.
        """
        check_split(split)
        if self.info.streaming:
            raise DatasetError(
                f"Dataset {self.info.name!r} streams from disk ({self.info.source}), so it has "
                "no arrays; use its train()/val()/test() pipelines, or load it with a larger "
                "in_memory_limit_mb."
            )
        x, y = self._splits[split]
        return scaled(x, self._scale), y.astype(np.int32, copy=False)

    def cached(self, directory: str | os.PathLike) -> Dataset:
        """This dataset, with the decoded images of a streamed folder kept on disk.

        Each split is decoded once, in parallel, into a uint8 ``.npy`` file in ``directory`` when
        its first pipeline is made; later passes, and other datasets cached there, read it
        through a memory map. The batches are the same as without the cache. A dataset held in
        memory has nothing to cache and is returned as it is.

        Args:
            directory: Where the cache files go (created when needed; nothing else goes there).

        Returns:
            A `Dataset` sharing this one's splits.
        """
        if not self.info.streaming:
            return self
        return Dataset(
            self.info,
            self._splits,
            scale=self._scale,
            seed=self.seed,
            reader=self._reader,
            cache_dir=directory,
        )

    # -- internals ---------------------------------------------------------------------------

    def _pipeline(
        self, split: str, batch_size: int, shuffle: bool, seed: int | None
    ) -> tf.data.Dataset:
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise DatasetError(
                f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
            )
        import tensorflow as tf

        # Each pipeline has one parallel stage, batch by batch, that reads (decodes, gathers)
        # and scales.
        batch_size = int(batch_size)
        if self.info.streaming and self.cache_dir is not None:
            from attn_search.datasets import _cache

            x, y = self._splits[split]
            order = _shuffled(tf.data.Dataset.range(len(y)), len(y), shuffle, seed)
            decoded = self._from_files(split, False, None, _cache.FILL_BATCH)  # once
            shape = self.info.input_shape
            ds = _cache.batches(self.cache_dir, split, (x, y), shape, decoded, order, batch_size)
        elif self.info.streaming:
            ds = self._from_files(split, shuffle, seed, batch_size, unit=True)
        else:
            ds = _without_autotune(self._from_memory(split, batch_size, shuffle, seed))
        return ds.prefetch(tf.data.AUTOTUNE)

    def _from_files(
        self, split: str, shuffle: bool, seed: int | None, batch_size: int, unit: bool = False
    ) -> tf.data.Dataset:
        """Batches ``(uint8 images, labels)`` (with `unit`, float32 images in [0, 1]), each image
        decoded from its file.

        The paths are shuffled and batched first; each batch is then decoded by one call (a
        `tf.map_fn` over its files), and batches are decoded in parallel. Per-image calls of a
        parallel map cost more than the decoding of small images (1.6x the images per second
        of `keras.utils.image_dataset_from_directory` batch by batch, 0.95x image by image, in
        benchmarks/bench_data.py). A reader with `tf_read` decodes in the graph (no Python per
        image), any other reader is called through `tf.numpy_function`.
        """
        import tensorflow as tf

        x, y = self._splits[split]
        h, w, c = self.info.input_shape
        reader = self._reader
        paths = x.astype(str)
        if hasattr(reader, "tf_read"):
            kinds = reader.kinds(paths)
            present = set(kinds.tolist()) or {0}

            def read(path, kind):
                return reader.tf_read(path, kind, present)
        else:
            kinds = np.zeros(len(paths), np.int32)

            def read(path, kind):
                image = tf.numpy_function(reader, [path], tf.uint8, stateful=False)
                image.set_shape((h, w, c))
                return image

        def decode(batch_paths, batch_kinds, labels):
            images = tf.map_fn(
                lambda pk: read(pk[0], pk[1]),
                (batch_paths, batch_kinds),
                fn_output_signature=tf.TensorSpec((h, w, c), tf.uint8),
            )
            return (_uint8_to_unit(images) if unit else images), labels

        ds = tf.data.Dataset.from_tensor_slices((paths, kinds, y.astype(np.int32)))
        ds = _shuffled(ds, len(y), shuffle, seed).batch(batch_size)
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def _from_memory(
        self, split: str, batch_size: int, shuffle: bool, seed: int | None
    ) -> tf.data.Dataset:
        """Batches gathered from the split's tensors, stored once (in the source's dtype), and
        scaled to float32 in [0, 1]."""
        import tensorflow as tf

        x, y = self._splits[split]
        if split not in self._tensors:
            self._tensors[split] = (tf.constant(x), tf.constant(y.astype(np.int32)))
        xt, yt = self._tensors[split]
        scale = self._scale

        def gather(i):
            return tf.cast(tf.gather(xt, i), tf.float32) * scale, tf.gather(yt, i)

        ds = _shuffled(tf.data.Dataset.range(len(y)), len(y), shuffle, seed)
        return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def _without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` without tf.data's autotuning: it gains nothing on a gather from memory, and its
    background work took a core from training in every other epoch (0.63 s against 0.40 s for
    an epoch of a fused finalist fit on digits, using one core instead of 1.6)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _uint8_to_unit(images):
    """uint8 images as float32 in [0, 1]."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) * (1.0 / 255.0)


def _shuffled(ds: tf.data.Dataset, n: int, shuffle: bool, seed: int | None) -> tf.data.Dataset:
    if shuffle and n:
        return ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds


def check_split(split: Any) -> None:
    """Raises `DatasetError` unless ``split`` is one of `SPLITS`."""
    if split not in SPLITS:
        raise DatasetError(
            f"`split` must be one of 'train', 'val', 'test'. Received: split={split!r}"
        )


def scaled(x: np.ndarray, scale: float) -> np.ndarray:
    """``x`` as float32, multiplied by ``scale`` (stored images -> [0, 1])."""
    out = x.astype(np.float32)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


@dataclasses.dataclass
class Source:
    """What a loader hands to the splitter, before splits exist."""

    name: str
    source: str
    class_names: tuple[str, ...]
    # split name -> (x, y); "train" always present; "val"/"test" when the source has them.
    # x: images (N, H, W, C) or, when streaming, file paths (N,).
    parts: dict[str, tuple[np.ndarray, np.ndarray]]
    scale: float = 1.0  # multiply x by this to get [0, 1]
    streaming: bool = False
    input_shape: tuple[int, int, int] | None = None
    reader: Callable[[str], np.ndarray] | None = None
    resizable: bool = True  # in-memory images may still be resized to image_size

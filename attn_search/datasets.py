"""Datasets: names, folders, .npz files and arrays -> train/val/test `tf.data` pipelines.

One resolver, `load_dataset(spec)`, turns what a user has into a `Dataset`:

- a built-in name: ``digits`` (scikit-learn's 8x8 handwritten digits, embedded, the default),
  ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` (through ``keras.datasets``; they
  download on first use), or a synthetic positive control, ``pathfinder`` or
  ``same_different``, with optional parameters such as ``pathfinder:size=24,n=2000``
  (generated from a seed, no download; see `make_pathfinder` and `make_same_different`);
- a folder with one sub-folder of images per class (PNG, JPEG, BMP, GIF);
- an ``.npz`` file with ``x_train, y_train`` (optionally ``x_val, y_val, x_test, y_test``) or
  ``x, y``;
- a tuple ``(x, y)`` of arrays, or a `Dataset` (returned as it is).

Every source gives the same thing: images as float32 in [0, 1] with shape (B, H, W, C), integer
labels, stratified train/validation/test splits fixed by ``seed``, and a `DatasetInfo`.

This module imports TensorFlow only inside the functions that build pipelines, so
`available()` and `check_spec()` answer at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import pathlib
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from attn_search.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "Dataset",
    "DatasetInfo",
    "available",
    "check_spec",
    "load_dataset",
    "make_pathfinder",
    "make_same_different",
]

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# A folder whose decoded images (uint8) would take more than this streams from disk.
DEFAULT_IN_MEMORY_LIMIT_MB = 2048.0
_MAX_LISTED = 5  # file names listed in one error message

_CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_CIFAR100_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


# --------------------------------------------------------------------------------------------
# Public data types


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
    ) -> None:
        # splits: name -> (x, y); x is an image array (in memory) or an array of file paths
        # (streaming, read by `reader`).
        self.info = info
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
    ) -> "tf.data.Dataset":
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

    def val(self, batch_size: int) -> "tf.data.Dataset":
        """The validation split, in a fixed order (empty when ``val_fraction=0``)."""
        return self._pipeline("val", batch_size, False, None)

    def test(self, batch_size: int) -> "tf.data.Dataset":
        """The test split, in a fixed order; keep it for the final evaluation."""
        return self._pipeline("test", batch_size, False, None)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """One split as NumPy arrays: ``x`` float32 in [0, 1] (N, H, W, C), ``y`` int32 (N,).

        Raises:
            DatasetError: for an unknown split, or a dataset that streams from disk.
        """
        _check_split(split)
        if self.info.streaming:
            raise DatasetError(
                f"Dataset {self.info.name!r} streams from disk ({self.info.source}), so it has "
                "no arrays; use its train()/val()/test() pipelines, or load it with a larger "
                "in_memory_limit_mb."
            )
        x, y = self._splits[split]
        return _scaled(x, self._scale), y.astype(np.int32, copy=False)

    # -- internals ---------------------------------------------------------------------------

    def _pipeline(
        self, split: str, batch_size: int, shuffle: bool, seed: int | None
    ) -> "tf.data.Dataset":
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1
        ):
            raise DatasetError(
                f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
            )
        import tensorflow as tf

        batch_size = int(batch_size)
        x, y = self._splits[split]
        n = len(y)
        autotune = tf.data.AUTOTUNE
        if self.info.streaming:
            h, w, c = self.info.input_shape
            reader = self._reader

            def read(path):
                image = tf.numpy_function(reader, [path], tf.uint8, stateful=False)
                image.set_shape((h, w, c))
                return image

            ds = tf.data.Dataset.from_tensor_slices((x.astype(str), y.astype(np.int32)))
            if shuffle and n:
                ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
            ds = ds.map(lambda p, label: (read(p), label), num_parallel_calls=autotune)
            ds = ds.batch(batch_size)
            scale = 1.0 / 255.0
        else:
            if split not in self._tensors:
                self._tensors[split] = (tf.constant(x), tf.constant(y.astype(np.int32)))
            xt, yt = self._tensors[split]
            ds = tf.data.Dataset.range(n)
            if shuffle and n:
                ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
            ds = ds.batch(batch_size).map(
                lambda i: (tf.gather(xt, i), tf.gather(yt, i)), num_parallel_calls=autotune
            )
            scale = self._scale
        ds = ds.map(
            lambda xb, yb: (tf.cast(xb, tf.float32) * scale, yb), num_parallel_calls=autotune
        )
        return ds.prefetch(autotune)


# --------------------------------------------------------------------------------------------
# The catalogue of built-in names


@dataclasses.dataclass(frozen=True)
class _Builtin:
    name: str
    shape: tuple[int, int, int]
    classes: int
    size: int
    download: bool
    description: str


_BUILTINS = {
    b.name: b
    for b in (
        _Builtin("digits", (8, 8, 1), 10, 1797, False,
                 "handwritten digits 0-9 from scikit-learn, embedded; the quick default"),
        _Builtin("mnist", (28, 28, 1), 10, 70000, True,
                 "handwritten digits (keras.datasets; own 10000-image test split)"),
        _Builtin("fashion_mnist", (28, 28, 1), 10, 70000, True,
                 "clothing photos (keras.datasets; own 10000-image test split)"),
        _Builtin("cifar10", (32, 32, 3), 10, 60000, True,
                 "small colour photos, 10 classes (keras.datasets; own test split)"),
        _Builtin("cifar100", (32, 32, 3), 100, 60000, True,
                 "small colour photos, 100 fine classes (keras.datasets; own test split)"),
    )
}


@dataclasses.dataclass(frozen=True)
class _Param:
    default: int
    minimum: int
    maximum: int
    help: str


@dataclasses.dataclass(frozen=True)
class _Synthetic:
    name: str
    classes: int
    params: dict[str, _Param]
    description: str
    make: str  # name of the generator function in this module
    class_names: tuple[str, ...] = ("0", "1")

    def resolve(self, given: dict[str, int]) -> dict[str, int]:
        values = {k: p.default for k, p in self.params.items()}
        values.update(given)
        if self.name == "pathfinder" and "length" not in given:
            values["length"] = max(4, round(1.25 * values["size"]))
        return values


_SYNTHETIC = {
    s.name: s
    for s in (
        _Synthetic(
            "pathfinder",
            2,
            {
                "size": _Param(16, 12, 256, "image height and width"),
                "n": _Param(6000, 20, 1_000_000, "number of images (half of each class)"),
                "paths": _Param(2, 2, 8, "curves per image (the marked ones + distractors)"),
                "length": _Param(20, 4, 4096, "steps per curve (default 1.25 * size)"),
                "seed": _Param(-1, -1, 2**31 - 1, "generator seed (default: load seed)"),
            },
            "positive control: are the two marked dots joined by one curve? (long-range)",
            "make_pathfinder",
            ("disconnected", "connected"),
        ),
        _Synthetic(
            "same_different",
            2,
            {
                "size": _Param(16, 12, 256, "image height and width"),
                "n": _Param(6000, 20, 1_000_000, "number of images (half of each class)"),
                "patch": _Param(4, 2, 8, "side of the two square patterns"),
                "seed": _Param(-1, -1, 2**31 - 1, "generator seed (default: load seed)"),
            },
            "harder control: are two distant patterns identical? (relational; needs many images)",
            "make_same_different",
            ("different", "same"),
        ),
    )
}


def available() -> list[dict]:
    """The built-in dataset names, without importing TensorFlow.

    Returns:
        One dict per name: ``name``, ``shape`` (H, W, C), ``classes``, ``size`` (examples in
        all splits), ``download`` (whether first use downloads it) and ``description``.
    """
    rows = [
        {
            "name": b.name,
            "shape": b.shape,
            "classes": b.classes,
            "size": b.size,
            "download": b.download,
            "description": b.description,
        }
        for b in _BUILTINS.values()
    ]
    for s in _SYNTHETIC.values():
        values = s.resolve({})
        size = values["size"]
        rows.append(
            {
                "name": s.name,
                "shape": (size, size, 1),
                "classes": s.classes,
                "size": values["n"],
                "download": False,
                "description": s.description,
            }
        )
    return rows


def _known_names() -> list[str]:
    return [*_BUILTINS, *_SYNTHETIC]


# --------------------------------------------------------------------------------------------
# The resolver


def load_dataset(
    spec: Any = "digits",
    *,
    image_size: int | tuple[int, int] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    limit: int | None = None,
    seed: int = 0,
    skip_corrupt: bool = False,
    in_memory_limit_mb: float = DEFAULT_IN_MEMORY_LIMIT_MB,
) -> Dataset:
    """Turns a name, a path, arrays or a `Dataset` into a `Dataset` with train/val/test splits.

    Splits are stratified (each class keeps its share, and every non-empty split holds at least
    one example of each class) and fixed by ``seed``: the same spec and seed always give the
    same split. A source's own test split (``keras.datasets``, ``x_test`` in an .npz) is kept as
    the test split, for the final evaluation only; its own ``x_val`` is kept too.

    Args:
        spec: what to load:
            - a built-in name: ``"digits"``, ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``,
              ``"cifar100"``, or a synthetic task, ``"pathfinder"`` or ``"same_different"``,
              with optional parameters, e.g.
              ``"pathfinder:size=24,n=2000,paths=3,length=30,seed=1"`` or
              ``"same_different:size=32,patch=3"``;
            - a folder with one sub-folder of images per class (PNG, JPEG, BMP, GIF; any sizes
              and modes; sub-folders of a class folder are searched too);
            - an ``.npz`` file with ``x_train, y_train`` and optionally ``x_val, y_val,
              x_test, y_test``, or ``x, y``; labels may be integers or strings;
            - a tuple ``(x, y)`` of arrays, or a mapping with the .npz keys;
            - a `Dataset`, returned as it is (the other arguments are ignored).
            A built-in name wins over a folder of the same name: write ``./digits`` for the
            folder. Defaults to ``"digits"``.
        image_size: ``(height, width)`` or one int for square images. Folders resize every image
            to it (default: the most common size in the folder); other sources are resized only
            when it is given. Defaults to None.
        val_fraction: share of the examples being split that goes to validation (ignored when
            the source has its own validation split). Defaults to 0.15.
        test_fraction: share that goes to test (ignored when the source has its own test
            split; then ``val_fraction`` is a share of the source's training part).
            Defaults to 0.15.
        limit: cap on the total number of examples over all splits, for quick runs: a
            stratified subsample drawn with ``seed`` before splitting; a source's own splits
            are capped in proportion to their sizes. Defaults to None (everything).
        seed: fixes the subsample, the split, the default shuffle of ``train()``, and the
            generator of synthetic tasks (unless the spec sets ``seed=``). Defaults to 0.
        skip_corrupt: folders only: skip unreadable image files with one warning that counts
            them, instead of stopping with an error that names them. Defaults to False.
        in_memory_limit_mb: folders only: a folder whose decoded images (uint8) would need
            more than this many MiB streams from disk instead of being loaded whole.
            Defaults to 2048.

    Returns:
        A `Dataset`.

    Raises:
        DatasetError: with one line naming the path or key and what to do, for: a path that
            does not exist, an unknown name (with the closest known one), an empty folder,
            fewer than two classes, a class folder with no (readable) images, unreadable image
            files, an .npz with missing keys, x and y of different lengths, wrong dimensions,
            NaN or infinite values, a class with too few examples to split, a download that
            fails, and invalid arguments.
    """
    if isinstance(spec, Dataset):
        return spec
    size = _check_args(image_size, val_fraction, test_fraction, limit, seed, in_memory_limit_mb)
    source = _resolve(spec, seed, size, skip_corrupt, in_memory_limit_mb)
    return _build(source, size, float(val_fraction), float(test_fraction), limit, int(seed))


def check_spec(spec: Any) -> None:
    """Checks a dataset spec without loading it or importing TensorFlow.

    Catches what can be known from the spec alone: unknown names (with a suggestion), bad
    synthetic parameters, paths that do not exist or are not a folder or an .npz file. The CLI
    calls it before TensorFlow starts.

    Raises:
        DatasetError: as `load_dataset` would, with the same message.
    """
    if isinstance(spec, (Dataset, tuple, list, Mapping)):
        return
    _parse_name_or_path(spec)


def _check_args(image_size, val_fraction, test_fraction, limit, seed, in_memory_limit_mb):
    size = _check_image_size(image_size)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.number))
            or not 0 <= value < 1
        ):
            raise DatasetError(
                f"`{name}` must be a number in [0, 1). Received: {name}={value!r}"
            )
    if val_fraction + test_fraction >= 1:
        raise DatasetError(
            "`val_fraction` + `test_fraction` must be below 1, to leave examples for training. "
            f"Received: val_fraction={val_fraction!r}, test_fraction={test_fraction!r}"
        )
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1
    ):
        raise DatasetError(f"`limit` must be a positive integer or None. Received: limit={limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
    if (
        isinstance(in_memory_limit_mb, bool)
        or not isinstance(in_memory_limit_mb, (int, float, np.number))
        or not in_memory_limit_mb >= 0
    ):
        raise DatasetError(
            "`in_memory_limit_mb` must be a number >= 0. "
            f"Received: in_memory_limit_mb={in_memory_limit_mb!r}"
        )
    return size


def _check_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    value = image_size
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                for v in value)
    ):
        return int(value[0]), int(value[1])
    raise DatasetError(
        "`image_size` must be (height, width) with positive integers, or one positive integer. "
        f"Received: image_size={image_size!r}"
    )


def _check_split(split) -> None:
    if split not in SPLITS:
        raise DatasetError(
            f"`split` must be one of 'train', 'val', 'test'. Received: split={split!r}"
        )


@dataclasses.dataclass
class _Source:
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


def _parse_name_or_path(spec) -> tuple[str, Any]:
    """-> ("builtin", name) | ("synthetic", (name, params)) | ("folder", path) | ("npz", path)."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise DatasetError(
            "`spec` must be a dataset name, a folder, an .npz file, a tuple (x, y) of arrays or "
            f"a Dataset. Received: spec of type {type(spec).__name__}"
        )
    text = spec.strip()
    head, sep, tail = text.partition(":")
    key = head.strip().lower().replace("-", "_")
    if key in _BUILTINS:
        if sep:
            raise DatasetError(
                f"Dataset {key!r} takes no parameters. Received: {spec!r}"
            )
        return "builtin", key
    if key in _SYNTHETIC:
        return "synthetic", (key, _parse_params(_SYNTHETIC[key], tail if sep else "", spec))
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
        return "folder", path
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(
                f"Dataset file {str(path)!r} is not an .npz file; pass a folder with one "
                "sub-folder of images per class, or an .npz file with x_train, y_train "
                "(or x, y)."
            )
        return "npz", path
    looks_like_path = (
        os.sep in text
        or "/" in text
        or text.lower().endswith(".npz")
        or text.startswith((".", "~"))
    )
    if looks_like_path or not text:
        raise DatasetError(
            f"Dataset path does not exist: {text!r}. Check the path, or use a built-in name "
            "(see `attn-search datasets`)."
        )
    close = difflib.get_close_matches(key, _known_names(), n=1, cutoff=0.5)
    hint = f"Did you mean {close[0]!r}?" if close else f"Known names: {', '.join(_known_names())}."
    raise DatasetError(
        f"Unknown dataset {text!r}: not a built-in name, nor an existing folder or .npz file. "
        f"{hint} (see `attn-search datasets`)"
    )


def _parse_params(task: _Synthetic, text: str, spec: str) -> dict[str, int]:
    given: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not name:
            example = f"{task.name}:size=32,n=4000"
            raise DatasetError(
                f"Cannot parse {spec!r}: write parameters as name=value separated by commas, "
                f"e.g. {example!r}."
            )
        if name not in task.params:
            close = difflib.get_close_matches(name, list(task.params), n=1, cutoff=0.5)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise DatasetError(
                f"Unknown parameter {name!r} for dataset {task.name!r} in {spec!r}. {hint}"
                f"Known: {', '.join(task.params)}."
            )
        p = task.params[name]
        try:
            number = int(value)
        except ValueError:
            number = None
        low = 0 if name == "seed" else p.minimum
        if number is None or not low <= number <= p.maximum:
            raise DatasetError(
                f"Parameter {name!r} of dataset {task.name!r} must be an integer in "
                f"[{low}, {p.maximum}]. Received: {name}={value!r} in {spec!r}"
            )
        given[name] = number
    return given


def _resolve(spec, seed: int, size, skip_corrupt: bool, in_memory_limit_mb: float) -> _Source:
    if isinstance(spec, Mapping):
        return _from_arrays(dict(spec), "arrays", "the given arrays", "arrays")
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise DatasetError(
                "A dataset given as arrays must be a pair (x, y). "
                f"Received: a {type(spec).__name__} of length {len(spec)}"
            )
        return _from_arrays({"x": spec[0], "y": spec[1]}, "arrays", "the given arrays", "arrays")
    kind, value = _parse_name_or_path(spec)
    if kind == "builtin":
        return _load_digits() if value == "digits" else _load_keras(value)
    if kind == "synthetic":
        name, params = value
        return _load_synthetic(name, params, seed)
    if kind == "npz":
        return _load_npz(value)
    return _load_folder(value, size, skip_corrupt, in_memory_limit_mb)


# --------------------------------------------------------------------------------------------
# Splits


def _allocate(counts: np.ndarray, k: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
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
        rest.append(idx[quota[c]:])
    taken = np.concatenate(taken) if taken else np.zeros(0, np.int64)
    rest = np.concatenate(rest) if rest else np.zeros(0, np.int64)
    return np.sort(taken), np.sort(rest)


def _class_label(source: _Source, c: int) -> str:
    return source.class_names[c] if c < len(source.class_names) else str(c)


def _build(source: _Source, size, val_fraction: float, test_fraction: float, limit, seed: int):
    rng = np.random.default_rng(seed)
    k_classes = len(source.class_names)
    parts = dict(source.parts)
    limit_note = f" after limit={limit}" if limit is not None else ""

    # Which splits must be carved out of the "train" part, and how many examples each class
    # needs there so that every non-empty split gets at least one of it.
    carve = [s for s, f in (("test", test_fraction), ("val", val_fraction))
             if s not in parts and f > 0]
    need = {"train": 1 + len(carve), "val": 1, "test": 1}

    counts = {s: np.bincount(parts[s][1], minlength=k_classes) for s in parts}

    def check_counts(stage: str) -> None:
        c = counts["train"]
        bad = np.flatnonzero(c < need["train"])
        if len(bad):
            i = int(bad[0])
            raise DatasetError(
                f"Class {_class_label(source, i)!r} has only {int(c[i])} example(s) in "
                f"{source.name}{stage}; a stratified train/val/test split needs at least "
                f"{need['train']} per class. Add examples to that class or remove it, raise "
                "`limit`, or set val_fraction/test_fraction to 0."
            )

    check_counts("")

    # limit: one cap over all parts, shared in proportion to their sizes.
    total = sum(len(parts[s][1]) for s in parts)
    if limit is not None and limit < total:
        names = list(parts)
        sizes = np.array([len(parts[s][1]) for s in names])
        lows = np.array([
            int(np.minimum(counts[s], need[s] if s == "train" else 1).sum()) for s in names
        ])
        if limit < lows.sum():
            raise DatasetError(
                f"`limit` is too small for a stratified split of {k_classes} classes in "
                f"{source.name}: it needs at least {int(lows.sum())} examples. Raise `limit`, "
                f"or set val_fraction/test_fraction to 0. Received: limit={limit}"
            )
        shares = _allocate(sizes, limit, lows, sizes)
        for s, share in zip(names, shares):
            x, y = parts[s]
            low = np.minimum(counts[s], need[s] if s == "train" else 1)
            quota = _allocate(counts[s], int(share), low, counts[s])
            idx, _ = _take(y, quota, rng, k_classes)
            parts[s] = (x[idx], y[idx])
            counts[s] = np.bincount(parts[s][1], minlength=k_classes)
        check_counts(limit_note)

    # Carve test, then val, out of the train part.
    x, y = parts.pop("train")
    n = len(y)
    remaining = counts["train"].copy()
    for i, split in enumerate(carve):
        fraction = test_fraction if split == "test" else val_fraction
        k = max(round(fraction * n), k_classes)
        later = len(carve) - i  # train + splits still to carve after this one
        high = remaining - later
        k = min(k, int(high.sum()))
        quota = _allocate(remaining, k, np.ones(k_classes, np.int64), high)
        idx, rest = _take(y, quota, rng, k_classes)
        parts[split] = (x[idx], y[idx])
        x, y = x[rest], y[rest]
        remaining = remaining - quota
    parts["train"] = (x, y)

    # Shuffle within each split once, so arrays() is not sorted by class.
    splits = {}
    for s in SPLITS:
        if s in parts:
            xs, ys = parts[s]
            order = rng.permutation(len(ys))
            splits[s] = (xs[order], ys[order].astype(np.int32))
        else:
            splits[s] = (_empty_like(parts["train"][0]), np.zeros(0, np.int32))

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
        num_classes=k_classes,
        class_names=tuple(source.class_names),
        sizes={s: int(len(splits[s][1])) for s in SPLITS},
        streaming=source.streaming,
    )
    return Dataset(info, splits, scale=scale, seed=seed, reader=source.reader)


def _empty_like(x: np.ndarray) -> np.ndarray:
    return np.zeros((0, *x.shape[1:]), dtype=x.dtype)


def _scaled(x: np.ndarray, scale: float) -> np.ndarray:
    out = x.astype(np.float32)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


def _resize(x: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """Bilinear (antialiased) resize of in-memory images to ``size``; float32 in [0, 1]."""
    import tensorflow as tf

    out = np.empty((len(x), *size, x.shape[-1]), np.float32)
    for start in range(0, len(x), 1024):
        chunk = _scaled(x[start:start + 1024], scale)
        out[start:start + 1024] = tf.image.resize(chunk, size, antialias=True).numpy()
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Labels and arrays (.npz, (x, y), keras.datasets)


def _encode_labels(ys: dict[str, np.ndarray], where: str) -> tuple[dict, tuple[str, ...]]:
    """Maps integer or string labels of every part onto 0..K-1 (sorted); -> (ids, names)."""
    for key, y in ys.items():
        if y.dtype.kind == "f":
            if not np.isfinite(y).all():
                raise DatasetError(
                    f"{key!r} in {where} has NaN or infinite labels; use integer or string "
                    "labels."
                )
            if not np.all(y == np.round(y)):
                bad = y[y != np.round(y)][0]
                raise DatasetError(
                    f"{key!r} in {where} has non-integer labels (e.g. {bad!r}); use integer or "
                    "string labels."
                )
        elif y.dtype.kind not in "iubUS":
            raise DatasetError(
                f"{key!r} in {where} has labels of dtype {y.dtype}; use integer or string "
                "labels."
            )
    kinds = {"str" if y.dtype.kind in "US" else "num" for y in ys.values()}
    if len(kinds) > 1:
        raise DatasetError(
            f"The label arrays in {where} mix strings and numbers ({', '.join(ys)}); use one "
            "kind for every split."
        )
    if kinds == {"str"}:
        ys = {k: y.astype(str) for k, y in ys.items()}
    else:
        ys = {k: y.astype(np.int64) for k, y in ys.items()}
    classes = np.unique(np.concatenate(list(ys.values())))
    ids = {k: np.searchsorted(classes, y).astype(np.int32) for k, y in ys.items()}
    return ids, tuple(str(c) for c in classes)


def _check_images(key: str, x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "uifb":
        raise DatasetError(
            f"{key!r} in {where} has values of dtype {x.dtype}; images must be numbers."
        )
    if x.dtype.kind == "b":
        x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[1] < 1 or x.shape[2] < 1:
        raise DatasetError(
            f"{key!r} in {where} has shape {tuple(x.shape)}; images must be (N, H, W), "
            "(N, H, W, 1) or (N, H, W, 3), channels last."
        )
    if len(x) == 0:
        raise DatasetError(f"{key!r} in {where} is empty; it must hold at least one image.")
    if x.dtype.kind == "f":
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise DatasetError(
                f"{key!r} in {where} has {bad} NaN or infinite value(s); replace them or remove "
                "those images."
            )
    return x


def _to_unit_range(xs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
    """One shared map of every part to [0, 1]: 8-bit ints kept (scale 1/255), others float32.

    Integers in 0..255 are divided by 255 and 0..65535 by 65535; floats already in [0, 1] are
    kept and floats in 0..255 divided by 255; anything else is min-max scaled over all parts.
    """
    lo = min(float(x.min()) for x in xs.values())
    hi = max(float(x.max()) for x in xs.values())
    integer = all(x.dtype.kind in "uib" for x in xs.values())
    if integer and lo >= 0 and hi <= 255:
        return {k: x.astype(np.uint8, copy=False) for k, x in xs.items()}, 1.0 / 255.0
    if integer and lo >= 0 and hi <= 65535:
        offset, span = 0.0, 65535.0
    elif lo >= 0 and hi <= 1:
        offset, span = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        offset, span = 0.0, 255.0
    else:
        offset, span = lo, (hi - lo) or 1.0
    return {
        k: ((x.astype(np.float32) - np.float32(offset)) / np.float32(span)) for k, x in xs.items()
    }, 1.0


def _from_arrays(arrays: dict, name: str, where: str, source: str) -> _Source:
    """Validates arrays keyed like an .npz file and makes a `_Source`."""
    keys = set(arrays)
    if {"x_train", "y_train"} <= keys:
        pairs = {"train": ("x_train", "y_train")}
        for split in ("val", "test"):
            xk, yk = f"x_{split}", f"y_{split}"
            if (xk in keys) != (yk in keys):
                have, miss = (xk, yk) if xk in keys else (yk, xk)
                raise DatasetError(
                    f"{where} has {have!r} but no {miss!r}; give both or neither."
                )
            if xk in keys:
                pairs[split] = (xk, yk)
    elif {"x", "y"} <= keys:
        pairs = {"train": ("x", "y")}
    else:
        found = ", ".join(sorted(map(str, keys))) or "nothing"
        raise DatasetError(
            f"{where} has no 'x_train' and 'y_train' arrays (nor 'x' and 'y'); found: {found}. "
            "Save it with numpy.savez(path, x_train=images, y_train=labels)."
        )
    xs, ys = {}, {}
    for split, (xk, yk) in pairs.items():
        x = np.asarray(arrays[xk])
        y = np.asarray(arrays[yk])
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DatasetError(
                f"{yk!r} in {where} has shape {tuple(y.shape)}; it must hold one label per "
                "image, shape (N,) (for one-hot labels use numpy.argmax(y, axis=1))."
            )
        x = _check_images(xk, x, where)
        if len(x) != len(y):
            raise DatasetError(
                f"{xk!r} has {len(x)} images but {yk!r} has {len(y)} labels in {where}; they "
                "must have the same length."
            )
        xs[split], ys[split] = x, y
    shapes = {s: xs[s].shape[1:] for s in xs}
    for split, shape in shapes.items():
        if shape != shapes["train"]:
            xk, x0 = pairs[split][0], pairs["train"][0]
            raise DatasetError(
                f"{xk!r} images are {'x'.join(map(str, shape))} but {x0!r} images are "
                f"{'x'.join(map(str, shapes['train']))} in {where}; every split must have the "
                "same image shape."
            )
    ids, class_names = _encode_labels({pairs[s][1]: ys[s] for s in ys}, where)
    if len(class_names) < 2:
        raise DatasetError(
            f"{where} has {len(class_names)} class ({', '.join(class_names)}); classification "
            "needs at least two."
        )
    xs, scale = _to_unit_range(xs)
    parts = {s: (xs[s], ids[pairs[s][1]]) for s in xs}
    return _Source(name=name, source=source, class_names=class_names, parts=parts, scale=scale)


def _load_npz(path: pathlib.Path) -> _Source:
    where = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip, truncated, ...
        raise DatasetError(
            f"Cannot read {where} as an .npz file ({type(e).__name__}: {e}); save it with "
            "numpy.savez(path, x_train=images, y_train=labels)."
        ) from None
    if not hasattr(archive, "files"):
        raise DatasetError(
            f"{where} holds one array, not named arrays; save it with "
            "numpy.savez(path, x_train=images, y_train=labels)."
        )
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise DatasetError(
                        f"{key!r} in {where} is stored as Python objects, which are not loaded "
                        "(unsafe); save labels as integers or strings, e.g. "
                        "numpy.asarray(labels, dtype=str)."
                    ) from None
                raise DatasetError(f"Cannot read {key!r} in {where}: {e}") from None
    return _from_arrays(arrays, path.stem, where, f"npz:{path.resolve()}")


def _load_digits() -> _Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are counts 0..16: stored as uint8, scaled by 1/16.
    x = digits.images.astype(np.uint8)[..., None]
    y = digits.target.astype(np.int32)
    return _Source(
        name="digits",
        source="sklearn.datasets.load_digits",
        class_names=tuple(str(i) for i in range(10)),
        parts={"train": (x, y)},
        scale=1.0 / 16.0,
    )


def _load_keras(name: str) -> _Source:
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:  # keras.utils.get_file raises a bare Exception when offline
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise DatasetError(
            f"Could not get {name!r} through keras.datasets ({reason}). Offline? Save a copy "
            f"as .npz with x_train, y_train, x_test, y_test (numpy.savez) and pass its path "
            f"instead, e.g. --dataset {name}.npz."
        ) from None
    names = {
        "mnist": tuple(str(i) for i in range(10)),
        "fashion_mnist": _FASHION_NAMES,
        "cifar10": _CIFAR10_NAMES,
        "cifar100": _CIFAR100_NAMES,
    }[name]
    x_train = _check_images("x_train", np.asarray(x_train), f"keras.datasets.{name}")
    x_test = _check_images("x_test", np.asarray(x_test), f"keras.datasets.{name}")
    y_train = np.asarray(y_train).reshape(-1).astype(np.int32)
    y_test = np.asarray(y_test).reshape(-1).astype(np.int32)
    return _Source(
        name=name,
        source=f"keras.datasets.{name}",
        class_names=names,
        parts={
            "train": (x_train.astype(np.uint8, copy=False), y_train),
            "test": (x_test.astype(np.uint8, copy=False), y_test),
        },
        scale=1.0 / 255.0,
    )


# --------------------------------------------------------------------------------------------
# Folders of images


_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def _is_colour(image) -> bool:
    mode = image.mode
    if mode in _GRAY_MODES:
        return False
    if mode in ("P", "PA"):
        try:
            palette = image.getpalette() or []
        except Exception:
            return True
        triples = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
        return not bool(np.all((triples[:, 0] == triples[:, 1]) & (triples[:, 1] == triples[:, 2])))
    return True


def _read_image(path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decodes one image file to uint8 (H, W, C): first frame, alpha dropped, bilinear resize."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode.startswith("I;16") or image.mode in ("I", "F"):
            values = np.asarray(image, dtype=np.float64)
            if image.mode.startswith("I;16"):
                values = values / 257.0
            image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
        image = image.convert("RGB" if channels == 3 else "L")
        h, w = size
        if image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(h, w, channels)


class _FileReader:
    """Picklable reader used by streaming pipelines (tf.numpy_function)."""

    def __init__(self, size: tuple[int, int], channels: int) -> None:
        self.size = size
        self.channels = channels

    def __call__(self, path) -> np.ndarray:
        if isinstance(path, bytes):
            path = path.decode()
        return _read_image(path, self.size, self.channels)


def _list_corrupt(root: pathlib.Path, files: list[pathlib.Path]) -> str:
    names = [f.relative_to(root).as_posix() for f in files]
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f" and {len(names) - _MAX_LISTED} more"
    return shown


def _load_folder(root: pathlib.Path, size, skip_corrupt: bool, limit_mb: float) -> _Source:
    from PIL import Image

    where = str(root)
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    entries = [p for p in entries if not p.name.startswith(".")]
    class_dirs = [p for p in entries if p.is_dir()]
    if not entries:
        raise DatasetError(
            f"Dataset folder is empty: {where!r}. Put one sub-folder of images per class in it, "
            f"e.g. {os.path.join(where, 'cats', '1.png')!r}."
        )
    if not class_dirs:
        raise DatasetError(
            f"Dataset folder {where!r} has no class sub-folders; put the images of each class "
            f"in a sub-folder named after it, e.g. {os.path.join(where, 'cats', '1.png')!r}."
        )
    if len(class_dirs) < 2:
        raise DatasetError(
            f"Dataset folder {where!r} has 1 class sub-folder ({class_dirs[0].name!r}); "
            "classification needs at least two. Add one sub-folder of images per class."
        )

    files: list[pathlib.Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(
            p for p in class_dir.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
        )
        if not found:
            raise DatasetError(
                f"Class folder {str(class_dir)!r} has no images (PNG, JPEG, BMP or GIF); add "
                "images to it or remove it."
            )
        files.extend(found)
        labels.extend([label] * len(found))

    # Pass 1: headers only (sizes, modes).
    sizes: list[tuple[int, int] | None] = []
    colour = False
    corrupt: list[pathlib.Path] = []
    for f in files:
        try:
            with Image.open(f) as image:
                sizes.append((image.size[1], image.size[0]))
                colour = colour or _is_colour(image)
        except Exception:
            sizes.append(None)
            corrupt.append(f)
    channels = 3 if colour else 1
    if size is None:
        common = Counter(s for s in sizes if s is not None).most_common(1)
        size = common[0][0] if common else (1, 1)
    n_ok = len(files) - len(corrupt)
    streaming = n_ok * size[0] * size[1] * channels > limit_mb * 2**20

    # Pass 2: decode every image (kept in memory, or only checked when streaming).
    images: list[np.ndarray] = []
    keep: list[int] = []
    bad = set(corrupt)
    for i, f in enumerate(files):
        if f in bad:
            continue
        try:
            array = _read_image(f, size, channels)
        except Exception:
            corrupt.append(f)
            continue
        keep.append(i)
        if not streaming:
            images.append(array)
    if corrupt:
        corrupt.sort()
        listed = _list_corrupt(root, corrupt)
        if not skip_corrupt:
            raise DatasetError(
                f"{len(corrupt)} image file(s) in {where!r} cannot be read: {listed}. Fix or "
                "remove them, or pass skip_corrupt=True (--skip-corrupt) to skip them."
            )
        warnings.warn(
            f"Skipped {len(corrupt)} unreadable image file(s) in {where!r}: {listed}.",
            UserWarning,
            stacklevel=4,
        )
    y = np.asarray([labels[i] for i in keep], np.int32)
    counts = np.bincount(y, minlength=len(class_dirs))
    for label, class_dir in enumerate(class_dirs):
        if counts[label] == 0:
            raise DatasetError(
                f"Class folder {str(class_dir)!r} has no readable images (every one was "
                "skipped as unreadable); add images to it or remove it."
            )
    class_names = tuple(d.name for d in class_dirs)
    source = f"folder:{root.resolve()}"
    if streaming:
        paths = np.asarray([str(files[i]) for i in keep])
        return _Source(
            name=root.resolve().name, source=source, class_names=class_names,
            parts={"train": (paths, y)}, scale=1.0 / 255.0, streaming=True,
            input_shape=(size[0], size[1], channels), reader=_FileReader(size, channels),
        )
    x = np.stack(images) if images else np.zeros((0, *size, channels), np.uint8)
    return _Source(
        name=root.resolve().name, source=source, class_names=class_names,
        parts={"train": (x, y)}, scale=1.0 / 255.0, resizable=False,
    )


# --------------------------------------------------------------------------------------------
# Synthetic tasks


def _load_synthetic(name: str, given: dict[str, int], seed: int) -> _Source:
    task = _SYNTHETIC[name]
    values = task.resolve(given)
    if values["seed"] < 0:
        values["seed"] = seed
    x, y = globals()[task.make](**values)
    params = ",".join(f"{k}={v}" for k, v in values.items())
    return _Source(
        name=name,
        source=f"synthetic:{name}({params})",
        class_names=task.class_names,
        parts={"train": (x[..., None], y)},
        scale=1.0 / 255.0,
    )


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
        for j, (b, c) in enumerate(zip(key[ok], label[ok])):
            pools.setdefault((int(b), int(c)), []).append(start + j)
        # Matched counts per key: the same number of each class for every key.
        matched = np.array([
            min(len(pools.get((b, 0), [])), len(pools.get((b, 1), []))) for b in range(n_keys)
        ])
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
        per_bin[c] = _allocate(matched, want[c], np.zeros_like(matched), matched)
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

"""Resolving a spec: built-in and synthetic names (with ``name:k=v`` parameters), paths,
arrays and `Dataset` objects -> the right loader; `load_dataset`, `check_spec`, `available`.

Nothing here imports TensorFlow, so `available()` and `check_spec()` answer at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from attn_search.datasets._arrays import from_arrays, load_digits, load_keras, load_npz
from attn_search.datasets._dataset import Dataset, Source
from attn_search.datasets._folders import DEFAULT_IN_MEMORY_LIMIT_MB, load_folder
from attn_search.datasets._splits import split
from attn_search.datasets._synthetic import SYNTHETIC, SyntheticTask, load_synthetic
from attn_search.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class _Builtin:
    name: str
    shape: tuple[int, int, int]
    classes: int
    size: int  # examples in all splits
    download: bool  # whether first use downloads it
    load: Callable[[], Source]

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.name]


def _keras(name: str) -> Callable[[], Source]:
    """The loader of one of the ``keras.datasets`` sets."""
    return partial(load_keras, name)


_BUILTINS = {
    b.name: b
    for b in (
        _Builtin("digits", (8, 8, 1), 10, 1797, False, load_digits),
        _Builtin("mnist", (28, 28, 1), 10, 70000, True, _keras("mnist")),
        _Builtin("fashion_mnist", (28, 28, 1), 10, 70000, True, _keras("fashion_mnist")),
        _Builtin("cifar10", (32, 32, 3), 10, 60000, True, _keras("cifar10")),
        _Builtin("cifar100", (32, 32, 3), 100, 60000, True, _keras("cifar100")),
    )
}
_DESCRIPTIONS = {
    "digits": "handwritten digits 0-9 from scikit-learn, embedded; the quick default",
    "mnist": "handwritten digits (keras.datasets; own 10000-image test split)",
    "fashion_mnist": "clothing photos (keras.datasets; own 10000-image test split)",
    "cifar10": "small colour photos, 10 classes (keras.datasets; own test split)",
    "cifar100": "small colour photos, 100 fine classes (keras.datasets; own test split)",
}
_COLUMNS = ("name", "shape", "classes", "size", "download", "description")


def available() -> list[dict]:
    """The built-in dataset names, without importing TensorFlow.

    Returns:
        One dict per name: ``name``, ``shape`` (H, W, C), ``classes``, ``size`` (examples in
        all splits), ``download`` (whether first use downloads it) and ``description``.
    """
    rows = [{c: getattr(b, c) for c in _COLUMNS} for b in _BUILTINS.values()]
    for task in SYNTHETIC.values():
        values = task.resolve({})
        size = values["size"]
        rows.append(
            {
                "name": task.name,
                "shape": (size, size, task.channels),
                "classes": task.classes,
                "size": values["n"],
                "download": False,
                "description": task.description,
            }
        )
    return rows


def _known_names() -> list[str]:
    return [*_BUILTINS, *SYNTHETIC]


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
    return split(source, size, float(val_fraction), float(test_fraction), limit, int(seed))


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


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _check_args(image_size, val_fraction, test_fraction, limit, seed, in_memory_limit_mb):
    """Validates `load_dataset`'s arguments; -> ``image_size`` as (height, width) or None."""
    size = _check_image_size(image_size)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (_is_number(value) and 0 <= value < 1):
            raise DatasetError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    if val_fraction + test_fraction >= 1:
        raise DatasetError(
            "`val_fraction` + `test_fraction` must be below 1, to leave examples for training. "
            f"Received: val_fraction={val_fraction!r}, test_fraction={test_fraction!r}"
        )
    if limit is not None and not (_is_int(limit) and limit >= 1):
        raise DatasetError(f"`limit` must be a positive integer or None. Received: limit={limit!r}")
    if not (_is_int(seed) and seed >= 0):
        raise DatasetError(f"`seed` must be a non-negative integer. Received: seed={seed!r}")
    if not (_is_number(in_memory_limit_mb) and in_memory_limit_mb >= 0):
        raise DatasetError(
            "`in_memory_limit_mb` must be a number >= 0. "
            f"Received: in_memory_limit_mb={in_memory_limit_mb!r}"
        )
    return size


def _check_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    value = (image_size, image_size) if _is_int(image_size) else image_size
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_int(v) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise DatasetError(
        "`image_size` must be (height, width) with positive integers, or one positive integer. "
        f"Received: image_size={image_size!r}"
    )


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
            raise DatasetError(f"Dataset {key!r} takes no parameters. Received: {spec!r}")
        return "builtin", key
    if key in SYNTHETIC:
        return "synthetic", (key, _parse_params(SYNTHETIC[key], tail if sep else "", spec))
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


def _parse_params(task: SyntheticTask, text: str, spec: str) -> dict[str, int]:
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
        if number is None or not p.minimum <= number <= p.maximum:
            raise DatasetError(
                f"Parameter {name!r} of dataset {task.name!r} must be an integer in "
                f"[{p.minimum}, {p.maximum}]. Received: {name}={value!r} in {spec!r}"
            )
        given[name] = number
    return given


def _resolve(spec, seed: int, size, skip_corrupt: bool, in_memory_limit_mb: float) -> Source:
    """Hands ``spec`` to its loader: arrays, a built-in or synthetic name, an .npz, a folder."""
    if isinstance(spec, Mapping):
        return from_arrays(dict(spec), "arrays", "the given arrays", "arrays")
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            raise DatasetError(
                "A dataset given as arrays must be a pair (x, y). "
                f"Received: a {type(spec).__name__} of length {len(spec)}"
            )
        return from_arrays({"x": spec[0], "y": spec[1]}, "arrays", "the given arrays", "arrays")
    kind, value = _parse_name_or_path(spec)
    if kind == "builtin":
        return _BUILTINS[value].load()
    if kind == "synthetic":
        name, params = value
        return load_synthetic(name, params, seed)
    if kind == "npz":
        return load_npz(value)
    return load_folder(value, size, skip_corrupt, in_memory_limit_mb)

"""Arrays: a tuple ``(x, y)``, a mapping or an .npz file of named arrays, `keras.datasets` and
scikit-learn's digits -> a `Source` with labels 0..K-1 and images mapped to [0, 1]."""

from __future__ import annotations

import pathlib

import numpy as np

from attn_search.datasets._dataset import Source
from attn_search.errors import DatasetError

_SAVE_HINT = "numpy.savez(path, x_train=images, y_train=labels)"

_CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
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
)  # fmt: skip
KERAS_CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": _FASHION_NAMES,
    "cifar10": _CIFAR10_NAMES,
    "cifar100": _CIFAR100_NAMES,
}


def _check_labels(key: str, y: np.ndarray, where: str) -> None:
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DatasetError(
                f"{key!r} in {where} has NaN or infinite labels; use integer or string labels."
            )
        if not np.all(y == np.round(y)):
            bad = y[y != np.round(y)][0]
            raise DatasetError(
                f"{key!r} in {where} has non-integer labels (e.g. {bad!r}); use integer or "
                "string labels."
            )
    elif y.dtype.kind not in "iubUS":
        raise DatasetError(
            f"{key!r} in {where} has labels of dtype {y.dtype}; use integer or string labels."
        )


def _encode_labels(ys: dict[str, np.ndarray], where: str) -> tuple[dict, tuple[str, ...]]:
    """Maps integer or string labels of every part onto 0..K-1 (sorted); -> (ids, names)."""
    for key, y in ys.items():
        _check_labels(key, y, where)
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


def check_images(key: str, x: np.ndarray, where: str) -> np.ndarray:
    """``x`` as (N, H, W, C) with C in (1, 3), or a `DatasetError` naming ``key``."""
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


def _pair_keys(keys: set, where: str) -> dict[str, tuple[str, str]]:
    """split -> (x key, y key) for arrays keyed like an .npz file."""
    if {"x_train", "y_train"} <= keys:
        pairs = {"train": ("x_train", "y_train")}
        for split in ("val", "test"):
            xk, yk = f"x_{split}", f"y_{split}"
            if (xk in keys) != (yk in keys):
                have, miss = (xk, yk) if xk in keys else (yk, xk)
                raise DatasetError(f"{where} has {have!r} but no {miss!r}; give both or neither.")
            if xk in keys:
                pairs[split] = (xk, yk)
        return pairs
    if {"x", "y"} <= keys:
        return {"train": ("x", "y")}
    found = ", ".join(sorted(map(str, keys))) or "nothing"
    raise DatasetError(
        f"{where} has no 'x_train' and 'y_train' arrays (nor 'x' and 'y'); found: {found}. "
        f"Save it with {_SAVE_HINT}."
    )


def _check_pair(xk: str, x: np.ndarray, yk: str, y: np.ndarray, where: str):
    """One split's images and labels, checked: -> (x (N, H, W, C), y (N,))."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(
            f"{yk!r} in {where} has shape {tuple(y.shape)}; it must hold one label per "
            "image, shape (N,) (for one-hot labels use numpy.argmax(y, axis=1))."
        )
    x = check_images(xk, x, where)
    if len(x) != len(y):
        raise DatasetError(
            f"{xk!r} has {len(x)} images but {yk!r} has {len(y)} labels in {where}; they "
            "must have the same length."
        )
    return x, y


def from_arrays(arrays: dict, name: str, where: str, source: str) -> Source:
    """Validates arrays keyed like an .npz file and makes a `Source`."""
    pairs = _pair_keys(set(arrays), where)
    xs, ys = {}, {}
    for split, (xk, yk) in pairs.items():
        xs[split], ys[split] = _check_pair(
            xk, np.asarray(arrays[xk]), yk, np.asarray(arrays[yk]), where
        )
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
    return Source(name=name, source=source, class_names=class_names, parts=parts, scale=scale)


def load_npz(path: pathlib.Path) -> Source:
    """An .npz file of named arrays (``x_train, y_train``, ... or ``x, y``) -> a `Source`."""
    where = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip, truncated, ...
        raise DatasetError(
            f"Cannot read {where} as an .npz file ({type(e).__name__}: {e}); save it with "
            f"{_SAVE_HINT}."
        ) from None
    if not hasattr(archive, "files"):
        raise DatasetError(f"{where} holds one array, not named arrays; save it with {_SAVE_HINT}.")
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
    return from_arrays(arrays, path.stem, where, f"npz:{path.resolve()}")


def load_digits() -> Source:
    """scikit-learn's 8x8 handwritten digits, embedded (no download)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    # Pixel values are counts 0..16: stored as uint8, scaled by 1/16.
    x = digits.images.astype(np.uint8)[..., None]
    y = digits.target.astype(np.int32)
    return Source(
        name="digits",
        source="sklearn.datasets.load_digits",
        class_names=tuple(str(i) for i in range(10)),
        parts={"train": (x, y)},
        scale=1.0 / 16.0,
    )


def load_keras(name: str) -> Source:
    """One of `KERAS_CLASS_NAMES` through ``keras.datasets`` (downloads on first use)."""
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
    where = f"keras.datasets.{name}"
    parts = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = check_images(f"x_{split}", np.asarray(x), where)
        parts[split] = (x.astype(np.uint8, copy=False), np.asarray(y).reshape(-1).astype(np.int32))
    return Source(
        name=name,
        source=where,
        class_names=KERAS_CLASS_NAMES[name],
        parts=parts,
        scale=1.0 / 255.0,
    )

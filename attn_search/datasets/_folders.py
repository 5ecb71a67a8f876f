"""Folders of images: one sub-folder per class -> a `Source`, in memory or streamed from disk."""

from __future__ import annotations

import os
import pathlib
import warnings
from collections import Counter

import numpy as np

from attn_search.datasets._dataset import Source
from attn_search.errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# A folder whose decoded images (uint8) would take more than this streams from disk.
DEFAULT_IN_MEMORY_LIMIT_MB = 2048.0
_MAX_LISTED = 5  # file names listed in one error message
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


# How a streamed file is decoded: by PIL in Python (`_read_image`), or natively by TensorFlow
# (in parallel, no Python) where that gives the very same pixels as PIL (checked in tests).
PIL_DECODE, PNG_DECODE, JPEG_DECODE = 0, 1, 2
_NATIVE_MODES = {"PNG": {"1", "L", "LA", "RGB", "RGBA", "P"}, "JPEG": {"L", "RGB"}}


def _native_kind(header: tuple, size: tuple[int, int], channels: int) -> int:
    """How to decode a file with ``header`` (format, mode, (H, W)) to ``size`` and ``channels``.

    TensorFlow's PNG and 8-bit JPEG decoders (the latter with the accurate DCT) give exactly
    PIL's pixels; anything else (other formats, 16-bit, CMYK, a grey palette read as one
    channel, an image to resize) keeps PIL's decoding and bilinear resize.
    """
    fmt, mode, hw = header
    if hw != tuple(size) or mode not in _NATIVE_MODES.get(fmt, ()):
        return PIL_DECODE
    if mode == "P" and channels == 1:
        return PIL_DECODE
    return PNG_DECODE if fmt == "PNG" else JPEG_DECODE


class _FileReader:
    """Reads a streamed file: `__call__` with PIL, `tf_read` in a `tf.data` map (picklable).

    Args:
        size: ``(H, W)`` of the images.
        channels: 1 or 3.
        native: path -> `PNG_DECODE` or `JPEG_DECODE` for the files TensorFlow decodes.
    """

    def __init__(
        self, size: tuple[int, int], channels: int, native: dict[str, int] | None = None
    ) -> None:
        self.size = size
        self.channels = channels
        self.native = dict(native or {})

    def __call__(self, path) -> np.ndarray:
        if isinstance(path, bytes):
            path = path.decode()
        return _read_image(path, self.size, self.channels)

    def kinds(self, paths: np.ndarray) -> np.ndarray:
        """The decoder of each path (int32): `PIL_DECODE`, `PNG_DECODE` or `JPEG_DECODE`."""
        return np.asarray([self.native.get(str(p), PIL_DECODE) for p in paths], np.int32)

    def tf_read(self, path, kind, kinds_present: set[int]):
        """One image, uint8 ``(H, W, C)``, from a path and its decoder (graph tensors).

        ``kinds_present``: the decoders the split uses; only those are built into the graph.
        """
        import tensorflow as tf

        h, w = self.size
        c = self.channels
        branches = {
            PIL_DECODE: lambda: tf.numpy_function(self, [path], tf.uint8, stateful=False),
            PNG_DECODE: lambda: tf.io.decode_png(tf.io.read_file(path), channels=c),
            JPEG_DECODE: lambda: tf.io.decode_jpeg(
                tf.io.read_file(path), channels=c, dct_method="INTEGER_ACCURATE"
            ),
        }
        if len(kinds_present) == 1:
            image = branches[next(iter(kinds_present))]()
        else:
            image = tf.switch_case(kind, [branches[k] for k in sorted(branches)])
        return tf.reshape(image, (h, w, c))


def _list_corrupt(root: pathlib.Path, files: list[pathlib.Path]) -> str:
    names = [f.relative_to(root).as_posix() for f in files]
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f" and {len(names) - _MAX_LISTED} more"
    return shown


def _class_dirs(root: pathlib.Path) -> list[pathlib.Path]:
    """The class sub-folders of ``root``, by name; at least two."""
    where = str(root)
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    entries = [p for p in entries if not p.name.startswith(".")]
    class_dirs = [p for p in entries if p.is_dir()]
    example = os.path.join(where, "cats", "1.png")
    if not entries:
        raise DatasetError(
            f"Dataset folder is empty: {where!r}. Put one sub-folder of images per class in it, "
            f"e.g. {example!r}."
        )
    if not class_dirs:
        raise DatasetError(
            f"Dataset folder {where!r} has no class sub-folders; put the images of each class "
            f"in a sub-folder named after it, e.g. {example!r}."
        )
    if len(class_dirs) < 2:
        raise DatasetError(
            f"Dataset folder {where!r} has 1 class sub-folder ({class_dirs[0].name!r}); "
            "classification needs at least two. Add one sub-folder of images per class."
        )
    return class_dirs


def _image_files(class_dirs: list[pathlib.Path]) -> tuple[list[pathlib.Path], list[int]]:
    """Every image file under each class folder (hidden ones skipped) and its label."""
    files: list[pathlib.Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(
            p
            for p in class_dir.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
        )
        if not found:
            raise DatasetError(
                f"Class folder {str(class_dir)!r} has no images (PNG, JPEG, BMP or GIF); add "
                "images to it or remove it."
            )
        files.extend(found)
        labels.extend([label] * len(found))
    return files, labels


def _scan_headers(files: list[pathlib.Path]):
    """Reads headers only.

    Returns:
        The most common (H, W) or None, whether any image is in colour, the unreadable files,
        and each readable file's header ``(format, mode, (H, W))`` by path.
    """
    from PIL import Image

    sizes: Counter = Counter()
    colour = False
    corrupt: list[pathlib.Path] = []
    headers: dict[pathlib.Path, tuple] = {}
    for f in files:
        try:
            with Image.open(f) as image:
                hw = (image.size[1], image.size[0])
                sizes[hw] += 1
                colour = colour or _is_colour(image)
                headers[f] = (image.format, image.mode, hw)
        except Exception:
            corrupt.append(f)
    common = sizes.most_common(1)
    return (common[0][0] if common else None), colour, corrupt, headers


def _decode(
    files: list[pathlib.Path],
    corrupt: list[pathlib.Path],
    size: tuple[int, int],
    channels: int,
    keep_images: bool,
) -> tuple[list[np.ndarray], list[int]]:
    """Decodes every file not yet in ``corrupt`` (appending those that fail to it).

    Returns:
        The decoded images (only when ``keep_images``) and the indices of the readable files.
    """
    from concurrent.futures import ThreadPoolExecutor

    def read(f: pathlib.Path) -> np.ndarray | None:
        try:
            return _read_image(f, size, channels)
        except Exception:
            return None

    images: list[np.ndarray] = []
    keep: list[int] = []
    bad = set(corrupt)
    todo = [i for i, f in enumerate(files) if f not in bad]
    # PIL releases the GIL while it decodes, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, array in zip(todo, pool.map(read, [files[i] for i in todo]), strict=True):
            if array is None:
                corrupt.append(files[i])
                continue
            keep.append(i)
            if keep_images:
                images.append(array)
    return images, keep


def load_folder(
    root: pathlib.Path, size: tuple[int, int] | None, skip_corrupt: bool, limit_mb: float
) -> Source:
    """A folder with one sub-folder of images per class -> a `Source`.

    Two passes: headers first (the common size, colour or grey, the images' total size), then
    every image is decoded, kept in memory, or only checked when the folder streams from disk.
    """
    where = str(root)
    class_dirs = _class_dirs(root)
    files, labels = _image_files(class_dirs)
    common, colour, corrupt, headers = _scan_headers(files)
    channels = 3 if colour else 1
    if size is None:
        size = common or (1, 1)
    n_ok = len(files) - len(corrupt)
    streaming = n_ok * size[0] * size[1] * channels > limit_mb * 2**20

    images, keep = _decode(files, corrupt, size, channels, keep_images=not streaming)
    if corrupt:
        corrupt.sort()
        listed = _list_corrupt(root, corrupt)
        if not skip_corrupt:
            raise DatasetError(
                f"{len(corrupt)} image file(s) in {where!r} cannot be read: {listed}. Fix or "
                "remove them, or pass skip_corrupt=True (--skip-corrupt) to skip them."
            )
        # stacklevel: here <- _spec.resolve <- load_dataset <- the caller.
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
    common_fields = {
        "name": root.resolve().name,
        "source": f"folder:{root.resolve()}",
        "class_names": tuple(d.name for d in class_dirs),
        "scale": 1.0 / 255.0,
    }
    if streaming:
        paths = np.asarray([str(files[i]) for i in keep])
        kinds = {str(files[i]): _native_kind(headers[files[i]], size, channels) for i in keep}
        native = {path: kind for path, kind in kinds.items() if kind != PIL_DECODE}
        return Source(
            **common_fields,
            parts={"train": (paths, y)},
            streaming=True,
            input_shape=(size[0], size[1], channels),
            reader=_FileReader(size, channels, native),
        )
    x = np.stack(images) if images else np.zeros((0, *size, channels), np.uint8)
    return Source(**common_fields, parts={"train": (x, y)}, resizable=False)

"""A saved model on your own images: class predictions, and attention maps per layer and head.

Both functions take a ``.keras`` model file or a run folder (its best model) and image files
or folders of them (PNG, JPEG, BMP, GIF), and prepare each image exactly as a folder dataset
is prepared for training: decoded with Pillow (first frame, alpha dropped), converted to the
model's channels (grey or RGB), resized bilinearly to the model's input size, scaled to
[0, 1]. Class names come from the run's dataset when the model belongs to a run folder; else
the classes are named by their index.

Example:

```python
from attn_search.inference import explain, predict

table = predict("results/reference", ["my_digits/"])  # one row per image, best class first
table.to_csv("predictions.csv", index=False)
paths = explain("results/reference", ["my_digits/3.png"])  # results/reference/explain/*.png
```
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from attn_search._atomic import atomic_path
from attn_search._inference_model import IMAGES_RULE, ModelSource, default_explain_dir
from attn_search.datasets import IMAGE_EXTENSIONS
from attn_search.errors import ConfigError, DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["explain", "predict", "find_images"]

PathLike = str | os.PathLike
_MAX_SHOWN = 5  # paths echoed in one message


# --------------------------------------------------------------------------- public API
def predict(
    model_or_run_dir: PathLike | Any,
    images: PathLike | Sequence[PathLike],
    out: PathLike | None = None,
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Predicts the class of each image with a saved model.

    Args:
        model_or_run_dir: A ``.keras`` model file, or a run folder written by
            `attn_search.run_search` (its best model is used), or a `RunResult`.
        images: An image file or folder, or a list of them; folders are searched recursively
            (hidden files skipped) in name order.
        out: A CSV file to write the table to (atomically: a reader never sees half a file;
            an existing file is replaced). Defaults to `None`: nothing is written.
        batch_size: How many images are read and predicted at a time. Defaults to 64.
        progress: Show a progress bar on stderr. Defaults to `None`: only when stderr is a
            terminal.

    Returns:
        A DataFrame with one row per image, in the order found: ``file``, ``predicted_class``
        (its name), ``predicted_index``, ``probability`` (of the predicted class) and one
        ``prob_<class name>`` column per class: the model's outputs (softmax probabilities for
        the models attn-search builds).

    Raises:
        ConfigError: `model_or_run_dir` is not a ``.keras`` file or run folder, or cannot be
            loaded; `out` is a folder; `batch_size` is not a positive integer.
        RunDirError: `model_or_run_dir` is a folder but not a run, or a run without a best
            model yet.
        DatasetError: `images` holds a missing path, an unreadable image, or no image at all.
    """
    import numpy as np
    import pandas as pd

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"`batch_size` must be a positive integer. Received: {batch_size=}")
    target = _check_out_file(out)
    source = ModelSource.resolve(model_or_run_dir)
    files = find_images(images)
    loaded = source.load()
    outputs = []
    with _ProgressBar(len(files), "predict", enabled=progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            x = loaded.prepare(chunk)
            outputs.append(np.asarray(loaded.model.predict_on_batch(x)))
            bar.advance(len(chunk))
    probs = np.concatenate(outputs).astype(np.float64)  # (N, classes)
    best = probs.argmax(axis=1)
    names = loaded.class_names
    table = pd.DataFrame(
        {
            "file": [str(f) for f in files],
            "predicted_class": [names[i] for i in best],
            "predicted_index": best.astype(int),
            "probability": probs[np.arange(len(files)), best],
            **{f"prob_{name}": probs[:, i] for i, name in enumerate(names)},
        }
    )
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, suffix=".csv") as tmp:
            table.to_csv(tmp, index=False)
    return table


def explain(
    model_or_run_dir: PathLike | Any,
    images: PathLike | Sequence[PathLike],
    out: PathLike | None = None,
    *,
    queries: int = 3,
) -> list[pathlib.Path]:
    """Draws a saved model's attention on each image: one PNG per image, layer and head.

    Each picture shows the image with `queries` query positions marked, where the head looks
    on average over every query position, and where each marked query looks, overlaid on the
    image; its title names the image, the predicted class and its probability, the layer and
    the head.

    Args:
        model_or_run_dir: A ``.keras`` model file, or a run folder written by
            `attn_search.run_search` (its best model is used), or a `RunResult`.
        images: An image file or folder, or a list of them (see `predict`).
        out: The folder to write the PNGs to (created if needed; files of the same name are
            replaced). Defaults to `None`: an ``explain`` folder beside the model file, which
            for a run folder is ``RUN_DIR/explain``.
        queries: How many query positions to show, spread along the feature map's diagonal.
            Defaults to 3.

    Returns:
        The paths written, ``<image>_<layer>_head<k>.png``, by image, then layer, then head.

    Raises:
        ConfigError: `model_or_run_dir` is not a ``.keras`` file or run folder, cannot be
            loaded, or has no attention layer; `out` is a file; `queries` is not a positive
            integer.
        RunDirError, DatasetError: see `predict`.
    """
    from attn_search._inference_plots import attention_figure

    if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
        raise ConfigError(f"`queries` must be a positive integer. Received: {queries=}")
    source = ModelSource.resolve(model_or_run_dir)
    folder = pathlib.Path(out).expanduser() if out is not None else default_explain_dir(source)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"`out` must be a folder, not a file. Received: out='{folder}'")
    files = find_images(images)
    loaded = source.load()
    layers = loaded.attention_layers()
    if not layers:
        raise ConfigError(
            "`model_or_run_dir` holds a model without attention layers (SelfAttentionConv2D), "
            "so it has no attention to draw (a run whose best model is a baseline has none); "
            f"give a model with attention. Received: model_or_run_dir='{source.given}'"
        )
    batch = loaded.prepare(files)  # (N, H, W, C): every image is read before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file, stem, image in zip(files, _unique_stems(files), batch, strict=True):
        image = image[None]  # (1, H, W, C)
        probs, maps = loaded.attention(image, layers)
        k = int(probs.argmax())
        title = f"{file.name}: predicted {loaded.class_names[k]!r} (p={probs[k]:.2f})"
        for layer, scores in zip(layers, maps, strict=True):
            for head in range(scores.shape[0]):
                path = folder / f"{stem}_{layer.name}_head{head + 1}.png"
                attention_figure(
                    image[0],
                    scores[head],
                    grid=tuple(int(n) for n in layer.input.shape[1:3]),
                    kv_pool=int(layer.kv_pool),
                    queries=queries,
                    title=f"{title}\nlayer {layer.name}, head {head + 1} of {scores.shape[0]}",
                    path=path,
                )
                written.append(path)
    return written


def find_images(images: PathLike | Sequence[PathLike]) -> list[pathlib.Path]:
    """The image files named by `images`: files as given, folders searched recursively.

    Args:
        images: A path or a list of paths: image files, or folders holding PNG, JPEG, BMP or
            GIF files (hidden files and folders skipped), in name order.

    Returns:
        The files, in the order given (a folder's files sorted by path).

    Raises:
        DatasetError: a path does not exist, or no image file is found.
    """
    given = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    files: list[pathlib.Path] = []
    for item in given:
        path = pathlib.Path(item).expanduser()
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in IMAGE_EXTENSIONS
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"{IMAGES_RULE}. Received: '{path}', which does not exist")
    if not files:
        shown = [str(p) for p in given[:_MAX_SHOWN]]
        more = f" and {len(given) - _MAX_SHOWN} more" if len(given) > _MAX_SHOWN else ""
        raise DatasetError(
            f"{IMAGES_RULE}. Received: images={shown}{more}, which hold no image files"
        )
    return files


# --------------------------------------------------------------------------- helpers
def _check_out_file(out: PathLike | None) -> pathlib.Path | None:
    if out is None:
        return None
    path = pathlib.Path(out).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"`out` must be a file to write the predictions to (e.g. predictions.csv), not a "
            f"folder. Received: out='{path}'"
        )
    return path


def _unique_stems(files: Sequence[pathlib.Path]) -> Iterator[str]:
    """Each file's name without its suffix; a repeated one gets -2, -3, ..."""
    seen: dict[str, int] = {}
    for file in files:
        seen[file.stem] = seen.get(file.stem, 0) + 1
        yield file.stem if seen[file.stem] == 1 else f"{file.stem}-{seen[file.stem]}"


class _ProgressBar:
    """``predict  120/500 [#####.....]`` on stderr, redrawn in place; silent when disabled."""

    def __init__(self, total: int, label: str, *, enabled: bool | None, width: int = 30):
        self.total, self.label, self.width, self.done = total, label, width, 0
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)

    def __enter__(self) -> _ProgressBar:
        self._draw()
        return self

    def advance(self, n: int) -> None:
        self.done += n
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(f"\r{self.label} {self.done:>{len(str(self.total))}}/{self.total} [{bar}]")
        sys.stderr.flush()

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()

"""Export a run's best model: a ``.keras`` file, a TensorFlow SavedModel, or a TFLite flatbuffer.

Example:

```python
from attn_search.export import export_model

export_model("results/digits-20260101-120000", "savedmodel", "exported/digits")
# later, anywhere, without attn_search installed:
#   import tensorflow as tf
#   probs = tf.saved_model.load("exported/digits").serve(images)   # (B, num_classes)
```

Every format gives the same predictions as the run's ``best_model.keras``: softmax
probabilities for float32 images in [0, 1], shaped like the run's input, ``(B, H, W, C)``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import uuid
from typing import Any

from attn_search.errors import ConfigError, RunDirError
from attn_search.runfolder import RunFolder

__all__ = ["export_model", "load_best_model", "find_best_model", "FORMATS"]

FORMATS = ("keras", "savedmodel", "tflite")


def find_best_model(run_dir: str | os.PathLike | Any) -> pathlib.Path:
    """Returns the path of a run's best model, checking that the run folder is usable.

    Args:
        run_dir: a run folder written by `attn_search.run_search`, or a `RunResult`.

    Returns:
        The path of ``best_model.keras`` in the run folder.

    Raises:
        RunDirError: the folder does not exist, is not a run folder, or holds no best model.
    """
    folder = RunFolder.existing(run_dir)
    if not folder.best_model_path.is_file():
        raise RunDirError(
            "`run_dir` holds no best model yet (best_model.keras is missing: no trial has "
            f"completed). Received: run_dir='{folder.path}'"
        )
    return folder.best_model_path


def load_best_model(run_dir: str | os.PathLike | Any) -> Any:
    """Loads a run's best model with Keras' safe mode (no code from the file is run).

    Args:
        run_dir: a run folder written by `attn_search.run_search`, or a `RunResult`.

    Returns:
        The `keras.Model` (not compiled: for inference and export).

    Raises:
        RunDirError: see `find_best_model`.
    """
    path = find_best_model(run_dir)
    return _load_keras(path)


def export_model(
    run_dir: str | os.PathLike | Any,
    format: str = "keras",
    to: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> pathlib.Path:
    """Exports a run's best model.

    The export is written next to its destination under a temporary name and renamed into place
    when complete, so an interrupted export never leaves a half-written file at `to`.

    Args:
        run_dir: a run folder written by `attn_search.run_search`, or a `RunResult`.
        format: ``"keras"`` (a copy of ``best_model.keras``; load it with
            ``keras.models.load_model`` after ``import attn_search``), ``"savedmodel"`` (a
            TensorFlow SavedModel folder with a ``serve`` endpoint; loads with
            ``tf.saved_model.load`` without attn_search), or ``"tflite"`` (a TensorFlow Lite
            flatbuffer for ``tf.lite.Interpreter`` / LiteRT). Defaults to ``"keras"``.
        to: the destination path. For ``"keras"`` it must end in ``.keras``. Defaults to
            ``RUN_DIR/export/best_model.keras``, ``RUN_DIR/export/best_savedmodel`` or
            ``RUN_DIR/export/best_model.tflite``.
        overwrite: replace `to` if it exists. Defaults to False.

    Returns:
        The path written.

    Raises:
        RunDirError: `run_dir` does not exist, is not a run folder, or has no best model.
        ConfigError: `format` is unknown, `to` exists and `overwrite` is False, or `to` has the
            wrong suffix.
    """
    fmt = str(format).strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(
            "`format` must be one of 'keras', 'savedmodel' or 'tflite'. "
            f"Received: format={format!r}"
        )
    source = find_best_model(run_dir)
    if to is None:
        to = RunFolder(source.parent).export_path(fmt)
    target = pathlib.Path(to).expanduser()
    if fmt == "keras" and target.suffix != ".keras":
        raise ConfigError(
            "`to` must end in '.keras' for format='keras' (Keras loads .keras files only). "
            f"Received: to='{target}'"
        )
    if target.exists() and not overwrite:
        raise ConfigError(
            "`to` already exists; choose another path or pass overwrite=True (--overwrite) to "
            f"replace it. Received: to='{target}'"
        )
    if target.resolve() == source.resolve():
        raise ConfigError(
            f"`to` is the run's own best model; choose another path. Received: to='{target}'"
        )
    target.parent.mkdir(parents=True, exist_ok=True)

    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        if fmt == "keras":
            shutil.copyfile(source, tmp)
        else:
            model = _load_keras(source)
            if fmt == "savedmodel":
                _export_savedmodel(model, tmp)
            else:
                _export_tflite(model, tmp)
        _replace(tmp, target)
    finally:
        _remove(tmp)
    return target


# --------------------------------------------------------------------------- helpers
def _load_keras(path: pathlib.Path) -> Any:
    import keras

    import attn_search.layers  # noqa: F401 - registers SelfAttentionConv2D before loading

    # compile=False: exports need the forward pass only, not the optimizer state.
    return keras.models.load_model(path, safe_mode=True, compile=False)


def _export_savedmodel(model: Any, path: pathlib.Path) -> None:
    import keras
    import tensorflow as tf

    # The forward pass traced into plain TensorFlow ops, so the SavedModel needs neither Keras
    # nor attn_search to load: tf.saved_model.load(path).serve(x). `training=False` made
    # explicit (`model.export` leaves it unset): Keras' augmentation layers default to
    # training mode, which would put their random ops, and batch statistics, in the graph.
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image")
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def _export_tflite(model: Any, path: pathlib.Path) -> None:
    import tensorflow as tf

    # Convert from a SavedModel: the most reliable route for Keras 3 models on TensorFlow.
    with tempfile.TemporaryDirectory(prefix="attn-search-export-") as tmpdir:
        saved = pathlib.Path(tmpdir) / "savedmodel"
        _export_savedmodel(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        try:
            flatbuffer = converter.convert()
        except Exception:  # noqa: BLE001 - retry with TensorFlow ops for what TFLite lacks
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS,
                tf.lite.OpsSet.SELECT_TF_OPS,
            ]
            flatbuffer = converter.convert()
    path.write_bytes(flatbuffer)


def _replace(tmp: pathlib.Path, target: pathlib.Path) -> None:
    """Moves ``tmp`` to ``target`` (file or folder), replacing what is there."""
    if target.is_dir() and not target.is_symlink():
        # os.replace cannot replace a non-empty folder: move the old one aside first, so the
        # target is missing only for the instant between two renames.
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        _remove(old)
    else:
        if tmp.is_dir() and target.exists():
            target.unlink()
        os.replace(tmp, target)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()

"""The model side of `attn_search.inference`: finding, loading and feeding a saved model."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attn_search.errors import ConfigError, DatasetError, RunDirError
from attn_search.runfolder import EXPLAIN_DIR, RunFolder

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

IMAGES_RULE = "`images` must be image files (PNG, JPEG, BMP or GIF) or folders of them"


@dataclass(frozen=True)
class ModelSource:
    """Where the model is: its ``.keras`` file, and its run folder when it is a run's."""

    given: pathlib.Path
    file: pathlib.Path
    run: RunFolder | None

    @classmethod
    def resolve(cls, model_or_run_dir: Any) -> ModelSource:
        where = getattr(model_or_run_dir, "run_dir", model_or_run_dir)  # a RunResult
        if not isinstance(where, (str, os.PathLike)):
            raise ConfigError(
                "`model_or_run_dir` must be the path of a .keras model file or of a run folder. "
                f"Received: model_or_run_dir={model_or_run_dir!r}"
            )
        path = pathlib.Path(where).expanduser()
        rule = "`model_or_run_dir` must be a .keras model file or a run folder"
        if not path.exists():
            raise ConfigError(f"{rule}. Received: '{path}', which does not exist")
        if path.is_dir():
            run = RunFolder(path)
            if not run.is_run():
                raise RunDirError(
                    f"{rule}. Received: '{path}', a folder that holds no attn-search run"
                )
            if not run.best_model_path.is_file():
                raise RunDirError(
                    f"{rule}. Received: '{path}', a run without a best model yet (no trial "
                    "has completed); wait for one, or give a .keras file"
                )
            return cls(path, run.best_model_path, run)
        if path.suffix != ".keras":
            raise ConfigError(
                f"{rule}. Received: '{path}', which is not a .keras file (export other formats "
                "from the .keras file, not the other way round)"
            )
        run = RunFolder(path.parent)
        owner = run.is_run() and run.best_model_path.resolve() == path.resolve()
        return cls(path, path, run if owner else None)

    def load(self) -> LoadedModel:
        import keras

        import attn_search.layers  # noqa: F401 - registers SelfAttentionConv2D before loading

        try:
            # As attn_search.export loads: safe mode (no code from the file runs), no optimizer.
            model = keras.models.load_model(self.file, safe_mode=True, compile=False)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a usable model"
            reason = " ".join(str(exc).split())[:200]
            raise ConfigError(
                "`model_or_run_dir` must be a .keras model file or a run folder. Received: "
                f"'{self.file}', which Keras cannot load ({type(exc).__name__}: {reason})"
            ) from exc
        return LoadedModel(model, self)


def default_explain_dir(source: ModelSource) -> pathlib.Path:
    """A run's `explain/` folder (RunFolder names it), or `explain/` beside a model file."""
    if source.run is not None:
        return source.run.explain_dir
    return source.file.parent / EXPLAIN_DIR


class LoadedModel:
    """A loaded model, with what preparing its images and naming its classes needs."""

    def __init__(self, model: Any, source: ModelSource):
        self.model = model
        shape = _single(model.input_shape)
        classes = _single(model.output_shape)
        if (
            len(shape) != 4
            or shape[-1] not in (1, 3)
            or None in shape[1:3]
            or len(classes) != 2
            or not classes[-1]
        ):
            raise ConfigError(
                "`model_or_run_dir` must hold an image classifier: input (B, H, W, 1 or 3) of a "
                "known size, output (B, classes). Received: "
                f"'{source.file}', with input {shape} and output {classes}"
            )
        self.size = (int(shape[1]), int(shape[2]))
        self.channels = int(shape[3])
        self.class_names = _class_names(source.run, int(classes[-1]))

    def prepare(self, files: Sequence[pathlib.Path]) -> np.ndarray:
        """The files as the model's input: float32 (N, H, W, C) in [0, 1]."""
        import numpy as np

        # TODO(lead): these two are private to attn_search.datasets; a public
        # `attn_search.datasets.read_images(paths, size, channels)` would be the one reader.
        from attn_search.datasets._dataset import scaled
        from attn_search.datasets._folders import _read_image

        arrays = []
        for file in files:
            try:
                arrays.append(_read_image(file, self.size, self.channels))
            except Exception:  # noqa: BLE001 - Pillow raises many kinds for a bad file
                raise DatasetError(
                    f"{IMAGES_RULE}; convert or leave out the others. Received: '{file}', "
                    "which cannot be read as an image"
                ) from None
        # As a folder dataset does: uint8 images times float32(1/255).
        return scaled(np.stack(arrays), 1.0 / 255.0)

    def attention_layers(self) -> list:
        from attn_search.layers import attention_layers

        return attention_layers(self.model)

    def attention(self, x: np.ndarray, layers: list) -> tuple[np.ndarray, list[np.ndarray]]:
        """One image's class probabilities and each layer's scores, (heads, HW, S)."""
        import keras
        import numpy as np

        if getattr(self, "_probe_layers", None) != layers:
            # One model for the outputs and every attention layer's input, built once.
            outputs = [self.model.output, *(layer.input for layer in layers)]
            self._probe = keras.Model(self.model.inputs, outputs)
            self._probe_layers = layers
        probs, *features = self._probe.predict_on_batch(x)
        maps = []
        for layer, feature in zip(layers, features, strict=True):
            _, scores = layer(feature, return_attention_scores=True)  # (1, heads, HW, S)
            maps.append(np.asarray(keras.ops.convert_to_numpy(scores))[0])
        return np.asarray(probs)[0], maps


def _single(shape: Any) -> tuple:
    """A model's one input (or output) shape; a multi-input model's list as it is."""
    if isinstance(shape, list) and len(shape) == 1:
        shape = shape[0]
    return tuple(shape) if isinstance(shape, tuple) else (shape,)


def _class_names(run: RunFolder | None, num_classes: int) -> tuple[str, ...]:
    """The run dataset's class names when they fit the model, else "0", "1", ..."""
    dataset = (run.read_config() or {}).get("dataset") if run is not None else None
    names = dataset.get("class_names") if isinstance(dataset, dict) else None
    if (
        isinstance(names, list)
        and len(names) == num_classes
        and len(set(map(str, names))) == len(names)
    ):
        return tuple(str(n) for n in names)
    return tuple(str(i) for i in range(num_classes))

"""KerasTuner hypermodels: a search space -> convnets with self-attention at candidate depths.

`AttentionCNN` samples a backbone, then where and how to place `SelfAttentionConv2D`, and builds
a compiled Keras model. The same hyperparameter values also build the model's two baselines:

- **plain**: the same backbone with every attention layer removed;
- **matched**: each attention layer replaced by a plain convolutional residual block with about
  the same number of parameters (within 10%), so that a win is not just extra capacity.

Before building, a memory guard estimates the attention maps' memory for the batch size and
rejects (or, where the space allows, pools harder) a configuration that would not fit.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping

import keras
import keras_tuner

# _attention_params: the matched block's target, also imported from here by the tests.
from attn_search._cnn_blocks import attention_params as _attention_params  # noqa: F401
from attn_search._cnn_blocks import (
    augmentation,
    classifier_head,
    conv_block,
    insert_layers,
    matched_block_design,
    optimizer,
)
from attn_search._cnn_plan import feature_shapes, placement_of, sample, sample_plan
from attn_search._memory_guard import (
    attention_memory_bytes,
    default_memory_budget_mb,
    fit_to_budget,
    itemsize,
    layer_memory_bytes,
)
from attn_search.errors import ConfigError, MemoryBudgetError
from attn_search.spaces import FAMILIES, SearchSpace, load_space

__all__ = [
    "AttentionCNN",
    "TunerMemoryBudgetError",
    "attention_memory_bytes",
    "default_memory_budget_mb",
    "early_stopping_callback",
    "matched_block_design",
]


class TunerMemoryBudgetError(MemoryBudgetError, keras_tuner.errors.FailedTrialError):
    """A `MemoryBudgetError` that KerasTuner also records as a failed trial, without retries."""


def _is_pos_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_arguments(input_shape, num_classes, family, memory_budget_mb) -> tuple[int, int, int]:
    """Raises ConfigError for an invalid argument of `AttentionCNN`; returns the input shape."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(_is_pos_int(d) for d in shape):
        raise ConfigError(
            "`input_shape` must be (height, width, channels), three positive integers. "
            f"Received: input_shape={input_shape!r}"
        )
    if not _is_pos_int(num_classes) or num_classes < 2:
        raise ConfigError(
            f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}"
        )
    if family not in (*FAMILIES, "auto"):
        raise ConfigError(
            "`family` must be 'attention', 'plain', 'matched' or 'auto'. "
            f"Received: family={family!r}"
        )
    if memory_budget_mb is not None and not (
        isinstance(memory_budget_mb, numbers.Real)
        and not isinstance(memory_budget_mb, bool)
        and memory_budget_mb > 0
        and math.isfinite(memory_budget_mb)
    ):
        raise ConfigError(
            "`memory_budget_mb` must be a positive number of megabytes or None. "
            f"Received: memory_budget_mb={memory_budget_mb!r}"
        )
    return tuple(int(d) for d in shape)


def _early_stopping(early: dict, kwargs: dict) -> keras.callbacks.EarlyStopping:
    """The space's early stopping, on the validation metric when `fit` has validation data,
    else on the training one."""
    has_val = kwargs.get("validation_data") is not None or (kwargs.get("validation_split") or 0) > 0
    return early_stopping_callback(early, validation=has_val)


def early_stopping_callback(early: dict, *, validation: bool) -> keras.callbacks.EarlyStopping:
    """The callback `AttentionCNN.fit` adds for a space's `early_stopping` settings.

    Args:
        early: `SearchSpace.early_stopping` (`monitor`, `patience`, `min_delta`).
        validation: Whether the fit has validation data (else a `val_` monitor is replaced by
            the training metric).

    Returns:
        A `keras.callbacks.EarlyStopping` that restores the best weights at the end.
    """
    monitor = early["monitor"]
    if monitor.startswith("val_") and not validation:
        monitor = monitor[len("val_") :]
    return keras.callbacks.EarlyStopping(
        monitor=monitor,
        patience=early["patience"],
        min_delta=early["min_delta"],
        restore_best_weights=True,
    )


def _attention_layers(model: keras.Model, batch: int) -> tuple[list, list, list, int, set]:
    """What `describe` reads from a built model's layers.

    Returns:
        `(placements, gammas, kv_pools, memory_bytes, kinds)`.
    """
    from attn_search.layers import SelfAttentionConv2D

    placements, gammas, pools, memory = [], [], [], 0
    kinds = set()
    for layer in model.layers:
        if isinstance(layer, SelfAttentionConv2D):
            kinds.add("attention")
            placements.append(placement_of(layer.name))
            gammas.append(float(keras.ops.convert_to_numpy(layer.gamma)))
            config = layer.get_config()
            pools.append(int(config["kv_pool"]))
            _, h, w, _ = layer.input.shape
            memory += layer_memory_bytes(
                batch, h, w, config["num_heads"], config["kv_pool"], itemsize()
            )
        elif layer.name.startswith("matched_") and layer.name.endswith("_conv1"):
            kinds.add("matched")
            placements.append(placement_of(layer.name[: -len("_conv1")]))
    return placements, gammas, pools, memory, kinds


class AttentionCNN(keras_tuner.HyperModel):
    """A convnet hypermodel with self-attention at candidate depths, and its baselines.

    `build(hp)` samples, in this order and under these names (conditional ones only when
    active):

    - `family` (only with `family="auto"`): one of the space's families;
    - `backbone/blocks`, `backbone/filters`, `backbone/growth`, `backbone/convs_per_block`,
      `backbone/kernel_size`, `backbone/normalization`, `backbone/pooling`, `backbone/dropout`;
      block k has `filters * growth**(k-1)` filters;
    - `head/pooling`, `head/dense`, `head/dropout`;
    - attention (families "attention" and "matched"): `attention/num_layers` (when the space
      allows more than one), then per layer i `attention/placement` (or
      `attention/{i}/placement` with several layers), `attention/{i}/num_heads`,
      `attention/{i}/filters` (at placement 0 only), and for the "attention" family
      `attention/{i}/activation`, `attention/{i}/gamma`, `attention/{i}/kv_pool`;
    - `train/optimizer`, `train/learning_rate`, `train/batch_size`, `train/epochs`, and
      `train/augment` when the space augments.

    Augmentation (`training.augment`: "flip", "translate" or "both") is a Keras preprocessing
    layer right after the input, named `augment_flip` / `augment_translate`: active in
    training only (inference passes images through unchanged) and built the same way for
    every family, so attention and its twins see the same augmentation.

    Fixed values of the space are registered with `hp.Fixed`, so `hp.values` shows the whole
    configuration. Placement 0 puts attention first in the model; placement k puts it after
    conv block k (after its pooling). Layers are named so that `model.summary()` shows where
    attention sits: `attention_at_input`, `block1_conv`, `attention_after_block2`,
    `matched_after_block2_conv1`, ...

    Args:
        space: A `SearchSpace`, a shipped space's name, a YAML path or a dict.
        input_shape: `(height, width, channels)` of the images.
        num_classes: Number of classes (>= 2); the model outputs softmax probabilities.
        family: `"attention"`, `"plain"`, `"matched"`, or `"auto"` (sampled as `family`).
            Defaults to `"attention"`.
        memory_budget_mb: Budget for the attention maps of one training step, in MB.
            Defaults to `None`: `default_memory_budget_mb()`, a quarter of physical memory.
        name: Name of the hypermodel. Defaults to `"AttentionCNN_<space name>"`.

    Raises:
        ConfigError: For an invalid `input_shape`, `num_classes`, `family` or
            `memory_budget_mb`.
        SearchSpaceError: For an invalid space.

    Example:
    >>> import keras_tuner
    >>> from attn_search import AttentionCNN
    >>> hypermodel = AttentionCNN.from_space("default", input_shape=(8, 8, 1), num_classes=10)
    >>> model = hypermodel.build(keras_tuner.HyperParameters())
    >>> model.output_shape
    (None, 10)
    """

    def __init__(
        self,
        space: SearchSpace | str | os.PathLike | Mapping,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        family: str = "attention",
        memory_budget_mb: float | None = None,
        name: str | None = None,
    ):
        space = load_space(space)
        shape = _check_arguments(input_shape, num_classes, family, memory_budget_mb)
        super().__init__(name=name or f"AttentionCNN_{space.name}", tunable=True)
        self.space = space
        self.input_shape = shape
        self.num_classes = int(num_classes)
        self.family = family
        self.memory_budget_mb = None if memory_budget_mb is None else float(memory_budget_mb)

    @classmethod
    def from_space(
        cls,
        space: SearchSpace | str | os.PathLike | Mapping,
        input_shape: tuple[int, int, int],
        num_classes: int,
        **kwargs,
    ) -> AttentionCNN:
        """Builds the hypermodel from a space name, path, dict or `SearchSpace`.

        Example:
        >>> from attn_search import AttentionCNN
        >>> hm = AttentionCNN.from_space("default", input_shape=(28, 28, 1), num_classes=10)
        """
        return cls(space, input_shape, num_classes, **kwargs)

    def with_family(self, family: str) -> AttentionCNN:
        """The same hypermodel (space, shapes, budget) for another family: its twins."""
        return type(self)(
            self.space,
            self.input_shape,
            self.num_classes,
            family=family,
            memory_budget_mb=self.memory_budget_mb,
            name=self.name,
        )

    @property
    def budget_mb(self) -> float:
        """The memory budget for attention maps in MB (the given one or the default)."""
        return self.memory_budget_mb or default_memory_budget_mb()

    # -- sampling --------------------------------------------------------------------------

    def _plan(self, hp) -> dict:
        """Samples every hyperparameter; returns the plain description of one model."""
        return sample_plan(hp, self.space, self.family)

    def _guard(self, plan: dict) -> None:
        """Checks the attention maps against the budget; pools harder or raises."""
        if plan["family"] != "attention":
            return
        attention = self.space.attention
        allowed = attention["kv_pool"].candidates() if attention["auto_kv_pool"].value else None
        min_res = self.space.backbone["min_resolution"].value
        shapes = feature_shapes(plan["backbone"], self.input_shape, min_res)
        batch = plan["train"]["batch_size"]
        problem = fit_to_budget(plan["layers"], shapes, batch, self.budget_mb, allowed)
        if problem is not None:
            raise TunerMemoryBudgetError(problem)

    # -- building --------------------------------------------------------------------------

    def build(self, hp) -> keras.Model:
        """Samples a configuration from `hp` and returns the compiled model.

        Raises:
            MemoryBudgetError: (a `TunerMemoryBudgetError`, also a KerasTuner
                `FailedTrialError`) when the attention maps would exceed the memory budget and
                no larger kv_pool allowed by the space fits.
        """
        plan = self._plan(hp)
        self._guard(plan)
        model = self._build_model(plan)
        model.compile(
            optimizer=optimizer(plan["train"]["optimizer"], plan["train"]["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def _build_model(self, plan: dict) -> keras.Model:
        bb, family, layers = plan["backbone"], plan["family"], plan["layers"]
        min_res = self.space.backbone["min_resolution"].value
        inputs = keras.Input(shape=self.input_shape, name="image")
        x = augmentation(inputs, plan["train"].get("augment", "none"))
        x = insert_layers(x, 0, family, layers)
        size = self.input_shape[:2]
        for k in range(1, bb["blocks"] + 1):
            x, size = conv_block(x, bb, k, size, min_res)
            x = insert_layers(x, k, family, layers)
        outputs = classifier_head(x, plan["head"], self.num_classes)
        return keras.Model(inputs, outputs, name=f"{self.space.name}_{family}")

    # -- training and description ----------------------------------------------------------

    def fit(self, hp, model, x, y=None, **kwargs):
        """Trains `model` (KerasTuner protocol): batch size and epochs from `hp`.

        `batch_size` (for in-memory arrays) and `epochs` come from `train/batch_size` and
        `train/epochs` unless given in `kwargs` (Hyperband gives `epochs`). Early stopping from
        the space is added to `callbacks`, on the validation metric when there is validation
        data, else on the training one.

        Returns:
            The `keras.callbacks.History` of `model.fit`.
        """
        training = self.space.training
        kwargs = dict(kwargs)
        kwargs.setdefault("epochs", sample(hp, "train/epochs", training["epochs"]))
        batch_size = sample(hp, "train/batch_size", training["batch_size"])
        if hasattr(x, "shape") and hasattr(x, "__len__"):  # arrays; datasets come batched
            kwargs.setdefault("batch_size", batch_size)
        callbacks = list(kwargs.get("callbacks") or [])
        early = self.space.early_stopping
        if early and not any(isinstance(c, keras.callbacks.EarlyStopping) for c in callbacks):
            callbacks.append(_early_stopping(early, kwargs))
        kwargs["callbacks"] = callbacks
        return model.fit(x, y, **kwargs)

    def describe(self, hp, model: keras.Model) -> dict:
        """What a built model holds, for leaderboards.

        Returns:
            `{"family", "placements", "n_attention", "params", "gammas", "kv_pools",
            "attention_memory_mb"}`: placements of the attention (or matched) layers in model
            order, the learned gamma and effective kv_pool of each attention layer, and the
            memory guard's estimate for `train/batch_size`.
        """
        values = getattr(hp, "values", {}) or {}
        batch = values.get("train/batch_size") or self.space.training["batch_size"].lowest()
        placements, gammas, pools, memory, kinds = _attention_layers(model, batch)
        if self.family != "auto":
            family = self.family
        else:
            family = values.get("family") or (kinds.pop() if kinds else "plain")
        return {
            "family": family,
            "placements": placements,
            "n_attention": len(gammas),
            "params": int(model.count_params()),
            "gammas": gammas,
            "kv_pools": pools,
            "attention_memory_mb": memory / 1024**2,
        }

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

import functools
import math
import numbers
import os
import re
from collections.abc import Mapping

import keras
import keras_tuner

from attn_search.errors import ConfigError, MemoryBudgetError
from attn_search.spaces import FAMILIES, Param, SearchSpace, load_space

__all__ = [
    "AttentionCNN",
    "TunerMemoryBudgetError",
    "attention_memory_bytes",
    "default_memory_budget_mb",
    "matched_block_design",
]

# Map-sized buffers, each (B, heads, HW, HW_k), held at the peak of a training step. Measured
# on TensorFlow/CPU (benchmarks/bench_memory_guard.py, results/bench_memory_guard.json): 1.1 to
# 1.6 maps above the memory held before the step; 2 keeps the guard on the safe side.
_MAPS_PER_STEP = 2
_MATCH_TOLERANCE = 0.10
# Searches train briefly on small data: with Keras' default momentum (0.99) the moving statistics
# of batch normalization lag the weights for hundreds of steps, and validation accuracy sits near
# chance while training accuracy climbs. 0.9 catches up within tens of steps.
_BN_MOMENTUM = 0.9
_LAYER_NAME = re.compile(r"^(attention|matched)_(at_input|after_block(\d+))(_\d+)?$")


class TunerMemoryBudgetError(MemoryBudgetError, keras_tuner.errors.FailedTrialError):
    """A `MemoryBudgetError` that KerasTuner also records as a failed trial, without retries."""


# -- memory guard ----------------------------------------------------------------------------


def default_memory_budget_mb() -> float:
    """The default budget for attention maps: a quarter of the machine's physical memory.

    The environment variable `ATTN_SEARCH_MEMORY_BUDGET_MB` overrides it (e.g. to size it to a
    GPU's memory).
    """
    env = os.environ.get("ATTN_SEARCH_MEMORY_BUDGET_MB")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = -1.0
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(
                "`ATTN_SEARCH_MEMORY_BUDGET_MB` must be a positive number of megabytes. "
                f"Received: ATTN_SEARCH_MEMORY_BUDGET_MB={env!r}"
            )
        return value
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GiB
        total = 8 * 1024**3
    return total / 4 / 1024**2


def attention_memory_bytes(
    batch_size: int,
    height: int,
    width: int,
    num_heads: int,
    kv_pool: int = 1,
    bytes_per_value: int = 4,
) -> int:
    """Estimated memory of one attention layer's maps in a training step.

    `batch_size x num_heads x (H*W) x (H_k*W_k) x bytes x 2`, with `H_k = ceil(H / kv_pool)`:
    a map for the forward pass (kept for the backward pass) and one for its gradient. The
    measured peak of a training step on TensorFlow/CPU is 1.1 to 1.6 maps
    (`benchmarks/bench_memory_guard.py`), so the estimate errs on the safe side.

    Returns:
        The estimate in bytes.
    """
    keys = math.ceil(height / kv_pool) * math.ceil(width / kv_pool)
    return batch_size * num_heads * height * width * keys * bytes_per_value * _MAPS_PER_STEP


# -- matched twin ----------------------------------------------------------------------------


def _block_params(channels: int, filters: int, kernel: int, bias: bool, width: int) -> int:
    conv1 = kernel * kernel * channels * width + (width if bias else 0)
    conv2 = width * filters + filters
    shortcut = 0 if filters == channels else channels * filters + filters
    return conv1 + conv2 + shortcut


def matched_block_design(channels: int, filters: int, target: int) -> dict:
    """The residual block whose parameter count best matches `target`.

    The block is `x -> Conv2D(width, k) + ReLU -> Conv2D(filters, 1) -> + shortcut(x)`, with a
    1x1 convolution as shortcut when `filters != channels` (as the attention layer has). A 3x3
    first convolution is preferred whenever it lands within 10% of the target; otherwise a 1x1
    one, with or without bias, whichever is closest.

    Returns:
        `{"kernel_size", "use_bias", "width", "params"}`.
    """
    best_by_kernel: dict[int, tuple] = {}
    for kernel in (3, 1):
        for bias in (True, False):
            unit = kernel * kernel * channels + (1 if bias else 0) + filters
            fixed = _block_params(channels, filters, kernel, bias, 0)
            guess = max(1, round((target - fixed) / unit))
            for width in {max(1, guess - 1), guess, guess + 1}:
                params = _block_params(channels, filters, kernel, bias, width)
                key = (abs(params - target), width)
                if kernel not in best_by_kernel or key < best_by_kernel[kernel][0]:
                    best_by_kernel[kernel] = (key, bias, width, params)
    err3 = best_by_kernel[3][0][0]
    kernel = 3 if err3 <= _MATCH_TOLERANCE * target or err3 <= best_by_kernel[1][0][0] else 1
    _, bias, width, params = best_by_kernel[kernel]
    return {"kernel_size": kernel, "use_bias": bias, "width": width, "params": params}


@functools.lru_cache(maxsize=256)
def _attention_params(channels: int, filters: int | None, num_heads: int) -> int:
    from attn_search.layers import SelfAttentionConv2D

    layer = SelfAttentionConv2D(filters=filters, num_heads=num_heads)
    layer.build((None, 8, 8, channels))
    return int(layer.count_params())


# -- the hypermodel --------------------------------------------------------------------------


def _sample(hp, name: str, param: Param):
    """Registers one space value as a KerasTuner hyperparameter and returns its value."""
    if param.kind == "fixed":
        return param.value if param.value is None else hp.Fixed(name, param.value)
    if param.kind == "choice":
        if param.dtype == "bool":
            return hp.Boolean(name, default=param.values[0])
        return hp.Choice(name, list(param.values))
    if param.dtype == "int":
        return hp.Int(name, param.min, param.max, step=param.step, sampling=param.sampling)
    return hp.Float(name, param.min, param.max, step=param.step, sampling=param.sampling)


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
    - `train/optimizer`, `train/learning_rate`, `train/batch_size`, `train/epochs`.

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
        super().__init__(name=name or f"AttentionCNN_{space.name}", tunable=True)
        self.space = space
        self.input_shape = tuple(int(d) for d in shape)
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
        space = self.space
        family = self.family
        if family == "auto":
            family = (
                hp.Choice("family", list(space.families))
                if len(space.families) > 1
                else hp.Fixed("family", space.families[0])
            )
        bb = {k: _sample(hp, f"backbone/{k}", p) for k, p in space.backbone.items()
              if k != "min_resolution"}  # fmt: skip
        head = {k: _sample(hp, f"head/{k}", p) for k, p in space.head.items()}
        layers = []
        if family in ("attention", "matched"):
            att = space.attention
            max_layers = space.max_layers
            n = hp.Int("attention/num_layers", 1, max_layers) if max_layers > 1 else 1
            for i in range(n):
                pname = "attention/placement" if max_layers == 1 else f"attention/{i}/placement"
                spec = {"placement": _sample(hp, pname, att["placements"])}
                spec["num_heads"] = _sample(hp, f"attention/{i}/num_heads", att["num_heads"])
                spec["filters"] = None
                if spec["placement"] == 0:
                    spec["filters"] = _sample(hp, f"attention/{i}/filters", att["filters"])
                if family == "attention":
                    for key in ("activation", "gamma", "kv_pool"):
                        spec[key] = _sample(hp, f"attention/{i}/{key}", att[key])
                layers.append(spec)
        train = {k: _sample(hp, f"train/{k}", p) for k, p in space.training.items()}
        return {"family": family, "backbone": bb, "head": head, "layers": layers, "train": train}

    def _shapes(self, plan: dict) -> dict[int, tuple[int, int, int]]:
        """Feature-map shape (H, W, C) at each placement (0 = the input)."""
        bb = plan["backbone"]
        min_res = self.space.backbone["min_resolution"].value
        height, width, channels = self.input_shape
        shapes = {0: (height, width, channels)}
        for k in range(1, bb["blocks"] + 1):
            channels = _block_filters(bb, k)
            if min(height, width) // 2 >= min_res:
                height, width = math.ceil(height / 2), math.ceil(width / 2)
            shapes[k] = (height, width, channels)
        return shapes

    def _guard(self, plan: dict) -> None:
        """Checks the attention maps against the budget; pools harder or raises."""
        if plan["family"] != "attention":
            return
        shapes = self._shapes(plan)
        batch = plan["train"]["batch_size"]
        itemsize = _itemsize()
        budget = self.budget_mb * 1024**2

        def total(pools):
            return sum(
                attention_memory_bytes(batch, *shapes[s["placement"]][:2], s["num_heads"], p,
                                       itemsize)  # fmt: skip
                for s, p in zip(plan["layers"], pools)
            )

        pools = [s["kv_pool"] for s in plan["layers"]]
        if total(pools) <= budget:
            return
        tried = pools
        if self.space.attention["auto_kv_pool"].value:
            choices = self.space.attention["kv_pool"].candidates()
            for v in sorted(v for v in choices if v > min(pools)):
                tried = [max(p, v) for p in pools]
                if total(tried) <= budget:
                    for s, p in zip(plan["layers"], tried):
                        s["kv_pool"] = p
                    return
        parts = []
        for i, (spec, pool) in enumerate(zip(plan["layers"], tried)):
            height, width = shapes[spec["placement"]][:2]
            heads = spec["num_heads"]
            keys = math.ceil(height / pool) * math.ceil(width / pool)
            parts.append(
                f"{_layer_name('attention', spec['placement'], plan['layers'], i)}: batch "
                f"{batch} x {heads} head{'s' if heads > 1 else ''} x {height * width} queries x "
                f"{keys} keys (kv_pool={pool})"
            )
        details = "; ".join(parts)
        raise TunerMemoryBudgetError(
            f"The attention maps would need about {total(tried) / 1024**2:.1f} MB in a training "
            f"step ({details}; x {itemsize} bytes x {_MAPS_PER_STEP} for forward and "
            f"backward), over the memory budget of {self.budget_mb:.1f} MB. Lower "
            "train/batch_size, allow a larger attention.kv_pool, place attention deeper, or "
            "raise memory_budget_mb."
        )

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
            optimizer=_optimizer(plan["train"]["optimizer"], plan["train"]["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def _build_model(self, plan: dict) -> keras.Model:
        from attn_search.layers import SelfAttentionConv2D

        bb, head, family = plan["backbone"], plan["head"], plan["family"]
        layers = plan["layers"]
        min_res = self.space.backbone["min_resolution"].value

        def insert(x, placement: int):
            for i, spec in enumerate(layers):
                if spec["placement"] != placement:
                    continue
                name = _layer_name(family, placement, layers, i)
                if family == "attention":
                    x = SelfAttentionConv2D(
                        filters=spec["filters"],
                        num_heads=spec["num_heads"],
                        activation=spec["activation"],
                        gamma=spec["gamma"],
                        kv_pool=spec["kv_pool"],
                        name=name,
                    )(x)
                else:
                    x = _matched_block(x, spec, name)
            return x

        inputs = keras.Input(shape=self.input_shape, name="image")
        x = insert(inputs, 0)
        height, width = self.input_shape[:2]
        for k in range(1, bb["blocks"] + 1):
            filters = _block_filters(bb, k)
            for j in range(1, bb["convs_per_block"] + 1):
                suffix = "" if bb["convs_per_block"] == 1 else str(j)
                x = keras.layers.Conv2D(
                    filters,
                    bb["kernel_size"],
                    padding="same",
                    use_bias=bb["normalization"] == "none",
                    name=f"block{k}_conv{suffix}",
                )(x)
                if bb["normalization"] == "batch":
                    x = keras.layers.BatchNormalization(
                        momentum=_BN_MOMENTUM, name=f"block{k}_bn{suffix}"
                    )(x)
                elif bb["normalization"] == "layer":
                    x = keras.layers.LayerNormalization(name=f"block{k}_ln{suffix}")(x)
                x = keras.layers.Activation("relu", name=f"block{k}_relu{suffix}")(x)
            if min(height, width) // 2 >= min_res:
                pool = (
                    keras.layers.MaxPooling2D
                    if bb["pooling"] == "max"
                    else keras.layers.AveragePooling2D
                )
                x = pool(2, padding="same", name=f"block{k}_pool")(x)
                height, width = math.ceil(height / 2), math.ceil(width / 2)
            if bb["dropout"] > 0:
                x = keras.layers.Dropout(bb["dropout"], name=f"block{k}_dropout")(x)
            x = insert(x, k)
        if head["pooling"] == "avg":
            x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        elif head["pooling"] == "max":
            x = keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
        else:
            x = keras.layers.Flatten(name="head_flatten")(x)
        if head["dense"] > 0:
            x = keras.layers.Dense(head["dense"], activation="relu", name="head_dense")(x)
        if head["dropout"] > 0:
            x = keras.layers.Dropout(head["dropout"], name="head_dropout")(x)
        outputs = keras.layers.Dense(self.num_classes, activation="softmax", name="classifier")(x)
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
        kwargs.setdefault("epochs", _sample(hp, "train/epochs", training["epochs"]))
        batch_size = _sample(hp, "train/batch_size", training["batch_size"])
        if hasattr(x, "shape") and hasattr(x, "__len__"):  # arrays; datasets come batched
            kwargs.setdefault("batch_size", batch_size)
        callbacks = list(kwargs.get("callbacks") or [])
        early = self.space.early_stopping
        if early and not any(isinstance(c, keras.callbacks.EarlyStopping) for c in callbacks):
            monitor = early["monitor"]
            has_val = (
                kwargs.get("validation_data") is not None
                or (kwargs.get("validation_split") or 0) > 0
            )
            if monitor.startswith("val_") and not has_val:
                monitor = monitor[len("val_") :]
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    patience=early["patience"],
                    min_delta=early["min_delta"],
                    restore_best_weights=True,
                )
            )
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
        from attn_search.layers import SelfAttentionConv2D

        placements, gammas, pools, memory = [], [], [], 0
        kinds = set()
        values = getattr(hp, "values", {}) or {}
        batch = values.get("train/batch_size") or self.space.training["batch_size"].lowest()
        for layer in model.layers:
            if isinstance(layer, SelfAttentionConv2D):
                kinds.add("attention")
                placements.append(_placement_of(layer.name))
                gammas.append(float(keras.ops.convert_to_numpy(layer.gamma)))
                config = layer.get_config()
                pools.append(int(config["kv_pool"]))
                _, h, w, _ = layer.input.shape
                memory += attention_memory_bytes(
                    batch, h, w, config["num_heads"], config["kv_pool"], _itemsize()
                )
            elif layer.name.startswith("matched_") and layer.name.endswith("_conv1"):
                kinds.add("matched")
                placements.append(_placement_of(layer.name[: -len("_conv1")]))
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


# -- helpers ---------------------------------------------------------------------------------


def _is_pos_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _block_filters(bb: dict, k: int) -> int:
    return max(1, int(round(bb["filters"] * bb["growth"] ** (k - 1))))


def _itemsize() -> int:
    # The layer computes its softmax in float32 even under mixed precision.
    return 8 if keras.config.dtype_policy().compute_dtype == "float64" else 4


def _layer_name(family: str, placement: int, layers: list, index: int) -> str:
    prefix = "attention" if family == "attention" else "matched"
    base = f"{prefix}_at_input" if placement == 0 else f"{prefix}_after_block{placement}"
    same = [i for i, s in enumerate(layers) if s["placement"] == placement]
    rank = same.index(index)
    return base if rank == 0 else f"{base}_{rank + 1}"


def _placement_of(name: str) -> int:
    match = _LAYER_NAME.match(name)
    return 0 if match.group(3) is None else int(match.group(3))


def _matched_block(x, spec: dict, name: str):
    """A plain conv residual block with about the parameters of the attention layer it stands
    in for (same channels in and out, same heads)."""
    channels = int(x.shape[-1])
    filters = spec["filters"] or channels
    target = _attention_params(channels, spec["filters"], spec["num_heads"])
    design = matched_block_design(channels, filters, target)
    h = keras.layers.Conv2D(
        design["width"],
        design["kernel_size"],
        padding="same",
        use_bias=design["use_bias"],
        activation="relu",
        name=f"{name}_conv1",
    )(x)
    h = keras.layers.Conv2D(filters, 1, name=f"{name}_conv2")(h)
    shortcut = x if filters == channels else keras.layers.Conv2D(
        filters, 1, name=f"{name}_shortcut"
    )(x)
    return keras.layers.Add(name=f"{name}_add")([shortcut, h])


def _optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "nadam": keras.optimizers.Nadam,
    }
    return classes[name](learning_rate=learning_rate)

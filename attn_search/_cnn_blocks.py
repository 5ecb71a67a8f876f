"""The Keras building blocks of `AttentionCNN`'s models, built from a plan.

The backbone's conv blocks, the classification head, the attention layers or their matched
stand-ins at each placement, and the optimizer. The matched block is a plain convolutional
residual block sized to about the parameters of the attention layer it replaces.
"""

from __future__ import annotations

import functools
import math

import keras

from attn_search._cnn_plan import block_filters, layer_name

_MATCH_TOLERANCE = 0.10
# Searches train briefly on small data: with Keras' default momentum (0.99) the moving statistics
# of batch normalization lag the weights for hundreds of steps, and validation accuracy sits near
# chance while training accuracy climbs. 0.9 catches up within tens of steps.
_BN_MOMENTUM = 0.9


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
def attention_params(channels: int, filters: int | None, num_heads: int) -> int:
    """The parameter count of a `SelfAttentionConv2D` on `channels` input channels."""
    import random

    from attn_search.layers import SelfAttentionConv2D

    # Keras draws unseeded initializers' seeds from Python's `random`: building this throwaway
    # layer must not move it, or a matched model's weights would depend on whether the count
    # was cached already in this process (checked against Keras 3.15).
    state = random.getstate()
    try:
        layer = SelfAttentionConv2D(filters=filters, num_heads=num_heads)
        layer.build((None, 8, 8, channels))
        return int(layer.count_params())
    finally:
        random.setstate(state)


def matched_block(x, spec: dict, name: str):
    """A plain conv residual block with about the parameters of the attention layer it stands
    in for (same channels in and out, same heads)."""
    channels = int(x.shape[-1])
    filters = spec["filters"] or channels
    target = attention_params(channels, spec["filters"], spec["num_heads"])
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
    shortcut = (
        x if filters == channels else keras.layers.Conv2D(filters, 1, name=f"{name}_shortcut")(x)
    )
    return keras.layers.Add(name=f"{name}_add")([shortcut, h])


# -- the model -------------------------------------------------------------------------------


def augmentation(x, augment: str):
    """`training.augment`'s preprocessing layers (identity at inference)."""
    if augment in ("flip", "both"):
        x = keras.layers.RandomFlip("horizontal", name="augment_flip")(x)
    if augment in ("translate", "both"):
        x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", name="augment_translate")(
            x
        )
    return x


def insert_layers(x, placement: int, family: str, layers: list[dict]):
    """Applies the plan's attention (or matched) layers at `placement` to `x`."""
    from attn_search.layers import SelfAttentionConv2D

    for i, spec in enumerate(layers):
        if spec["placement"] != placement:
            continue
        name = layer_name(family, placement, layers, i)
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
            x = matched_block(x, spec, name)
    return x


def conv_block(x, bb: dict, k: int, size: tuple[int, int], min_res: int):
    """Conv block k (from 1) of the backbone: convolutions, pooling while the map's smaller
    side stays >= `min_res`, and dropout.

    Returns:
        `(x, (height, width))`: the block's output and its spatial size.
    """
    height, width = size
    filters = block_filters(bb, k)
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
            x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"block{k}_bn{suffix}")(
                x
            )
        elif bb["normalization"] == "layer":
            x = keras.layers.LayerNormalization(name=f"block{k}_ln{suffix}")(x)
        x = keras.layers.Activation("relu", name=f"block{k}_relu{suffix}")(x)
    if min(height, width) // 2 >= min_res:
        pool = (
            keras.layers.MaxPooling2D if bb["pooling"] == "max" else keras.layers.AveragePooling2D
        )
        x = pool(2, padding="same", name=f"block{k}_pool")(x)
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    if bb["dropout"] > 0:
        x = keras.layers.Dropout(bb["dropout"], name=f"block{k}_dropout")(x)
    return x, (height, width)


def classifier_head(x, head: dict, num_classes: int):
    """Global pooling (or flattening), an optional dense layer and dropout, then softmax."""
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
    # float32 even under mixed precision: a float16 softmax would round small probabilities
    return keras.layers.Dense(
        num_classes, activation="softmax", name="classifier", dtype="float32"
    )(x)


def optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer `name` at `learning_rate` (SGD with momentum 0.9)."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "nadam": keras.optimizers.Nadam,
    }
    return classes[name](learning_rate=learning_rate)

"""Attention in a network you already have: where it can go, and a copy of the model with it.

`attention_points(model)` lists where a `SelfAttentionConv2D` can follow a layer of a
Functional or Sequential Keras model; `insert_attention(model, after=[...])` returns a new model
with one after each named layer. The new model shares every other layer, and its weights, with
the original, so with `gamma=0` (the default here) it computes exactly what the original does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras

from attn_search._memory_guard import attention_memory_bytes, itemsize
from attn_search.errors import ConfigError
from attn_search.layers import SelfAttentionConv2D

__all__ = ["attention_points", "insert_attention"]

_PREFIX = "attention_after_"
# Options that would make the inserted layer change the feature map's shape or output type.
_FIXED_OPTIONS = ("filters", "return_attention_scores", "name")


@dataclass(eq=False)  # compared by identity: its fields hold KerasTensors
class _Call:
    """One layer call of a model's graph, in the order the graph runs."""

    layer: keras.layers.Layer
    inputs: list = field(default_factory=list)  # the ids of the tensors it consumes
    outputs: list = field(default_factory=list)  # the tensors it returns
    input_shape: tuple | None = None  # the shape of its first input
    count: int = 1  # how many times the graph calls this call's layer

    @property
    def shape(self) -> tuple | None:
        """The output's shape when it is a single tensor, else None."""
        return tuple(self.outputs[0].shape) if len(self.outputs) == 1 else None


def _feature_map_problem(call: _Call, count: int) -> str | None:
    """Why attention cannot follow this call's output, or None when it can."""
    shape = call.shape
    if count > 1:
        return f"is called {count} times in the model, so it has no single output to follow"
    if shape is None:
        return f"returns {len(call.outputs)} tensors, not one feature map"
    if len(shape) != 4 or shape[-1] is None:
        return f"outputs shape {shape}, not a 4D feature map (B, H, W, C) with known channels"
    if getattr(call.layer, "data_format", "channels_last") == "channels_first":
        return f"outputs shape {shape} in channels_first order; attention needs channels last"
    return None


def _check_model(model) -> None:
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ConfigError(
                "`model` must know its input shape, so that every point's feature-map shape is "
                f"known. Received: an unbuilt Sequential model {model.name!r}. Start it with "
                "`keras.Input(shape=...)` or call `model.build(input_shape)` first."
            )
    # A Functional model (keras.Model(inputs, outputs), keras.applications) lists its
    # `operations`; a subclassed model has no graph to read.
    elif not (isinstance(model, keras.Model) and hasattr(model, "operations")):
        raise ConfigError(
            "`model` must be a Functional or Sequential Keras model, whose layer graph can be "
            f"read. Received: model of class {type(model).__name__} (a subclassed model or not "
            "a model). Build it with `keras.Model(inputs, outputs)` or `keras.Sequential`."
        )


def _walk(model, insert: dict[str, dict] | None = None):
    """Every layer call of `model` in graph order and, with `insert`, the model with attention.

    Args:
        model: A Functional or Sequential model (checked by `_check_model`).
        insert: Layer name -> the `SelfAttentionConv2D` options for the layer to follow it,
            or the layer itself.
            Attention follows only calls whose output is a feature map; the caller checks.

    Returns:
        `(calls, produced, outputs, new_model)`: the calls, in an order where every call comes
        after the calls it consumes; the index of the call that produced each tensor (by id);
        the model's output tensors in that graph; the rebuilt model (the same layers, attention
        inserted).
    """
    insert = insert or {}
    calls: list[_Call] = []
    produced: dict[int, int] = {}  # tensor id -> index of the call that returned it
    counts: dict[int, int] = {}  # id(layer) -> how many times the graph calls it

    def attention_for(layer, call):
        if layer.name not in insert or _feature_map_problem(call, 1) is not None:
            return None
        if isinstance(insert[layer.name], keras.layers.Layer):  # a layer given whole
            return insert[layer.name]
        # A graph may also hold bare operations (`x + y`), which have no dtype policy.
        policy = getattr(layer, "dtype_policy", None)
        options = {**({"dtype": policy} if policy is not None else {}), **insert[layer.name]}
        return SelfAttentionConv2D(name=_PREFIX + layer.name, **options)

    def record(layer, args, outputs):
        flat = keras.tree.flatten(args)
        tensors = [t for t in flat if isinstance(t, keras.KerasTensor)]
        call = _Call(layer, [id(t) for t in tensors], keras.tree.flatten(outputs))
        call.input_shape = tuple(tensors[0].shape) if tensors else None
        counts[id(layer)] = counts.get(id(layer), 0) + 1
        return call

    def finish(call, outputs):
        calls.append(call)
        for t in keras.tree.flatten(outputs):
            produced[id(t)] = len(calls) - 1
        return outputs

    if isinstance(model, keras.Sequential):
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        layers: list = [inputs]
        x = inputs
        for layer in model.layers:
            outputs = layer.compute_output_spec(x)
            call = record(layer, [x], outputs)
            layers.append(layer)
            attention = attention_for(layer, call)
            if attention is not None:
                layers.append(attention)
            x = finish(call, outputs)
        outputs = [x]
        new_model = keras.Sequential(layers, name=model.name, trainable=model.trainable)
        if model.compiled:
            new_model.compile_from_config(model.get_compile_config())
    else:

        def call_function(layer, *args, **kwargs):
            outputs = layer(*args, **kwargs)
            call = record(layer, (args, kwargs), outputs)
            attention = attention_for(layer, call)
            if attention is not None:
                outputs = attention(outputs)
            return finish(call, outputs)

        # `clone_function` returns each layer itself: the new graph shares layers and weights.
        # Only the inputs are new (clone_model always makes them): keep their layers' names.
        input_names = {
            id(layer.output): layer.name
            for layer in model.layers
            if isinstance(layer, keras.layers.InputLayer)
        }
        inputs = keras.tree.map_structure(
            lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=input_names.get(id(t))),
            model.input,
        )
        new_model = keras.models.clone_model(
            model,
            input_tensors=inputs,
            clone_function=lambda layer: layer,
            call_function=call_function,
        )
        outputs = new_model.outputs
    for call in calls:
        call.count = counts[id(call.layer)]
    return calls, produced, outputs, new_model


def _cuts(calls: list[_Call], produced: dict[int, int], model_outputs) -> set[int]:
    """The calls that every path from the inputs to the outputs goes through.

    In a graph order, call v is such a cut unless some edge jumps over it (from a call before v
    to one after it); the inputs sit before every call and the outputs after.
    """
    sink = len(calls)
    jumps_from: dict[int, int] = {}  # edge source -> the furthest call it reaches
    for j, call in enumerate(calls):
        for tensor_id in call.inputs:
            i = produced.get(tensor_id, -1)
            jumps_from[i] = max(jumps_from.get(i, i), j)
    for t in keras.tree.flatten(model_outputs):
        i = produced.get(id(t), -1)
        jumps_from[i] = sink
    cuts, reach = set(), jumps_from.get(-1, -1)
    for v in range(len(calls)):
        if reach <= v:
            cuts.add(v)
        reach = max(reach, jumps_from.get(v, v))
    return cuts


def _area(shape) -> int | None:
    if shape is None or len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return shape[1] * shape[2]


def _points(model) -> tuple[list[_Call], list[_Call], list[_Call]]:
    """`(every call, the valid points, the default points)`, each in graph order."""
    _check_model(model)
    calls, produced, outputs, _ = _walk(model)
    valid = [c for c in calls if _feature_map_problem(c, c.count) is None]
    cuts = _cuts(calls, produced, outputs)
    # Default points: feature maps every path goes through, leaving out padding (a map that
    # grows) and keeping the last one at each resolution before the map shrinks.
    chain = [
        c
        for i, c in enumerate(calls)
        if i in cuts
        and c in valid
        and not (_area(c.shape) and _area(c.input_shape) and _area(c.shape) > _area(c.input_shape))
    ]
    stage_ends = []
    for i, here in enumerate(chain):
        after = chain[i + 1] if i + 1 < len(chain) else None
        if after is None:
            stage_ends.append(here)
        # Shrinks: to half its area or less (a stride or a pooling), not the few pixels that
        # an unpadded convolution trims.
        elif (
            _area(here.shape) and _area(after.shape) and 2 * _area(after.shape) <= _area(here.shape)
        ):
            stage_ends.append(here)
    return calls, valid, stage_ends


def attention_points(
    model: keras.Model,
    *,
    all_points: bool = False,
    batch_size: int = 32,
    num_heads: int = 1,
    kv_pool: int = 1,
) -> list[dict]:
    """Where a `SelfAttentionConv2D` can follow a layer of `model`.

    By default, the last layer of each spatial-resolution stage: a layer that every path from
    the inputs to the outputs goes through, whose feature map is the last before the map
    shrinks to half its area or less, and the last such feature map of the model. (Padding
    layers, whose map grows, are left out.) For a ResNet these are the outputs of its stages
    (`conv2_block3_out` ... `conv5_block3_out`), the points of the Non-local Networks study.
    A model whose height and width are not fixed has one default point, its last feature map.

    Args:
        model: A Functional or Sequential Keras model with a known input shape.
        all_points: Whether to list every layer whose output is a single 4D channels-last tensor
            with known channels, in graph order. Defaults to `False` (stage ends only).
        batch_size: The training batch size the memory estimate is for. Defaults to 32.
        num_heads: The attention heads the memory estimate is for. Defaults to 1.
        kv_pool: The key/value pooling the memory estimate is for. Defaults to 1 (none).

    Returns:
        One dict per point, in graph order: `name` (the layer's name, what `insert_attention`
        takes), `shape` (`(H, W, C)` of its output) and `attention_memory_bytes` (the memory
        guard's estimate of the attention maps in one training step at that resolution, or
        `None` when H or W is unknown).

    Raises:
        ConfigError: For a subclassed model, or a Sequential model without an input shape.

    Example:

    >>> import keras
    >>> from attn_search import attention_points
    >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3),
    ...     keras.layers.MaxPooling2D(), keras.layers.Conv2D(8, 3), keras.layers.Flatten()])
    >>> [(p["name"], p["shape"]) for p in attention_points(model)]
    [('conv2d', (30, 30, 8)), ('conv2d_1', (13, 13, 8))]
    """
    _, valid, stage_ends = _points(model)
    size = itemsize()
    points = []
    for call in valid if all_points else stage_ends:
        _, height, width, channels = call.shape
        memory = None
        if height is not None and width is not None:
            memory = attention_memory_bytes(batch_size, height, width, num_heads, kv_pool, size)
        points.append(
            {"name": call.layer.name, "shape": (height, width, channels),
             "attention_memory_bytes": memory}
        )  # fmt: skip
    return points


def _point_list(stage_ends: list[_Call]) -> str:
    names = ", ".join(repr(c.layer.name) for c in stage_ends)
    return (
        f"The default points are: {names}; any other layer with one 4D channels-last output "
        "also works (`attention_points(model, all_points=True)` lists them all)."
    )


def _check_after(after, calls_by_name, valid, stage_ends) -> list[str]:
    names = [after] if isinstance(after, str) else after
    if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            "`after` must be a non-empty list of layer names. "
            f"Received: after={after!r}. {_point_list(stage_ends)}"
        )
    names = list(names)
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                "`after` must name each point once: one attention layer follows each. "
                f"Received: after={after!r}, with {name!r} {names.count(name)} times."
            )
        if name not in calls_by_name:
            raise ConfigError(
                f"`after` names a layer that the model does not have. Received: {name!r} in "
                f"after={after!r}. {_point_list(stage_ends)}"
            )
        call = calls_by_name[name]
        if call not in valid:
            problem = _feature_map_problem(call, call.count)
            raise ConfigError(
                f"`after` names layer {name!r}, which {problem}: attention cannot follow it. "
                f"Received: after={after!r}. {_point_list(stage_ends)}"
            )
    return names


def insert_attention(
    model: keras.Model, after: Sequence[str] | str, **layer_options
) -> keras.Model:
    """A new model with a `SelfAttentionConv2D` after each named layer of `model`.

    Every consumer of a named layer's output (the next layer, a residual `Add`, a model output)
    takes the attention layer's output instead. The attention layer keeps the feature map's
    shape, and starts as the identity with the default `gamma=0`: the new model computes what
    the original does until training moves gamma. All other layers are the original layer
    objects, so the two models share their weights; train a copy
    (`keras.models.clone_model` plus `set_weights`) to keep the original unchanged.

    Args:
        model: A Functional or Sequential Keras model with a known input shape.
        after: The names of the layers to follow with attention (see `attention_points`); a
            single name may be given as a string.
        **layer_options: Arguments of `SelfAttentionConv2D` (`num_heads`, `activation`,
            `gamma`, `kv_pool`, ...), the same for every inserted layer. `gamma` defaults to
            0.0 here; `dtype` defaults to the preceding layer's dtype policy. `filters`,
            `return_attention_scores` and `name` are fixed: the output keeps the input's channels
            and each layer is named `attention_after_<layer name>`.

    Returns:
        A model of the same kind (Functional or Sequential) and name.

    Raises:
        ConfigError: For a subclassed model, a Sequential model without an input shape, an
            `after` that is empty, names a layer twice, names a layer the model does not have,
            or a layer whose output is not one 4D channels-last feature map, or a fixed option.
        ValueError: For a `SelfAttentionConv2D` option out of its range.

    Example:

    >>> import keras, numpy as np
    >>> from attn_search import insert_attention
    >>> model = keras.applications.MobileNetV2(
    ...     alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10)
    >>> new = insert_attention(model, after=["block_6_expand_relu"], num_heads=2)
    >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
    >>> bool(np.allclose(new.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5))
    True
    """
    for option in _FIXED_OPTIONS:
        if option in layer_options:
            raise ConfigError(
                f"`{option}` cannot be set for inserted attention: each layer keeps its point's "
                f"channels and is named attention_after_<layer name>. Received: {option}="
                f"{layer_options[option]!r}. Leave it out."
            )
    options = {"gamma": 0.0, **layer_options}
    SelfAttentionConv2D(**options)  # checks the options before the model is walked
    return _insert(model, after, lambda name: options)


def insert_layers_after(model: keras.Model, layers: dict[str, keras.layers.Layer]) -> keras.Model:
    """`insert_attention` with the layers given: `layers[name]` follows layer `name`.

    Each given layer must keep its input's shape (an attention layer, or a residual block
    wrapped as a model). The search's backbone hypermodel uses it for per-point options and
    its matched twin. Raises the `ConfigError`s of `insert_attention`.
    """
    return _insert(model, list(layers), layers.__getitem__)


def _insert(model, after, make) -> keras.Model:
    calls, valid, stage_ends = _points(model)
    calls_by_name = {}
    for call in calls:
        calls_by_name.setdefault(call.layer.name, call)
    names = _check_after(after, calls_by_name, valid, stage_ends)
    return _walk(model, {name: make(name) for name in names})[3]

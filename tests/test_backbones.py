"""insert_attention and attention_points: the points of real models, identity at gamma 0, errors."""

import functools

import keras
import numpy as np
import pytest

from attn_search._memory_guard import attention_memory_bytes
from attn_search.backbones import attention_points, insert_attention
from attn_search.errors import ConfigError
from attn_search.layers import SelfAttentionConv2D


def _small_resnet() -> keras.Model:
    """16x16x3 -> 8 channels at 16x16 (identity residual) -> 16 channels at 8x8 (projection)."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem_conv")(inputs)
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.Conv2D(8, 3, padding="same", name="block1_conv")(x)
    y = layers.BatchNormalization(name="block1_bn")(y)
    x = layers.Add(name="block1_add")([x, y])
    x = layers.ReLU(name="block1_out")(x)
    y = layers.Conv2D(16, 3, strides=2, padding="same", name="block2_conv")(x)
    shortcut = layers.Conv2D(16, 1, strides=2, name="block2_shortcut")(x)
    x = layers.Add(name="block2_add")([shortcut, y])
    x = layers.ReLU(name="block2_out")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


def _sequential() -> keras.Sequential:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
            layers.Flatten(name="flatten"),
            layers.Dense(10, name="logits"),
        ],
        name="small_sequential",
    )


def _mobilenet() -> keras.Model:
    return keras.applications.MobileNetV2(
        alpha=0.35, weights=None, input_shape=(32, 32, 3), classes=10
    )


def _resnet50() -> keras.Model:
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)


BUILDERS = {
    "small_resnet": _small_resnet,
    "sequential": _sequential,
    "mobilenet_v2": _mobilenet,
    "resnet50": _resnet50,
}

POINTS = {
    "small_resnet": [("block1_out", (16, 16, 8)), ("block2_out", (8, 8, 16))],
    "sequential": [("conv1", (16, 16, 8)), ("conv2", (8, 8, 8))],
    "mobilenet_v2": [
        ("block_1_expand_relu", (16, 16, 48)),
        ("block_3_expand_relu", (8, 8, 48)),
        ("block_6_expand_relu", (4, 4, 96)),
        ("block_13_expand_relu", (2, 2, 192)),
        ("out_relu", (1, 1, 1280)),
    ],
    "resnet50": [
        ("conv1_relu", (16, 16, 64)),
        ("conv2_block3_out", (8, 8, 256)),
        ("conv3_block4_out", (4, 4, 512)),
        ("conv4_block6_out", (2, 2, 1024)),
        ("conv5_block3_out", (1, 1, 2048)),
    ],
}
CASES = [(kind, name) for kind, points in POINTS.items() for name, _ in points]


@functools.cache
def _model(kind: str) -> keras.Model:
    # Built once per test session: the models are only read (insert_attention shares their
    # layers but never changes them); training tests build their own.
    return BUILDERS[kind]()


def _inputs(model, batch=2, seed=0):
    shape = (batch,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# -- attention_points ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(POINTS))
def test_default_points_are_the_stage_ends(kind):
    points = attention_points(_model(kind), batch_size=8, num_heads=2)
    assert [(p["name"], p["shape"]) for p in points] == POINTS[kind]
    for point in points:
        height, width, _ = point["shape"]
        expected = attention_memory_bytes(8, height, width, 2, 1, 4)
        assert point["attention_memory_bytes"] == expected


def test_all_points_lists_every_feature_map_in_graph_order():
    names = [p["name"] for p in attention_points(_model("small_resnet"), all_points=True)]
    assert names == [
        "stem_conv", "stem_relu", "block1_conv", "block1_bn", "block1_add", "block1_out",
        "block2_shortcut", "block2_conv", "block2_add", "block2_out",
    ]  # fmt: skip
    assert names == [layer.name for layer in _model("small_resnet").layers if layer.name in names]


def test_a_model_without_a_fixed_size_has_its_last_feature_map_as_default_point():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="a")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="b")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    points = attention_points(model)
    assert points == [{"name": "b", "shape": (None, None, 4), "attention_memory_bytes": None}]


def test_an_unpadded_convolution_does_not_end_a_stage_but_a_pooling_does():
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(4, 3, name="a")(inputs)  # 30x30
    x = layers.Conv2D(4, 3, name="b")(x)  # 28x28: trimmed, not a new stage
    x = layers.MaxPooling2D(name="pool")(x)  # 14x14
    x = layers.Conv2D(4, 3, name="c")(x)  # 12x12
    model = keras.Model(inputs, layers.Flatten()(x))
    assert [p["name"] for p in attention_points(model)] == ["b", "c"]


def test_a_bare_operation_in_the_graph_is_a_point_too():
    inputs = keras.Input((8, 8, 4))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    summed = conv + inputs  # a keras.ops operation, not a layer
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="pool")(summed))
    [point] = attention_points(model)
    assert point["shape"] == (8, 8, 4)
    new = insert_attention(model, after=[point["name"]], gamma=0.5)
    x = _inputs(model)
    assert _max_diff(new(x), model(x)) > 1e-4
    new.get_layer(f"attention_after_{point['name']}").gamma.assign(0.0)
    assert _max_diff(new(x), model(x)) < 1e-6


# -- insert_attention: identity at gamma 0, a change otherwise -------------------------------


@pytest.mark.parametrize("kind,point", CASES)
def test_attention_at_gamma_zero_is_the_identity_and_gamma_changes_the_output(kind, point):
    model = _model(kind)
    x = _inputs(model)
    new = insert_attention(model, after=[point], num_heads=2)
    # Both modes: batch normalization uses its moving statistics in one, the batch's in the other.
    for training in (False, True):
        assert _max_diff(new(x, training=training), model(x, training=training)) < 1e-5
    new.get_layer(f"attention_after_{point}").gamma.assign(0.5)
    # In training mode: at inference, a randomly initialized MobileNetV2's activations shrink
    # to about 1e-7 by its last stage, so every input gives the same prediction.
    assert _max_diff(new(x, training=True), model(x, training=True)) > 1e-4


@pytest.mark.parametrize("kind", list(POINTS))
def test_attention_at_every_point_at_once(kind):
    model = _model(kind)
    x = _inputs(model, seed=1)
    names = [name for name, _ in POINTS[kind]]
    new = insert_attention(model, after=names)
    assert type(new) is type(model)
    assert new.name == model.name
    assert [layer.name for layer in new.layers if layer.name.startswith("attention_after_")] == [
        f"attention_after_{name}" for name in names
    ]
    assert _max_diff(new(x, training=False), model(x, training=False)) < 1e-5
    # Every other layer is the original object (the weights are shared, not copied); the input
    # layers are new ones of the same names.
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            assert isinstance(new.get_layer(layer.name), keras.layers.InputLayer)
        else:
            assert new.get_layer(layer.name) is layer


def test_every_consumer_of_the_point_takes_the_attention_output():
    model = _model("small_resnet")
    new = insert_attention(model, after=["stem_relu", "block1_out"], gamma=0.3, kv_pool=2)
    first, second = (new.get_layer(f"attention_after_{n}") for n in ("stem_relu", "block1_out"))
    assert (first.gamma_init, first.kv_pool) == (0.3, 2)
    # The same network wired by hand: stem_relu feeds block1's convolution and its identity
    # residual; block1_out feeds block2's strided convolution and its projection shortcut.
    layer = model.get_layer
    x = _inputs(model)
    h = first(layer("stem_relu")(layer("stem_conv")(x)))
    h = layer("block1_out")(layer("block1_add")([h, layer("block1_bn")(layer("block1_conv")(h))]))
    h = second(h)
    h = layer("block2_add")([layer("block2_shortcut")(h), layer("block2_conv")(h)])
    expected = layer("logits")(layer("pool")(layer("block2_out")(h)))
    assert _max_diff(new(x), expected) < 1e-6
    assert _max_diff(new(x), model(x)) > 1e-4


def test_inserting_twice_from_the_same_model_gives_independent_attention_layers():
    model = _model("sequential")
    first = insert_attention(model, after=["conv1"])
    second = insert_attention(model, after=["conv2"])
    assert [p["name"] for p in attention_points(first)] == ["attention_after_conv1", "conv2"]
    assert "attention_after_conv1" not in [layer.name for layer in second.layers]


# -- training and saving ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["small_resnet", "sequential", "mobilenet_v2"])
def test_gamma_trains_at_every_point(kind):
    model = BUILDERS[kind]()  # its own: training changes the shared layers' weights
    names = [name for name, _ in POINTS[kind]]
    new = insert_attention(model, after=names)
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x = _inputs(model, batch=8)
    y = np.arange(8) % 10
    new.fit(x, y, epochs=1, batch_size=8, verbose=0)
    gammas = {name: float(new.get_layer(f"attention_after_{name}").gamma.numpy()) for name in names}
    assert all(gamma != 0.0 for gamma in gammas.values()), gammas


@pytest.mark.parametrize("kind", ["small_resnet", "sequential", "mobilenet_v2"])
def test_the_new_model_saves_and_reloads(kind, tmp_path):
    model = _model(kind)
    name = POINTS[kind][0][0]
    new = insert_attention(model, after=[name], num_heads=2, gamma=0.5)
    path = tmp_path / "model.keras"
    new.save(path)
    reloaded = keras.saving.load_model(path)  # SelfAttentionConv2D: registered by attn_search
    x = _inputs(model)
    assert _max_diff(reloaded(x, training=False), new(x, training=False)) == 0.0
    assert isinstance(reloaded.get_layer(f"attention_after_{name}"), SelfAttentionConv2D)


# -- errors ----------------------------------------------------------------------------------

SMALL_RESNET_POINTS = (
    "The default points are: 'block1_out', 'block2_out'; any other layer with one 4D "
    "channels-last output also works (`attention_points(model, all_points=True)` lists them all)."
)


def test_a_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    message = (
        "`model` must be a Functional or Sequential Keras model, whose layer graph can be read. "
        "Received: model of class Net (a subclassed model or not a model). Build it with "
        "`keras.Model(inputs, outputs)` or `keras.Sequential`."
    )
    for call in (lambda: insert_attention(Net(), after=["x"]), lambda: attention_points(Net())):
        with pytest.raises(ConfigError) as error:
            call()
        assert str(error.value) == message


def test_an_unbuilt_sequential_model_is_refused():
    model = keras.Sequential([keras.layers.Conv2D(4, 3)], name="unbuilt")
    with pytest.raises(ConfigError) as error:
        attention_points(model)
    assert str(error.value) == (
        "`model` must know its input shape, so that every point's feature-map shape is known. "
        "Received: an unbuilt Sequential model 'unbuilt'. Start it with "
        "`keras.Input(shape=...)` or call `model.build(input_shape)` first."
    )


@pytest.mark.parametrize(
    "after,message",
    [
        (
            ["block1_out", "nope"],
            "`after` names a layer that the model does not have. Received: 'nope' in "
            f"after=['block1_out', 'nope']. {SMALL_RESNET_POINTS}",
        ),
        (
            ["pool"],
            "`after` names layer 'pool', which outputs shape (None, 16), not a 4D feature map "
            "(B, H, W, C) with known channels: attention cannot follow it. Received: "
            f"after=['pool']. {SMALL_RESNET_POINTS}",
        ),
        (
            ["block2_out", "block1_out", "block2_out"],
            "`after` must name each point once: one attention layer follows each. Received: "
            "after=['block2_out', 'block1_out', 'block2_out'], with 'block2_out' 2 times.",
        ),
        (
            [],
            f"`after` must be a non-empty list of layer names. Received: after=[]. "
            f"{SMALL_RESNET_POINTS}",
        ),
    ],
    ids=["unknown", "not-4d", "twice", "empty"],
)
def test_bad_points_are_refused_with_the_valid_points(after, message):
    with pytest.raises(ConfigError) as error:
        insert_attention(_model("small_resnet"), after=after)
    assert str(error.value) == message


def test_the_input_layer_is_not_a_point():
    with pytest.raises(ConfigError) as error:
        insert_attention(_model("small_resnet"), after="image")
    assert str(error.value) == (
        "`after` names a layer that the model does not have. Received: 'image' in "
        f"after='image'. {SMALL_RESNET_POINTS}"
    )


def test_a_layer_called_twice_is_not_a_point():
    inputs = keras.Input((8, 8, 4))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")
    x = keras.layers.ReLU(name="out")(shared(shared(inputs)))
    model = keras.Model(inputs, x)
    with pytest.raises(ConfigError) as error:
        insert_attention(model, after=["shared"])
    assert str(error.value) == (
        "`after` names layer 'shared', which is called 2 times in the model, so it has no "
        "single output to follow: attention cannot follow it. Received: after=['shared']. "
        "The default points are: 'out'; any other layer with one 4D channels-last output also "
        "works (`attention_points(model, all_points=True)` lists them all)."
    )


@pytest.mark.parametrize("option,value", [("filters", 4), ("name", "mine")])
def test_options_that_would_change_the_shape_or_name_are_refused(option, value):
    with pytest.raises(ConfigError) as error:
        insert_attention(_model("sequential"), after=["conv1"], **{option: value})
    assert str(error.value) == (
        f"`{option}` cannot be set for inserted attention: each layer keeps its point's "
        f"channels and is named attention_after_<layer name>. Received: {option}={value!r}. "
        "Leave it out."
    )


def test_a_layer_option_out_of_range_is_the_layers_error():
    with pytest.raises(ValueError) as error:
        insert_attention(_model("sequential"), after=["conv1"], num_heads=0)
    assert str(error.value) == "`num_heads` must be a positive integer. Received: num_heads=0"

"""SelfAttentionConv2D: agreement with the documented formula, shapes, gamma, saving, errors."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from layer_reference import reference_forward

from attn_search import SelfAttention_Conv2D, SelfAttentionConv2D

ROOT = Path(__file__).resolve().parents[1]


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _built(layer, x, gamma=0.7):
    layer(x)  # builds
    layer.gamma.assign(gamma)
    return layer


# -- agreement with the NumPy reference ------------------------------------------------------

CASES = {
    "one-head": dict(kwargs=dict(), shape=(2, 6, 6, 16)),
    "heads-filters-nonsquare": dict(kwargs=dict(num_heads=4, filters=8), shape=(2, 5, 7, 16)),
    "kv_pool-2": dict(kwargs=dict(num_heads=2, kv_pool=2), shape=(2, 8, 8, 8)),
    "kv_pool-3-odd-map": dict(
        kwargs=dict(num_heads=3, kv_pool=3, filters=12, key_dim=4, value_dim=2),
        shape=(1, 7, 5, 6),
    ),
    "one-channel-first-layer": dict(kwargs=dict(filters=8), shape=(2, 9, 9, 1)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_numpy_reference(case):
    x = _rand(*case["shape"])
    layer = _built(SelfAttentionConv2D(activation="tanh", **case["kwargs"]), x)
    outputs, scores = layer(x, return_attention_scores=True)
    _, features = layer(x, return_attention_scores="features")
    want_out, want_scores, want_features = reference_forward(layer, x, activation=np.tanh)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs), want_out, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores), want_scores, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features), want_features, atol=1e-5)
    # the plain call takes the fast path (hand-written gradient), which must agree too
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), want_out, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(key_dim=3, num_heads=2),
        dict(num_heads=3, kv_pool=2, filters=5),
        dict(key_dim=4, value_dim=8, num_heads=2),  # too wide for the factored backward pass
    ],
    ids=["one-key-channel", "heads", "heads-kv_pool", "wide-heads"],
)
def test_hand_written_gradient_matches_autodiff(kwargs):
    import tensorflow as tf

    x = tf.constant(_rand(2, 6, 5, 8))
    layer = _built(SelfAttentionConv2D(activation="tanh", **kwargs), x)
    grads = {}
    for path in ("fast", "autodiff"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            # the scores path is plain autodiff of softmax(q k^T) v
            y = layer(x) if path == "fast" else layer(x, return_attention_scores=True)[0]
            loss = tf.reduce_sum(tf.sin(3.0 * y))
        grads[path] = tape.gradient(loss, [x, *layer.trainable_weights])
    for fast, auto in zip(grads["fast"], grads["autodiff"], strict=True):
        np.testing.assert_allclose(fast.numpy(), auto.numpy(), rtol=1e-4, atol=1e-5)


def test_one_key_channel_is_stable_for_large_logits():
    # exp(q k^T) would overflow float32 here without the exact row maxima
    x = _rand(2, 6, 6, 8) * 200.0
    layer = _built(SelfAttentionConv2D(filters=4), x, gamma=1.0)
    want, _, _ = reference_forward(layer, x)
    got = keras.ops.convert_to_numpy(layer(x))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_fused_and_matmul_paths_agree():
    x = _rand(2, 6, 6, 16)
    fused = _built(
        SelfAttentionConv2D(num_heads=2, key_dim=4, value_dim=4, use_fused_attention=True), x
    )
    manual = SelfAttentionConv2D.from_config({**fused.get_config(), "use_fused_attention": False})
    manual(x)
    manual.set_weights(fused.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fused(x)), keras.ops.convert_to_numpy(manual(x)), atol=1e-5
    )


def test_gamma_zero_gives_exactly_the_shortcut():
    x = _rand(2, 6, 6, 4)
    layer = SelfAttentionConv2D(gamma=0.0, num_heads=2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)


def test_score_rows_sum_to_one_and_have_the_documented_shape():
    x = _rand(3, 10, 6, 8)
    _, scores = SelfAttentionConv2D(num_heads=2, kv_pool=4)(x, return_attention_scores=True)
    scores = keras.ops.convert_to_numpy(scores)
    assert scores.shape == (3, 2, 60, 3 * 2)  # ceil(10/4) * ceil(6/4) keys
    np.testing.assert_allclose(scores.sum(axis=-1), np.ones((3, 2, 60)), atol=1e-6)
    assert (scores >= 0).all()


def test_permuting_positions_permutes_outputs_the_same_way():
    x = _rand(2, 5, 6, 8)
    layer = _built(SelfAttentionConv2D(num_heads=2, filters=4), x)
    perm = np.random.default_rng(3).permutation(30)
    flat = x.reshape(2, 30, 8)
    x_perm = flat[:, perm].reshape(2, 5, 6, 8)
    y = keras.ops.convert_to_numpy(layer(x)).reshape(2, 30, 4)
    y_perm = keras.ops.convert_to_numpy(layer(x_perm)).reshape(2, 30, 4)
    np.testing.assert_allclose(y_perm, y[:, perm], atol=1e-5)
    # and the test has teeth: the output is not the same for every position
    assert np.abs(y - y[:, :1]).max() > 1e-3


# -- shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, in_shape, out_shape",
    [
        (dict(), (28, 28, 1), (28, 28, 1)),
        (dict(filters=8), (28, 28, 1), (28, 28, 8)),
        (dict(num_heads=4), (12, 20, 16), (12, 20, 16)),
        (dict(filters=3, num_heads=8, kv_pool=2), (9, 7, 5), (9, 7, 3)),
        (dict(filters=8), (None, None, 3), (None, None, 8)),
    ],
)
def test_output_shapes_as_documented(kwargs, in_shape, out_shape):
    layer = SelfAttentionConv2D(**kwargs)
    assert layer.compute_output_shape((None, *in_shape)) == (None, *out_shape)
    sequential = keras.Sequential([keras.Input(in_shape), SelfAttentionConv2D(**kwargs)])
    assert sequential.output_shape == (None, *out_shape)
    concrete = tuple(s or 11 for s in in_shape)
    y = sequential.predict(_rand(2, *concrete), verbose=0)
    assert y.shape == (2, *concrete[:2], out_shape[-1])


def test_usable_between_layers_in_a_functional_model():
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h, scores = SelfAttentionConv2D(num_heads=2, kv_pool=2)(h, return_attention_scores=True)
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, [outputs, scores])
    assert model.output_shape == [(None, 4), (None, 2, 256, 64)]
    y, s = model.predict(_rand(2, 16, 16, 3), verbose=0)
    assert y.shape == (2, 4) and s.shape == (2, 2, 256, 64)


def test_mixed_precision_keeps_softmax_rows_normalised():
    x = _rand(2, 8, 8, 8)
    layer = SelfAttentionConv2D(num_heads=2, dtype="mixed_float16")
    outputs, scores = layer(x, return_attention_scores=True)
    assert outputs.dtype == "float16" and layer.gamma.dtype == "float32"
    sums = keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.cast(scores, "float32"), -1))
    np.testing.assert_allclose(sums, np.ones_like(sums), atol=2e-3)
    assert np.isfinite(keras.ops.convert_to_numpy(outputs)).all()


# -- the reference notebook's model ----------------------------------------------------------


def _notebook_model():
    # The reference notebook's MNIST-shaped model; only the import line differs.
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            SelfAttention_Conv2D(filters=8),
            keras.layers.Conv2D(32, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def test_reference_model_trains_and_gamma_moves():
    model = _notebook_model()
    attention = model.layers[0]
    assert model.output_shape == (None, 10)
    assert attention.output.shape == (None, 28, 28, 8)
    assert any(w is attention.gamma for w in model.trainable_weights)
    assert model.count_params() == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    before = float(keras.ops.convert_to_numpy(attention.gamma))
    assert before == pytest.approx(0.01)
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    after = float(keras.ops.convert_to_numpy(attention.gamma))
    assert abs(after - before) > 1e-4


# -- saving ----------------------------------------------------------------------------------


def test_config_round_trip():
    layer = SelfAttentionConv2D(
        filters=6,
        num_heads=3,
        key_dim=2,
        value_dim=5,
        activation="relu",
        gamma=0.5,
        kv_pool=2,
        return_attention_scores="features",
        name="attn",
    )
    clone = SelfAttentionConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    alias = SelfAttention_Conv2D(filters=8, num_heads=2, activation="tanh")
    alias_clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(alias))
    assert type(alias_clone) is SelfAttention_Conv2D
    assert alias_clone.get_config() == alias.get_config()


def _run_python(code, **env):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_saved_model_reloads_in_a_fresh_process_with_identical_predictions(tmp_path):
    inputs = keras.Input((10, 10, 3))
    h = SelfAttentionConv2D(filters=8, num_heads=2, kv_pool=2, activation="relu")(inputs)
    h = SelfAttention_Conv2D(num_heads=4)(h)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    model.layers[1].gamma.assign(0.8)
    x = _rand(4, 10, 10, 3)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "m.keras")
    out = _run_python(
        f"""
        import numpy as np, keras
        import attn_search  # nothing else: the import registers the layer
        model = keras.models.load_model({str(tmp_path / "m.keras")!r})
        y = model.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0)
        np.testing.assert_array_equal(y, np.load({str(tmp_path / "y.npy")!r}))
        print(type(model.layers[1]).__name__, float(model.layers[1].gamma.numpy()))
        """
    )
    assert out.split() == ["SelfAttentionConv2D", "0.800000011920929"]


def test_savedmodel_export_loads_without_attn_search(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            SelfAttentionConv2D(filters=4, num_heads=2),
            keras.layers.Flatten(),
        ]
    )
    x = _rand(2, 8, 8, 1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    model.export(str(tmp_path / "saved"), verbose=False)
    _run_python(
        f"""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "attn_search":
                    raise ImportError("attn_search is blocked in this test")
        sys.meta_path.insert(0, _Block())
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / "saved")!r})
        y = loaded.serve(np.load({str(tmp_path / "x.npy")!r})).numpy()
        np.testing.assert_allclose(y, np.load({str(tmp_path / "y.npy")!r}), atol=1e-6)
        assert "attn_search" not in sys.modules
        """
    )


# -- backends --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_backend_agrees_with_numpy_reference(backend):
    pytest.importorskip(backend)
    out = _run_python(
        """
        import sys, numpy as np, keras
        sys.path.insert(0, "tests")
        from attn_search import SelfAttentionConv2D
        from layer_reference import reference_forward
        keras.utils.set_random_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
        x = np.random.default_rng(0).normal(size=(2, 7, 6, 8)).astype("float32")
        for kwargs in (dict(num_heads=2, filters=4, kv_pool=2),
                       dict(num_heads=2, key_dim=4, value_dim=4),   # fused path on jax
                       dict(key_dim=4, value_dim=8),                 # wide: plain backward
                       dict(filters=3)):
            layer = SelfAttentionConv2D(activation="relu", **kwargs)
            layer(x)
            layer.gamma.assign(0.9)
            want, _, _ = reference_forward(layer, x, activation=lambda t: np.maximum(t, 0))
            got = keras.ops.convert_to_numpy(layer(x))
            np.testing.assert_allclose(got, want, atol=1e-5)
            if keras.backend.backend() == "jax":
                # the hand-written gradient against JAX's autodiff of the scores path
                import jax
                def loss(weights, scores):
                    out = layer.stateless_call(weights, [], x, return_attention_scores=scores)[0]
                    out = out[0] if scores else out
                    return jax.numpy.sum(jax.numpy.sin(3.0 * out))
                weights = [w.value for w in layer.trainable_weights]
                grads = jax.grad(loss)(weights, False), jax.grad(loss)(weights, True)
                for fast, auto in zip(*grads):
                    # atol: bias gradients are sums with cancellation, ~1e-5 of float32 noise
                    np.testing.assert_allclose(fast, auto, rtol=1e-4, atol=1e-4)
                # attention in blocks of 9 queries (5 blocks, 3 rows padded), jitted
                layer.query_block = 9
                blocked = jax.jit(jax.grad(loss), static_argnums=1)(weights, False)
                np.testing.assert_allclose(layer(x), got, rtol=1e-5, atol=1e-6)
                for block, whole in zip(blocked, grads[0]):
                    np.testing.assert_allclose(block, whole, rtol=1e-4, atol=1e-4)
        print(keras.backend.backend())
        """,
        KERAS_BACKEND=backend,
    )
    assert out.strip() == backend


# -- bad arguments ---------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (dict(filters=0), "`filters` must be a positive integer or None. Received: filters=0"),
    (dict(filters=2.5), "`filters` must be a positive integer or None. Received: filters=2.5"),
    (dict(num_heads=0), "`num_heads` must be a positive integer. Received: num_heads=0"),
    (dict(num_heads=None), "`num_heads` must be a positive integer. Received: num_heads=None"),
    (dict(key_dim=-1), "`key_dim` must be a positive integer or None. Received: key_dim=-1"),
    (
        dict(activation="sigmoidd"),
        "`activation` must be the name of a Keras activation (e.g. 'relu', 'tanh') or a "
        "callable. Received: activation='sigmoidd'",
    ),
    (dict(gamma=float("nan")), "`gamma` must be a finite number. Received: gamma=nan"),
    (dict(gamma="0.1"), "`gamma` must be a finite number. Received: gamma='0.1'"),
    (
        dict(kv_pool=0),
        "`kv_pool` must be a positive integer (1 = no pooling of keys and values). "
        "Received: kv_pool=0",
    ),
    (
        dict(kv_pool=1.5),
        "`kv_pool` must be a positive integer (1 = no pooling of keys and values). "
        "Received: kv_pool=1.5",
    ),
    (
        dict(return_attention_scores="maps"),
        "`return_attention_scores` must be False, True, 'scores' or 'features'. "
        "Received: return_attention_scores='maps'",
    ),
]


@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS, ids=[m[:30] for _, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error_naming_them(kwargs, message):
    with pytest.raises(ValueError) as info:
        SelfAttentionConv2D(**kwargs)
    assert str(info.value) == message


def test_non_4d_input_is_refused():
    with pytest.raises(ValueError) as info:
        SelfAttentionConv2D()(np.zeros((2, 8, 3), "float32"))
    assert str(info.value) == (
        "SelfAttentionConv2D expects a 4D input (batch, height, width, channels). "
        "Received: input_shape=(2, 8, 3)"
    )


def test_reference_alias_accepts_the_reference_signature():
    layer = SelfAttention_Conv2D(
        filters=None,
        num_heads=None,
        gamma=0.01,
        activation="linear",
        return_attention_scores=False,
        trainable=True,
    )
    assert layer.num_heads == 1 and layer.trainable
    y, features = SelfAttention_Conv2D(filters=8, return_attention_scores="features")(
        _rand(2, 28, 28, 1)
    )
    assert tuple(y.shape) == (2, 28, 28, 8) and tuple(features.shape) == (2, 28, 28, 1)

"""SelfAttentionConv2D's attention in blocks of queries: the unblocked results and gradients.

The JAX backend's check is in tests/test_layers.py (test_backend_agrees_with_numpy_reference).
"""

import keras
import numpy as np
import pytest

from attn_search import SelfAttentionConv2D
from attn_search._attention_blocks import BLOCK_BYTES, TRACE_BATCH, query_block_size


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _twins(x, query_block, **kwargs):
    """The same layer (same weights) unblocked and with `query_block` rows per block."""
    whole = SelfAttentionConv2D(activation="tanh", query_block=10_000, **kwargs)
    whole(x)
    whole.gamma.assign(0.8)
    blocked = SelfAttentionConv2D.from_config({**whole.get_config(), "query_block": query_block})
    blocked(x)
    blocked.set_weights(whole.get_weights())
    return whole, blocked


CASES = {
    # one key channel: exact row maxima, factored backward pass
    "one-key-channel": (dict(), (2, 6, 5, 8), 7),  # 30 queries: 5 blocks, the last of 2 rows
    "heads-kv_pool": (dict(num_heads=3, kv_pool=2, filters=5), (2, 7, 6, 8), 16),
    "wide-heads": (dict(key_dim=4, value_dim=8, num_heads=2), (2, 6, 6, 8), 5),  # plain backward
    "one-query-per-block": (dict(num_heads=2, key_dim=2), (1, 4, 4, 8), 1),
    # more blocks than UNROLLED_BLOCKS (32): the keras.ops loop, padded and not
    "looped-one-key-channel": (dict(), (2, 6, 7, 8), 1),  # 42 queries: 42 blocks
    "looped-heads-padded": (dict(num_heads=2, key_dim=3), (2, 10, 10, 8), 3),  # 34, 2 padded
}


@pytest.mark.parametrize("kwargs, shape, block", CASES.values(), ids=CASES.keys())
def test_blocked_matches_unblocked_forward_and_gradient(kwargs, shape, block):
    import tensorflow as tf

    x = tf.constant(_rand(*shape))
    results = []
    for layer in _twins(x, block, **kwargs):

        @tf.function  # graph mode, as in fit: the batch is unknown to the layer
        def step(inp, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(inp)
                y = layer(inp)
                loss = tf.reduce_sum(tf.sin(3.0 * y))
            return y, tape.gradient(loss, [inp, *layer.trainable_weights])

        step = step.get_concrete_function(tf.TensorSpec((None, *shape[1:]), tf.float32))
        results.append(step(x))
    (y_whole, g_whole), (y_blocked, g_blocked) = results
    np.testing.assert_allclose(y_blocked.numpy(), y_whole.numpy(), rtol=1e-5, atol=1e-6)
    assert len(g_blocked) == len(g_whole) == 10 + (kwargs.get("filters") is not None) * 2
    for blocked, whole in zip(g_blocked, g_whole, strict=True):
        np.testing.assert_allclose(blocked.numpy(), whole.numpy(), rtol=1e-4, atol=1e-5)


def test_blocked_layer_trains_like_the_unblocked_one():
    x, y = _rand(16, 6, 6, 4), np.arange(16) % 3
    models = []
    for block in (10_000, 8):
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.Input((6, 6, 4)),
                SelfAttentionConv2D(num_heads=2, gamma=0.5, query_block=block),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        # plain SGD: Adam would magnify float rounding in gradients close to zero
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        models.append(model)
    for whole, blocked in zip(*(m.get_weights() for m in models), strict=True):
        np.testing.assert_allclose(blocked, whole, rtol=1e-4, atol=1e-5)


def test_block_size_rule():
    # a small matrix: one block, whatever the batch
    assert query_block_size(None, 64, 2, 64, 64) == 64
    assert TRACE_BATCH * 2 * 64 * 64 * 4 <= BLOCK_BYTES == 8 * 2**20
    assert query_block_size(None, None, 2, 64, 64) == 64
    # 32x32, batch 32, one head: 8 MiB / (32 x 1024 keys x 4 bytes) = 64 rows per block
    assert query_block_size(None, 32, 1, 1024, 1024) == 64
    assert query_block_size(None, None, 1, 1024, 1024) == 64  # unknown batch: TRACE_BATCH
    assert query_block_size(None, 4, 1, 1024, 1024) == 512
    # 32x32, unknown batch, 4 heads: 16 rows by the bytes, raised to the 32 rows of blocks
    # written out in the graph (32 blocks, the most written out)
    assert query_block_size(None, None, 4, 1024, 1024) == 32
    # 64x64, batch 8, 4 heads: 16 rows by the bytes; 32-row blocks would be 128, too many to
    # write out: a loop of 64-row blocks (32 MiB, under the 64 MiB cap)
    assert query_block_size(None, 8, 4, 4096, 4096) == 64
    # 64x64, unknown batch, 4 heads: 64 rows would be 128 MiB: 32 rows (64 MiB)
    assert query_block_size(None, None, 4, 4096, 4096) == 32
    # ... and never below 16 rows, however large a row
    assert query_block_size(None, 512, 8, 4096, 4096) == 16
    # 28x28, unknown batch: 83 rows by the bytes; 784 / 83 -> 10 blocks of 79 (78.4)
    assert query_block_size(None, None, 1, 784, 784) == 79
    # 1000 queries, 256 rows by the bytes: 4 blocks of 250 rather than 3 of 256 and one of 232
    assert query_block_size(None, 1, 1, 1000, 8192) == 250
    # requested: as given, at most the map
    assert query_block_size(7, 32, 1, 1024, 1024) == 7
    assert query_block_size(5000, 32, 1, 1024, 1024) == 1024


def test_layer_takes_the_blocked_path_with_the_automatic_block(monkeypatch):
    import attn_search._attention_ops as attention_ops

    calls = []
    blocked = attention_ops.blocked_softmax_attention

    def spy(q, k, v, block):
        calls.append((tuple(q.shape), block))
        return blocked(q, k, v, block)

    monkeypatch.setattr(attention_ops, "blocked_softmax_attention", spy)
    model = keras.Sequential([keras.Input((32, 32, 8)), SelfAttentionConv2D(num_heads=2)])
    model.compile("sgd", "mse")
    x = _rand(3, 32, 32, 8)
    model.fit(x, x, batch_size=2, epochs=1, verbose=0)  # traced with an unknown batch size
    # 2 heads x 1024 keys x 4 bytes per row and sample, batch taken as 32: 32 rows by the
    # bytes, 32 blocks (written out in the graph)
    assert calls and set(calls) == {((None, 2, 1024, 1), 32)}
    calls.clear()
    SelfAttentionConv2D(num_heads=2, query_block=100)(x)  # eager: batch 3 known
    assert calls == [((3, 2, 1024, 1), 100)]
    calls.clear()
    SelfAttentionConv2D(num_heads=2)(x[:, :8, :8])  # small: one block, the unblocked path
    assert calls == []


def test_query_block_in_config_and_validated():
    layer = SelfAttentionConv2D(query_block=64)
    assert layer.get_config()["query_block"] == 64
    assert SelfAttentionConv2D.from_config(layer.get_config()).query_block == 64
    assert SelfAttentionConv2D().get_config()["query_block"] is None
    for bad in (0, 2.5, "auto"):
        with pytest.raises(ValueError) as info:
            SelfAttentionConv2D(query_block=bad)
        assert str(info.value) == (
            "`query_block` must be a positive integer (query positions per block) or None "
            f"(automatic). Received: query_block={bad!r}"
        )


def test_memory_guard_counts_one_block_of_queries():
    from attn_search._memory_guard import (
        attention_memory_bytes,
        fit_to_budget,
        layer_memory_bytes,
        layer_query_rows,
    )

    # 64x64, batch 32, one head: 64 query rows at a time instead of 4096
    assert layer_query_rows(32, 64, 64, 1) == 64
    # the block's maps, plus 2 KB + 1 KB per head per query position and example for the
    # layer's other tensors
    assert layer_memory_bytes(32, 64, 64, 1) == 32 * 64 * 4096 * 4 * 2 + 32 * 4096 * 3072
    # four heads: 64 rows would be 128 MiB a block, so 32 rows (64 MiB)
    assert layer_memory_bytes(32, 64, 64, 4) == 32 * 4 * 32 * 4096 * 4 * 2 + 32 * 4096 * 6144
    assert attention_memory_bytes(32, 64, 64, 1) == 32 * 4096 * 4096 * 4 * 2  # unblocked: 4 GiB
    # batch 4 at 32x32: 2 blocks of 512 rows for this batch, both alive at once (written out,
    # two in flight); 16 blocks of 64 for an unknown one, 128 rows at once; the larger counts
    assert layer_query_rows(4, 32, 32, 1) == 1024
    assert layer_query_rows(32, 32, 32, 1) == 128
    # small maps: the whole map, as before
    assert layer_memory_bytes(64, 8, 8, 2) == attention_memory_bytes(64, 8, 8, 2)
    layers = [{"placement": 0, "num_heads": 1, "kv_pool": 1}]
    assert fit_to_budget(layers, {0: (64, 64, 8)}, 32, 500.0, None) is None  # 448 MB
    assert fit_to_budget(layers, {0: (64, 64, 8)}, 32, 300.0, None) == (
        "The attention maps would need about 448.0 MB in a training step (attention_at_input: "
        "batch 32 x 1 head x 64 of 4096 queries at a time x 4096 keys (kv_pool=1); x 4 bytes x "
        "2 for forward and backward), over the memory budget of 300.0 MB. Lower "
        "train/batch_size, allow a larger attention.kv_pool, place attention deeper, or raise "
        "memory_budget_mb."
    )


def test_up_to_unrolled_blocks_are_written_out_and_more_run_in_a_loop(monkeypatch):
    from attn_search import _attention_blocks as attention_ops

    used = []
    for name in ("_unrolled_blocks", "_looped_blocks"):
        real = getattr(attention_ops, name)
        monkeypatch.setattr(
            attention_ops, name, lambda *a, real=real, name=name: used.append(name) or real(*a)
        )
    q, k, v = (keras.ops.convert_to_tensor(_rand(2, 64, d, seed=d)) for d in (2, 2, 5))
    whole = attention_ops.softmax_attention(q, k, v)
    assert attention_ops.UNROLLED_BLOCKS == 32
    for block, path in ((2, "_unrolled_blocks"), (1, "_looped_blocks")):  # 32 and 64 blocks
        out = attention_ops.blocked_softmax_attention(q, k, v, block)
        assert used[-1] == path
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(whole), rtol=1e-5, atol=1e-6
        )

"""The attention kernels behind `SelfAttentionConv2D`, written with `keras.ops` only.

`attend` turns the query, key and value maps of the layer's 1x1 convolutions into the attended
context, on one of three paths: `keras.ops.dot_product_attention` (fused), an explicit softmax
that also yields the attention maps, or `softmax_attention`, whose hand-written gradient makes
fewer passes over the (T, S) attention matrix than autodiff does (`_attention_kernels`), whole
or in blocks of queries for large maps (`_attention_blocks`).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from attn_search._attention_blocks import blocked_softmax_attention, query_block_size
from attn_search._attention_kernels import softmax_attention


def use_fused(
    requested: bool | None, *, scores: bool, key_dim: int, value_dim: int, compute_dtype: str
) -> bool:
    """Whether `attend` takes the fused path: never for scores, unequal widths or a compute
    dtype other than float32; else as `requested`, and when `None` on JAX and PyTorch only."""
    if scores or key_dim != value_dim:
        return False
    if compute_dtype != "float32":
        return False  # keep the softmax in float32 under mixed precision
    if requested is not None:
        return requested
    return keras.backend.backend() in ("jax", "torch")


def attend(
    query,
    key,
    value,
    num_heads: int,
    *,
    fused: bool | None,
    scores: bool,
    compute_dtype: str,
    query_block: int | None = None,
):
    """Multi-head attention of every query position over every key position.

    Args:
        query: `(B, H, W, num_heads * key_dim)`.
        key: `(B, H_k, W_k, num_heads * key_dim)`.
        value: `(B, H_k, W_k, num_heads * value_dim)`.
        num_heads: Number of heads; each attends with its own slice of the channels, so
            `key_dim` and `value_dim` are the channels of `key` and `value` over `num_heads`.
        fused: Whether to use `keras.ops.dot_product_attention`; `None` for automatic (see
            `use_fused`).
        scores: Whether to also return the attention maps.
        compute_dtype: The dtype of the returned scores.
        query_block: Query rows per block on the unfused path without scores (see
            `query_block_size`); `None` for automatic.

    Returns:
        `(context, scores)`: `context` of shape `(B, H*W, num_heads, value_dim)` (or
        `(B, H*W, value_dim)` with one head, unfused), in `value`'s dtype; `scores` of shape
        `(B, num_heads, H*W, H_k*W_k)`, or `None` when not asked for.
    """
    heads = num_heads
    dk, dv = int(key.shape[-1]) // heads, int(value.shape[-1]) // heads
    batch = ops.shape(query)[0]
    scale = 1.0 / math.sqrt(dk)
    if use_fused(fused, scores=scores, key_dim=dk, value_dim=dv, compute_dtype=compute_dtype):
        context = ops.dot_product_attention(
            ops.reshape(query, (batch, -1, heads, dk)),  # (B, HW, heads, dk)
            ops.reshape(key, (batch, -1, heads, dk)),  # (B, S, heads, dk)
            ops.reshape(value, (batch, -1, heads, dv)),  # (B, S, heads, dv)
            scale=scale,
        )  # (B, HW, heads, dv)
        return context, None
    # Static sizes where the map's are known (TensorFlow traces `fit` with an unknown batch,
    # and `-1` would then hide them): query blocks need them.
    queries, keys = _positions(query), _positions(key)
    if heads == 1:
        # One head: no transposes at all.
        q = ops.reshape(query, (batch, queries, dk))  # (B, HW, dk)
        k = ops.reshape(key, (batch, keys, dk))  # (B, S, dk)
        v = ops.reshape(value, (batch, keys, dv))  # (B, S, dv)
    else:
        q = ops.transpose(ops.reshape(query, (batch, queries, heads, dk)), (0, 2, 1, 3))
        k = ops.transpose(ops.reshape(key, (batch, keys, heads, dk)), (0, 2, 1, 3))
        v = ops.transpose(ops.reshape(value, (batch, keys, heads, dv)), (0, 2, 1, 3))
        # q: (B, heads, HW, dk), k: (B, heads, S, dk), v: (B, heads, S, dv)
    # The softmax runs in float32, also under mixed precision.
    q = ops.cast(q, "float32") * scale
    k = ops.cast(k, "float32")
    v32 = ops.cast(v, "float32")
    weights = None
    if scores:
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., HW, S)
        probabilities = ops.softmax(logits, axis=-1)
        context = ops.matmul(probabilities, v32)  # (..., HW, dv)
        weights = ops.cast(probabilities, compute_dtype)
        if heads == 1:
            weights = ops.expand_dims(weights, 1)  # (B, 1, HW, S)
    else:
        block = None
        if queries != -1 and keys != -1:
            block = query_block_size(query_block, query.shape[0], heads, queries, keys)
        if block is None or block >= queries:
            context = softmax_attention(q, k, v32)  # (..., HW, dv)
        else:
            context = blocked_softmax_attention(q, k, v32, block)  # (..., HW, dv)
    context = ops.cast(context, v.dtype)
    if heads > 1:
        context = ops.transpose(context, (0, 2, 1, 3))  # (B, HW, heads, dv)
    return context, weights


def _positions(x) -> int:
    """`H*W` of a `(B, H, W, C)` tensor when both are known, else -1 (for a reshape)."""
    height, width = x.shape[1], x.shape[2]
    return -1 if height is None or width is None else int(height) * int(width)


def scores_shape(batch, height, width, num_heads: int, kv_pool: int) -> tuple:
    """The shape of the attention maps, `(B, heads, H*W, H_k*W_k)`; unknown sides give `None`."""
    if height is None or width is None:
        return (batch, num_heads, None, None)
    keys = math.ceil(height / kv_pool) * math.ceil(width / kv_pool)
    return (batch, num_heads, height * width, keys)

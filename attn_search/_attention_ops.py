"""The attention kernels behind `SelfAttentionConv2D`, written with `keras.ops` only.

`attend` turns the query, key and value maps of the layer's 1x1 convolutions into the attended
context, on one of three paths: `keras.ops.dot_product_attention` (fused), an explicit softmax
that also yields the attention maps, or `softmax_attention`, whose hand-written gradient makes
fewer passes over the (T, S) attention matrix than autodiff does.
"""

from __future__ import annotations

import math

import keras
from keras import ops

# Up to this many columns (key_dim * (value_dim + 1)), the backward pass regroups its sums so
# that it never writes a (T, S) matrix; beyond it, that costs more arithmetic than it saves.
_FACTORED_GRAD_MAX_COLUMNS = 16


def _with_ones(x):
    """Appends a channel of ones: `[x, 1] @ ...` then also yields the row sums, in one matmul."""
    return ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)


@ops.custom_gradient
def softmax_attention(q, k, v):
    """`softmax(q k^T) v` over the last two axes, with a hand-written gradient.

    Shapes: q (..., T, d), k (..., S, d), v (..., S, dv) -> (..., T, dv), all float32.

    Autodiff of `matmul(softmax(matmul(q, k^T)), v)` makes about a dozen passes over the
    (T, S) attention matrix in the backward pass. This version makes fewer: the softmax
    normaliser comes out of the value matmul (`e @ [v, 1]`), the softmax gradient's row sums
    come from the small (T, dv) tensors (`sum(dA * A) = sum(dctx * ctx)`), and every matmul
    transposes only the small operand. With one key channel, the row maxima needed for a
    stable exp come from k's extremes without a pass over the matrix. Measured in
    benchmarks/bench_layer.py.
    """
    if q.shape[-1] == 1:
        # max_j q_i k_j = q_i * (max k if q_i >= 0 else min k), exactly.
        k_max = ops.max(k, axis=-2, keepdims=True)  # (..., 1, 1)
        k_min = ops.min(k, axis=-2, keepdims=True)
        row_max = ops.where(q >= 0, q * k_max, q * k_min)  # (..., T, 1)
        # exp(q k^T - row_max) as a single matmul: [q, -row_max] @ [k, 1]^T
        e = ops.exp(
            ops.matmul(ops.concatenate([q, -row_max], -1), ops.swapaxes(_with_ones(k), -1, -2))
        )  # (..., T, S)
    else:
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., T, S)
        e = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True)))
    v1 = _with_ones(v)  # (..., S, dv + 1)
    weighted = ops.matmul(e, v1)  # (..., T, dv + 1)
    denominator = weighted[..., -1:]  # (..., T, 1)
    context = weighted[..., :-1] / denominator  # (..., T, dv)

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        d_numerator = upstream / denominator  # (..., T, dv)
        d_denominator = -ops.sum(upstream * context, axis=-1, keepdims=True) / denominator
        d_weighted = ops.concatenate([d_numerator, d_denominator], -1)  # (..., T, dv + 1)
        d_key, d_val = q.shape[-1], v1.shape[-1]
        if d_key * d_val <= _FACTORED_GRAD_MAX_COLUMNS:
            # dL_ij = e_ij * (d_weighted_i . v1_j) is never materialised: both reductions of
            # dL are regrouped into one matmul each with e, so the backward pass reads the
            # (T, S) matrix twice and writes nothing of that size.
            #   d_q_i[a] = sum_c d_weighted_ic * (e @ (k[a] * v1[c]))_i
            #   d_k_j[a] = sum_c v1_jc * (e^T @ (q[a] * d_weighted[c]))_j,  d_v = e^T @ d_num
            k_v1 = ops.reshape(
                ops.expand_dims(k, -1) * ops.expand_dims(v1, -2),
                (*ops.shape(k)[:-1], d_key * d_val),
            )  # (..., S, d*(dv+1))
            e_kv = ops.matmul(e, k_v1)  # (..., T, d*(dv+1))
            e_kv = ops.reshape(e_kv, (*ops.shape(e_kv)[:-1], d_key, d_val))
            d_q = ops.sum(e_kv * ops.expand_dims(d_weighted, -2), axis=-1)  # (..., T, d)
            q_dw = ops.reshape(
                ops.expand_dims(q, -1) * ops.expand_dims(d_weighted, -2),
                (*ops.shape(q)[:-1], d_key * d_val),
            )  # (..., T, d*(dv+1))
            small = ops.concatenate([q_dw, d_numerator], -1)  # (..., T, d*(dv+1) + dv)
            reduced = ops.swapaxes(ops.matmul(ops.swapaxes(small, -1, -2), e), -1, -2)
            # reduced: (..., S, d*(dv+1) + dv)
            e_q = ops.reshape(
                reduced[..., : d_key * d_val],
                (*ops.shape(reduced)[:-1], d_key, d_val),
            )
            d_k = ops.sum(e_q * ops.expand_dims(v1, -2), axis=-1)  # (..., S, d)
            d_v = reduced[..., d_key * d_val :]  # (..., S, dv)
            return d_q, d_k, d_v
        # dE = [d_num, d_den] @ [v, 1]^T, then through exp: dL = dE * e  (..., T, S)
        d_logits = ops.matmul(d_weighted, ops.swapaxes(v1, -1, -2)) * e
        d_q = ops.matmul(d_logits, k)  # (..., T, d)
        # d_logits^T @ q and e^T @ d_num, computed as (small^T @ big)^T
        d_k = ops.swapaxes(ops.matmul(ops.swapaxes(q, -1, -2), d_logits), -1, -2)
        d_v = ops.swapaxes(ops.matmul(ops.swapaxes(d_numerator, -1, -2), e), -1, -2)
        return d_q, d_k, d_v

    return context, grad


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
    if heads == 1:
        # One head: no transposes at all.
        q = ops.reshape(query, (batch, -1, dk))  # (B, HW, dk)
        k = ops.reshape(key, (batch, -1, dk))  # (B, S, dk)
        v = ops.reshape(value, (batch, -1, dv))  # (B, S, dv)
    else:
        q = ops.transpose(ops.reshape(query, (batch, -1, heads, dk)), (0, 2, 1, 3))
        k = ops.transpose(ops.reshape(key, (batch, -1, heads, dk)), (0, 2, 1, 3))
        v = ops.transpose(ops.reshape(value, (batch, -1, heads, dv)), (0, 2, 1, 3))
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
        context = softmax_attention(q, k, v32)  # (..., HW, dv)
    context = ops.cast(context, v.dtype)
    if heads > 1:
        context = ops.transpose(context, (0, 2, 1, 3))  # (B, HW, heads, dv)
    return context, weights


def scores_shape(batch, height, width, num_heads: int, kv_pool: int) -> tuple:
    """The shape of the attention maps, `(B, heads, H*W, H_k*W_k)`; unknown sides give `None`."""
    if height is None or width is None:
        return (batch, num_heads, None, None)
    keys = math.ceil(height / kv_pool) * math.ceil(width / kv_pool)
    return (batch, num_heads, height * width, keys)

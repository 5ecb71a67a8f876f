"""The math of the attention kernels behind `SelfAttentionConv2D`, written with `keras.ops`
only: `softmax_attention`, whose hand-written gradient makes fewer passes over the (T, S)
attention matrix than autodiff does, and the forward and backward pieces that the query blocks
(`attn_search._attention_blocks`) reuse block by block.
"""

from __future__ import annotations

from keras import ops

# Up to this many columns (key_dim * (value_dim + 1)), the backward pass regroups its sums so
# that it never writes a (T, S) matrix; beyond it, that costs more arithmetic than it saves.
_FACTORED_GRAD_MAX_COLUMNS = 16


def _with_ones(x):
    """Appends a channel of ones: `[x, 1] @ ...` then also yields the row sums, in one matmul."""
    return ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)


def _exp_logits(q, k, row_max=None):
    """`exp(q k^T - row_max)` and `row_max`, the rows' maxima unless given (for a recompute).

    Shapes: q (..., T, d), k (..., S, d) -> (..., T, S), (..., T, 1).
    """
    if q.shape[-1] == 1:
        if row_max is None:
            # max_j q_i k_j = q_i * (max k if q_i >= 0 else min k), exactly.
            k_max = ops.max(k, axis=-2, keepdims=True)  # (..., 1, 1)
            k_min = ops.min(k, axis=-2, keepdims=True)
            row_max = ops.where(q >= 0, q * k_max, q * k_min)  # (..., T, 1)
        # exp(q k^T - row_max) as a single matmul: [q, -row_max] @ [k, 1]^T
        e = ops.exp(
            ops.matmul(ops.concatenate([q, -row_max], -1), ops.swapaxes(_with_ones(k), -1, -2))
        )  # (..., T, S)
        return e, row_max
    logits = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., T, S)
    if row_max is None:
        row_max = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    return ops.exp(logits - row_max), row_max


def _attention_forward(q, k, v1, extra=None):
    """`(e, row_max, context, denominator, e_extra)` of softmax attention; v1 is `[v, 1]`.

    `e_extra`: with `extra` (..., S, c), `e @ extra`, from the same matmul as the context (the
    matrix is read once for both); else `None`.
    """
    e, row_max = _exp_logits(q, k)
    right = v1 if extra is None else ops.concatenate([v1, extra], -1)
    weighted = ops.matmul(e, right)  # (..., T, dv + 1 [+ c])
    d_val = v1.shape[-1]
    denominator = weighted[..., d_val - 1 : d_val]  # (..., T, 1)
    context = weighted[..., : d_val - 1] / denominator
    return e, row_max, context, denominator, None if extra is None else weighted[..., d_val:]


def _factored(q, v1) -> bool:
    """Whether the backward pass regroups its sums (`_attention_backward`)."""
    return q.shape[-1] * v1.shape[-1] <= _FACTORED_GRAD_MAX_COLUMNS


def _key_value_products(k, v1):
    """`k[a] * v1[c]` for every pair of channels: (..., S, d * (dv + 1))."""
    d_key, d_val = k.shape[-1], v1.shape[-1]
    return ops.reshape(
        ops.expand_dims(k, -1) * ops.expand_dims(v1, -2), (*ops.shape(k)[:-1], d_key * d_val)
    )


def _attention_backward(q, k, v1, e, upstream, context, denominator, e_kv=None):
    """`(d_q, d_k, d_v)` of softmax attention, from the forward pass's `e` (see below); `e_kv`:
    `e @ _key_value_products(k, v1)` when the forward pass computed it (factored case)."""
    d_numerator = upstream / denominator  # (..., T, dv)
    d_denominator = -ops.sum(upstream * context, axis=-1, keepdims=True) / denominator
    d_weighted = ops.concatenate([d_numerator, d_denominator], -1)  # (..., T, dv + 1)
    d_key, d_val = q.shape[-1], v1.shape[-1]
    if _factored(q, v1):
        # dL_ij = e_ij * (d_weighted_i . v1_j) is never materialised: both reductions of
        # dL are regrouped into one matmul each with e, so the backward pass reads the
        # (T, S) matrix twice and writes nothing of that size.
        #   d_q_i[a] = sum_c d_weighted_ic * (e @ (k[a] * v1[c]))_i
        #   d_k_j[a] = sum_c v1_jc * (e^T @ (q[a] * d_weighted[c]))_j,  d_v = e^T @ d_num
        if e_kv is None:
            e_kv = ops.matmul(e, _key_value_products(k, v1))  # (..., T, d*(dv+1))
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


def _upstream(args, upstream):
    """The incoming gradient, however the backend passes it to a custom gradient."""
    return args[0] if upstream is None else upstream


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
    v1 = _with_ones(v)  # (..., S, dv + 1)
    e, _, context, denominator, _ = _attention_forward(q, k, v1)

    def grad(*args, upstream=None):
        upstream = _upstream(args, upstream)
        return _attention_backward(q, k, v1, e, upstream, context, denominator)

    return context, grad

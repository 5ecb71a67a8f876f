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

# Automatic query blocks: a block's piece of the attention matrix, (B, heads, rows, S) float32
# values, is about `BLOCK_BYTES`. Up to `UNROLLED_BLOCKS` blocks are written out in the graph,
# `BLOCKS_IN_FLIGHT` at a time, with at least `_MIN_UNROLLED_ROWS` rows each; when that needs
# more blocks, they run in a `keras.ops` loop (a graph that size would take long to trace) with
# at least `_MIN_BLOCK_ROWS` rows (each block is one trip through the loop, and short trips
# cost more than they save), unless that makes a block's piece larger than `_MAX_BLOCK_BYTES`:
# then as many rows as fit in it, at least `_FLOOR_ROWS`. Measured in benchmarks/bench_layer.py
# on an idle 2-core CPU (32x32 maps, batch 16), against the whole matrix at once: written out,
# two in flight, 64-row blocks (one head) trained 1.60x as fast and 32-row blocks (four heads)
# 1.36x; one at a time 1.35x and 1.14x (64 rows); in the loop 1.12x and 0.96x. The batch is
# unknown when TensorFlow traces `fit`: then `TRACE_BATCH`.
BLOCK_BYTES = 8 * 2**20
UNROLLED_BLOCKS = 32
BLOCKS_IN_FLIGHT = 2
_MIN_UNROLLED_ROWS = 32
_MIN_BLOCK_ROWS = 64
_MAX_BLOCK_BYTES = 64 * 2**20
_FLOOR_ROWS = 16
TRACE_BATCH = 32


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
    """`(e, row_max, context, denominator)` of softmax attention; v1 is `[v, 1]`.

    With `extra` (..., S, c), also `e @ extra`, from the same matmul as the context (the
    matrix is read once for both): then `(e, row_max, context, denominator, e @ extra)`.
    """
    e, row_max = _exp_logits(q, k)
    right = v1 if extra is None else ops.concatenate([v1, extra], -1)
    weighted = ops.matmul(e, right)  # (..., T, dv + 1 [+ c])
    d_val = v1.shape[-1]
    denominator = weighted[..., d_val - 1 : d_val]  # (..., T, 1)
    context = weighted[..., : d_val - 1] / denominator
    if extra is None:
        return e, row_max, context, denominator
    return e, row_max, context, denominator, weighted[..., d_val:]


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
    e, _, context, denominator = _attention_forward(q, k, v1)

    def grad(*args, upstream=None):
        upstream = _upstream(args, upstream)
        return _attention_backward(q, k, v1, e, upstream, context, denominator)

    return context, grad


def query_block_size(
    requested: int | None, batch: int | None, heads: int, queries: int, keys: int
) -> int:
    """The number of query rows `attend` processes at a time (`queries`: one block).

    Args:
        requested: The layer's `query_block`: rows per block, or `None` for automatic.
        batch: The batch size, or `None` when unknown (then `TRACE_BATCH`).
        heads: Number of heads.
        queries: Query positions, `H*W`.
        keys: Key positions, `H_k*W_k`.

    Returns:
        With `requested`, `min(requested, queries)`. Automatic: all queries when the whole
        (B, heads, H*W, H_k*W_k) matrix takes at most `BLOCK_BYTES` in float32; else about
        `BLOCK_BYTES` of it per block, spread evenly over the blocks, and at least 32 rows
        when that makes at most `UNROLLED_BLOCKS` blocks (written out in the graph); more
        blocks run in a loop, with at least 64 rows unless 64 rows take more than
        `_MAX_BLOCK_BYTES` (then as many as fit, at least 16).
    """
    if requested is not None:
        return max(1, min(int(requested), queries))
    row_bytes = max(1, (TRACE_BATCH if batch is None else batch) * heads * keys * 4)
    rows = BLOCK_BYTES // row_bytes
    if rows >= queries:
        return queries
    if math.ceil(queries / max(rows, _MIN_UNROLLED_ROWS)) <= UNROLLED_BLOCKS:
        rows = max(rows, _MIN_UNROLLED_ROWS)  # written out (see blocked_softmax_attention)
    elif rows < _MIN_BLOCK_ROWS:
        rows = max(_FLOOR_ROWS, min(_MIN_BLOCK_ROWS, _MAX_BLOCK_BYTES // row_bytes))
    if rows >= queries:
        return queries
    blocks = math.ceil(queries / rows)
    return math.ceil(queries / blocks)  # the same rows, spread evenly: least padding


def rows_at_once(block: int, queries: int) -> int:
    """The query rows whose part of the matrix is alive at once with `block` rows per block:
    `BLOCKS_IN_FLIGHT` blocks when they are written out (`blocked_softmax_attention`), one in
    the loop, all without blocks."""
    blocks = math.ceil(queries / max(1, block))
    if 1 < blocks <= UNROLLED_BLOCKS:
        return min(queries, block * BLOCKS_IN_FLIGHT)
    return min(queries, block)


def _to_blocks(x, block: int, blocks: int):
    """(..., T, c) -> (blocks, ..., block, c), the query axis padded with zeros to fill it."""
    rows = x.shape[-2]
    pad = blocks * block - rows
    if pad:
        x = ops.pad(x, [[0, 0]] * (len(x.shape) - 2) + [[0, pad], [0, 0]])
    x = ops.reshape(x, (*ops.shape(x)[:-2], blocks, block, x.shape[-1]))
    return ops.moveaxis(x, -3, 0)


def _from_blocks(x, rows: int):
    """(blocks, ..., block, c) -> (..., rows, c): `_to_blocks` undone, padding dropped."""
    x = ops.moveaxis(x, 0, -3)  # (..., blocks, block, c)
    shape = ops.shape(x)
    x = ops.reshape(x, (*shape[:-3], shape[-3] * shape[-2], shape[-1]))
    return x[..., :rows, :]


def blocked_softmax_attention(q, k, v, block: int):
    """`softmax_attention` computed `block` queries at a time (memory-efficient attention).

    Each query's softmax needs only its own row of the (T, S) matrix, so blocks of queries are
    independent (Rabe and Staats 2021, arXiv 2112.05682). The forward pass keeps only the
    (T, dv) context and each row's maximum and normaliser; the backward pass recomputes each
    block's piece of the matrix from them. Memory then grows with `block x S` instead of
    `T x S`, and each block's piece stays in the CPU's caches while it is used.

    Up to `UNROLLED_BLOCKS` blocks are written out one by one in the graph, at most
    `BLOCKS_IN_FLIGHT` (2) at a time: each waits for the one `BLOCKS_IN_FLIGHT` before it
    (`_after`), so two cores each have a block to work on while at most two blocks' matrices
    are alive. At 32x32 maps this trains 1.36-1.60x as fast as the whole matrix at once, where
    a loop over the blocks ran 0.96-1.12x (benchmarks/bench_layer.py). More blocks than that run
    in such a loop (`keras.ops.scan` forward, `keras.ops.fori_loop` backward, one block at a
    time), which keeps the graph, and the time to trace it, small.

    Shapes as `softmax_attention`; `block` is a Python int. One block (`block >= T`) is
    `softmax_attention` itself.
    """
    rows = q.shape[-2]
    if rows is None or block >= rows:
        return softmax_attention(q, k, v)
    blocks = math.ceil(rows / block)
    if blocks <= UNROLLED_BLOCKS:
        return _unrolled_blocks(q, k, v, block, blocks)
    return _looped_blocks(q, k, v, block, blocks, rows)


def _after(x):
    """A zero that TensorFlow can compute only once `x` is: added to a later block's inputs, it
    makes that block wait for this one (a graph's independent ops may otherwise all run at
    once, each with its block's matrix). Exactly zero for any `x`, NaN included: no value is
    both above and below zero."""
    total = ops.sum(x)
    return ops.cast(ops.logical_and(total > 0, total < 0), x.dtype)


def _unrolled_blocks(q, k, v, block: int, blocks: int):
    """`blocked_softmax_attention` with each block written out, `BLOCKS_IN_FLIGHT` at a time."""

    @ops.custom_gradient
    def attention(q, k, v):
        v1 = _with_ones(v)  # (..., S, dv + 1)
        # Factored backward pass: its product of the matrix with the keys and values comes out
        # of the forward pass's matmul, so the backward pass reads each recomputed block once.
        k_v1 = _key_value_products(k, v1) if _factored(q, v1) else None
        saved = []  # per block: (context, denominator, row_max, e_kv or None)
        for i in range(blocks):
            q_i = q[..., i * block : (i + 1) * block, :]
            if len(saved) >= BLOCKS_IN_FLIGHT:
                q_i = q_i + _after(saved[-BLOCKS_IN_FLIGHT][0])
            if k_v1 is None:
                _, row_max, context_i, denominator_i = _attention_forward(q_i, k, v1)
                saved.append((context_i, denominator_i, row_max, None))
            else:
                _, row_max, context_i, denominator_i, e_kv = _attention_forward(q_i, k, v1, k_v1)
                saved.append((context_i, denominator_i, row_max, e_kv))
        context = ops.concatenate([s[0] for s in saved], axis=-2)  # (..., T, dv)

        def grad(*args, upstream=None):
            upstream = _upstream(args, upstream)
            d_qs, d_k, d_v, sums = [], None, None, []
            for i, (context_i, denominator_i, row_max, e_kv) in enumerate(saved):
                rows = slice(i * block, (i + 1) * block)
                q_i, upstream_i = q[..., rows, :], upstream[..., rows, :]
                if len(d_qs) >= BLOCKS_IN_FLIGHT:  # both inputs after every result of the block
                    back = BLOCKS_IN_FLIGHT  # `BLOCKS_IN_FLIGHT` blocks before
                    wait = _after(d_qs[-back]) + _after(sums[-back][0]) + _after(sums[-back][1])
                    q_i, upstream_i = q_i + wait, upstream_i + wait
                e, _ = _exp_logits(q_i, k, row_max)  # recomputed: (..., block, S)
                d_q, d_k_i, d_v_i = _attention_backward(
                    q_i, k, v1, e, upstream_i, context_i, denominator_i, e_kv
                )
                d_qs.append(d_q)
                d_k = d_k_i if d_k is None else d_k + d_k_i
                d_v = d_v_i if d_v is None else d_v + d_v_i
                sums.append((d_k, d_v))
            return ops.concatenate(d_qs, axis=-2), d_k, d_v

        return context, grad

    return attention(q, k, v)


def _looped_blocks(q, k, v, block: int, blocks: int, rows: int):
    """`blocked_softmax_attention` as a `keras.ops` loop over the blocks."""

    @ops.custom_gradient
    def attention(q, k, v):
        v1 = _with_ones(v)  # (..., S, dv + 1)
        q_blocks = _to_blocks(q, block, blocks)  # (blocks, ..., block, d)

        def forward(_, q_i):
            _, row_max, context_i, denominator_i = _attention_forward(q_i, k, v1)
            saved_i = ops.concatenate([context_i, denominator_i, row_max], -1)
            # keras.ops.scan on TensorFlow wants the outputs shaped as the carry, which is
            # otherwise unused here; it runs the blocks strictly one after another.
            return saved_i, saved_i  # (..., block, dv + 2)

        width = v.shape[-1] + 2
        init = ops.zeros((*ops.shape(q_blocks)[1:-1], width), dtype=q.dtype)
        _, saved = ops.scan(forward, init, q_blocks)  # (blocks, ..., block, dv + 2)
        context = _from_blocks(saved[..., :-2], rows)  # (..., T, dv)

        def grad(*args, upstream=None):
            upstream = _to_blocks(_upstream(args, upstream), block, blocks)
            d = q.shape[-1]
            # Block i reads its queries from `buffer` and writes its d_q in their place, so
            # block i + 1 cannot start before block i is done: a loop's iterations may
            # otherwise overlap (TensorFlow runs up to 10 at once), each with its matrix.
            buffer = ops.concatenate([q_blocks, upstream, saved], -1)

            def backward(i, state):
                buffer, d_k, d_v = state
                row = buffer[i]  # (..., block, d + dv + dv + 2)
                q_i, rest = row[..., :d], row[..., d:]
                upstream_i = rest[..., :-width]
                context_i, denominator_i, row_max = (
                    rest[..., -width:-2],
                    rest[..., -2:-1],
                    rest[..., -1:],
                )
                e, _ = _exp_logits(q_i, k, row_max)  # recomputed: (..., block, S)
                d_q, d_k_i, d_v_i = _attention_backward(
                    q_i, k, v1, e, upstream_i, context_i, denominator_i
                )
                start = (i,) + (0,) * (len(row.shape))
                row = ops.expand_dims(ops.concatenate([d_q, rest], -1), 0)
                return ops.slice_update(buffer, start, row), d_k + d_k_i, d_v + d_v_i

            buffer, d_k, d_v = ops.fori_loop(
                0, blocks, backward, (buffer, ops.zeros_like(k), ops.zeros_like(v))
            )
            return _from_blocks(buffer[..., :d], rows), d_k, d_v

        return context, grad

    return attention(q, k, v)


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

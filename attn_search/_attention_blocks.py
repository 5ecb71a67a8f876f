"""Attention in blocks of queries (memory-efficient attention): the block size rule and the
blocked computation, written with `keras.ops` only, from the kernels of
`attn_search._attention_kernels`.
"""

from __future__ import annotations

import math

from keras import ops

from attn_search._attention_kernels import (
    _attention_backward,
    _attention_forward,
    _exp_logits,
    _factored,
    _key_value_products,
    _upstream,
    _with_ones,
    softmax_attention,
)

# Automatic query blocks: a block's piece of the attention matrix, (B, heads, rows, S) float32
# values, is about `BLOCK_BYTES`. Up to `UNROLLED_BLOCKS` blocks are written out in the graph,
# `BLOCKS_IN_FLIGHT` at a time, with at least `_MIN_UNROLLED_ROWS` rows each; when that needs
# more blocks, they run in a `keras.ops` loop (a graph that size would take long to trace) with
# at least `_MIN_BLOCK_ROWS` rows (each block is one trip through the loop, and short trips
# cost more than they save), unless that makes a block's piece larger than `_MAX_BLOCK_BYTES`:
# then as many rows as fit in it, at least `_FLOOR_ROWS`. Measured in benchmarks/bench_layer.py
# on an idle 2-core CPU (32x32 maps, batch 16), against the whole matrix at once: written out,
# two in flight, 64-row blocks (one head) trained 1.58x as fast and 32-row blocks (four heads)
# 1.39x; the previous run, with the blocks in the loop, 1.12x and 0.96x. The batch is unknown
# when TensorFlow traces `fit`: then `TRACE_BATCH`.
BLOCK_BYTES = 8 * 2**20
UNROLLED_BLOCKS = 32
BLOCKS_IN_FLIGHT = 2
_MIN_UNROLLED_ROWS = 32
_MIN_BLOCK_ROWS = 64
_MAX_BLOCK_BYTES = 64 * 2**20
_FLOOR_ROWS = 16
TRACE_BATCH = 32


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
    are alive. At 32x32 maps this trains 1.39-1.58x as fast as the whole matrix at once, where
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
            _, row_max, context_i, denominator_i, _ = _attention_forward(q_i, k, v1)
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

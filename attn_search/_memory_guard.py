"""The memory guard: how much memory attention maps take, and what budget they get.

Before a model is built, `fit_to_budget` estimates the attention maps' memory for the batch
size and raises the layers' `kv_pool` where the space allows, or explains why they do not fit.
"""

from __future__ import annotations

import math
import os

import keras

from attn_search._attention_blocks import query_block_size, rows_at_once
from attn_search._cnn_plan import layer_name
from attn_search.errors import ConfigError

# Map-sized buffers, each (B, heads, HW, HW_k), held at the peak of a training step. Measured
# on TensorFlow/CPU (benchmarks/bench_memory_guard.py, results/bench_memory_guard.json): 1.1 to
# 1.6 maps above the memory held before the step; 2 keeps the guard on the safe side.
MAPS_PER_STEP = 2
# With query blocks the maps no longer dominate a step: the layer's per-position tensors do (its
# convolutions, the saved context, their gradients, and what the allocator keeps), measured at
# 0.9 to 5.5 KB per query position and example, growing with the heads
# (benchmarks/bench_memory_guard.py); counted then, as 2 KB + 1 KB per head.
BLOCKED_BYTES_PER_QUERY = 2048
BLOCKED_BYTES_PER_QUERY_AND_HEAD = 1024


def default_memory_budget_mb() -> float:
    """The default budget for attention maps: a quarter of the machine's physical memory.

    The environment variable `ATTN_SEARCH_MEMORY_BUDGET_MB` overrides it (e.g. to size it to a
    GPU's memory).
    """
    env = os.environ.get("ATTN_SEARCH_MEMORY_BUDGET_MB")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = -1.0
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(
                "`ATTN_SEARCH_MEMORY_BUDGET_MB` must be a positive number of megabytes. "
                f"Received: ATTN_SEARCH_MEMORY_BUDGET_MB={env!r}"
            )
        return value
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GiB
        total = 8 * 1024**3
    return total / 4 / 1024**2


def attention_memory_bytes(
    batch_size: int,
    height: int,
    width: int,
    num_heads: int,
    kv_pool: int = 1,
    bytes_per_value: int = 4,
    query_rows: int | None = None,
) -> int:
    """Estimated memory of one attention layer's maps in a training step.

    `batch_size x num_heads x rows x (H_k*W_k) x bytes x 2`, with `H_k = ceil(H / kv_pool)`
    and `rows` the query rows whose part of the map is alive at once: all `H*W` without
    blocks; a map for the forward pass (kept for the backward pass) and one for its gradient.
    The measured peak of a training step on TensorFlow/CPU is 1.1 to 1.6 maps
    (`benchmarks/bench_memory_guard.py`), so the estimate errs on the safe side. With blocks,
    plus `batch_size x H*W x (2 KB + 1 KB x num_heads)` for the layer's other tensors.

    Args:
        query_rows: The layer's block of queries (see `layer_query_rows`), or `None` for
            the whole map (no blocks, or attention scores requested).

    Returns:
        The estimate in bytes.
    """
    keys = math.ceil(height / kv_pool) * math.ceil(width / kv_pool)
    rows = height * width if query_rows is None else min(query_rows, height * width)
    maps = batch_size * num_heads * rows * keys * bytes_per_value * MAPS_PER_STEP
    if rows < height * width:  # blocks: the per-position tensors
        per_query = BLOCKED_BYTES_PER_QUERY + num_heads * BLOCKED_BYTES_PER_QUERY_AND_HEAD
        maps += batch_size * height * width * per_query
    return maps


def layer_query_rows(
    batch_size: int, height: int, width: int, num_heads: int, kv_pool: int = 1
) -> int:
    """The query rows a `SelfAttentionConv2D` with automatic blocks attends at once in `fit`
    (`rows_at_once`: two blocks when they are written out in the graph, else one).

    The larger of the rows for this batch size and the rows for an unknown batch:
    TensorFlow traces `fit` without the batch size, JAX with it.
    """
    queries = height * width
    keys = math.ceil(height / kv_pool) * math.ceil(width / kv_pool)
    return max(
        rows_at_once(query_block_size(None, batch, num_heads, queries, keys), queries)
        for batch in (batch_size, None)
    )


def layer_memory_bytes(
    batch_size: int, height: int, width: int, num_heads: int, kv_pool: int = 1, size: int = 4
) -> int:
    """`attention_memory_bytes` of a layer with automatic query blocks."""
    rows = layer_query_rows(batch_size, height, width, num_heads, kv_pool)
    return attention_memory_bytes(batch_size, height, width, num_heads, kv_pool, size, rows)


def itemsize() -> int:
    """Bytes per value of the attention maps."""
    # The layer computes its softmax in float32 even under mixed precision.
    return 8 if keras.config.dtype_policy().compute_dtype == "float64" else 4


def fit_to_budget(
    layers: list[dict],
    shapes: dict[int, tuple[int, int, int]],
    batch: int,
    budget_mb: float,
    allowed_pools: tuple | None,
) -> str | None:
    """Fits the attention layers' maps into the budget, pooling keys and values harder if need be.

    Args:
        layers: The plan's attention layers (`placement`, `num_heads`, `kv_pool`); their
            `kv_pool` is raised in place when that makes the maps fit.
        shapes: Feature-map shape `(H, W, C)` at each placement.
        batch: The training batch size.
        budget_mb: The memory budget in MB.
        allowed_pools: The `kv_pool` values the space allows the guard to raise to, or `None`
            when it may not.

    Returns:
        `None` when the maps fit, else a message that says why not and what to do.
    """
    size = itemsize()
    budget = budget_mb * 1024**2

    def total(pools):
        return sum(
            layer_memory_bytes(batch, *shapes[s["placement"]][:2], s["num_heads"], p, size)
            for s, p in zip(layers, pools, strict=True)
        )

    pools = [s["kv_pool"] for s in layers]
    if total(pools) <= budget:
        return None
    tried = pools
    if allowed_pools is not None:
        for v in sorted(v for v in allowed_pools if v > min(pools)):
            tried = [max(p, v) for p in pools]
            if total(tried) <= budget:
                for s, p in zip(layers, tried, strict=True):
                    s["kv_pool"] = p
                return None
    parts = []
    for i, (spec, pool) in enumerate(zip(layers, tried, strict=True)):
        height, width = shapes[spec["placement"]][:2]
        heads = spec["num_heads"]
        keys = math.ceil(height / pool) * math.ceil(width / pool)
        queries = f"{height * width} queries"
        rows = layer_query_rows(batch, height, width, heads, pool)
        if rows < height * width:
            queries = f"{rows} of {height * width} queries at a time"
        parts.append(
            f"{layer_name('attention', spec['placement'], layers, i)}: batch "
            f"{batch} x {heads} head{'s' if heads > 1 else ''} x {queries} x "
            f"{keys} keys (kv_pool={pool})"
        )
    details = "; ".join(parts)
    return (
        f"The attention maps would need about {total(tried) / 1024**2:.1f} MB in a training "
        f"step ({details}; x {size} bytes x {MAPS_PER_STEP} for forward and "
        f"backward), over the memory budget of {budget_mb:.1f} MB. Lower "
        "train/batch_size, allow a larger attention.kv_pool, place attention deeper, or "
        "raise memory_budget_mb."
    )

"""Large maps for bench_layer.py: attention in query blocks vs unblocked vs MultiHeadAttention.

A small model, `(S, S, 16)` input -> attention -> global average pooling -> `Dense(10)`, at
32x32 and 64x64 with 1 and 4 heads, with the attention as:

  blocked    SelfAttentionConv2D, automatic query blocks (the default);
  unblocked  SelfAttentionConv2D(query_block=S*S): the whole (H*W, H*W) matrix at once;
  mha        keras.layers.MultiHeadAttention over the flattened map (same heads, key and value
             widths, output projection back to 16 channels, residual added).

Training throughput (forward + backward + optimizer step) is measured interleaved: every
variant of a map once per round, the order reversed every other round, all in one process,
reported as medians and paired per-round ratios. Peak memory is the peak resident memory of one
training step above the memory held before it, in a fresh process per variant (after warm-up
steps on batches of 1 and 2, as benchmarks/bench_memory_guard.py does); the model has little
besides the attention, so this is mostly the attention's.

Each child runs twice. The figure (`peak_step_mb`) is measured with glibc's mmap threshold fixed
at 128 KiB (`MALLOC_MMAP_THRESHOLD_=131072`): every tensor of that size or more is then mapped
when allocated and returned to the system when freed, so the peak resident memory is the peak
of the memory the step held. With glibc's default, the threshold rises after the first large
free (up to 32 MiB), later tensors of a few MiB come from per-thread heaps that keep freed
memory, and the peak also counts that fragmentation: for the blocked path, with its many
block-sized temporaries, as much again as the attention itself (77 against 35 MiB at 32x32 with
4 heads) and little for the one large matrix of the unblocked path. Both are written
(`peak_step_mb_default_malloc` is the second).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

CHANNELS = 16
# (map side, heads, batch): batches small enough for the unblocked 64x64 maps to fit
MAPS = [(32, 1, 16), (32, 4, 16), (64, 1, 4), (64, 4, 4)]
MAP_VARIANTS = ["blocked", "unblocked", "mha"]


def build_map_model(variant: str, side: int, heads: int):
    import keras

    from attn_search import SelfAttentionConv2D

    inputs = keras.Input((side, side, CHANNELS))
    if variant == "mha":
        key_dim, value_dim = max(1, CHANNELS // (8 * heads)), max(1, CHANNELS // heads)
        flat = keras.layers.Reshape((side * side, CHANNELS))(inputs)
        attended = keras.layers.MultiHeadAttention(
            heads, key_dim, value_dim=value_dim, output_shape=CHANNELS
        )(flat, flat)
        x = keras.layers.Add()([flat, attended])
    else:
        block = None if variant == "blocked" else side * side
        x = SelfAttentionConv2D(num_heads=heads, query_block=block)(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x) if variant == "mha" else (
        keras.layers.GlobalAveragePooling2D()(x)
    )  # fmt: skip
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _data(side: int, n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((n, side, side, CHANNELS), dtype=np.float32), rng.integers(0, 10, n)


def _batches(x, y, batch: int):
    """`(x, y)` as a cached `tf.data` pipeline of `batch`-sized batches, without autotuning.

    As the runner feeds in-memory data: tf.data's autotuning took a core from training in some
    fits and not others (rates alternating between two levels 1.5x apart), which drowned the
    differences measured here.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).with_options(options).cache()


def measure_map_throughput(rounds: int, steps: int) -> dict:
    """`{"32x32/1 head": {variant: [samples/s per round]}}`, interleaved per map."""
    import keras

    table = {}
    for side, heads, batch in MAPS:
        name = f"{side}x{side}/{heads} head{'s' if heads > 1 else ''}"
        x, y = _data(side, steps * batch)
        data = _batches(x, y, batch)
        models = {v: build_map_model(v, side, heads) for v in MAP_VARIANTS}
        for model in models.values():  # warm-up: tracing, first-call allocations, the cache
            model.fit(data, epochs=1, verbose=0)
        rates = {v: [] for v in MAP_VARIANTS}
        for r in range(rounds):
            for variant in MAP_VARIANTS if r % 2 == 0 else MAP_VARIANTS[::-1]:
                start = time.perf_counter()
                models[variant].fit(data, epochs=1, verbose=0)
                rates[variant].append(len(x) / (time.perf_counter() - start))
            print(
                f"{name} round {r + 1}/{rounds}: "
                + ", ".join(f"{v} {rates[v][-1]:.1f}/s" for v in MAP_VARIANTS),
                flush=True,
            )
        table[name] = {"batch_size": batch, "samples_per_second": rates}
        del models
        keras.backend.clear_session()
    return table


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def map_memory_child(variant: str, side: int, heads: int, batch: int) -> None:
    """In a fresh process: the peak memory of one training step above what was held before."""
    import gc

    model = build_map_model(variant, side, heads)
    x, y = _data(side, batch)
    for n in (1, 2):  # tracing with a free batch dimension, optimizer slots
        model.train_on_batch(x[:n], y[:n])
    gc.collect()
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    model.train_on_batch(x, y)
    print(json.dumps({"peak_step_mb": (_status_kb("VmHWM") - before) / 1024}))


#: glibc's mmap threshold fixed at 128 KiB (its initial value): see the module's docstring.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _child_peak(script: str, spec: str, env: dict) -> float:
    out = subprocess.run(
        [sys.executable, script, "--child-map-memory", spec],
        capture_output=True, text=True, check=True, env={**os.environ, **env},
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])["peak_step_mb"]


def measure_map_memory(script: str) -> tuple[dict, dict]:
    """`(peaks, peaks_default_malloc)`: `{map: {variant: MB}}` with the mmap threshold fixed,
    and with glibc's default."""
    peaks, default = {}, {}
    for side, heads, batch in MAPS:
        name = f"{side}x{side}/{heads} head{'s' if heads > 1 else ''}"
        peaks[name], default[name] = {}, {}
        for variant in MAP_VARIANTS:
            spec = json.dumps([variant, side, heads, batch])
            peaks[name][variant] = _child_peak(script, spec, FIXED_MMAP_THRESHOLD)
            default[name][variant] = _child_peak(script, spec, {})
            print(
                f"peak step memory {name} {variant}: {peaks[name][variant]:.0f} MB "
                f"({default[name][variant]:.0f} MB with glibc's default mmap threshold)",
                flush=True,
            )
    return peaks, default


def summarise(throughput: dict, peaks: dict, default_peaks: dict | None = None) -> dict:
    """Medians, paired per-round ratios and the issue's targets, per map."""
    summary = {}
    for name, entry in throughput.items():
        rates = entry["samples_per_second"]
        paired = {}
        for other in ("unblocked", "mha"):
            per_round = sorted(b / o for b, o in zip(rates["blocked"], rates[other], strict=True))
            paired[f"blocked / {other}"] = {
                "median": statistics.median(per_round),
                "min": per_round[0],
                "max": per_round[-1],
            }
        peak = peaks.get(name, {})
        summary[name] = {
            "batch_size": entry["batch_size"],
            "median_samples_per_second": {v: statistics.median(r) for v, r in rates.items()},
            "paired_ratios_per_round": paired,
            "peak_step_mb": peak,
            "peak blocked / unblocked": peak["blocked"] / peak["unblocked"] if peak else None,
        }
        default = (default_peaks or {}).get(name)
        if default:
            summary[name]["peak_step_mb_default_malloc"] = default
            summary[name]["peak blocked / unblocked, default malloc"] = (
                default["blocked"] / default["unblocked"]
            )
    targets = {}
    for name in ("32x32/1 head", "32x32/4 heads"):
        if name in summary:
            paired = summary[name]["paired_ratios_per_round"]
            targets[f"{name}: blocked >= 1.3x unblocked"] = (
                paired["blocked / unblocked"]["median"] >= 1.3
            )
            targets[f"{name}: blocked >= 1.5x mha"] = paired["blocked / mha"]["median"] >= 1.5
    for name, entry in summary.items():
        if entry["peak blocked / unblocked"] is not None:
            targets[f"{name}: peak memory blocked <= 1/4 unblocked"] = (
                entry["peak blocked / unblocked"] <= 0.25
            )
    return {"maps": summary, "targets_met": targets}


def print_summary(result: dict) -> None:
    print(f"\n{'map':16s} {'blocked':>9s} {'unblocked':>9s} {'mha':>9s} "
          f"{'b/u':>6s} {'b/mha':>6s} {'peak MB b/u/mha':>20s}")  # fmt: skip
    for name, entry in result["maps"].items():
        med = entry["median_samples_per_second"]
        paired = entry["paired_ratios_per_round"]
        peak = entry["peak_step_mb"]
        peaks = "/".join(f"{peak[v]:.0f}" for v in MAP_VARIANTS) if peak else "-"
        print(
            f"{name:16s} {med['blocked']:9.1f} {med['unblocked']:9.1f} {med['mha']:9.1f} "
            f"{paired['blocked / unblocked']['median']:5.2f}x "
            f"{paired['blocked / mha']['median']:5.2f}x {peaks:>20s}"
        )
    for name, ok in result["targets_met"].items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")

"""Benchmark: SelfAttentionConv2D against the Keras 2 reference layer's math, side by side.

Trains the reference notebook's MNIST-shaped model (28x28x1 input, the attention layer with
filters=8 first, then Conv2D(32, 5), pooling, Dense(100), Dense(10)) with:

  a  reference   the reference layer as written (Sequential(Conv2D, Reshape) blocks, one
                 attention map, the value convolution after gamma), ported to Keras 3 only as
                 far as needed to run fairly: gamma through add_weight, so it is trained;
  b  matmul      a clean matmul implementation of the same math;
  c  attn_search SelfAttentionConv2D, one head at the reference's width, kv_pool 1 and 2
                 (and, for the record, the fused keras.ops.dot_product_attention path);
  d  none        the same model without attention.

Throughput is measured interleaved (every variant once per round, several rounds) in one
process, and reported as medians and ratios; peak memory is the peak RSS of a fresh process
per variant that builds and trains the model. A second table times one training step of the
layer alone against the map size, for kv_pool 1, 2 and 4.

A third part (benchmarks/_layer_maps.py) trains a small model at 32x32 and 64x64 maps, 1 and 4
heads, with the layer's attention in query blocks (the default), unblocked, and
`keras.layers.MultiHeadAttention` over the flattened map, interleaved; it writes
results/bench_layer_maps.json.

Usage:
    python benchmarks/bench_layer.py [--rounds 5] [--steps 40] [--out results/bench_layer.json]
        [--map-rounds 3] [--map-steps 6] [--maps-out results/bench_layer_maps.json]
        [--only maps|classic]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH = 32
VARIANTS = ["a_reference", "b_matmul", "c_kv1", "c_kv2", "c_kv1_fused", "d_none"]
LABELS = {
    "a_reference": "(a) reference layer, Keras 3 port",
    "b_matmul": "(b) clean matmul, same math",
    "c_kv1": "(c) SelfAttentionConv2D kv_pool=1",
    "c_kv2": "(c) SelfAttentionConv2D kv_pool=2",
    "c_kv1_fused": "(c) SelfAttentionConv2D kv_pool=1, fused op",
    "d_none": "(d) no attention",
}


def _reference_layers():
    """The reference layer's math as written, with gamma tracked by Keras 3."""
    import keras
    import tensorflow as tf

    class ReferenceSelfAttention(keras.layers.Layer):
        def __init__(self, filters=None, num_heads=None, gamma=0.01, activation="linear"):
            super().__init__()
            self.c, self.num_heads = filters, num_heads
            self.activation, self.gamma_init = activation, gamma

        @staticmethod
        def block(width):
            return keras.Sequential(
                [keras.layers.Conv2D(width, 1, 1), keras.layers.Reshape((-1, width))]
            )

        def build(self, input_shape):
            self.c = self.c or input_shape[-1]
            self.num_heads = self.num_heads or input_shape[-1]
            self.f, self.g, self.h = (self.block(self.num_heads) for _ in range(3))
            self.v = keras.layers.Conv2D(self.c, 1, 1, activation=self.activation)
            self.gamma = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.gamma_init), name="gamma"
            )

        def call(self, inputs):
            f, g, h = self.f(inputs), self.g(inputs), self.h(inputs)  # (B, HW, heads)
            attention = tf.nn.softmax(tf.matmul(f, g, transpose_b=True), axis=-1)  # (B, HW, HW)
            context = tf.matmul(attention, h)  # (B, HW, heads)
            d = inputs.shape
            context = self.gamma * tf.reshape(context, [-1, d[1], d[2], context.shape[-1]])
            return self.v(context) + inputs  # broadcasts 1 input channel to `filters`

    class MatmulSelfAttention(keras.layers.Layer):
        """The same math as the reference, as three projections and two batched matmuls."""

        def __init__(self, filters, width=1, gamma=0.01):
            super().__init__()
            self.filters, self.width, self.gamma_init = filters, width, gamma

        def build(self, input_shape):
            c, w = input_shape[-1], self.width
            self.wqkv = self.add_weight(shape=(c, 3 * w), name="wqkv")
            self.bqkv = self.add_weight(shape=(3 * w,), initializer="zeros", name="bqkv")
            self.wo = self.add_weight(shape=(w, self.filters), name="wo")
            self.bo = self.add_weight(shape=(self.filters,), initializer="zeros", name="bo")
            self.gamma = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(self.gamma_init), name="gamma"
            )

        def call(self, inputs):
            d = inputs.shape
            x = tf.reshape(inputs, [-1, d[1] * d[2], d[3]])  # (B, HW, C)
            q, k, v = tf.split(tf.matmul(x, self.wqkv) + self.bqkv, 3, axis=-1)  # (B, HW, w)
            attention = tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1)
            context = self.gamma * tf.matmul(attention, v)  # (B, HW, w)
            out = tf.matmul(context, self.wo) + self.bo  # (B, HW, filters)
            return tf.reshape(out, [-1, d[1], d[2], self.filters]) + inputs

    return ReferenceSelfAttention, MatmulSelfAttention


def build_model(variant: str):
    import keras

    from attn_search import SelfAttentionConv2D

    reference, matmul = _reference_layers()
    attention = {
        "a_reference": lambda: reference(filters=8),
        "b_matmul": lambda: matmul(filters=8),
        "c_kv1": lambda: SelfAttentionConv2D(filters=8, key_dim=1, value_dim=1),
        "c_kv2": lambda: SelfAttentionConv2D(filters=8, key_dim=1, value_dim=1, kv_pool=2),
        "c_kv1_fused": lambda: SelfAttentionConv2D(
            filters=8, key_dim=1, value_dim=1, use_fused_attention=True
        ),
        "d_none": lambda: keras.layers.Conv2D(8, 1),  # keeps the rest of the model identical
    }[variant]()
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            attention,
            keras.layers.Conv2D(32, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _data(steps: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((steps * BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, steps * BATCH)
    return x, y


def measure_throughput(rounds: int, steps: int) -> dict[str, list[float]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from _layer_maps import _batches  # as the runner feeds in-memory data: see there

    x, y = _data(steps)
    data = _batches(x, y, BATCH)
    models = {v: build_model(v) for v in VARIANTS}
    for model in models.values():  # warm-up: tracing, first-call allocations, the cache
        model.fit(data, epochs=1, verbose=0)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # interleaved, alternating order
        for variant in order:
            start = time.perf_counter()
            models[variant].fit(data, epochs=1, verbose=0)
            rates[variant].append(len(x) / (time.perf_counter() - start))
        print(
            f"round {r + 1}/{rounds}: " + ", ".join(f"{v} {rates[v][-1]:.0f}/s" for v in VARIANTS),
            flush=True,
        )
    return rates


def _vm_hwm_mb() -> float:
    # VmHWM (peak resident set) is per address space, so unlike ru_maxrss it does not carry
    # the parent's peak across fork + exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status (Linux only)")


def _peak_rss_child(variant: str, steps: int) -> None:
    model = build_model(variant)
    x, y = _data(steps)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    print(json.dumps({"peak_rss_mb": _vm_hwm_mb()}))


def measure_peak_memory(steps: int) -> dict[str, float]:
    peaks = {}
    for variant in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--child-memory", variant, "--steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        peaks[variant] = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
        print(f"peak RSS {variant}: {peaks[variant]:.0f} MB", flush=True)
    return peaks


def measure_scaling(sizes=(8, 16, 32, 64), pools=(1, 2, 4), channels=32, batch=8, reps=5):
    """Median seconds per training step (forward + backward) of the layer alone."""
    import keras
    import numpy as np
    import tensorflow as tf

    from attn_search import SelfAttentionConv2D

    table = {}
    for size in sizes:
        x = tf.constant(np.random.default_rng(0).random((batch, size, size, channels), np.float32))
        for pool in pools:
            layer = SelfAttentionConv2D(kv_pool=pool)
            layer(x)

            @tf.function
            def step(inp, layer=layer):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(tf.square(layer(inp)))
                return tape.gradient(loss, layer.trainable_weights)

            step(x)
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                grads = step(x)
                _ = [g.numpy() for g in grads]
                times.append(time.perf_counter() - start)
            table[f"{size}x{size}/kv_pool={pool}"] = statistics.median(times)
            print(
                f"scaling {size}x{size} kv_pool={pool}: "
                f"{table[f'{size}x{size}/kv_pool={pool}'] * 1e3:.2f} ms",
                flush=True,
            )
            keras.backend.clear_session()
    return {"channels": channels, "batch": batch, "seconds_per_step": table}


def _machine() -> dict:
    import keras
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }


def _run_maps(args, argv, maps) -> None:
    throughput = maps.measure_map_throughput(args.map_rounds, args.map_steps)
    peaks, default_peaks = maps.measure_map_memory(__file__)
    result = maps.summarise(throughput, peaks, default_peaks)
    maps.print_summary(result)
    result = {
        "benchmark": "SelfAttentionConv2D at large maps: query blocks vs unblocked vs "
        "keras.layers.MultiHeadAttention over the flattened map",
        "command": "python benchmarks/bench_layer.py " + " ".join(argv or sys.argv[1:]),
        "method": maps.__doc__,
        "note": "Compare ratios measured in the same run (interleaved rounds, paired per "
        "round), not absolute samples/s across runs: the machine's speed drifts.",
        "machine": _machine(),
        "load_average_at_end": os.getloadavg(),
        "rounds": args.map_rounds,
        "steps_per_round": args.map_steps,
        **result,
        "all_samples_per_second": throughput,
    }
    out = Path(args.maps_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed epoch")
    parser.add_argument("--out", default="results/bench_layer.json")
    parser.add_argument("--map-rounds", type=int, default=3)
    parser.add_argument("--map-steps", type=int, default=6, help="training steps per timed fit")
    parser.add_argument("--maps-out", default="results/bench_layer_maps.json")
    parser.add_argument("--only", choices=["maps", "classic"], help="run one part only")
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    parser.add_argument("--child-map-memory", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        _peak_rss_child(args.child_memory, args.steps)
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    import _layer_maps

    if args.child_map_memory:
        _layer_maps.map_memory_child(*json.loads(args.child_map_memory))
        return 0
    if args.only != "classic":
        _run_maps(args, argv, _layer_maps)
    if args.only == "maps":
        return 0

    import keras
    import tensorflow as tf

    rates = measure_throughput(args.rounds, args.steps)
    medians = {v: statistics.median(r) for v, r in rates.items()}
    peaks = measure_peak_memory(args.steps)
    scaling = measure_scaling()
    ratios = {
        "c_kv1 / a_reference": medians["c_kv1"] / medians["a_reference"],
        "c_kv1 / b_matmul": medians["c_kv1"] / medians["b_matmul"],
        "c_kv2 / b_matmul": medians["c_kv2"] / medians["b_matmul"],
        "c_kv1_fused / c_kv1": medians["c_kv1_fused"] / medians["c_kv1"],
        "peak c_kv1 / a_reference": peaks["c_kv1"] / peaks["a_reference"],
        "peak c_kv2 / a_reference": peaks["c_kv2"] / peaks["a_reference"],
        "attention memory (peak - d_none) c_kv1 / a_reference": (peaks["c_kv1"] - peaks["d_none"])
        / (peaks["a_reference"] - peaks["d_none"]),
    }
    # Paired within each round (the variants of one round ran seconds apart), so slow drifts of
    # the machine's speed cancel; the median over rounds and its range.
    paired = {}
    for name in ("c_kv1 / a_reference", "c_kv1 / b_matmul", "c_kv2 / b_matmul"):
        top, bottom = name.split(" / ")
        per_round = sorted(t / b for t, b in zip(rates[top], rates[bottom], strict=True))
        paired[name] = {
            "median": statistics.median(per_round),
            "min": per_round[0],
            "max": per_round[-1],
        }
    targets = {
        "c_kv1 >= 1.5x a_reference": ratios["c_kv1 / a_reference"] >= 1.5,
        "c_kv1 no slower than b_matmul (ratio >= 0.97, within noise)": ratios["c_kv1 / b_matmul"]
        >= 0.97,
        "c_kv2 >= 1.8x b_matmul": ratios["c_kv2 / b_matmul"] >= 1.8,
        "peak memory c_kv1 <= a_reference": peaks["c_kv1"] <= peaks["a_reference"] * 1.01,
    }
    print()
    print(f"{'variant':48s} {'samples/s':>10s} {'vs (a)':>7s} {'peak MB':>8s}")
    for v in VARIANTS:
        print(
            f"{LABELS[v]:48s} {medians[v]:10.0f} {medians[v] / medians['a_reference']:6.2f}x "
            f"{peaks[v]:8.0f}"
        )
    print()
    for name, value in ratios.items():
        print(f"{name:32s} {value:6.2f}")
    for name, value in paired.items():
        print(
            f"paired per round {name:22s} median {value['median']:.2f} "
            f"(min {value['min']:.2f}, max {value['max']:.2f})"
        )
    for name, ok in targets.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")

    result = {
        "command": "python benchmarks/bench_layer.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        },
        "batch_size": BATCH,
        "load_average_at_end": os.getloadavg(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "samples_per_second": {"median": medians, "all": rates},
        "peak_rss_mb": peaks,
        "ratios": ratios,
        "paired_ratios_per_round": paired,
        "targets_met": targets,
        "scaling": scaling,
        "labels": LABELS,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

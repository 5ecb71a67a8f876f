"""The memory guard's estimate against the measured peak memory of a training step.

For each configuration a fresh process builds a small model whose memory is dominated by one
`SelfAttentionConv2D` layer (input -> attention -> global pooling -> softmax), runs warm-up
steps on batches of 1 and 2 (tracing, optimizer slots), then measures the peak resident memory
of one step on the full batch above the memory held before it: the kernel's high-water mark
(VmHWM in /proc/self/status, reset through /proc/self/clear_refs). TensorFlow allocates CPU
tensors with malloc, so `tracemalloc` would not see them.

The estimate is the guard's, `attn_search._memory_guard.layer_memory_bytes`: batch x heads x
rows x HW_k x 4 bytes x 2 (forward and backward), where rows is the layer's query rows alive
at once (all HW when the map is small enough to attend at once; two blocks where the blocks are
written out in the graph, one where they run in a loop), plus 2 KB + 1 KB per head per query
position and example with blocks. It should be within a factor of 2 of the measured peak, and
above it.

Run (Linux, CPU):

    .venv/bin/python benchmarks/bench_memory_guard.py    # -> results/bench_memory_guard.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

# (height, width, channels, batch, heads, kv_pool)
CONFIGS = [
    (32, 32, 8, 32, 1, 1),
    (32, 32, 8, 32, 2, 2),
    (28, 28, 8, 64, 1, 1),
    (28, 28, 16, 64, 2, 2),
    (16, 16, 16, 128, 4, 1),
    (48, 48, 8, 8, 1, 1),
    (64, 64, 8, 4, 2, 2),
    (64, 64, 8, 32, 1, 1),
    (64, 64, 16, 16, 4, 1),
]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(height, width, channels, batch, heads, kv_pool) -> dict:
    """Runs in a fresh process: one configuration's peak memory for a training step."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import gc

    import keras
    import numpy as np

    from attn_search._memory_guard import layer_memory_bytes
    from attn_search.layers import SelfAttentionConv2D

    keras.utils.set_random_seed(0)
    inputs = keras.Input((height, width, channels))
    x = SelfAttentionConv2D(num_heads=heads, kv_pool=kv_pool, name="attention")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)

    def step(n):
        data = rng.random((n, height, width, channels), dtype=np.float32)
        model.train_on_batch(data, np.zeros((n,), dtype=np.int32))

    # Warm-up with tiny batches: tracing (a second batch size gives the function a free batch
    # dimension, so the measured step does not retrace) and the optimizer's slots. TensorFlow's
    # CPU allocator keeps freed memory, so the big step is measured once, in a fresh process.
    step(1)
    step(2)
    gc.collect()
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass  # the high-water mark then holds the warm-up's (small) peak
    step(batch)
    measured = (_status_kb("VmHWM") - before) * 1024
    estimate = layer_memory_bytes(batch, height, width, heads, kv_pool)
    return {
        "input": [height, width, channels],
        "batch_size": batch,
        "num_heads": heads,
        "kv_pool": kv_pool,
        "estimate_mb": round(estimate / 2**20, 1),
        "measured_peak_mb": round(measured / 2**20, 1),
        "ratio_measured_to_estimate": round(measured / estimate, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench_memory_guard.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_measure(*json.loads(args.one))))
        return 0

    rows = []
    for config in CONFIGS:
        t = time.time()
        out = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(config)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["seconds"] = round(time.time() - t, 1)
        rows.append(row)
        print(
            f"{'x'.join(map(str, row['input'])):>9} B={row['batch_size']:<4} "
            f"heads={row['num_heads']} kv_pool={row['kv_pool']}: estimate "
            f"{row['estimate_mb']:7.1f} MB, measured {row['measured_peak_mb']:7.1f} MB "
            f"(x{row['ratio_measured_to_estimate']})"
        )
    ratios = [r["ratio_measured_to_estimate"] for r in rows]
    import keras
    import tensorflow as tf

    result = {
        "benchmark": "memory guard: estimated attention-map memory vs measured peak RSS of a "
        "training step",
        "command": "python benchmarks/bench_memory_guard.py",
        "estimate": "batch x heads x rows x HW_k x 4 bytes x 2 (rows: the layer's query "
        "rows alive at once), plus batch x HW x (2 KB + 1 KB x heads) with blocks "
        "(_memory_guard.layer_memory_bytes)",
        "measurement": "VmHWM after one train_on_batch minus VmRSS before it, after warm-up "
        "steps with batches of 1 and 2, in a fresh process per configuration",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "device": "CPU",
        },
        "configs": rows,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "within_factor_2": all(0.5 <= r <= 2.0 for r in ratios),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"ratios {min(ratios)}..{max(ratios)}; within a factor of 2: "
          f"{result['within_factor_2']}; wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

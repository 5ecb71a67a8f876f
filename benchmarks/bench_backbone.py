"""The cost of attention at each point of ResNet50 at 64x64: time per epoch and peak memory.

For each configuration a fresh process builds the trial's model as the search does
(`build_backbone`: ResNet50 without its top, weights none, pooling and a 10-class softmax) and
inserts attention as `BackboneHyperModel` does: the plain ResNet50, or ResNet50 with one
`SelfAttentionConv2D` (1 head, gamma 0) after one of its points
(`attention_points`: the end of each resolution stage), with kv_pool 1 and, where the map is
8x8 or larger, kv_pool 2. It warms up (tracing, optimizer slots) on batches of 1 and 2, then
trains `--epochs` epochs of `--steps` batches of `--batch` random images and reports the median
seconds per epoch and the peak resident memory of that training above the memory held before
it (VmHWM, reset through /proc/self/clear_refs).

The machine is shared and busy, so absolute figures drift: every figure is also given relative
to the plain ResNet50 measured in the same run, which runs first and last (A B C ... A); its
two runs are averaged, and their spread is reported.

Run (Linux, CPU):

    .venv/bin/python benchmarks/bench_backbone.py      # -> results/bench_backbone.json
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


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _model(point: str | None, kv_pool: int):
    """The trial's model: ResNet50 as the search builds it (`build_backbone`), with one
    attention layer after `point` (as `BackboneHyperModel` inserts it), compiled with Adam."""
    import keras

    from attn_search import insert_attention
    from attn_search._backbone_build import build_backbone

    model = build_backbone({"model": "resnet50"}, (64, 64, 3), 10)
    if point is not None:
        model = insert_attention(model, after=[point], num_heads=1, kv_pool=kv_pool)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def _measure(point: str | None, kv_pool: int, batch: int, steps: int, epochs: int) -> dict:
    """Runs in a fresh process: one configuration's seconds per epoch and peak memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import gc

    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = _model(point, kv_pool)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 64, 64, 3), dtype=np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int32)
    for n in (1, 2):  # tracing with a free batch dimension, and the optimizer's slots
        model.train_on_batch(x[:n], y[:n])
    gc.collect()
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - t0)
    peak = (_status_kb("VmHWM") - before) * 1024
    return {
        "point": point,
        "kv_pool": kv_pool if point is not None else None,
        "params": int(model.count_params()),
        "seconds_per_epoch": round(statistics.median(seconds), 3),
        "peak_mb": round(peak / 2**20, 1),
    }


def _configs() -> list[tuple[str | None, int, tuple | None]]:
    """Plain, each point with kv_pool 1 then (at 8x8 or more) 2, plain again."""
    import keras

    from attn_search import attention_points

    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    out: list[tuple[str | None, int, tuple | None]] = [(None, 1, None)]
    for p in attention_points(base):
        out.append((p["name"], 1, p["shape"]))
        if p["shape"][0] >= 8:
            out.append((p["name"], 2, p["shape"]))
    return out + [(None, 1, None)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench_backbone.json")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (median)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        point, kv_pool = json.loads(args.one)
        print(json.dumps(_measure(point, kv_pool, args.batch, args.steps, args.epochs)))
        return 0

    rows: list[dict] = []
    configs = _configs()
    for point, kv_pool, shape in configs:
        t = time.time()
        out = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps([point, kv_pool]),
             "--batch", str(args.batch), "--steps", str(args.steps), "--epochs", str(args.epochs)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["resolution"] = None if shape is None else f"{shape[0]}x{shape[1]}"
        row["wall_seconds"] = round(time.time() - t, 1)
        rows.append(row)
        print(
            f"{point or 'plain':<18} {row['resolution'] or '':>6} kv_pool={kv_pool}: "
            f"{row['seconds_per_epoch']:.3f} s/epoch, peak {row['peak_mb']:.1f} MB",
            flush=True,
        )
        _write(args, parser, rows, complete=len(rows) == len(configs))
    print(f"wrote {args.out}")
    return 0


def _write(args, parser, rows: list[dict], complete: bool) -> None:
    """Writes the result file (after every configuration: a run cut short keeps its rows)."""
    plain = [r for r in rows if r["point"] is None]
    t_ref = statistics.mean(r["seconds_per_epoch"] for r in plain)
    m_ref = statistics.mean(r["peak_mb"] for r in plain)
    for r in rows:
        r["time_vs_plain"] = round(r["seconds_per_epoch"] / t_ref, 2)
        r["peak_vs_plain"] = round(r["peak_mb"] / m_ref, 2) if m_ref > 0 else None
    import keras
    import tensorflow as tf

    result = {
        "benchmark": "cost of one attention layer at each point of ResNet50 at 64x64 "
        "(time per epoch and peak memory), relative to the plain ResNet50 in the same run",
        "command": "python benchmarks/bench_backbone.py"
        + "".join(
            f" --{k} {v}"
            for k, v in (("batch", args.batch), ("steps", args.steps), ("epochs", args.epochs))
            if v != parser.get_default(k)
        ),
        "setup": f"ResNet50 (weights none, 10 classes), 64x64x3 random images, batch "
        f"{args.batch}, an epoch = {args.steps} batches, median of {args.epochs} epochs after "
        "warm-up; one attention layer, 1 head, gamma 0; a fresh process per configuration",
        "measurement": "seconds per epoch (train_on_batch); peak = VmHWM during the timed "
        "epochs minus VmRSS before them",
        "reference": "the plain ResNet50 runs first and last (A B C ... A) on a shared, busy "
        "machine; ratios are against the mean of its runs so far",
        "plain_runs_seconds_per_epoch": [r["seconds_per_epoch"] for r in plain],
        "plain_runs_peak_mb": [r["peak_mb"] for r in plain],
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "device": "CPU",
        },
        "complete": complete,
        "configs": rows,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())

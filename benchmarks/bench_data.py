"""Real-sized data: a trial's epoch against plain `model.fit`, a streamed folder against Keras.

Two measurements in one run, each against a reference timed in the same process, interleaved
(A B, then B A, ...) so that the load of a shared machine falls on both sides alike:

1. **In memory.** 20,000 generated 32x32x3 images (uint8, 16,000 train / 2,000 val / 2,000
   test, from an .npz file). One epoch of a search trial (`attn_search.runner.training.fit`,
   what `attn-search run` calls: the dataset's shuffled `tf.data` pipeline, validation after
   the epoch, the trial's callbacks) against `model.fit(x_train, y_train, batch_size=64,
   validation_data=(x_val, y_val), shuffle=True)` on the same arrays (float32 in [0, 1]), with
   a model of the same configuration (a small attention CNN of the search space below). Each
   side has its own model, warmed up by one epoch (tracing) before the timing. Figure: the
   ratio of the median epoch times, trial / plain (target <= 1.05).
2. **A folder of PNG files.** 20,000 generated 32x32 RGB PNGs in 10 class folders, in a
   temporary directory. One pass over the streamed folder (`load_dataset(folder,
   in_memory_limit_mb=0).train(64)`: float32 batches in [0, 1], reshuffled) against one pass
   over `keras.utils.image_dataset_from_directory(folder, batch_size=64, image_size=(32, 32))`
   (float32 batches, reshuffled), both made once before the timing. Also timed: the same
   folder read from `--cache` (`Dataset.cached`), filled before the timing. Figure: images per
   second over the median pass, ours / Keras' (target >= 1.0).

Why medians: on the shared machine a measurement now and then takes twice as long as its
neighbours (another job's burst), and it hits one side at a time; the median of each side
ignores those, the sums (also written, with each round's ratio) do not.

Run:

    .venv/bin/python benchmarks/bench_data.py     # -> results/bench_data.json (about 4 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

N_IMAGES = 20_000
BATCH = 64
SPACE = {
    "name": "bench-data",
    "backbone": {"blocks": 2, "filters": 16, "min_resolution": 4},
    "attention": {"placements": [2]},
    "baselines": {"include": [], "share": 0.0},
    "training": {"batch_size": BATCH, "epochs": 1},
}


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 32x32x3 uint8 images; the label is which quadrant is brightest (learnable)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    quadrants = x.reshape(n, 2, 16, 2, 16, 3).mean(axis=(2, 4, 5)).reshape(n, 4)
    return x, np.argmax(quadrants, axis=1).astype(np.int32)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def _interleaved(sides: dict, rounds: int) -> dict[str, list[float]]:
    """Calls each side `rounds` times, the order reversed every other round; seconds each."""
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            sides[name](i)
            times[name].append(round(time.perf_counter() - t0, 3))
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    return times


def bench_in_memory(tmp: str, rounds: int, n: int) -> dict:
    import keras
    import keras_tuner

    from attn_search.datasets import load_dataset
    from attn_search.hypermodels import AttentionCNN
    from attn_search.runner import training

    x, y = _images(n)
    path = os.path.join(tmp, "images.npz")
    n_train, n_val = n * 8 // 10, n // 10
    np.savez(
        path,
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_val=x[n_train : n_train + n_val],
        y_val=y[n_train : n_train + n_val],
        x_test=x[n_train + n_val :],
        y_test=y[n_train + n_val :],
    )
    data = load_dataset(path, seed=0)
    x_train, y_train = data.arrays("train")
    x_val, y_val = data.arrays("val")
    hypermodel = AttentionCNN(SPACE, data.info.input_shape, data.info.num_classes)
    hp = keras_tuner.HyperParameters()
    keras.utils.set_random_seed(0)
    trial_model = hypermodel.build(hp)
    keras.utils.set_random_seed(0)
    plain_model = hypermodel.build(hp)

    def trial(i: int) -> None:
        training.fit(hypermodel, hp, trial_model, data, seed=i, epochs=1)

    def plain(i: int) -> None:
        plain_model.fit(
            x_train,
            y_train,
            batch_size=BATCH,
            epochs=1,
            validation_data=(x_val, y_val),
            shuffle=True,
            verbose=0,
        )

    print("in memory: warm-up (one epoch each)", flush=True)
    trial(-1)
    plain(-1)
    times = _interleaved({"trial_epoch": trial, "plain_fit_epoch": plain}, rounds)
    ratio = _median(times["trial_epoch"]) / _median(times["plain_fit_epoch"])
    return {
        "data": f"{n} generated 32x32x3 uint8 images: {data.info.sizes}",
        "model": f"AttentionCNN, space {SPACE}, default values: {hp.values}",
        "params": int(trial_model.count_params()),
        "seconds_per_epoch": times,
        "median_seconds_per_epoch": {k: round(_median(v), 3) for k, v in times.items()},
        "ratio_trial_to_plain_fit": round(ratio, 3),
        "ratio_of_sums": round(sum(times["trial_epoch"]) / sum(times["plain_fit_epoch"]), 3),
        "per_round_ratios": [
            round(a / b, 3)
            for a, b in zip(times["trial_epoch"], times["plain_fit_epoch"], strict=True)
        ],
        "target_ratio": 1.05,
        "meets_target": ratio <= 1.05,
    }


def _write_pngs(root: str, n: int) -> float:
    from PIL import Image

    x, y = _images(n, seed=1)
    for c in range(10):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)

    def save(i: int) -> None:
        path = os.path.join(root, f"class_{i % 10}", f"{i:05d}.png")
        Image.fromarray(x[i]).save(path)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(n)))
    return time.perf_counter() - t0


def bench_folder(tmp: str, rounds: int, n: int) -> dict:
    import keras

    from attn_search.datasets import load_dataset

    root = os.path.join(tmp, "pngs")
    write_seconds = _write_pngs(root, n)
    print(f"folder: wrote {n} PNGs in {write_seconds:.1f} s", flush=True)
    t0 = time.perf_counter()
    data = load_dataset(root, seed=0, in_memory_limit_mb=0, val_fraction=0, test_fraction=0)
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = keras.utils.image_dataset_from_directory(
        root, batch_size=BATCH, image_size=(32, 32), seed=0, verbose=False
    )
    reference_seconds = time.perf_counter() - t0
    cached = data.cached(os.path.join(tmp, "cache"))
    t0 = time.perf_counter()
    cached.train(BATCH)
    cache_fill_seconds = time.perf_counter() - t0
    counted: dict[str, int] = {}

    def count(name: str, pipeline) -> None:
        n = 0
        for _, labels in pipeline:
            n += int(labels.shape[0])
        counted[name] = n

    sides = {
        "attn_search_streamed": lambda i: count("attn_search_streamed", data.train(BATCH, seed=i)),
        "image_dataset_from_directory": lambda i: count("image_dataset_from_directory", reference),
        "attn_search_cached": lambda i: count("attn_search_cached", cached.train(BATCH, seed=i)),
    }
    print("folder: warm-up (one pass each)", flush=True)
    for side in sides.values():
        side(-1)
    times = _interleaved(sides, rounds)
    assert set(counted.values()) == {n}, counted
    rate = {name: round(n / _median(t), 1) for name, t in times.items()}
    rate_of_sums = {name: round(n * rounds / sum(t), 1) for name, t in times.items()}
    ratio = rate["attn_search_streamed"] / rate["image_dataset_from_directory"]
    return {
        "data": f"{n} generated 32x32 RGB PNGs in 10 class folders (a temporary directory)",
        "seconds_per_pass": times,
        "images_per_second": rate,
        "images_per_second_over_all_passes": rate_of_sums,
        "ratio_streamed_to_keras": round(ratio, 3),
        "ratio_cached_to_keras": round(
            rate["attn_search_cached"] / rate["image_dataset_from_directory"], 3
        ),
        "target_ratio": 1.0,
        "meets_target": ratio >= 1.0,
        "one_off_seconds": {
            "write_pngs": round(write_seconds, 1),
            "load_dataset (list, read headers, check-decode every file)": round(load_seconds, 1),
            "image_dataset_from_directory (list files)": round(reference_seconds, 1),
            "fill the cache (decode once)": round(cache_fill_seconds, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="epochs timed per side (default 4)")
    parser.add_argument("--passes", type=int, default=8, help="passes timed per side (default 8)")
    parser.add_argument("--images", type=int, default=N_IMAGES, help="default 20000")
    parser.add_argument("--out", default="results/bench_data.json")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    tmp = tempfile.mkdtemp(prefix="bench_data_")
    try:
        folder = bench_folder(tmp, args.passes, args.images)
        memory = bench_in_memory(tmp, args.rounds, args.images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "real-sized data: a trial's epoch vs plain model.fit on the same arrays; a "
        "streamed folder of PNGs vs keras.utils.image_dataset_from_directory",
        "command": "python benchmarks/bench_data.py"
        + (f" --rounds {args.rounds}" if args.rounds != 4 else "")
        + (f" --passes {args.passes}" if args.passes != 8 else "")
        + (f" --images {args.images}" if args.images != N_IMAGES else ""),
        "in_memory": memory,
        "folder": folder,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "note": "wall times on a 2-core machine (its load average at the end is above): each "
        "ratio is against a reference timed in the same process, interleaved A B / B A round by "
        "round, warm-up excluded; ratios of medians (a burst of another job hits one "
        "measurement, of one side), the sums' ratios beside them",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(
        json.dumps(
            {
                "in_memory_ratio": memory["ratio_trial_to_plain_fit"],
                "folder_images_per_second": folder["images_per_second"],
                "folder_ratio": folder["ratio_streamed_to_keras"],
            }
        )
    )


if __name__ == "__main__":
    main()

"""A new user's own data, every default: `attn-search run --dataset FOLDER` against a plain CNN
trained well by hand on the same split.

The folder is generated under a temporary directory: a few hundred small colour "photos" in 5
classes (a disc, a square, a triangle, a cross, a ring; random sizes, positions and rotations,
in a colour that stands out from a noisy colour-gradient background), of mixed sizes (28 to 43
pixels, resized by the loader to the most common size). Then, on the same machine:

1. `run_search(dataset=FOLDER, out=...)` with every default (`--space auto`, cross-validation
   chosen automatically: one repetition of 5 folds, one seed): the finalists' accuracy (on
   their test folds), its spread over the folds, and the best model's accuracy on the loader's
   held-out test split;
2. the same run resumed with `repeats=10` (`--resume --repeats 10`), which adds a second
   repetition of the 5 folds with its own seed (and its own partition) and nothing else: each
   repetition tests every image once, so each finalist and family has one accuracy per seed
   (its mean over the folds), and their difference is the seed-to-seed spread asked about;
3. a hand-written CNN (three conv blocks of 32, 64, 128 filters with batch normalization
   (momentum 0.9: the default 0.99 leaves the moving statistics far from the data after the few
   hundred steps a small dataset gives, and the model collapses at inference) and max pooling,
   global average pooling, dropout 0.3, softmax; Adam 1e-3, batch 16; random flips and shifts;
   up to 80 epochs with early stopping on the validation accuracy, patience 20, best weights
   restored), trained on the same train/validation split with 3 seeds and tested on the same
   held-out test split; with `--hand-folds`, also on the run's own folds (the finalists').

Target (issue 9): the default run learns the data about as well as the hand CNN (the best
model's held-out accuracy and the finalists' fold accuracy within a few points of the hand CNN's
on the same split and folds), with the finalists' accuracy stable across seeds (the
per-seed accuracies of each finalist and family within a few points of each other).

This is an accuracy benchmark: timings are stated for scale only (the machine is shared).

Run:

    .venv/bin/python benchmarks/bench_own_data.py               # -> results/bench_own_data.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

CLASSES = ("disc", "square", "triangle", "cross", "ring")


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask (size, size) of one object, random scale, position and rotation."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    r = rng.uniform(0.25, 0.38) * size
    cy, cx = rng.uniform(r + 1, size - r - 1, 2)
    angle = rng.uniform(0, 2 * math.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    if kind == "disc":
        return u**2 + v**2 <= r**2
    if kind == "ring":
        d = np.sqrt(u**2 + v**2)
        return (d <= r) & (d >= 0.55 * r)
    if kind == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if kind == "cross":
        arm = 0.3 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    # triangle: below two slanted edges and above a base
    return (v <= 0.6 * r) & (v >= -r + 1.7 * np.abs(u))


def make_folder(root: pathlib.Path, per_class: int, seed: int) -> pathlib.Path:
    """Writes the colour image folder (one sub-folder per class); returns it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, kind in enumerate(CLASSES):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = int(rng.choice([28, 32, 32, 32, 36, 40, 43]))
            yy, xx = np.mgrid[0:size, 0:size] / size
            c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
            t = (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))[..., None]
            image = c0 + (c1 - c0) * (t - t.min()) / (np.ptp(t) + 1e-6)
            image += rng.normal(0, 0.05, image.shape)
            # The object in a colour that stands out from the background around it.
            colour = np.clip(1.0 - image.mean(axis=(0, 1)) + rng.normal(0, 0.15, 3), 0, 1)
            image[_shape_mask(kind, size, rng)] = colour + rng.normal(0, 0.03, 3)
            pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(root / kind / f"{label}_{i:03d}.png")
    return root


def _hand_cnn(shape, classes: int):
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect")(x)
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def hand_cnn_accuracy(data, seed: int, epochs: int = 80) -> float:
    """Test accuracy of the hand CNN trained on `data`'s train split (val: early stopping)."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = _hand_cnn(data.info.input_shape, data.info.num_classes)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=20, restore_best_weights=True
    )
    model.fit(
        data.train(16, seed=seed),
        validation_data=data.val(64),
        epochs=epochs,
        callbacks=[stop],
        verbose=0,
    )
    return float(model.evaluate(data.test(64), verbose=0)[1])


def _per_seed(fits: list[dict]) -> dict:
    """Per finalist and family: the mean test-fold accuracy of each repetition (seed), with
    the number of folds behind each, and the largest difference between two seeds."""
    groups: dict[tuple, dict[int, list[float]]] = {}
    for fit in fits:
        if fit.get("test_accuracy") is None:
            continue
        key = (int(fit["trial_id"]), fit["family"])
        groups.setdefault(key, {}).setdefault(int(fit["seed"]), []).append(fit["test_accuracy"])
    table = {}
    for (trial, family), by_seed in sorted(groups.items()):
        means = {seed: float(np.mean(v)) for seed, v in sorted(by_seed.items())}
        table[f"trial {trial} {family}"] = {
            "mean_per_seed": means,
            "folds_per_seed": {seed: len(v) for seed, v in sorted(by_seed.items())},
            "largest_difference": float(max(means.values()) - min(means.values())),
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=80, help="images per class")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the hand CNN")
    parser.add_argument(
        "--hand-folds", action="store_true", help="also train the hand CNN on the run's folds"
    )
    parser.add_argument("--out", default="results/bench_own_data.json")
    args = parser.parse_args()

    import keras

    from attn_search.datasets import CrossValidation, load_dataset
    from attn_search.runner import run_search

    with tempfile.TemporaryDirectory(prefix="attn-search-own-data-") as tmp:
        folder = make_folder(pathlib.Path(tmp) / "shapes", args.per_class, seed=0)
        t0 = time.perf_counter()
        result = run_search(dataset=str(folder), out=str(pathlib.Path(tmp) / "run"), quiet=True)
        run_seconds = time.perf_counter() - t0
        first_fits = json.loads((result.run_dir / "finalists.json").read_text())["runs"]
        first_verdict = result.verdict
        t0 = time.perf_counter()
        result = run_search(
            dataset=str(folder), out=str(result.run_dir), resume=True, repeats=10, quiet=True
        )
        second_seconds = time.perf_counter() - t0
        import yaml

        config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
        run_json = json.loads((result.run_dir / "run.json").read_text())
        fits = json.loads((result.run_dir / "finalists.json").read_text())["runs"]
        data = load_dataset(str(folder), seed=0)
        best = keras.models.load_model(result.best_model_path)
        best_test = float(
            best.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            or best.evaluate(data.test(64), verbose=0)[1]
        )
        t1 = time.perf_counter()
        hand = [hand_cnn_accuracy(data, seed) for seed in range(args.seeds)]
        hand_seconds = time.perf_counter() - t1
        cv_k = config.get("cv", {}).get("k", 0)
        hand_folds = []
        if cv_k and args.hand_folds:
            cv = CrossValidation(data, cv_k, config["cv"]["repetitions"], config["cv"]["seed"])
            for rep in range(cv.repetitions):
                for fold in range(cv.k):
                    hand_folds.append(hand_cnn_accuracy(cv.dataset(rep, fold), seed=rep))
        by_family: dict[str, list[float]] = {}
        for fit in first_fits:
            if fit.get("test_accuracy") is not None:
                by_family.setdefault(fit["family"], []).append(float(fit["test_accuracy"]))
        seeds = _per_seed(fits)
    out = {
        "benchmark": "bench_own_data",
        "command": "python benchmarks/bench_own_data.py",
        "note": (
            "Accuracy benchmark on a generated folder of colour images (5 classes, "
            f"{args.per_class} per class, sizes 28-43 px). Timings are for scale only."
        ),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "dataset": config["dataset"]["input_shape"],
        "sizes": config["dataset"]["sizes"],
        "space": config["space"]["description"],
        "cv": config.get("cv"),
        "run_seconds": round(run_seconds, 1),
        "second_repetition_seconds": round(second_seconds, 1),
        "run_status": result.status,
        "warnings": run_json.get("warnings", []),
        "verdict_default_run": first_verdict,
        "verdict_two_repetitions": result.verdict,
        "best_val_accuracy": float(result.leaderboard["best_val_accuracy"].max()),
        "best_model_test_accuracy": best_test,
        "finalist_accuracy_per_seed": seeds,
        "largest_seed_difference": max(
            (e["largest_difference"] for e in seeds.values()), default=None
        ),
        "finalist_fold_accuracy": {
            fam: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "n": len(v)}
            for fam, v in by_family.items()
        },
        "hand_cnn_test_accuracy": {
            "per_seed": hand,
            "mean": float(np.mean(hand)),
            "std": float(np.std(hand, ddof=1)) if len(hand) > 1 else None,
        },
        "hand_cnn_fold_accuracy": (
            {
                "mean": float(np.mean(hand_folds)),
                "std": float(np.std(hand_folds, ddof=1)),
                "n": len(hand_folds),
            }
            if hand_folds
            else None
        ),  # fmt: skip
        "hand_seconds": round(hand_seconds, 1),
    }
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

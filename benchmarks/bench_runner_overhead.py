"""The runner's overhead: plain `keras_tuner.RandomSearch` against `run_search`, same work.

Both sides search the same hypermodel (`AttentionCNN` on the default space, the attention
family) on the same data (digits), for the same number of trials and epochs, with KerasTuner's
random search seeded alike; the runner adds what it is for: a trial record per trial in the
engine's storage, the leaderboard and comparison rewritten after every trial, the best model
saved when it improves, config.yaml and run.json. Finalists are off (`finalists=0`): they are
extra training, not overhead.

To give both sides the same models, the space has no baselines (`baselines.include: []`,
`share: 0`), so the runner's only non-attention trial is its trial 0, the plain backbone, which
it runs on top: the runner trains `--trials` + 1 models, plain RandomSearch `--trials` (the
comparison is conservative: the plain backbone's training counts as overhead).
Each side runs in a fresh process
(same imports, same warm-up), in alternating order over `--pairs` pairs; the figure is the
ratio of the total wall times (target <= 1.10).

Run:

    .venv/bin/python benchmarks/bench_runner_overhead.py     # -> results/bench_runner_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

SPACE = {"name": "overhead", "baselines": {"include": [], "share": 0.0}}


def _side(which: str, trials: int, epochs: int, out: str) -> float:
    """Runs in a fresh process: one side's search; returns its wall time in seconds."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import contextlib
    import io

    import keras
    import keras_tuner

    from attn_search.datasets import load_dataset
    from attn_search.hypermodels import AttentionCNN
    from attn_search.runner import RunConfig, run_search

    data = load_dataset("digits", seed=0)
    info = data.info
    # Warm-up outside the timing: the first model's graph building pays TensorFlow's one-off
    # start-up costs, on either side.
    hm = AttentionCNN(SPACE, info.input_shape, info.num_classes)
    model = hm.build(keras_tuner.HyperParameters())
    model.fit(*data.arrays("train"), epochs=1, batch_size=32, verbose=0)
    keras.backend.clear_session()

    t0 = time.perf_counter()
    if which == "runner":
        run_search(
            RunConfig(
                dataset="digits",
                space=SPACE,
                engine="keras-tuner",
                tuner="random",
                trials=trials + 1,
                max_epochs=epochs,
                finalists=0,
                seed=0,
                out=out,
                quiet=True,
            )
        )
    else:
        tuner = keras_tuner.RandomSearch(
            hypermodel=AttentionCNN(SPACE, info.input_shape, info.num_classes),
            objective="val_accuracy",
            max_trials=trials,
            seed=0,
            directory=out,
            project_name="plain_random_search",
            overwrite=True,
        )
        with contextlib.redirect_stdout(io.StringIO()):
            tuner.search(
                *data.arrays("train"), validation_data=data.arrays("val"), epochs=epochs, verbose=0
            )
    return time.perf_counter() - t0


def _run_side(which: str, trials: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import sys, json; sys.path.insert(0, 'benchmarks'); "
            "import bench_runner_overhead as b; "
            f"print(json.dumps(b._side({which!r}, {trials}, {epochs}, {tmp + '/run'!r})))"
        )
        res = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--out", default="results/bench_runner_overhead.json")
    args = parser.parse_args()

    times = {"keras_tuner_random_search": [], "run_search_keras_tuner": []}
    for i in range(args.pairs):
        order = ["plain", "runner"] if i % 2 == 0 else ["runner", "plain"]
        for which in order:
            seconds = _run_side(which, args.trials, args.epochs)
            key = "run_search_keras_tuner" if which == "runner" else "keras_tuner_random_search"
            times[key].append(round(seconds, 2))
            print(f"{key}: {seconds:.1f} s", flush=True)
    plain, runner = sum(times["keras_tuner_random_search"]), sum(times["run_search_keras_tuner"])
    import keras
    import tensorflow as tf

    result = {
        "benchmark": "runner overhead: run_search(engine='keras-tuner', tuner='random') vs "
        "plain keras_tuner.RandomSearch, same hypermodel, trials and epochs",
        "command": "python benchmarks/bench_runner_overhead.py"
        + (f" --trials {args.trials}" if args.trials != 8 else "")
        + (f" --epochs {args.epochs}" if args.epochs != 3 else "")
        + (f" --pairs {args.pairs}" if args.pairs != 1 else ""),
        "dataset": "digits (1797 images 8x8, train 70% / val 15%)",
        "space": "default, baselines off",
        "trials": args.trials,
        "epochs": args.epochs,
        "finalists": 0,
        "seconds": times,
        "ratio": round(runner / plain, 3),
        "target_ratio": 1.10,
        "meets_target": runner / plain <= 1.10,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "note": "wall times on a shared 2-core machine; both sides in fresh processes, warm-up "
        "excluded; alternate the order with --pairs to average out load",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps({k: result[k] for k in ("seconds", "ratio", "meets_target")}))


if __name__ == "__main__":
    main()

"""Pruning's worth: Optuna's default pruner (median) against no pruning, same search otherwise.

For each seed, two searches on digits with the default space, the same number of trials and
the same epochs per trial, differ only in `pruner`: `"median"` (the default) and `"none"`.
The sampler is Optuna's seeded random sampler, so both searches propose the same
configurations and the comparison isolates the pruner (with TPE the two searches would drift
apart as soon as one trial is pruned, and the difference would be the sampler's luck).
Compared per seed, from each run's leaderboard.csv:

- the best validation accuracy of the search (complete trials), and
- the total number of training epochs of the search (every trial, pruned ones included).

Targets: the pruned search's best validation accuracy within 1 point (0.01) of the unpruned
one's, with at most 60% of its epochs (averaged over the seeds). Finalists are off: they
retrain the same way in both cases.

Run:

    .venv/bin/python benchmarks/bench_pruning.py                 # -> results/bench_pruning.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time


def _search(pruner: str, seed: int, trials: int, epochs: int | None, out: str) -> dict:
    from attn_search.runner import RunConfig, run_search

    t0 = time.perf_counter()
    result = run_search(
        RunConfig(
            dataset="digits",
            engine="optuna",
            sampler="random",
            pruner=pruner,
            trials=trials,
            max_epochs=epochs,
            finalists=0,
            seed=seed,
            out=out,
            quiet=True,
        )
    )
    seconds = time.perf_counter() - t0
    board = result.leaderboard
    complete = board[board["status"] == "complete"]
    return {
        "best_val_accuracy": round(float(complete["best_val_accuracy"].max()), 4),
        "epochs": int(board["epochs"].fillna(0).sum()),
        "pruned_trials": int((board["status"] == "pruned").sum()),
        "failed_trials": int((board["status"] == "failed").sum()),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument(
        "--epochs", type=int, default=None, help="cap per trial (default: the space's)"
    )
    parser.add_argument("--out", default="results/bench_pruning.json")
    args = parser.parse_args()

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            row = {"seed": seed}
            for pruner in ("median", "none"):
                row[pruner] = _search(
                    pruner, seed, args.trials, args.epochs, f"{tmp}/{pruner}-{seed}"
                )
                print(f"seed {seed} pruner={pruner}: {row[pruner]}", flush=True)
            row["accuracy_gap"] = round(
                row["none"]["best_val_accuracy"] - row["median"]["best_val_accuracy"], 4
            )
            row["epoch_fraction"] = round(row["median"]["epochs"] / row["none"]["epochs"], 3)
            runs.append(row)
    gaps = [r["accuracy_gap"] for r in runs]
    fractions = [r["epoch_fraction"] for r in runs]
    mean_fraction = sum(fractions) / len(fractions)
    import keras
    import optuna

    result = {
        "benchmark": "pruning's worth: optuna median pruner vs no pruning, same trials and seeds",
        "command": "python benchmarks/bench_pruning.py"
        + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
        + (f" --trials {args.trials}" if args.trials != 10 else "")
        + (f" --epochs {args.epochs}" if args.epochs else ""),
        "dataset": "digits",
        "space": "default",
        "sampler": "random (seeded): the same configurations in both searches",
        "trials": args.trials,
        "runs": runs,
        "max_accuracy_gap": max(gaps),
        "mean_epoch_fraction": round(mean_fraction, 3),
        "targets": {"accuracy_gap_at_most": 0.01, "epoch_fraction_at_most": 0.6},
        "meets_targets": {
            "accuracy": all(g <= 0.01 for g in gaps),
            "epochs": mean_fraction <= 0.6,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "keras": keras.__version__,
            "optuna": optuna.__version__,
        },
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(
        json.dumps(
            {k: result[k] for k in ("max_accuracy_gap", "mean_epoch_fraction", "meets_targets")}
        )
    )


if __name__ == "__main__":
    main()

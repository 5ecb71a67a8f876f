"""The whole default job, the old way against the new way, side by side in one run.

Both sides run `attn-search run`'s default job (digits, the default space, Optuna TPE + median
pruning, 10 trials, 2 finalists x 5 seeds: the same trials, finalists and repeats) through
`run_search`, each in a fresh process. The new way is the default code path. The old way is the
same code with its private reference switches set (`attn_search.runner._reference.use(True)`):
each finalist network fitted alone, one after the other, Keras' own optimizer updates, Keras'
own seeding (which clears TensorFlow's compiled functions), Keras' own step functions,
TensorFlow's graph optimizer on, and the search trials' training as it was before the
profile-driven fixes (see that module). The two sides train the same networks on the same
batches, so their results agree up to float rounding (checked here: the largest difference in
the finalists' test accuracy and in the trials' best validation accuracy is written beside the
times). A rounding difference can still move a pruning decision or the ranking of two close
trials, so each side's work (its trials' epochs, its finalists, their sizes and epochs) is
written beside its time too.

The machine's speed drifts (2 cores, sometimes shared), so the sides are interleaved
(old, new, then new, old, ... over `--pairs` pairs) and the figure is the ratio of the total
wall times of `run_search`, measured in each side's process; the process wall times (start-up
and imports included) are written too. Target: new / old <= 0.5.

Run:

    .venv/bin/python benchmarks/bench_main_job.py     # -> results/bench_main_job.json
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


def _side(which: str, out: str) -> None:
    """Runs in a fresh process: one side's whole default job; prints its timings as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from attn_search.runner import RunConfig, _reference, run_search

    _reference.use(which == "old")
    t0 = time.perf_counter()
    run_search(RunConfig(dataset="digits", out=out, quiet=True))
    seconds = time.perf_counter() - t0
    with open(os.path.join(out, "run.json")) as f:
        timings = json.load(f)["timings"]
    print(json.dumps({"run_search_seconds": seconds, **timings, **_work(out)}))


def _work(out: str) -> dict:
    """What a side trained: the run's search and finalists depend on float rounding (a pruning
    decision, the ranking of two close trials), so each side's work is written beside its time."""
    import pandas as pd

    board = pd.read_csv(os.path.join(out, "leaderboard.csv"))
    with open(os.path.join(out, "finalists.json")) as f:
        runs = json.load(f)["runs"]
    finalists = sorted({r["trial_id"] for r in runs})
    params = dict(zip(board["trial_id"], board["params"], strict=True))
    return {
        "trial_epochs": int(board["epochs"].sum()),
        "finalists": finalists,
        "finalist_params": [int(params[t]) for t in finalists if t in params],
        "finalist_epochs": int(sum(r["epochs"] for r in runs)),
    }


def _results(out: str) -> tuple[dict, dict]:
    """The finalists' test accuracy per (trial, family, seed) and each trial's best val acc."""
    import pandas as pd

    with open(os.path.join(out, "finalists.json")) as f:
        runs = json.load(f)["runs"]
    fits = {(r["trial_id"], r["family"], r["seed"]): r["test_accuracy"] for r in runs}
    board = pd.read_csv(os.path.join(out, "leaderboard.csv"))
    trials = dict(zip(board["trial_id"], board["best_val_accuracy"], strict=True))
    return fits, trials


def _largest_difference(a: dict, b: dict) -> float | None:
    if set(a) != set(b):
        return None
    diffs = [abs(a[k] - b[k]) for k in a if a[k] is not None and b[k] is not None]
    return max(diffs, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1, help="old/new pairs (default 1)")
    parser.add_argument("--out", default="results/bench_main_job.json")
    parser.add_argument("--side", choices=["old", "new"], help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        _side(args.side, args.run_dir)
        return

    order = []
    for i in range(args.pairs):
        order += ["old", "new"] if i % 2 == 0 else ["new", "old"]
    sides: dict[str, list[dict]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k, which in enumerate(order):
            run_dir = os.path.join(tmp, f"{which}-{k}")
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--side", which, "--run-dir", run_dir],
                capture_output=True,
                text=True,
                check=True,
            )
            process_seconds = time.perf_counter() - t0
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            measured["process_seconds"] = process_seconds
            sides[which].append(measured)
            print(which, json.dumps(measured), flush=True)
        old_fits, old_trials = _results(os.path.join(tmp, "old-0"))
        new_fits, new_trials = _results(os.path.join(tmp, f"new-{order.index('new')}"))

    def total(which: str, key: str) -> float:
        return sum(m[key] for m in sides[which])

    result = {
        "benchmark": "the default job (digits, 10 trials, 2 finalists x 5 seeds), old vs new",
        "command": "python benchmarks/bench_main_job.py"
        + (f" --pairs {args.pairs}" if args.pairs != 1 else ""),
        "note": (
            "Each side in a fresh process, interleaved (old, new, new, old, ...) on a 2-core "
            "machine (its load average at the end is below): absolute times vary with the load "
            "and drift, the ratio is the figure. ratio = new / old of the summed run_search "
            "wall times."
        ),
        "order": order,
        "old": sides["old"],
        "new": sides["new"],
        "ratio_run_search": total("new", "run_search_seconds") / total("old", "run_search_seconds"),
        "ratio_process": total("new", "process_seconds") / total("old", "process_seconds"),
        "ratio_search": total("new", "search_seconds") / total("old", "search_seconds"),
        "ratio_finalists": total("new", "finalists_seconds") / total("old", "finalists_seconds"),
        "same_design": {
            "finalist_fits": len(new_fits),
            "max_abs_diff_finalist_test_accuracy": _largest_difference(old_fits, new_fits),
            "trials": len(new_trials),
            "max_abs_diff_trial_best_val_accuracy": _largest_difference(old_trials, new_trials),
        },
        "target": "ratio_run_search <= 0.5",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average_at_end": os.getloadavg(),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: result[k] for k in result if k.startswith("ratio")}, indent=2))


if __name__ == "__main__":
    main()

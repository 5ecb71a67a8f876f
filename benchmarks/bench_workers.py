"""Workers' worth: the same search on 1 worker and on 2 workers (`attn-search run --workers`).

Each round runs the same command twice, `--workers 1` (one process, the run folder's SQLite
study) and `--workers 2` (two processes on a journal file study), in alternating order (A B,
B A, ...) so that the machine's load, shared and busy, falls on both alike. Same dataset,
space, seed, number of search trials and epochs; no finalists (the search is what workers
split). Measured per run: the wall time of the whole command (process start included) and the
search trials finished per minute; per round: the wall-time ratio 2 workers / 1 worker.

Run:

    .venv/bin/python benchmarks/bench_workers.py          # -> results/bench_workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(workers: int, args: argparse.Namespace, out: pathlib.Path) -> dict:
    command = [
        sys.executable, "-m", "attn_search", "run", "--dataset", "digits",
        "--limit", str(args.limit), "--trials", str(args.trials),
        "--max-epochs", str(args.epochs), "--finalists", "0", "--sampler", "random",
        "--pruner", "none", "--seed", "0", "--workers", str(workers), "--out", os.fspath(out),
        "--quiet",
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"workers={workers} failed:\n{done.stdout}\n{done.stderr}")
    from attn_search.leaderboard import read_leaderboard

    board = read_leaderboard(out)
    finished = int(board["status"].isin(["complete", "pruned", "skipped", "failed"]).sum())
    return {
        "workers": workers,
        "seconds": round(seconds, 1),
        "trials": finished,
        "trials_per_minute": round(60 * finished / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--out", default=os.fspath(ROOT / "results" / "bench_workers.json"))
    args = parser.parse_args()
    runs, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            pair = {w: _run(w, args, pathlib.Path(tmp) / f"r{r}-w{w}") for w in order}
            runs += [{"round": r, **pair[w]} for w in order]
            ratios.append(round(pair[2]["seconds"] / pair[1]["seconds"], 3))
            print(f"round {r}: {pair[1]} | {pair[2]} | ratio {ratios[-1]}", flush=True)
    per = {
        w: statistics.median(x["trials_per_minute"] for x in runs if x["workers"] == w)
        for w in (1, 2)
    }
    result = {
        "command": " ".join(["python benchmarks/bench_workers.py", *sys.argv[1:]]),
        "what": "the same search (digits, default space, random sampler, no pruning, no "
        "finalists) on 1 worker and on 2 workers, rounds alternating the order",
        "settings": vars(args) | {"out": None},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "Wall times include starting the processes (TensorFlow's import). The machine "
        "is shared and busy: compare the ratio within a round, not absolute times across runs.",
        "runs": runs,
        "wall_ratio_2_over_1": ratios,
        "wall_ratio_median": statistics.median(ratios),
        "trials_per_minute_median": {"1 worker": per[1], "2 workers": per[2]},
    }
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_ratio_2_over_1", "trials_per_minute_median")}))


if __name__ == "__main__":
    main()

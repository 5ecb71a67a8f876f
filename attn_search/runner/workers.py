"""Several worker processes on one machine, sharing one study: `attn-search run --workers N`.

`run_workers(config)` starts N processes (`python -m attn_search.runner._worker`, each handed
its configuration on stdin), each an ordinary run (`run_search`) in its own folder
`<run folder>/workers/worker-<i>`, all joined to one Optuna study: by default a journal file
in the run folder (`study.journal`, Optuna's storage for processes of one machine), or the
storage the user gave (`--storage`, `$ATTN_SEARCH_STORAGE`), passed to the workers in their
environment so that no password appears in a process list. The CPU threads are split between
the workers; on a machine with GPUs each worker sees its own (`CUDA_VISIBLE_DEVICES`, in
turn). Ctrl-C reaches every worker once (each marks its trial for a re-run and writes its
tables). At the end the run folder gets the tables, finalists.json and the best model,
derived from the storage (`tables_from_storage`, which `attn-search leaderboard --storage`
also uses).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any

from attn_search.engines._optuna_storage import JOURNAL, STORAGE_ENV, storage_url
from attn_search.errors import AttnSearchError, ConfigError, RunDirError
from attn_search.formatting import mask_url
from attn_search.runfolder import RunFolder, RunLog, new_run_name
from attn_search.runner.config import RunConfig, field_names

__all__ = ["JOURNAL_FILE", "WORKERS_DIR", "run_workers", "tables_from_storage"]

JOURNAL_FILE = "study.journal"
WORKERS_DIR = "workers"


def run_workers(config: RunConfig, progress: Any) -> Any:
    """Runs `config.workers` worker processes on one study; returns the `RunResult`.

    Raises:
        ConfigError: The configuration cannot be handed to other processes (an `Engine`
            object, KerasTuner, a dataset or space given as an object).
        RunDirError: The run folder holds a run and neither `resume` nor `overwrite` is set.
        AttnSearchError: A worker failed (its output is in `workers/worker-<i>.log`).
        KeyboardInterrupt: Ctrl-C, after every worker stopped and the tables were written.
    """
    _check_spawnable(config)
    dataset = pathlib.Path(os.fspath(config.dataset)).name
    folder = (
        RunFolder(config.out)
        if config.out is not None
        else new_run_name(pathlib.Path("results"), dataset)
    )
    out = folder.path.resolve()
    url = storage_url(config.storage) or f"{JOURNAL}{out / JOURNAL_FILE}"
    _prepare(folder, config, url)
    progress.note(
        f"Starting {config.workers} workers on one study ({mask_url(url)}) -> {folder.path}"
    )
    log = RunLog(folder, resumed=config.resume)
    log.write("running")
    procs = [_start(config, out, url, i) for i in range(1, config.workers + 1)]
    interrupted = False
    try:
        for proc, _ in procs:
            proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # once: a second one could cut its cleanup
        for proc, _ in procs:
            proc.wait()
    for _, reader in procs:
        reader.join(timeout=10)
    codes = [proc.returncode for proc, _ in procs]
    result = _gather(config, folder, url, log, codes, interrupted, progress)
    if interrupted:
        raise KeyboardInterrupt
    failed = [(i, code) for i, code in enumerate(codes, start=1) if code != 0]
    if failed:
        i, code = failed[0]
        raise AttnSearchError(
            f"Worker {i} stopped with exit code {code}: its output is in "
            f"{folder.path / WORKERS_DIR / f'worker-{i}.log'}; the tables in {folder.path} hold "
            "every trial the workers finished."
        )
    return result


def _check_spawnable(config: RunConfig) -> None:
    if not isinstance(config.engine, str) or config.engine.strip().lower() != "optuna":
        raise ConfigError(
            "`workers` above 1 needs the Optuna engine (engine='optuna'), whose storage the "
            "workers share; for KerasTuner start a chief and workers with KerasTuner's "
            f"variables (README: Scaling out). Received: workers={config.workers}, "
            f"engine={config.engine!r}"
        )
    for name in ("dataset", "space", "sampler", "pruner"):
        value = getattr(config, name)
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(
                f"`{name}` must be a name or a path when `workers` is above 1 (each worker "
                f"process loads it again). Received: {name}={type(value).__name__}, "
                f"workers={config.workers}"
            )


def _prepare(folder: RunFolder, config: RunConfig, url: str) -> None:
    """Creates the run folder, or empties it (`overwrite`), or checks it may be resumed."""
    workers = folder.path / WORKERS_DIR
    used = workers.exists() or (folder.path / JOURNAL_FILE).exists() or folder.is_run()
    if used and config.overwrite:
        shutil.rmtree(workers, ignore_errors=True)
        for name in (JOURNAL_FILE, "leaderboard.csv", "comparison.csv", "finalists.json"):
            (folder.path / name).unlink(missing_ok=True)
        if not url.startswith(JOURNAL + os.fspath(folder.path.resolve())):
            _delete_study(url, config.study)
    elif used and not config.resume:
        raise RunDirError(
            f"`out` already holds a run ({folder.path}). Pass `resume=True` (--resume) to "
            "continue it, or `overwrite=True` (--overwrite) to replace it. "
            f"Received: out={os.fspath(config.out)!r}"
        )
    workers.mkdir(parents=True, exist_ok=True)


def _delete_study(url: str, study: str | None) -> None:
    """Deletes the study and its companion studies from an external storage (`overwrite`)."""
    import optuna

    from attn_search.engines._optuna_storage import open_storage

    storage = open_storage(url, pathlib.Path("."), on_stale=lambda *_: None)
    name = study or "attn-search"
    for other in optuna.get_all_study_names(storage):
        if other == name or other.startswith(name + "."):
            optuna.delete_study(study_name=other, storage=storage)


def _worker_env(config: RunConfig, url: str, i: int) -> dict[str, str]:
    env = {**os.environ, STORAGE_ENV: url, "TF_CPP_MIN_LOG_LEVEL": "2"}
    threads = str(max(1, (os.cpu_count() or 1) // config.workers))
    env.update(
        TF_NUM_INTRAOP_THREADS=threads,
        TF_NUM_INTEROP_THREADS="1" if threads == "1" else "2",
        OMP_NUM_THREADS=threads,
    )
    gpus = visible_gpus()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[(i - 1) % len(gpus)]
    return env


def visible_gpus() -> list[str]:
    """The GPUs this machine shows (`CUDA_VISIBLE_DEVICES` if set, else `nvidia-smi -L`)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def _start(config: RunConfig, out: pathlib.Path, url: str, i: int):
    sub = out / WORKERS_DIR / f"worker-{i}"
    values = {name: getattr(config, name) for name in field_names()}
    values.update(
        out=os.fspath(sub),
        workers=1,
        storage=None,  # in the environment: never on a command line
        overwrite=False,
        resume=bool(config.resume and (sub / "config.yaml").exists()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "attn_search.runner._worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_worker_env(config, url, i),
        start_new_session=True,  # Ctrl-C reaches the parent, which forwards it once
        text=True,
    )
    proc.stdin.write(json.dumps(values, default=_plain))
    proc.stdin.close()
    reader = threading.Thread(
        target=_relay, args=(proc, out / WORKERS_DIR / f"worker-{i}.log", i, config.quiet)
    )
    reader.start()
    return proc, reader


def _plain(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else list(value)


def _relay(proc: subprocess.Popen, log_path: pathlib.Path, i: int, quiet: bool) -> None:
    """Copies a worker's output to its log, and to this process's output with its number."""
    with open(log_path, "a", encoding="utf-8") as log:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if not quiet:
                print(f"[worker {i}] {line}", end="", flush=True)


def _write_report(folder: RunFolder, progress: Any) -> None:
    """The run's report; the run's results never depend on it."""
    from attn_search.report import write_report
    from attn_search.runner.progress import error_text

    try:
        write_report(folder.path)
    except Exception as error:  # noqa: BLE001 - the tables and model are already written
        progress.note(f"Report skipped: {error_text(error)}")


def _gather(config, folder: RunFolder, url: str, log: RunLog, codes, interrupted: bool, progress):
    """Writes the run folder's tables, finalists.json, config.yaml and best model from the
    storage and the workers' folders; returns the `RunResult`."""
    from attn_search.comparison import verdict_sentences
    from attn_search.runner import RunResult
    from attn_search.runner._shared_finalists import STAGE, stored_fits

    workers = [
        RunFolder(folder.path / WORKERS_DIR / f"worker-{i}") for i in range(1, len(codes) + 1)
    ]
    board = comparison = None
    verdict: list[str] = []
    try:
        board, comparison = tables_from_storage(url, config.study)
        folder.write_tables(board, comparison)
        from attn_search.engines import OptunaEngine

        engine = OptunaEngine.attach(url, config.study)
        folder.write_finalists(stored_fits(engine.stored_units(STAGE)))
        engine.close()
        if config.finalists:
            verdict = verdict_sentences(comparison)
    except ConfigError:
        pass  # no study yet: every worker stopped before opening it
    _copy_best(folder, workers)
    config_yaml = workers[0].path / "config.yaml"
    if config_yaml.is_file():
        shutil.copyfile(config_yaml, folder.path / "config.yaml")
    statuses = [w.read_run_info().get("status") for w in workers]
    status = (
        "interrupted"
        if interrupted
        else "failed"
        if any(codes)
        else ("stopped" if "stopped" in statuses else "complete")
    )
    sessions = [
        {"worker": w.path.name, "exit_code": code, "status": s}
        for w, code, s in zip(workers, codes, statuses, strict=True)
    ]
    log.write(status, workers=sessions, verdict=verdict)
    if status in ("complete", "stopped") and board is not None:
        _write_report(folder, progress)
    best = folder.best_model_path
    return RunResult(
        run_dir=folder.path,
        leaderboard=board,
        comparison=comparison,
        best_model_path=best if best.exists() else None,
        status=status,
        verdict=verdict,
    )


def _copy_best(folder: RunFolder, workers: list[RunFolder]) -> None:
    """Copies the best of the workers' best models (by validation accuracy, then trial)."""
    best = None
    for w in workers:
        info = w.read_run_info().get("best_model") or {}
        acc = info.get("best_val_accuracy")
        if acc is not None and w.best_model_path.is_file():
            key = (float(acc), -int(info.get("trial_id", 0)))
            if best is None or key > best[0]:
                best = (key, w)
    if best is not None:
        shutil.copyfile(best[1].best_model_path, folder.best_model_path)


def tables_from_storage(storage: str | None, study: str | None = None):
    """The leaderboard and comparison of a study, from its storage alone.

    Args:
        storage: The study's storage URL (`None`: `$ATTN_SEARCH_STORAGE`).
        study: The study's name. Defaults to `None` (`"attn-search"`).

    Returns:
        `(leaderboard, comparison)` DataFrames, as every worker's leaderboard.csv and
        comparison.csv hold them at the end of the run.

    Raises:
        ConfigError: No storage given, it cannot be opened, or it holds no such study.
    """
    from attn_search import leaderboard as lb
    from attn_search.engines import OptunaEngine
    from attn_search.runner import planning
    from attn_search.runner._shared_finalists import STAGE, stored_fits
    from attn_search.runner.finalists import current_fits

    if storage_url(storage) is None:
        raise ConfigError(
            "`storage` is required to read a study without its run folder: pass RUN_DIR, or "
            "--storage URL (storage= in Python), or set ATTN_SEARCH_STORAGE. "
            "Received: storage=None"
        )
    engine = OptunaEngine.attach(storage, study)
    try:
        records = engine.records()
        shared = engine.shared_config() or {}
        families = ("attention", *((shared.get("baselines") or {}).get("families") or ()))
        n = int((shared.get("budget") or {}).get("finalists") or 0)
        chosen = planning.choose_finalists(records, n)
        fits = current_fits(stored_fits(engine.stored_units(STAGE)), chosen)
        board = lb.records_to_frame(records)
        return board, lb.comparison_frame(board, fits, families)
    finally:
        engine.close()

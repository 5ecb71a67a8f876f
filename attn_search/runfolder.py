"""`RunFolder`: the one owner of a run folder's files, their names, formats and schema.

Everything that reads or writes a run folder (the runner, export, the report, the CLI) goes
through this module; no other module spells a file name of the folder.

A run folder holds:

- `config.yaml`: the resolved configuration (`dataset`, `space`, `engine`, `seed`,
  `max_epochs`, `budget`, `seeds`, `baselines`, `run`); the keys in `IDENTITY` must agree for
  a folder to be resumed.
- `run.json`: the run's state, one key per entry of `RUN_SCHEMA` below (what each holds).
- `finalists.json`: `{"runs": [...]}`, one entry per finalist fit (`finalist`, `trial_id`,
  `family`, `seed`, `placement`, `test_accuracy`, `test_loss`, `val_accuracy`, `params`,
  `epochs`, `gammas`, `train_seconds`, `error`, and `trained_with`: the families of its fit
  group, trained together, whose wall time `train_seconds` is).
- `leaderboard.csv`, `comparison.csv` (see `attn_search.leaderboard`), `best_model.keras`,
  the engine's storage (its `Engine.files`: `study.db` or `keras_tuner/`), the report's files,
  `export/` (exports written without a destination), and `cache/` (a streamed dataset's decoded
  images with `--cache`; deleted at the end of the run unless `--keep-cache`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attn_search._atomic import atomic_path, write_text_atomic
from attn_search.engines import ENGINES, engine_class
from attn_search.errors import RunDirError
from attn_search.formatting import mask_url
from attn_search.leaderboard import (
    COMPARISON_FILE,
    LEADERBOARD_FILE,
    read_comparison,
    read_leaderboard,
    write_table,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "IDENTITY",
    "RUN_SCHEMA",
    "RunFolder",
    "RunLog",
    "latest_run",
    "new_run_name",
    "now",
]

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
FINALISTS_FILE = "finalists.json"
BEST_MODEL_FILE = "best_model.keras"
REPORT_FILES = (
    "report.md", "report.html", "report_verdict.png", "report_finalists.png", "report_families.png",
    "report_tradeoff.png", "report_history.png", "report_gamma.png", "report_attention.png",
)  # fmt: skip
EXPORT_DIR = "export"
EXPLAIN_DIR = "explain"  # `attn-search explain` without --out
CACHE_DIR = "cache"  # decoded images of a streamed dataset (`--cache`)
#: The default file name of each export format.
EXPORT_NAMES = {
    "keras": BEST_MODEL_FILE,
    "savedmodel": "best_savedmodel",
    "tflite": "best_model.tflite",
}
#: Files whose presence marks a folder as a run folder.
MARKERS = (RUN_FILE, CONFIG_FILE, LEADERBOARD_FILE, BEST_MODEL_FILE)
#: What `overwrite` deletes from a run folder: the run's own files, never anything else there.
OUTPUTS = (
    LEADERBOARD_FILE,
    COMPARISON_FILE,
    BEST_MODEL_FILE,
    CONFIG_FILE,
    RUN_FILE,
    FINALISTS_FILE,
    CACHE_DIR,
    *REPORT_FILES,
    *(name for engine in ENGINES for name in engine_class(engine).files),  # their storage
)
#: config.yaml keys that must agree for a folder to be resumed.
IDENTITY = ("dataset", "space", "engine", "seed", "max_epochs", "cv")
#: run.json's top-level keys and what they hold (the report reads these, nothing else).
RUN_SCHEMA = {
    "status": "running, complete, stopped, interrupted or failed",
    "run_dir": "the run folder",
    "updated_at": "ISO time of the last write",
    "versions": "python, attn-search, tensorflow, keras, ... and keras_backend",
    "command": "the command line (passwords in URLs masked)",
    "sessions": "one dict per process: started_at, finished_at, pid, status, timings",
    "timings": "the last session's search_seconds, finalists_seconds, total_seconds",
    "trials": "a count of trials per status",
    "stopped_by": "time_budget, engine or null",
    "best_trial": "trial_id, family, placements, best_val_accuracy",
    "best_model": "file, trial_id, family, best_val_accuracy",
    "finalist_fits": "the number of finalist fits recorded",
    "verdict": "the answer in words: one sentence per finalist and baseline twin",
    "warnings": "what the run warned about at its end (e.g. undertrained models)",
    "error": "the error of a failed run",
    "workers": "--workers N's run folder only: each worker's folder, exit_code and status",
}


def now() -> str:
    """The current UTC time as ISO text, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """A run folder: where each file is, and reading and writing it.

    Args:
        path: The folder (it need not exist yet).

    Example:

    >>> folder = RunFolder("results/digits-20260101-120000")
    >>> folder.best_model_path.name
    'best_model.keras'
    """

    def __init__(self, path: os.PathLike | str):
        self.path = pathlib.Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({os.fspath(self.path)!r})"

    # --- finding a folder ---------------------------------------------------------------------
    @classmethod
    def existing(cls, run_dir: Any) -> RunFolder:
        """The run folder `run_dir` (a path or a `RunResult`), checked to be one.

        Raises:
            RunDirError: `run_dir` is not a path, does not exist, is a file, or holds none of
                a run's files.
        """
        run_dir = getattr(run_dir, "run_dir", run_dir)
        if not isinstance(run_dir, (str, os.PathLike)):
            raise RunDirError(
                "`run_dir` must be a path to a run folder or a RunResult. "
                f"Received: run_dir={run_dir!r}"
            )
        path = pathlib.Path(run_dir).expanduser()
        if not path.exists():
            raise RunDirError(f"`run_dir` does not exist. Received: run_dir='{path}'")
        if not path.is_dir():
            raise RunDirError(
                f"`run_dir` must be a run folder, not a file. Received: run_dir='{path}'"
            )
        folder = cls(path)
        if not folder.is_run():
            raise RunDirError(
                "`run_dir` is not an attn-search run folder (it has no run.json, config.yaml, "
                f"leaderboard.csv or best_model.keras). Received: run_dir='{path}'"
            )
        return folder

    def is_run(self) -> bool:
        """Whether the folder holds any of a run's marker files."""
        return any((self.path / marker).exists() for marker in MARKERS)

    # --- paths --------------------------------------------------------------------------------
    @property
    def best_model_path(self) -> pathlib.Path:
        return self.path / BEST_MODEL_FILE

    def export_path(self, format: str) -> pathlib.Path:
        """Where an export in `format` goes when no destination is given: `export/` here."""
        return self.path / EXPORT_DIR / EXPORT_NAMES[format]

    @property
    def explain_dir(self) -> pathlib.Path:
        """Where `attn-search explain` writes its pictures when no `--out` is given."""
        return self.path / EXPLAIN_DIR

    @property
    def cache_dir(self) -> pathlib.Path:
        """Where `--cache` keeps a streamed dataset's decoded images (`Dataset.cached`)."""
        return self.path / CACHE_DIR

    def remove_cache(self) -> None:
        """Deletes the cache of decoded images, if any."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def report_path(self, name: str) -> pathlib.Path:
        """The path of one of the report's files (`REPORT_FILES`)."""
        if name not in REPORT_FILES:
            raise ValueError(f"`name` must be one of {REPORT_FILES}. Received: name={name!r}")
        return self.path / name

    # --- opening for a run --------------------------------------------------------------------
    def open_for_run(self, resolved: Mapping[str, Any], *, overwrite: bool, where: str) -> bool:
        """Makes the folder ready for a run of configuration `resolved`.

        An empty or new folder is created. A folder holding a run with the same identity
        (`IDENTITY`) is resumed; with `overwrite` the run's own files (`OUTPUTS`) are deleted
        first, and nothing else.

        Args:
            resolved: The resolved configuration (what config.yaml will hold).
            overwrite: Delete the run the folder holds.
            where: The folder as the user gave it, for messages.

        Returns:
            Whether the folder holds an earlier run that this one continues.

        Raises:
            RunDirError: The path is a file, the folder holds files but no run, or a run with
                another configuration.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"`out` must be a folder, not a file. Received: out={where!r}")
        resumed = False
        if self.path.is_dir() and any(self.path.iterdir()):
            saved = self.read_config()
            if overwrite:
                self.clear()
            elif saved is None:
                raise RunDirError(
                    "`out` holds files but no run (no readable config.yaml); choose an empty or "
                    "new folder, or pass overwrite=True to write the run there. "
                    f"Received: out={where!r}"
                )
            else:
                was, now = _identity(saved), _identity(resolved)
                diffs = [k for k in IDENTITY if _canon(was[k]) != _canon(now[k])]
                if diffs:
                    detail = "; ".join(
                        f"{k}: {_brief(was[k])} there, {_brief(now[k])} here" for k in diffs
                    )
                    raise RunDirError(
                        f"`out` holds a run with another configuration ({detail}). Resume it "
                        "with the same configuration, choose another folder, or pass "
                        f"overwrite=True to replace it. Received: out={where!r}"
                    )
                resumed = True
        self.path.mkdir(parents=True, exist_ok=True)
        return resumed

    def clear(self) -> None:
        """Deletes the run's own files (`OUTPUTS`); anything else in the folder stays."""
        for name in OUTPUTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    # --- config.yaml --------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any] | None:
        """The resolved configuration, or `None` when config.yaml is missing or unreadable."""
        import yaml

        try:
            data = yaml.safe_load((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    def write_config(self, resolved: Mapping[str, Any]) -> None:
        import yaml

        write_text_atomic(
            self.path / CONFIG_FILE,
            "# attn-search run configuration (resolved). Re-run the same configuration on this\n"
            "# folder to resume it.\n" + yaml.safe_dump(dict(resolved), sort_keys=False),
        )

    # --- run.json -----------------------------------------------------------------------------
    def read_run_info(self) -> dict[str, Any]:
        """run.json as a dict (`RUN_SCHEMA`); `{}` when it is missing or unreadable."""
        return _read_json(self.path / RUN_FILE)

    def write_run_info(self, info: Mapping[str, Any]) -> None:
        _write_json(self.path / RUN_FILE, info)

    # --- finalists.json -----------------------------------------------------------------------
    def read_finalists(self) -> list[dict[str, Any]]:
        """The finalist fits recorded so far (an empty list when there are none)."""
        runs = _read_json(self.path / FINALISTS_FILE).get("runs", [])
        return [dict(r) for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []

    def write_finalists(self, runs: list[dict[str, Any]]) -> None:
        _write_json(self.path / FINALISTS_FILE, {"runs": runs})

    # --- tables -------------------------------------------------------------------------------
    def write_tables(self, board: pd.DataFrame, comparison: pd.DataFrame) -> None:
        write_table(board, self.path / LEADERBOARD_FILE)
        write_table(comparison, self.path / COMPARISON_FILE)

    def read_leaderboard(self) -> pd.DataFrame:
        return read_leaderboard(self.path)

    def read_comparison(self) -> pd.DataFrame:
        return read_comparison(self.path)

    def read_table(self, which: str) -> pd.DataFrame | None:
        """`"leaderboard"` or `"comparison"`, or `None` when missing or unreadable."""
        try:
            return self.read_leaderboard() if which == "leaderboard" else self.read_comparison()
        except (RunDirError, ValueError, OSError):
            return None

    # --- the best model -----------------------------------------------------------------------
    def save_best_model(self, model: Any) -> None:
        """Saves `model` as best_model.keras atomically (a reader never sees half a file)."""
        with atomic_path(self.best_model_path, suffix=".keras") as tmp:
            model.save(tmp)


def latest_run(results: pathlib.Path, dataset_name: str) -> RunFolder | None:
    """The most recently changed run of `dataset_name` in `results`, if any."""
    if not results.is_dir():
        return None
    runs = sorted(
        (p for p in results.glob(f"{dataset_name}-*") if (p / CONFIG_FILE).is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    return RunFolder(runs[-1]) if runs else None


def new_run_name(results: pathlib.Path, dataset_name: str) -> RunFolder:
    """A fresh `results/<dataset>-<timestamp>[-n]` folder name (not created)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(dataset_name))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = results / f"{safe or 'run'}-{stamp}", 1
    while path.exists():
        n += 1
        path = results / f"{safe or 'run'}-{stamp}-{n}"
    return RunFolder(path)


class RunLog:
    """run.json for one process: the sessions list and the run's state, rewritten on change.

    Args:
        folder: The run folder.
        resumed: Whether the run continues an earlier one (its sessions are kept).
    """

    def __init__(self, folder: RunFolder, *, resumed: bool):
        self.folder = folder
        self.info = folder.read_run_info() if resumed else {}
        if not isinstance(self.info.get("sessions"), list):
            self.info["sessions"] = []
        self.session: dict[str, Any] = {"started_at": now(), "pid": os.getpid()}
        self.info["sessions"].append(self.session)

    def write(self, status: str, **fields: Any) -> None:
        """Sets the status (of the run and this session) and `fields`, then writes run.json."""
        self.session.update(status=status, finished_at=now() if status != "running" else None)
        self.info.update(
            status=status,
            run_dir=os.fspath(self.folder.path),
            updated_at=now(),
            versions=_versions(),
            command=[mask_url(a) for a in sys.argv],
            **fields,
        )
        self.folder.write_run_info(self.info)


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: pathlib.Path, data: Any) -> None:
    from attn_search.engines.base import clean_record

    write_text_atomic(path, json.dumps(clean_record(data), indent=2) + "\n")


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """A config.yaml's `IDENTITY` values; of `cv` only its folds (`repeats` may grow)."""
    values = {k: config.get(k) for k in IDENTITY}
    values["cv"] = int((config.get("cv") or {}).get("k") or 0)
    return values


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        if "name" in value and len(value) > 2:
            return repr(value.get("name")) + " (" + ", ".join(sorted(value)[:3]) + ", ...)"
        return json.dumps(value, sort_keys=True, default=str)
    return repr(value)


_VERSIONED = ("attn-search", "tensorflow", "keras", "keras-tuner", "optuna", "numpy", "pandas")


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md
    import platform

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (*_VERSIONED, "scipy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    import keras

    out["keras_backend"] = keras.backend.backend()
    return out

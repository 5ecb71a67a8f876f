"""The search runner: dataset + search space + engine + budget -> a run folder of answers.

`run_search(config)` is the product's main job (`attn-search run` is a thin layer over it):

1. load the dataset and the search space, and open (or reopen) the run folder;
2. search: trial 0 is the plain backbone with default values, a share of the trials
   (`baseline_share` of the space) goes to plain and matched twins of the best attention
   configurations so far, the engine proposes everything else; each trial trains with early
   stopping on validation loss, fails alone (NaN, out of memory, any exception) and is
   recorded in the engine's storage; the tables are rewritten after every trial;
3. finalists: the top attention configurations are retrained from scratch with `repeats`
   seeds beside their plain and matched twins on the same seeds, and evaluated once on the
   test split;
4. write `leaderboard.csv`, `comparison.csv`, `best_model.keras`, `config.yaml`, `run.json`.

This module imports no TensorFlow, Keras or engine library at import time, so building and
validating a `RunConfig` is instant.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import pathlib
import platform
import shutil
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from attn_search._atomic import atomic_path, write_text_atomic
from attn_search.engines.base import (
    ENGINES,
    Engine,
    EngineTrial,
    TrialPlan,
    clean_record,
    get_engine,
)
from attn_search.errors import AttnSearchError, ConfigError, RunDirError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["RunConfig", "RunResult", "run_search", "ProgressPrinter"]

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
FINALISTS_FILE = "finalists.json"
BEST_MODEL_FILE = "best_model.keras"
# What `overwrite` deletes from a run folder: the run's own files, never anything else there.
_OUTPUTS = (
    "leaderboard.csv",
    "comparison.csv",
    BEST_MODEL_FILE,
    CONFIG_FILE,
    RUN_FILE,
    FINALISTS_FILE,
    "study.db",
    "keras_tuner",
    "report.md",
    "report_families.png",
    "report_attention.png",
)
# config.yaml keys that must agree for a folder to be resumed.
_IDENTITY = ("dataset", "space", "engine", "seed", "max_epochs")


@dataclasses.dataclass
class RunConfig:
    """Everything a search run needs; validated without importing TensorFlow.

    Args:
        dataset: A built-in dataset name, a folder of images, an .npz file (see
            `attn_search.load_dataset`), or a `Dataset`. Defaults to `"digits"`.
        space: A shipped search space name, a YAML path, a dict or a `SearchSpace`.
            Defaults to `"default"`.
        engine: `"optuna"` or `"keras-tuner"`, or an `Engine`. Defaults to `"optuna"`.
        tuner: KerasTuner's search: `"random"`, `"bayesian"`, `"hyperband"` or `"grid"`.
            Defaults to `"random"`.
        sampler: Optuna's sampler: `"tpe"` (seeded), `"random"`, `"cmaes"`, `"qmc"`, `"gp"`.
            Defaults to `"tpe"`.
        pruner: Optuna's pruner: `"median"`, `"hyperband"`, `"successive-halving"`,
            `"none"`. Defaults to `"median"`.
        trials: Number of search trials, baselines included. Defaults to 10.
        max_epochs: Cap on the epochs of any one fit. Defaults to `None` (the space's
            `training.epochs`).
        time_budget: Seconds after which no new search trial starts (the finalists still
            run). Defaults to `None` (no limit).
        seed: Seed of the data split, the engine's sampler and every model. Defaults to 0.
        finalists: How many attention configurations are retrained with repeats. Defaults
            to 3.
        repeats: Seeds per finalist (and per twin). Defaults to 3.
        out: The run folder. Defaults to `None`: `results/<dataset>-<timestamp>/`.
        resume: Continue an earlier run with the same configuration: the one in `out`, or
            without `out` the latest in `results/` for the same dataset. Defaults to `False`.
        overwrite: Replace whatever run `out` holds. Defaults to `False`.
        storage: Optuna storage URL (e.g. `postgresql://...` for several workers). Defaults
            to `None`: `study.db` in the run folder.
        study: Optuna study name. Defaults to `None` (`"attn-search"`).
        limit: Cap on the number of examples loaded (quick runs). Defaults to `None`.
        image_size: `(height, width)` to resize images to. Defaults to `None`.
        skip_corrupt: Skip unreadable images in a folder dataset (with a warning that counts
            them) instead of stopping. Defaults to `False`.
        memory_budget_mb: Budget for attention maps; larger configurations fail. Defaults to
            `None` (the hypermodel's default).
        max_consecutive_failures: The search stops after this many failed trials in a row.
            Defaults to 5.
        verbose: Keras' per-epoch output: 0 none, 1 progress bar, 2 one line per epoch.
            Defaults to 0.
        quiet: Print nothing (no progress lines). Defaults to `False`.

    Example:

    >>> config = RunConfig(dataset="digits", trials=4, finalists=1, repeats=2)
    >>> config.validate()
    """

    dataset: Any = "digits"
    space: Any = "default"
    engine: Any = "optuna"
    tuner: str = "random"
    sampler: str = "tpe"
    pruner: str = "median"
    trials: int = 10
    max_epochs: int | None = None
    time_budget: float | None = None
    seed: int = 0
    finalists: int = 3
    repeats: int = 3
    out: str | os.PathLike | None = None
    resume: bool = False
    overwrite: bool = False
    storage: str | None = None
    study: str | None = None
    limit: int | None = None
    image_size: tuple[int, int] | None = None
    skip_corrupt: bool = False
    memory_budget_mb: float | None = None
    max_consecutive_failures: int = 5
    verbose: int = 0
    quiet: bool = False

    def validate(self) -> None:
        """Checks every field; the first bad one raises.

        Raises:
            ConfigError: Naming the field and echoing its value.
        """
        from attn_search.engines.keras_tuner import TUNERS
        from attn_search.engines.optuna import PRUNERS, SAMPLERS

        if isinstance(self.dataset, str) and not self.dataset.strip():
            raise ConfigError(f"`dataset` must not be empty. Received: dataset={self.dataset!r}")
        if self.dataset is None:
            raise ConfigError("`dataset` must be a name, a path or a Dataset. Received: dataset=None")
        if self.space is None or (isinstance(self.space, str) and not self.space.strip()):
            raise ConfigError(
                f"`space` must be a space name, a YAML path or a dict. Received: space={self.space!r}"
            )
        if not isinstance(self.engine, Engine):
            key = self.engine.strip().lower().replace("_", "-") if isinstance(self.engine, str) else None
            if key not in (*ENGINES, "kerastuner"):
                raise ConfigError(
                    f"`engine` must be one of {', '.join(map(repr, ENGINES))}. "
                    f"Received: engine={self.engine!r}"
                )
        _choice("tuner", self.tuner, TUNERS)
        _choice("sampler", self.sampler, SAMPLERS)
        pruner = self.pruner.strip().lower().replace("_", "-") if isinstance(self.pruner, str) else self.pruner
        _choice("pruner", pruner, PRUNERS)
        _int("trials", self.trials, 1)
        _int("max_epochs", self.max_epochs, 1, optional=True)
        _number("time_budget", self.time_budget, optional=True)
        _int("seed", self.seed, 0)
        _int("finalists", self.finalists, 0)
        _int("repeats", self.repeats, 1)
        _int("limit", self.limit, 1, optional=True)
        _number("memory_budget_mb", self.memory_budget_mb, optional=True)
        _int("max_consecutive_failures", self.max_consecutive_failures, 1)
        if self.verbose not in (0, 1, 2) or isinstance(self.verbose, bool):
            raise ConfigError(f"`verbose` must be 0, 1 or 2. Received: verbose={self.verbose!r}")
        if self.image_size is not None:
            size = self.image_size
            if isinstance(size, int) and not isinstance(size, bool):
                size = (size, size)
            if not (
                isinstance(size, (tuple, list))
                and len(size) == 2
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
            ):
                raise ConfigError(
                    "`image_size` must be (height, width), two positive integers. "
                    f"Received: image_size={self.image_size!r}"
                )
        for name in ("resume", "overwrite", "skip_corrupt", "quiet"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"`{name}` must be True or False. Received: {name}={getattr(self, name)!r}"
                )
        if self.resume and self.overwrite:
            raise ConfigError(
                "`resume` and `overwrite` cannot both be set: resume continues the run in the "
                "folder, overwrite deletes it. Received: resume=True, overwrite=True"
            )
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise ConfigError(f"`out` must be a folder path. Received: out={self.out!r}")
        if self.storage is not None and (not isinstance(self.storage, str) or "://" not in self.storage):
            raise ConfigError(
                "`storage` must be an Optuna storage URL such as 'sqlite:///study.db' or "
                f"'postgresql://user:pass@host/db'. Received: storage={self.storage!r}"
            )
        if self.study is not None and (not isinstance(self.study, str) or not self.study.strip()):
            raise ConfigError(f"`study` must be a non-empty string. Received: study={self.study!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (objects such as a `Dataset` become their repr)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif not (value is None or isinstance(value, (str, int, float, bool, list, dict))):
                value = getattr(value, "name", None) or type(value).__name__
            out[f.name] = value
        return out


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise ConfigError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}. Received: {name}={value!r}"
        )


def _int(name: str, value: Any, low: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        rule = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(
            f"`{name}` must be {rule}{' or None' if optional else ''}. Received: {name}={value!r}"
        )


def _number(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"`{name}` must be a positive number{' or None' if optional else ''}. "
            f"Received: {name}={value!r}"
        )


@dataclasses.dataclass
class RunResult:
    """What `run_search` returns.

    Attributes:
        run_dir: The run folder.
        leaderboard: The leaderboard, best trial first (as in leaderboard.csv).
        comparison: The comparison (as in comparison.csv).
        best_model_path: `best_model.keras`, or `None` when no trial completed.
        status: `"complete"`, or `"stopped"` (the time budget or the engine ended the search
            before `trials`; the finalists still ran).
    """

    run_dir: pathlib.Path
    leaderboard: pd.DataFrame
    comparison: pd.DataFrame
    best_model_path: pathlib.Path | None
    status: str


# --------------------------------------------------------------------------------- progress
class ProgressPrinter:
    """One line per trial: k of N, the configuration in short, its result, best, time left.

    Args:
        total: The number of search trials.
        quiet: Print nothing. Defaults to `False`.
        stream: Where to print. Defaults to `sys.stdout`.
    """

    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None):
        self.total = total
        self.quiet = quiet
        self.stream = stream
        self.start = time.monotonic()
        self.done_here = 0
        self.seconds_here = 0.0

    def print(self, text: str) -> None:
        if not self.quiet:
            stream = self.stream or sys.stdout
            print(text, file=stream, flush=True)

    def trial(self, k: int, record: dict[str, Any], best: dict[str, Any] | None, seconds: float) -> None:
        self.done_here += 1
        self.seconds_here += seconds
        elapsed = time.monotonic() - self.start
        left = max(0, self.total - k)
        eta = self.seconds_here / self.done_here * left
        status = record.get("status", "?")
        acc = record.get("best_val_accuracy")
        result = f"val_acc {acc:.4f}" if isinstance(acc, (int, float)) and acc == acc else "val_acc -"
        if status != "complete":
            result += f" {status}"
        if status == "failed" and record.get("error"):
            result += f" ({_short(record['error'], 60)})"
        best_text = (
            f"best {best['best_val_accuracy']:.4f} (#{best['trial_id']} {best.get('family')})"
            if best
            else "best -"
        )
        width = len(str(self.total))
        self.print(
            f"[{k:>{width}}/{self.total}] #{record.get('trial_id')} {short_config(record)} | "
            f"{result} | {best_text} | {_clock(elapsed)} elapsed, ~{_clock(eta)} left"
        )


def short_config(record: Mapping[str, Any]) -> str:
    """`attention@2 heads=2 act=relu lr=0.0031 bs=32`: a trial's configuration in short."""
    hp = dict(record.get("hp") or {})
    family = record.get("family") or "?"
    places = record.get("placements")
    text = family
    if places:
        text += "@" + "+".join(str(p) for p in places)
    names = {
        "num_heads": "heads",
        "activation": "act",
        "gamma": "gamma",
        "kv_pool": "kv_pool",
        "train/learning_rate": "lr",
        "train/batch_size": "bs",
        "backbone/blocks": "blocks",
        "backbone/filters": "filters",
    }
    parts = []
    for suffix, short in names.items():
        for name, value in hp.items():
            if name == suffix or (name.startswith("attention/") and name.endswith("/" + suffix)):
                if isinstance(value, float):
                    value = f"{value:.3g}"
                parts.append(f"{short}={value}")
    if parts:
        text += " " + " ".join(parts[:7])
    return text


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# -------------------------------------------------------------------------------- run folder
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: pathlib.Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(clean_record(data), indent=2) + "\n")


def _read_yaml(path: pathlib.Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _identity_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    diffs = []
    for key in _IDENTITY:
        a, b = saved.get(key), current.get(key)
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            diffs.append(key)
    return diffs


def _latest_run(results: pathlib.Path, dataset_name: str) -> pathlib.Path | None:
    if not results.is_dir():
        return None
    runs = sorted(
        (p for p in results.glob(f"{dataset_name}-*") if (p / CONFIG_FILE).is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    return runs[-1] if runs else None


def _prepare_run_dir(config: RunConfig, resolved: dict[str, Any], dataset_name: str) -> tuple[pathlib.Path, bool]:
    """Returns the run folder and whether it continues an earlier run."""
    if config.out is not None:
        run_dir = pathlib.Path(config.out)
    elif config.resume:
        run_dir = _latest_run(pathlib.Path("results"), dataset_name)
        if run_dir is None:
            raise RunDirError(
                f"`resume` found no earlier run of dataset {dataset_name!r} in results/ "
                "(folders results/<dataset>-<timestamp> holding config.yaml); pass `out` to "
                f"name the run folder. Received: resume=True, out=None"
            )
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = pathlib.Path("results") / f"{_safe(dataset_name)}-{stamp}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = pathlib.Path("results") / f"{_safe(dataset_name)}-{stamp}-{n}"
    where = os.fspath(config.out if config.out is not None else run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"`out` must be a folder, not a file. Received: out={where!r}")
    resumed = False
    if run_dir.is_dir() and any(run_dir.iterdir()):
        saved = _read_yaml(run_dir / CONFIG_FILE)
        if config.overwrite:
            for name in _OUTPUTS:
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif not isinstance(saved, dict):
            raise RunDirError(
                "`out` holds files but no run (no readable config.yaml); choose an empty or new "
                f"folder, or pass overwrite=True to write the run there. Received: out={where!r}"
            )
        else:
            diffs = _identity_diff(saved, resolved)
            if diffs:
                detail = "; ".join(
                    f"{k}: {_brief(saved.get(k))} there, {_brief(resolved.get(k))} here" for k in diffs
                )
                raise RunDirError(
                    f"`out` holds a run with another configuration ({detail}). Resume it with "
                    "the same configuration, choose another folder, or pass overwrite=True to "
                    f"replace it. Received: out={where!r}"
                )
            resumed = True
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, resumed


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        if "name" in value and len(value) > 2:
            return repr(value.get("name")) + " (" + ", ".join(sorted(value)[:3]) + ", ...)"
        return json.dumps(value, sort_keys=True, default=str)
    return repr(value)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "run"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("attn-search", "tensorflow", "keras", "keras-tuner", "optuna", "numpy", "pandas", "scipy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    import keras

    out["keras_backend"] = keras.backend.backend()
    return out


# ------------------------------------------------------------------------------------ trials
class _TrialCallback:
    """Reports val accuracy per epoch to the engine (pruning) and stops on a NaN loss."""

    def __new__(cls, *args, **kwargs):  # a keras.callbacks.Callback, built lazily
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(self, trial: EngineTrial | None):
                super().__init__()
                self.trial = trial
                self.epochs = 0
                self.epoch = 0
                self.pruned = False
                self.nan_at: tuple[int, int] | None = None

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                # TerminateOnNaN, remembering where it happened.
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(float(loss)):
                    self.nan_at = (self.epoch, batch)
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                self.epochs = epoch + 1
                if self.nan_at is not None or self.trial is None:
                    return
                acc = (logs or {}).get("val_accuracy")
                if acc is not None and self.trial.report(epoch, float(acc)):
                    self.pruned = True
                    self.model.stop_training = True

        return Callback(*args, **kwargs)


def _reinitialize(model, fresh):
    """Gives `model` the weights and optimizer state of `fresh`, a new build of the same config.

    A repeat with another seed is then training from scratch, while the model's traced training
    and evaluation functions are reused: tracing them costs more than training small models.
    Returns `fresh` itself when the two do not line up (nothing is reused then).
    """
    try:
        optimizer = getattr(model, "optimizer", None)
        new_optimizer = getattr(fresh, "optimizer", None)
        if optimizer is None or new_optimizer is None or type(optimizer) is not type(new_optimizer):
            return fresh
        if not getattr(new_optimizer, "built", False):
            new_optimizer.build(fresh.trainable_variables)
        old_vars, new_vars = list(optimizer.variables), list(new_optimizer.variables)
        if len(old_vars) != len(new_vars) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in zip(old_vars, new_vars)
        ):
            return fresh
        model.set_weights(fresh.get_weights())
        for old, new in zip(old_vars, new_vars):
            old.assign(new)
        return model
    except (ValueError, TypeError, AttributeError):
        return fresh


def _error_text(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    name = type(error).__name__
    if name in ("ResourceExhaustedError",) or isinstance(error, MemoryError):
        return f"out of memory ({name}): {_short(text, 300)}"
    if isinstance(error, AttnSearchError):
        return f"{name}: {_short(text, 500)}"
    return f"{name}: {_short(text, 300)}"


class _Runner:
    """One run of `run_search`; holds what the stages share."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.printer = ProgressPrinter(config.trials, quiet=config.quiet)
        self.t_start = time.monotonic()
        self.session = {"started_at": _now(), "pid": os.getpid()}

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        c = self.config
        from attn_search.datasets import load_dataset
        from attn_search.spaces import load_space

        self.space = load_space(c.space)
        image_size = tuple(c.image_size) if isinstance(c.image_size, (list, tuple)) else c.image_size
        self.data = load_dataset(
            c.dataset,
            image_size=image_size,
            limit=c.limit,
            seed=c.seed,
            skip_corrupt=bool(c.skip_corrupt),
        )
        info = self.data.info
        options: dict[str, Any] = {}
        key = c.engine.strip().lower().replace("_", "-") if isinstance(c.engine, str) else None
        if key == "optuna":
            options = dict(sampler=c.sampler, pruner=c.pruner, storage=c.storage, study=c.study)
        elif key in ("keras-tuner", "kerastuner"):
            options = dict(tuner=c.tuner)
        self.engine = get_engine(c.engine, **options)
        self.baselines = tuple(f for f in self.space.families if f != "attention") or ("plain",)
        self.finalist_seeds = [c.seed + 1000 * (r + 1) for r in range(c.repeats)]
        dataset_spec = c.dataset if isinstance(c.dataset, (str, os.PathLike)) else None
        self.resolved = clean_record(
            {
                "dataset": {
                    "spec": os.fspath(dataset_spec) if dataset_spec is not None else None,
                    **info.to_dict(),
                    "limit": c.limit,
                    "image_size": list(image_size) if isinstance(image_size, tuple) else image_size,
                    "val_fraction": 0.15,
                    "test_fraction": 0.15,
                },
                "space": self.space.to_dict(),
                "engine": self.engine.describe(),
                "seed": c.seed,
                "max_epochs": c.max_epochs,
                "budget": {
                    "trials": c.trials,
                    "max_epochs": c.max_epochs,
                    "time_budget": c.time_budget,
                    "finalists": c.finalists,
                    "repeats": c.repeats,
                    "max_consecutive_failures": c.max_consecutive_failures,
                    "memory_budget_mb": c.memory_budget_mb,
                },
                "seeds": {
                    "data_split": c.seed,
                    "sampler": c.seed,
                    "trial": "seed + trial_id",
                    "finalists": self.finalist_seeds,
                },
                "baselines": {"families": list(self.baselines), "share": self.space.baseline_share},
                "run": c.to_dict(),
            }
        )
        self.run_dir, self.resumed = _prepare_run_dir(c, self.resolved, info.name)
        self.run_info = self._load_run_info()
        import yaml

        write_text_atomic(
            self.run_dir / CONFIG_FILE,
            "# attn-search run configuration (resolved). Re-run the same configuration on this\n"
            "# folder to resume it.\n" + yaml.safe_dump(self.resolved, sort_keys=False),
        )
        from attn_search.hypermodels import AttentionCNN

        self.hypermodels = {
            "attention": AttentionCNN(
                self.space, info.input_shape, info.num_classes, family="attention",
                memory_budget_mb=c.memory_budget_mb,
            )
        }
        for fam in self.baselines:
            self.hypermodels[fam] = self.hypermodels["attention"].with_family(fam)
        epochs = self.space.training.get("epochs")
        self.engine.open(
            self.run_dir,
            hypermodel=self.hypermodels["attention"],
            trials=c.trials,
            seed=c.seed,
            # The most epochs a trial can train: the resource of Hyperband-style searches.
            max_epochs=c.max_epochs or (int(epochs.highest()) if epochs is not None else None),
            overwrite=c.overwrite,  # a study in an external storage is deleted too
        )
        self.finalist_runs = self._load_finalists()
        self.write_run_info("running")

    def _load_run_info(self) -> dict[str, Any]:
        try:
            info = json.loads((self.run_dir / RUN_FILE).read_text()) if self.resumed else {}
        except (OSError, ValueError):
            info = {}
        info.setdefault("sessions", [])
        info["sessions"].append(self.session)
        return info

    def _load_finalists(self) -> list[dict[str, Any]]:
        try:
            data = json.loads((self.run_dir / FINALISTS_FILE).read_text())
            return list(data.get("runs", []))
        except (OSError, ValueError):
            return []

    def write_run_info(self, status: str, **extra: Any) -> None:
        info = self.run_info
        self.session.update(status=status, finished_at=_now() if status != "running" else None)
        info.update(
            status=status,
            run_dir=os.fspath(self.run_dir),
            updated_at=_now(),
            versions=_versions(),
            command=list(sys.argv),
            **extra,
        )
        _write_json(self.run_dir / RUN_FILE, info)

    # -- tables ------------------------------------------------------------------------------
    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        from attn_search import leaderboard as lb

        self.records = self.engine.records()
        board = lb.records_to_frame(self.records)
        comparison = lb.comparison_frame(board, self.finalist_runs, ("attention", *self.baselines))
        lb.write_table(board, self.run_dir / lb.LEADERBOARD_FILE)
        lb.write_table(comparison, self.run_dir / lb.COMPARISON_FILE)
        return board, comparison

    def best_record(self, records=None) -> dict[str, Any] | None:
        done = [
            r
            for r in (self.records if records is None else records)
            if r.get("status") == "complete" and r.get("best_val_accuracy") is not None
        ]
        return max(done, key=lambda r: (r["best_val_accuracy"], -int(r["trial_id"]))) if done else None

    # -- the plan of a trial -----------------------------------------------------------------
    def plan_for(self, k: int) -> TrialPlan:
        """Trial k (from 0, in the order trials started) of the search."""
        trials, share = self.config.trials, self.space.baseline_share
        if k == 0:
            return TrialPlan(family="plain", use_defaults=True)
        n_base = max(1, round(trials * share)) if share > 0 else 1
        slots = sorted({round(i * trials / n_base) for i in range(n_base)})
        if k not in slots:
            return TrialPlan(family="attention")
        family = self.baselines[slots.index(k) % len(self.baselines)]
        twinned = {
            r.get("twin_of") for r in self.records if r.get("family") == family and r.get("twin_of") is not None
        }
        candidates = sorted(
            (
                r
                for r in self.records
                if r.get("family") == "attention"
                and r.get("status") == "complete"
                and r.get("trial_id") not in twinned
            ),
            key=lambda r: -(r.get("best_val_accuracy") or 0.0),
        )
        if not candidates:
            return TrialPlan(family=family)
        best = candidates[0]
        return TrialPlan(family=family, fixed=dict(best.get("hp") or {}), twin_of=int(best["trial_id"]))

    # -- one model ---------------------------------------------------------------------------
    def _epochs(self, hp_values: Mapping[str, Any], engine_epochs: int | None) -> int:
        epochs = hp_values.get("train/epochs")
        if not isinstance(epochs, int) or epochs < 1:
            epochs = self.space.training["epochs"].lowest() if "epochs" in self.space.training else 10
        if self.config.max_epochs:
            epochs = min(epochs, self.config.max_epochs)
        if engine_epochs:
            epochs = min(epochs, engine_epochs)
        return int(epochs)

    def fit(self, hypermodel, hp, model, *, seed: int, epochs: int, trial: EngineTrial | None):
        """Trains `model`; returns (history dict, callback, seconds)."""
        batch = hp.values.get("train/batch_size") if hasattr(hp, "values") else None
        batch = int(batch or 32)
        callback = _TrialCallback(trial)
        train = self.data.train(batch, shuffle=True, seed=seed)
        n_train = int(self.data.info.sizes.get("train", 0))
        if n_train >= 2 * batch and n_train % batch:
            # Full batches only (the split is reshuffled each epoch, so a different remainder
            # sits out each time): a smaller last batch would make TensorFlow trace the
            # training step twice, which costs more than the training itself on small data.
            train = train.take(n_train // batch)
        t0 = time.monotonic()
        history = hypermodel.fit(
            hp,
            model,
            train,
            validation_data=self.data.val(batch),
            epochs=epochs,
            callbacks=[callback],
            shuffle=False,  # Dataset.train shuffles, seeded
            verbose=self.config.verbose,
        )
        return dict(history.history), callback, time.monotonic() - t0

    # -- the search --------------------------------------------------------------------------
    def run_trial(self, trial: EngineTrial) -> dict[str, Any]:
        import keras
        import numpy as np

        c = self.config
        k = max(0, self.engine.n_counted() - 1)
        if trial.plan is None:
            trial.plan = self.plan_for(k)
        plan = trial.plan
        seed = c.seed + trial.number
        keras.backend.clear_session()  # and garbage collection: memory stays flat over trials
        keras.utils.set_random_seed(seed)
        record: dict[str, Any] = {
            "trial_id": trial.number,
            "engine": self.engine.name,
            "status": "failed",
            "family": plan.family,
            "placements": None,
            "seed": seed,
            "twin_of": plan.twin_of,
            "started_at": _now(),
            "worker": f"{platform.node()}:{os.getpid()}",
        }
        hp = trial.make_hp()
        hypermodel = self.hypermodels.get(plan.family) or self.hypermodels["attention"].with_family(plan.family)
        try:
            model = hypermodel.build(hp)
            values = trial.hp_values(hp)
            record["hp"] = values
            duplicate = self._duplicate_of(plan.family, values)
            if duplicate is not None:
                for key in ("placements", "params", "epochs", "best_val_accuracy", "best_val_loss", "gammas"):
                    record[key] = duplicate.get(key)
                record.update(
                    status="skipped",
                    train_seconds=0.0,
                    error=f"same configuration as trial {duplicate['trial_id']}: not trained again",
                )
                return record
            epochs = self._epochs(values, trial.max_epochs)
            history, callback, seconds = self.fit(hypermodel, hp, model, seed=seed, epochs=epochs, trial=trial)
            record["hp"] = trial.hp_values(hp)
            desc = hypermodel.describe(hp, model)
            val_acc = np.asarray(history.get("val_accuracy", []), dtype=float)
            val_loss = np.asarray(history.get("val_loss", []), dtype=float)
            record.update(
                family=desc.get("family", plan.family),
                placements=list(desc.get("placements") or []),
                n_attention=desc.get("n_attention"),
                params=desc.get("params"),
                gammas=list(desc.get("gammas") or []),
                epochs=callback.epochs or len(history.get("loss", [])),
                best_val_accuracy=float(np.nanmax(val_acc)) if np.isfinite(val_acc).any() else None,
                best_val_loss=float(np.nanmin(val_loss)) if np.isfinite(val_loss).any() else None,
                train_seconds=round(seconds, 3),
            )
            if callback.nan_at is not None:
                epoch, batch = callback.nan_at
                record.update(
                    status="failed",
                    error=(
                        f"NaN loss at epoch {epoch + 1}, batch {batch + 1} (TerminateOnNaN): "
                        "lower the learning rate or check the data"
                    ),
                )
            elif record["best_val_accuracy"] is None:
                record.update(status="failed", error="no validation accuracy was measured")
            else:
                record["status"] = "pruned" if callback.pruned else "complete"
                if record["status"] == "complete":
                    self._maybe_save_best(model, record)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - a trial fails alone
            record.update(status="failed", error=_error_text(error), hp=record.get("hp") or trial.hp_values(hp))
        finally:
            record["finished_at"] = _now()
        return record

    def _duplicate_of(self, family: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
        key = json.dumps(clean_record(values), sort_keys=True)
        for r in self.records:
            if (
                r.get("family") == family
                and r.get("status") == "complete"
                and json.dumps(r.get("hp") or {}, sort_keys=True) == key
            ):
                return r
        return None

    def _maybe_save_best(self, model, record: dict[str, Any]) -> None:
        best = self.best_record()
        if best is not None and best["best_val_accuracy"] >= record["best_val_accuracy"] and (
            self.run_dir / BEST_MODEL_FILE
        ).exists():
            return
        with atomic_path(self.run_dir / BEST_MODEL_FILE, suffix=".keras") as tmp:
            model.save(tmp)
        self.run_info["best_model"] = {
            "file": BEST_MODEL_FILE,
            "trial_id": record["trial_id"],
            "family": record.get("family"),
            "best_val_accuracy": record["best_val_accuracy"],
        }

    def search(self) -> str:
        c = self.config
        self.tables()
        done = self.engine.n_counted()
        if self.resumed:
            self.printer.print(
                f"Resuming {self.run_dir}: {len(self.records)} trial(s) recorded, "
                f"{max(0, c.trials - done)} to run."
            )
        else:
            self.printer.print(
                f"Searching {self.data.info.name} {tuple(self.data.info.input_shape)} with "
                f"{self.engine.name} ({c.trials} trials, space {self.space.name!r}) -> {self.run_dir}"
            )
        failures = 0
        stopped_by = None
        self.t_search = time.monotonic()
        while True:
            if self.engine.n_counted() >= c.trials:
                break
            if c.time_budget is not None and time.monotonic() - self.t_search >= c.time_budget:
                stopped_by = "time_budget"
                self.printer.print(f"Time budget of {c.time_budget:g} s reached: no new trials.")
                break
            trial = self.engine.ask()
            if trial is None:
                stopped_by = "engine"
                break
            self.current = trial
            t0 = time.monotonic()
            record = self.run_trial(trial)
            self.engine.tell(trial, record)
            self.current = None
            self.tables()
            self.printer.trial(
                min(self.engine.n_counted(), c.trials), record, self.best_record(), time.monotonic() - t0
            )
            failures = failures + 1 if record["status"] == "failed" else 0
            if failures >= c.max_consecutive_failures:
                raise AttnSearchError(
                    f"The search stopped: the last {failures} trials failed in a row "
                    f"(max_consecutive_failures={c.max_consecutive_failures}). Last error: "
                    f"{record.get('error')}. The tables in {self.run_dir} list every trial."
                )
        self.stopped_by = stopped_by
        return "stopped" if stopped_by else "complete"

    # -- the finalists -----------------------------------------------------------------------
    def finalists(self) -> None:
        import keras
        import keras_tuner

        c = self.config
        if c.finalists < 1:
            return
        chosen, seen = [], set()
        for r in sorted(
            (r for r in self.records if r.get("family") == "attention" and r.get("status") == "complete"),
            key=lambda r: (-(r.get("best_val_accuracy") or 0.0), int(r["trial_id"])),
        ):
            key = json.dumps(r.get("hp") or {}, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            chosen.append(r)
            if len(chosen) == c.finalists:
                break
        if not chosen:
            self.printer.print("No attention trial completed: no finalists to retrain.")
            return
        done = {(r["trial_id"], r["family"], r["seed"]) for r in self.finalist_runs}
        families = ("attention", *self.baselines)
        todo = [
            (rank, rec, seed, fam)
            for rank, rec in enumerate(chosen, start=1)
            for fam in families
            for seed in self.finalist_seeds
            if (rec["trial_id"], fam, seed) not in done
        ]
        # A finalist list that changed since an earlier session (more trials) starts afresh.
        keep = {(rec["trial_id"], rank) for rank, rec in enumerate(chosen, start=1)}
        self.finalist_runs = [r for r in self.finalist_runs if (r["trial_id"], r["finalist"]) in keep]
        total = len(chosen) * len(self.finalist_seeds) * len(families)
        if todo:
            self.printer.print(
                f"Finalists: {len(chosen)} attention configuration(s) x {len(self.finalist_seeds)} "
                f"seed(s), each beside its {' and '.join(self.baselines)} twin(s): {len(todo)} fit(s)"
                + (f" ({total - len(todo)} done earlier)" if total > len(todo) else "")
            )
        t0 = time.monotonic()
        reuse: tuple[tuple[int, str], Any] | None = None
        for i, (rank, rec, seed, fam) in enumerate(todo, start=1):
            if reuse is None or reuse[0] != (rank, fam):
                reuse = None
                keras.backend.clear_session()  # collects garbage too
            keras.utils.set_random_seed(seed)
            hypermodel = self.hypermodels[fam]
            hp = keras_tuner.HyperParameters()
            hp.values = dict(rec.get("hp") or {})
            run = {
                "finalist": rank,
                "trial_id": int(rec["trial_id"]),
                "family": fam,
                "seed": seed,
                "placement": None,
                "test_accuracy": None,
                "test_loss": None,
                "error": "",
            }
            try:
                model = hypermodel.build(hp)  # the seed's fresh weights
                if reuse is not None:
                    model = _reinitialize(reuse[1], model)
                reuse = ((rank, fam), model)
                epochs = self._epochs(dict(hp.values), None)
                history, callback, seconds = self.fit(hypermodel, hp, model, seed=seed, epochs=epochs, trial=None)
                desc = hypermodel.describe(hp, model)
                from attn_search.leaderboard import placement_label

                run.update(
                    placement=placement_label(desc.get("placements")),
                    params=desc.get("params"),
                    epochs=callback.epochs,
                    gammas=desc.get("gammas"),
                    train_seconds=round(seconds, 3),
                    val_accuracy=max(history.get("val_accuracy", [math.nan])),
                )
                if callback.nan_at is not None:
                    run["error"] = "NaN loss (TerminateOnNaN)"
                else:
                    batch = int(hp.values.get("train/batch_size") or 32)
                    loss, acc = model.evaluate(self.data.test(batch), verbose=0)[:2]
                    run.update(test_accuracy=float(acc), test_loss=float(loss))
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 - one failed fit does not end the run
                run["error"] = _error_text(error)
                reuse = None
            self.finalist_runs.append(clean_record(run))
            _write_json(self.run_dir / FINALISTS_FILE, {"runs": self.finalist_runs})
            self.tables()
            elapsed = time.monotonic() - t0
            acc = run["test_accuracy"]
            self.printer.print(
                f"  finalist {rank} (trial #{rec['trial_id']}) {fam:<9} seed {seed}: "
                + (f"test_acc {acc:.4f}" if acc is not None else f"failed ({_short(run['error'], 60)})")
                + f" | {i}/{len(todo)}, ~{_clock(elapsed / i * (len(todo) - i))} left"
            )

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> RunResult:
        self.current = None
        self.stopped_by = None
        timings: dict[str, float] = {}
        try:
            t0 = time.monotonic()
            status = self.search()
            timings["search_seconds"] = round(time.monotonic() - t0, 3)
            t1 = time.monotonic()
            self.finalists()
            timings["finalists_seconds"] = round(time.monotonic() - t1, 3)
        except KeyboardInterrupt:
            if self.current is not None:
                self.engine.interrupt(self.current, "interrupted by the user (KeyboardInterrupt)")
            self._finish("interrupted", timings)
            self.printer.print(f"Interrupted: the tables in {self.run_dir} hold every finished trial.")
            raise
        except AttnSearchError as error:
            self._finish("failed", timings, error=str(error))
            raise
        except BaseException as error:
            self._finish("failed", timings, error=_error_text(error))
            raise
        board, comparison = self._finish(status, timings)
        self.write_report()
        best = self.run_dir / BEST_MODEL_FILE
        return RunResult(
            run_dir=self.run_dir,
            leaderboard=board,
            comparison=comparison,
            best_model_path=best if best.exists() else None,
            status=status,
        )

    def write_report(self) -> None:
        """report.md and its plots; a run's results never depend on the report succeeding."""
        from attn_search.report import write_report

        try:
            images = next(iter(self.data.val(4)))[0]
            write_report(self.run_dir, images=images)
        except Exception as error:  # noqa: BLE001 - the tables and model are already written
            self.printer.print(f"Report skipped: {_error_text(error)}")

    def _finish(self, status: str, timings: dict[str, float], **extra: Any):
        timings["total_seconds"] = round(time.monotonic() - self.t_start, 3)
        self.session["timings"] = timings
        try:
            board, comparison = self.tables()
        except Exception:  # noqa: BLE001 - never hide the original error behind this one
            board = comparison = None
        counts: dict[str, int] = {}
        for r in getattr(self, "records", []):
            counts[r.get("status", "failed")] = counts.get(r.get("status", "failed"), 0) + 1
        best = self.best_record() if hasattr(self, "records") else None
        self.write_run_info(
            status,
            timings=timings,
            trials=counts,
            stopped_by=self.stopped_by,
            best_trial=(
                {k: best.get(k) for k in ("trial_id", "family", "placements", "best_val_accuracy")}
                if best
                else None
            ),
            finalist_fits=len(self.finalist_runs),
            **extra,
        )
        with_engine = getattr(self, "engine", None)
        if with_engine is not None:
            with_engine.close()
        return board, comparison


def run_search(config: RunConfig | Mapping[str, Any] | None = None, **overrides: Any) -> RunResult:
    """Runs a search: trials, baselines, finalists, and the tables that compare them.

    Args:
        config: A `RunConfig`, or a dict of its fields. Defaults to `RunConfig()`.
        **overrides: Fields to change, e.g. `run_search(trials=4, out="runs/a")`.

    Returns:
        A `RunResult`: the run folder, the leaderboard and comparison DataFrames, the best
        model's path and the status (`"complete"` or `"stopped"`).

    Raises:
        ConfigError: A field of `config` is invalid.
        DatasetError: The dataset cannot be loaded.
        SearchSpaceError: The search space is invalid.
        RunDirError: The run folder holds another run (pass `overwrite=True`) or is not a
            run folder.
        AttnSearchError: `max_consecutive_failures` trials failed in a row (the tables are
            written first).
        KeyboardInterrupt: Ctrl-C, re-raised after the tables and run.json are written; the
            trial it interrupted is re-run when the run resumes.

    Example:

    >>> result = run_search(RunConfig(dataset="digits", limit=300, trials=3, finalists=1,
    ...                               repeats=2, max_epochs=1, out="runs/demo", quiet=True))
    >>> list(result.leaderboard["family"])[:1]
    ['attention']
    """
    if config is None:
        config = RunConfig()
    elif isinstance(config, Mapping):
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(RunConfig)})
        if unknown:
            raise ConfigError(
                f"`config` has unknown field(s) {', '.join(map(repr, unknown))}; RunConfig "
                f"accepts {', '.join(f.name for f in dataclasses.fields(RunConfig))}. "
                f"Received: config={dict(config)!r}"
            )
        config = RunConfig(**config)
    elif not isinstance(config, RunConfig):
        raise ConfigError(
            f"`config` must be a RunConfig or a dict of its fields. Received: config={config!r}"
        )
    if overrides:
        config = dataclasses.replace(config, **overrides)
    config.validate()
    import logging

    # Every trial builds new models, so TensorFlow's "retracing" warning would fire on every
    # run; it says nothing a user can act on here.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    if not config.verbose:
        tf_logger.setLevel(logging.ERROR)
    try:
        runner = _Runner(config)
        runner.setup()
        return runner.run()
    finally:
        tf_logger.setLevel(level)

"""Opening a run: the dataset, the space, the engine, the hypermodels and the run folder.

`open_run(config, progress)` resolves everything a run needs once, writes the resolved
configuration, opens (or reopens) the engine's storage, and returns a `Run`: the parts the
search and finalist stages are handed explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from attn_search.engines import Engine, get_engine, options_for
from attn_search.engines.base import clean_record
from attn_search.errors import RunDirError
from attn_search.runfolder import RunFolder, RunLog, latest_run, new_run_name
from attn_search.runner.config import RunConfig, mask_url
from attn_search.runner.planning import finalist_seeds
from attn_search.runner.progress import Progress

__all__ = ["Run", "open_run"]


@dataclasses.dataclass
class Run:
    """The parts of one run, resolved once by `open_run`.

    Attributes:
        config: The validated configuration.
        space: The `SearchSpace`.
        data: The `Dataset`.
        engine: The opened `Engine`.
        hypermodels: One `AttentionCNN` (or `BackboneHyperModel`) per family.
        baselines: The baseline families, e.g. `("plain", "matched")`.
        seeds: The finalists' seeds.
        folder: The run folder.
        log: run.json for this process.
        resumed: Whether the run continues an earlier one.
        progress: The observer of the run's events.
        cv: The finalists' `CrossValidation` folds, or `None` (a held-out test split).
    """

    config: RunConfig
    space: Any
    data: Any
    engine: Engine
    hypermodels: dict[str, Any]
    baselines: tuple[str, ...]
    seeds: list[int]
    folder: RunFolder
    log: RunLog
    resumed: bool
    progress: Progress
    cv: Any = None

    @property
    def families(self) -> tuple[str, ...]:
        return ("attention", *self.baselines)

    @property
    def space_epochs(self) -> int | None:
        epochs = self.space.training.get("epochs")
        return int(epochs.lowest()) if epochs is not None else None

    def write_tables(self, records: list[dict[str, Any]], finalist_runs: list[dict[str, Any]]):
        """Rewrites leaderboard.csv and comparison.csv; returns both DataFrames."""
        from attn_search import leaderboard as lb

        board = lb.records_to_frame(records)
        comparison = lb.comparison_frame(board, finalist_runs, self.families)
        self.folder.write_tables(board, comparison)
        return board, comparison


def open_run(config: RunConfig, progress: Progress) -> Run:
    """Loads the dataset and space, resolves the engine, and opens the run folder and storage.

    Raises:
        DatasetError, SearchSpaceError, ConfigError: Bad input.
        RunDirError: The run folder cannot be used (see `RunFolder.open_for_run`).
    """
    from attn_search._backbone_hypermodel import make_hypermodel
    from attn_search.datasets import load_dataset
    from attn_search.space_auto import is_auto, resolve_space, space_summary
    from attn_search.spaces import load_space

    if not is_auto(config.space):
        space = load_space(config.space)
    image_size = config.image_size_pair()
    data = load_dataset(
        config.dataset,
        image_size=image_size,
        limit=config.limit,
        seed=config.seed,
        skip_corrupt=bool(config.skip_corrupt),
    )
    if is_auto(config.space):
        space = resolve_space(data.info, memory_budget_mb=config.memory_budget_mb)
    if config.epochs is not None:  # every trial and finalist trains this many epochs
        plain = space.to_dict()
        space = load_space({**plain, "training": {**plain["training"], "epochs": config.epochs}})
    if is_auto(config.space):
        progress.note(f"Space: {space_summary(space)}")
    # The backbone is built (and refused: too small images, missing weights) before any file.
    attention = make_hypermodel(
        space,
        data.info.input_shape,
        data.info.num_classes,
        backbone=config.backbone,
        memory_budget_mb=config.memory_budget_mb,
    )
    engine = _engine(config)
    baselines = tuple(f for f in space.families if f != "attention") or ("plain",)
    seeds = finalist_seeds(config.seed, config.repeats)
    cv = _cross_validation(config, data)
    resolved = _resolved(config, data, space, engine, baselines, seeds, image_size)
    resolved["cv"] = _cv_section(cv)
    folder, resumed = _folder(config, resolved, data.info.name)
    log = RunLog(folder, resumed=resumed)
    if config.cache or config.keep_cache:
        data = data.cached(folder.cache_dir)
    folder.write_config(resolved)
    hypermodels = {"attention": attention, **{f: attention.with_family(f) for f in baselines}}
    epochs = space.training.get("epochs")
    engine.open(
        folder.path,
        hypermodel=attention,
        trials=config.trials,
        seed=config.seed,
        # The most epochs a trial can train: the resource of Hyperband-style searches.
        max_epochs=config.epochs
        or config.max_epochs
        or (int(epochs.highest()) if epochs is not None else None),
        overwrite=config.overwrite,  # a study in an external storage is deleted too
    )
    engine.join(_shared(resolved))
    run = Run(
        config=config,
        space=space,
        data=data,
        engine=engine,
        hypermodels=hypermodels,
        baselines=baselines,
        seeds=seeds,
        folder=folder,
        log=log,
        resumed=resumed,
        progress=progress,
        cv=cv,
    )
    log.write("running")
    return run


def _cross_validation(config: RunConfig, data: Any) -> Any:
    """The finalists' folds (`--cv`, automatic by dataset size), or `None`."""
    from attn_search.datasets import CrossValidation
    from attn_search.space_auto import resolve_cv

    k, repetitions = resolve_cv(config.cv, data.info, config.repeats)
    if not (k and config.finalists):
        return None
    return CrossValidation(data, k, repetitions, config.seed)


def _cv_section(cv: Any) -> dict[str, Any]:
    if cv is None:
        return {"k": 0, "evaluation": "held-out test split"}
    return {
        "k": cv.k,
        "repetitions": cv.repetitions,
        "seed": cv.seed,
        "evaluation": f"{cv.repetitions} x stratified {cv.k}-fold cross-validation",
        "test_train_ratio": round(cv.test_train_ratio, 4),
    }


def _engine(config: RunConfig) -> Engine:
    if isinstance(config.engine, Engine):
        return config.engine
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return get_engine(config.engine, **options_for(config.engine, values))


def _folder(config: RunConfig, resolved: dict[str, Any], dataset_name: str):
    results = pathlib.Path("results")
    if config.out is not None:
        folder = RunFolder(config.out)
    elif config.resume:
        folder = latest_run(results, dataset_name)
        if folder is None:
            raise RunDirError(
                f"`resume` found no earlier run of dataset {dataset_name!r} in results/ "
                "(folders results/<dataset>-<timestamp> holding config.yaml); pass `out` to "
                "name the run folder. Received: resume=True, out=None"
            )
    else:
        folder = new_run_name(results, dataset_name)
    where = os.fspath(config.out if config.out is not None else folder.path)
    resumed = folder.open_for_run(resolved, overwrite=config.overwrite, where=where)
    return folder, resumed


def _resolved(config, data, space, engine, baselines, seeds, image_size) -> dict[str, Any]:
    """What config.yaml holds: the configuration with every default and choice made."""
    spec = config.dataset if isinstance(config.dataset, (str, os.PathLike)) else None
    sizes = data.info.sizes
    total = sum(sizes.values()) or 1
    return clean_record(
        {
            "dataset": {
                "spec": os.fspath(spec) if spec is not None else None,
                **data.info.to_dict(),
                "limit": config.limit,
                "image_size": list(image_size) if image_size else None,
                # The fractions the split really has (not the loader's defaults).
                "val_fraction": round(sizes.get("val", 0) / total, 4),
                "test_fraction": round(sizes.get("test", 0) / total, 4),
            },
            "space": space.to_dict(),
            "engine": _masked(engine.describe()),
            "seed": config.seed,
            "max_epochs": config.max_epochs,
            "budget": {
                "trials": config.trials,
                "max_epochs": config.max_epochs,
                "epochs": config.epochs,
                "time_budget": config.time_budget,
                "finalists": config.finalists,
                "repeats": config.repeats,
                "max_consecutive_failures": config.max_consecutive_failures,
                "memory_budget_mb": config.memory_budget_mb,
            },
            "seeds": {
                "data_split": config.seed,
                "sampler": config.seed,
                "trial": "seed + trial_id",
                "finalists": seeds,
            },
            "baselines": {"families": list(baselines), "share": space.baseline_share},
            "run": config.to_dict(),
        }
    )


def _shared(resolved: dict[str, Any]) -> dict[str, Any]:
    """What every worker of one study must agree on: the resolved configuration but the run
    folder, the output settings, the dataset's path and the storage's address (which may be
    spelled differently on each machine)."""
    keys = ("dataset", "space", "engine", "seed", "max_epochs", "budget", "seeds", "baselines")
    out = {key: resolved.get(key) for key in keys}
    out["dataset"] = {k: v for k, v in (out["dataset"] or {}).items() if k != "spec"}
    out["engine"] = {k: v for k, v in (out["engine"] or {}).items() if k != "storage"}
    return out


def _masked(described: dict[str, Any]) -> dict[str, Any]:
    """The engine's settings with any password in a storage URL masked."""
    return {k: mask_url(v) if isinstance(v, str) else v for k, v in described.items()}

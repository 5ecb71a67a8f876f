"""`RunConfig`: every setting of a search run, with its validation and its command-line flag.

Each field carries its own command-line declaration in `dataclasses.field(metadata=...)`:
`group` (the --help section), `help` (one line; "Defaults to X." is added from the default),
`kind` (how the text is parsed: see `attn_search.cli`), and optional `metavar` and `flag`.
The `attn-search run` flags are generated from these, so an option is declared once.

This module imports no TensorFlow, Keras or engine library, so building and validating a
`RunConfig` is instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

from attn_search._backbone_spec import check_field as _backbone
from attn_search.errors import ConfigError
from attn_search.formatting import mask_url
from attn_search.runner._config_checks import (
    _count,
    _engine,
    _engine_option,
    _flag,
    _image_size,
    _int,
    _number,
    _precision,
    _text,
)

__all__ = ["FLAG_GROUPS", "RunConfig", "as_config"]

#: The --help sections of `attn-search run`, in order.
FLAG_GROUPS = ("what to search", "how to search", "budget", "where to write", "output")


def _field(default: Any, group: str, help: str, kind: str = "text", **extra: Any) -> Any:
    """A dataclass field with its command-line declaration (see the module docstring).

    kind: "text", "positive_int", "non_negative_int", "positive_float", "image_size",
    "precision", "flag" (a switch), "count" (-v, -vv), or "engine" / "engine_option" (choices
    that the engines declare).
    """
    return dataclasses.field(
        default=default, metadata={"group": group, "help": help, "kind": kind, **extra}
    )


_CACHE_HELP = (
    "keep a streamed folder's decoded images on disk in RUN_DIR/cache/ between trials "
    "(for data larger than memory); deleted at the end of the run"
)
_KEEP_CACHE_HELP = "--cache, and keep RUN_DIR/cache/ after the run (a --resume reads it again)"
_SEED_HELP = "seed of the split, the sampler and every model"
_PRECISION_HELP = "compute in float16 or bfloat16 (weights, attention softmax and outputs: float32)"
_JIT_HELP = "compile training steps with XLA. Defaults to Keras' choice (on TensorFlow: GPU only)."

# Declared here, not in the class, to keep RunConfig within the size limit.
_SPACE = _field(
    "auto",
    "what to search",
    "'auto' (made for the dataset: 'attn-search spaces --resolve DATASET' shows it), a "
    "shipped search space (see 'attn-search spaces') or a YAML path",
)
_EPOCHS = _field(
    None,
    "budget",
    "train every trial and finalist N epochs (early stopping may end one sooner), whatever the "
    "space says; --max-epochs only caps them",
    kind="positive_int",
    metavar="N",
)
_CV = _field(
    None,
    "budget",
    "compare the finalists by K-fold cross-validation repeated over the seeds (0: on the "
    "held-out test split). Defaults to automatic: 5 below "
    "1,000 examples, else 0",
    kind="non_negative_int",
    metavar="K",
)
_BACKBONE_HELP = (
    "the network attention goes into: cnn, a keras.applications name (resnet50, mobilenet_v2, "
    "...) or file.py:function. Defaults to the space's backbone.model (cnn)"
)


@dataclasses.dataclass
class RunConfig:
    """Everything a search run needs; validated without importing TensorFlow.

    Args:
        dataset: A built-in dataset name, a folder of images, an .npz file (see
            `attn_search.load_dataset`), or a `Dataset`. Defaults to `"digits"`.
        space: `"auto"` (resolved from the dataset: `attn_search.space_auto`), a shipped
            space's name, a YAML path, a dict or a `SearchSpace`. Defaults to `"auto"`.
        backbone: "cnn", a keras.applications name or "file.py:function". Defaults to the space's.
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
        epochs: Epochs of every trial and finalist fit, whatever the space. Defaults to `None`.
        cv: Folds of the finalists' cross-validation, 0: held out. Defaults to `None` (auto).
        time_budget: Seconds after which no new search trial starts (the finalists still
            run). Defaults to `None` (no limit).
        seed: Seed of the data split, the engine's sampler and every model. Defaults to 0.
        finalists: Attention configurations retrained with repeats. Defaults to 2.
        repeats: Seeds per finalist (and per twin); a resume with more adds only the new
            seeds. Defaults to 5 (why: the README's "The verdict").
        out: The run folder. Defaults to `None`: `results/<dataset>-<timestamp>/`.
        resume: Continue an earlier run with the same configuration: the one in `out`, or
            without `out` the latest in `results/` for the same dataset. Defaults to `False`.
        overwrite: Replace whatever run `out` holds. Defaults to `False`.
        storage: Optuna storage URL (e.g. `postgresql://...` for several workers). Defaults
            to `None`: `study.db` in the run folder.
        study: Optuna study name. Defaults to `None` (`"attn-search"`).
        workers: Worker processes on this machine sharing one study. Defaults to 1.
        limit: Cap on the number of examples loaded (quick runs). Defaults to `None`.
        image_size: `(height, width)` to resize images to. Defaults to `None`.
        skip_corrupt: Skip unreadable images of a folder (counted, warned). Defaults to `False`.
        cache: Keep a streamed folder's decoded images in `<out>/cache/`. Defaults to `False`.
        keep_cache: `cache`, and the cache stays after the run. Defaults to `False`.
        mixed_precision, jit_compile: "float16"/"bfloat16" compute; XLA. Defaults: `None`, `False`.
        memory_budget_mb: MB for attention maps; larger configurations fail. Defaults to `None`.
        max_consecutive_failures: Failed trials in a row that stop the search. Defaults to 5.
        verbose: Keras' output: 0 none, 1 progress bar, 2 a line per epoch. Defaults to 0.
        quiet: Print nothing (no progress lines). Defaults to `False`.

    Example:

    >>> config = RunConfig(dataset="digits", trials=4, finalists=1, repeats=2)
    >>> config.validate()
    """

    dataset: Any = _field(
        "digits",
        "what to search",
        "a built-in name (see 'attn-search datasets'), a folder of images or an .npz file",
    )
    space: Any = _SPACE
    backbone: str | None = _field(None, "what to search", _BACKBONE_HELP, kind="backbone")
    engine: Any = _field("optuna", "how to search", "the search engine", kind="engine")
    tuner: str = _field("random", "how to search", "", kind="engine_option")
    sampler: str = _field("tpe", "how to search", "", kind="engine_option")
    pruner: str = _field("median", "how to search", "", kind="engine_option")
    trials: int = _field(10, "budget", "search trials, baselines included", kind="positive_int")
    max_epochs: int | None = _field(
        None, "budget", "cap on training epochs per trial", kind="positive_int"
    )
    epochs: int | None = _EPOCHS
    cv: int | None = _CV
    time_budget: float | None = _field(
        None,
        "budget",
        "stop starting new trials after this many seconds",
        kind="positive_float",
        metavar="SECONDS",
    )
    seed: int = _field(0, "how to search", _SEED_HELP, kind="non_negative_int")
    finalists: int = _field(
        2,
        "budget",
        "attention configurations retrained with --repeats seeds beside their baselines (0: none)",
        kind="non_negative_int",
    )
    repeats: int = _field(
        5,
        "budget",
        "seeds per finalist and twin; resuming with more adds only the new seeds",
        kind="positive_int",
    )
    out: str | os.PathLike | None = _field(
        None,
        "where to write",
        "the run folder. Defaults to results/<dataset>-<timestamp>/.",
        metavar="RUN_DIR",
    )
    resume: bool = _field(
        False, "where to write", "continue the run in --out (same configuration)", kind="flag"
    )
    overwrite: bool = _field(
        False, "where to write", "replace a run folder holding another run", kind="flag"
    )
    storage: str | None = _field(None, "where to write", "", kind="engine_option", metavar="URL")
    study: str | None = _field(None, "where to write", "", kind="engine_option", metavar="NAME")
    workers: int = _field(
        1, "how to search", "processes sharing one study (optuna)", kind="positive_int"
    )
    limit: int | None = _field(
        None,
        "what to search",
        "use at most N examples of the dataset (quick tries)",
        kind="positive_int",
        metavar="N",
    )
    image_size: tuple[int, int] | None = _field(
        None,
        "what to search",
        "resize images, e.g. 32 or 32x48",
        kind="image_size",
        metavar="HxW",
    )
    skip_corrupt: bool = _field(
        False,
        "what to search",
        "skip unreadable images in a folder dataset (counted in a warning) instead of stopping",
        kind="flag",
    )
    cache: bool = _field(False, "where to write", _CACHE_HELP, kind="flag")
    keep_cache: bool = _field(False, "where to write", _KEEP_CACHE_HELP, kind="flag")
    mixed_precision: str | None = _field(None, "how to search", _PRECISION_HELP, kind="precision")
    jit_compile: bool = _field(False, "how to search", _JIT_HELP, kind="flag")
    memory_budget_mb: float | None = _field(
        None,
        "budget",
        "skip configurations whose attention maps would need more memory",
        kind="positive_float",
        metavar="MB",
    )
    max_consecutive_failures: int = _field(
        5,
        "budget",
        "stop the search after N failed trials in a row",
        kind="positive_int",
        metavar="N",
    )
    verbose: int = _field(
        0,
        "output",
        "show Keras' training output: -v progress bars, -vv one line per epoch",
        kind="count",
        flag="-v",
    )
    quiet: bool = _field(
        False,
        "output",
        "no progress; print only the run folder (for scripts)",
        kind="flag",
        flag="-q",
    )

    def validate(self) -> None:
        """Checks every field's type and range (as its `kind` says); the first bad one raises.

        Raises:
            ConfigError: Naming the field and echoing its value.
        """
        for f in dataclasses.fields(self):
            _CHECKS[f.metadata["kind"]](f.name, getattr(self, f.name), f.default is None)
        if self.resume and self.overwrite:
            raise ConfigError(
                "`resume` and `overwrite` cannot both be set: resume continues the run in the "
                "folder, overwrite deletes it. Received: resume=True, overwrite=True"
            )

    def check(self) -> None:
        """`validate`, then the checks that read files but need no TensorFlow.

        The search space is loaded and validated whole, and a dataset name or path is checked
        (an unknown name or a missing path fails here, before any framework starts).

        Raises:
            ConfigError: A field is invalid.
            SearchSpaceError: The search space is invalid.
            DatasetError: The dataset is unknown or its path does not exist.
        """
        self.validate()
        from attn_search.datasets import check_spec
        from attn_search.space_auto import is_auto
        from attn_search.spaces import load_space

        if not is_auto(self.space):
            load_space(self.space)
        if isinstance(self.dataset, (str, os.PathLike)):
            check_spec(self.dataset)

    def image_size_pair(self) -> tuple[int, int] | None:
        """`image_size` as `(height, width)` (an int means a square), or `None`."""
        return _image_size("image_size", self.image_size, True)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (objects such as a `Dataset` become their name).

        A storage URL's password is masked (`postgresql://user:***@host/db`): this dict is
        written to config.yaml and run.json.
        """
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if isinstance(out.get("storage"), str):
            out["storage"] = mask_url(out["storage"])
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return getattr(value, "name", None) or type(value).__name__


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def unknown_fields(given: Mapping[str, Any], where: str = "config") -> None:
    """Raises a ConfigError naming the keys of `given` that are not RunConfig fields."""
    fields = field_names()
    unknown = sorted(set(given) - set(fields))
    if not unknown:
        return
    hints = [
        f"{name!r} -> {close[0]!r}"
        for name in unknown
        if (close := difflib.get_close_matches(str(name), fields, n=1))
    ]
    hint = f" Did you mean {', '.join(hints)}?" if hints else ""
    raise ConfigError(
        f"`{where}` has unknown field(s) {', '.join(map(repr, unknown))}; RunConfig accepts "
        f"{', '.join(fields)}.{hint} Received: {where}={dict(given)!r}"
    )


def as_config(config: RunConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]):
    """Normalizes `run_search`'s arguments into one validated `RunConfig`."""
    if config is None:
        config = RunConfig()
    elif isinstance(config, Mapping):
        unknown_fields(config)
        config = RunConfig(**config)
    elif not isinstance(config, RunConfig):
        raise ConfigError(
            f"`config` must be a RunConfig or a dict of its fields. Received: config={config!r}"
        )
    if overrides:
        unknown_fields(overrides, "overrides")
        config = dataclasses.replace(config, **overrides)
    config.validate()
    return config


#: How each `kind` of field is checked: `check(name, value, optional)`.
_CHECKS = {
    "text": _text,
    "engine": _engine,
    "engine_option": _engine_option,
    "positive_int": lambda name, value, optional: _int(name, value, 1, optional),
    "non_negative_int": lambda name, value, optional: _int(name, value, 0, optional),
    "positive_float": _number,
    "image_size": _image_size,
    "backbone": _backbone,
    "flag": _flag,
    "count": _count,
    "precision": _precision,
}

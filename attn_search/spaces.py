"""Search spaces: YAML files (or dicts) -> a validated, plain-data `SearchSpace`.

A search space says which convnets a search may build and train: the backbone (conv blocks,
filters, normalization, pooling, dropout), the classification head, where and how
`SelfAttentionConv2D` may be placed, which baselines (plain, matched) run beside it, and the
training choices. `attn_search.hypermodels.AttentionCNN` turns it into KerasTuner
hyperparameters.

Each tunable value is written in one of three forms:

```yaml
kernel_size: 3                       # fixed
num_heads: [1, 2, 4]                 # a choice
learning_rate: {min: 0.0003, max: 0.01, sampling: log}   # a range (step, sampling optional)
```

This module imports neither TensorFlow nor Keras, so the command line can list and check spaces
instantly.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import numbers
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from attn_search.errors import SearchSpaceError

__all__ = ["Param", "SearchSpace", "load_space", "list_spaces", "FAMILIES", "BASELINES"]

FAMILIES = ("attention", "plain", "matched")
BASELINES = ("plain", "matched")
_SAMPLINGS = ("linear", "log", "reverse_log")
_ACTIVATIONS = (
    "linear", "relu", "tanh", "sigmoid", "gelu", "swish", "silu", "elu", "selu", "softplus",
    "leaky_relu",
)  # fmt: skip
_SECTIONS = ("name", "description", "backbone", "head", "attention", "baselines", "training")


@dataclasses.dataclass(frozen=True)
class Param:
    """One value of a search space: fixed, a choice among values, or a numeric range.

    Args:
        kind: `"fixed"`, `"choice"` or `"range"`.
        dtype: `"int"`, `"float"`, `"str"` or `"bool"`.
        value: The value of a fixed parameter (may be `None`, e.g. `attention.filters`).
        values: The candidates of a choice, in the order written.
        min: Lower bound of a range (inclusive).
        max: Upper bound of a range (inclusive).
        step: Step of a range, as KerasTuner reads it (with log sampling, a factor). Defaults
            to `None`: 1 for integers, continuous for floats.
        sampling: `"linear"`, `"log"` or `"reverse_log"` for ranges. Defaults to `"linear"`.
    """

    kind: str
    dtype: str
    value: Any = None
    values: tuple = ()
    min: Any = None
    max: Any = None
    step: Any = None
    sampling: str = "linear"

    @property
    def tunable(self) -> bool:
        """Whether a search has more than one value to try."""
        if self.kind == "choice":
            return len(self.values) > 1
        return self.kind == "range" and self.min != self.max

    def candidates(self) -> tuple | None:
        """Every value the parameter can take, or `None` for a continuous float range."""
        if self.kind == "fixed":
            return (self.value,)
        if self.kind == "choice":
            return tuple(self.values)
        if self.dtype != "int":
            return None if self.min != self.max else (self.min,)
        if self.sampling == "linear" or self.step is None:
            step = self.step if self.sampling == "linear" and self.step else 1
            return tuple(range(self.min, self.max + 1, step))
        out, v = [], self.min  # log sampling with a step: KerasTuner multiplies by it
        while v <= self.max:
            out.append(v)
            v *= self.step
        return tuple(out)

    def lowest(self):
        """The smallest value the parameter can take (numbers only)."""
        return self.min if self.kind == "range" else min(self.candidates())

    def highest(self):
        """The largest value the parameter can take (numbers only)."""
        return self.max if self.kind == "range" else max(self.candidates())

    def to_plain(self) -> Any:
        """The YAML form of the parameter: a scalar, a list or a `{min, max, ...}` mapping."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return list(self.values)
        out = {"min": self.min, "max": self.max}
        if self.step is not None:
            out["step"] = self.step
        if self.sampling != "linear":
            out["sampling"] = self.sampling
        return out


@dataclasses.dataclass(frozen=True, eq=True)
class SearchSpace:
    """A validated search space; plain data, no TensorFlow.

    Build one with `load_space(...)`, not directly.

    Attributes:
        name: Short name (the file's stem unless the file sets `name`).
        source: Where it came from: a file path, or `"<dict>"`.
        description: One line for `attn-search spaces`.
        backbone: `Param`s: blocks, filters, growth, convs_per_block, kernel_size,
            normalization, pooling, dropout; plus `min_resolution` (fixed).
        head: `Param`s: pooling, dense, dropout.
        attention: `Param`s: placements, filters, num_heads, activation, gamma, kv_pool; plus
            `max_layers` and `auto_kv_pool` (fixed).
        baselines: The baseline families searched beside attention, among "plain", "matched".
        baseline_share: Fraction of the search's trials given to the baselines.
        training: `Param`s: optimizer, learning_rate, batch_size, epochs.
        early_stopping: `{"monitor", "patience", "min_delta"}`, or `None` for no early stopping.

    Example:
    >>> from attn_search.spaces import load_space
    >>> space = load_space("default")
    >>> space.families
    ('attention', 'plain', 'matched')
    """

    name: str
    source: str = dataclasses.field(compare=False)
    description: str
    backbone: Mapping[str, Param]
    head: Mapping[str, Param]
    attention: Mapping[str, Param]
    baselines: tuple[str, ...]
    baseline_share: float
    training: Mapping[str, Param]
    early_stopping: Mapping[str, Any] | None

    @property
    def families(self) -> tuple[str, ...]:
        """`"attention"` first, then the included baselines."""
        return ("attention", *self.baselines)

    @property
    def placements(self) -> tuple[int, ...]:
        """Candidate attention placements (0 = first layer, k = after conv block k)."""
        return tuple(self.attention["placements"].candidates())

    @property
    def max_layers(self) -> int:
        """The most attention layers one model may hold."""
        return int(self.attention["max_layers"].value)

    def to_dict(self) -> dict:
        """Plain data (YAML-safe) that `load_space` turns back into an equal space."""
        training = {k: p.to_plain() for k, p in self.training.items()}
        training["early_stopping"] = (
            False if self.early_stopping is None else dict(self.early_stopping)
        )
        return {
            "name": self.name,
            "description": self.description,
            "backbone": {k: p.to_plain() for k, p in self.backbone.items()},
            "head": {k: p.to_plain() for k, p in self.head.items()},
            "attention": {k: p.to_plain() for k, p in self.attention.items()},
            "baselines": {"include": list(self.baselines), "share": self.baseline_share},
            "training": training,
        }


# -- schema --------------------------------------------------------------------------------
# Defaults are those of search_spaces/default.yaml, so a dict may give only what it changes.


@dataclasses.dataclass(frozen=True)
class _Rule:
    """What one key accepts: a type, bounds or allowed values, and whether it may be tuned."""

    dtype: str
    default: Any
    lo: float | None = None  # inclusive lower bound
    hi: float | None = None  # inclusive upper bound
    hi_open: bool = False  # hi is exclusive
    options: tuple | None = None  # allowed strings
    tunable: bool = True
    nullable: bool = False

    def describe(self) -> str:
        if self.dtype == "str":
            return "one of " + ", ".join(repr(o) for o in self.options)
        if self.dtype == "bool":
            return "true or false"
        noun = "an integer" if self.dtype == "int" else "a number"
        if self.lo is not None and self.hi is not None:
            right = ")" if self.hi_open else "]"
            text = f"{noun} in [{_num(self.lo)}, {_num(self.hi)}{right}"
        elif self.lo is not None:
            text = f"{noun} >= {_num(self.lo)}"
        else:
            text = noun
        return text + (" or null" if self.nullable else "")


def _num(x) -> str:
    return repr(x) if isinstance(x, float) and not x.is_integer() else str(int(x))


_SCHEMA: dict[str, dict[str, _Rule]] = {
    "backbone": {
        "blocks": _Rule("int", [2, 3], lo=1, hi=12),
        "filters": _Rule("int", [16, 32], lo=1),
        "growth": _Rule("float", 2.0, lo=1.0),
        "convs_per_block": _Rule("int", 1, lo=1),
        "kernel_size": _Rule("int", 3, lo=1),
        "normalization": _Rule("str", "batch", options=("none", "batch", "layer")),
        "pooling": _Rule("str", "max", options=("max", "avg")),
        "dropout": _Rule("float", [0.0, 0.2], lo=0.0, hi=1.0, hi_open=True),
        "min_resolution": _Rule("int", 4, lo=1, tunable=False),
    },
    "head": {
        "pooling": _Rule("str", "avg", options=("avg", "max", "flatten")),
        "dense": _Rule("int", 0, lo=0),
        "dropout": _Rule("float", 0.0, lo=0.0, hi=1.0, hi_open=True),
    },
    "attention": {
        "placements": _Rule("int", [0, 1, 2], lo=0),
        "max_layers": _Rule("int", 1, lo=1, hi=4, tunable=False),
        "filters": _Rule("int", [8, 16], lo=1, nullable=True),
        "num_heads": _Rule("int", [1, 2], lo=1),
        "activation": _Rule("str", ["linear", "relu"], options=_ACTIVATIONS),
        "gamma": _Rule("float", [0.0, 0.01, 0.1]),
        "kv_pool": _Rule("int", 1, lo=1),
        "auto_kv_pool": _Rule("bool", True, tunable=False),
    },
    "training": {
        "optimizer": _Rule("str", "adam", options=("adam", "adamw", "sgd", "rmsprop", "nadam")),
        "learning_rate": _Rule("float", {"min": 0.001, "max": 0.01, "sampling": "log"}, lo=0.0),
        "batch_size": _Rule("int", [32, 64], lo=1),
        "epochs": _Rule("int", 6, lo=1),
    },
}
_EARLY_STOPPING = {"monitor": "val_loss", "patience": 2, "min_delta": 0.0}


class _Checker:
    """Validates one raw space, raising SearchSpaceError(source, key path, rule)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, rule: str):
        where = f"{path}: " if path else ""
        raise SearchSpaceError(f"Invalid search space {self.source}: {where}{rule}")

    def mapping(self, raw, path: str, known) -> dict:
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be a mapping of keys to values. Received: {_show(raw)}.")
        for key in raw:
            if not isinstance(key, str) or key not in known:
                self.unknown(f"{path}.{key}" if path else str(key), str(key), known)
        return dict(raw)

    def unknown(self, path: str, key: str, known) -> None:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hint = (
            f"Did you mean {close[0]!r}?"
            if close
            else "Known keys: " + ", ".join(sorted(known)) + "."
        )
        self.fail(path, f"unknown key. {hint}")

    def scalar(self, value, path: str, rule: _Rule):
        """One value of the rule's type, within its bounds; returns it normalized."""
        if value is None and rule.nullable:
            return None
        ok = True
        if rule.dtype == "int":
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            value = int(value) if ok else value
        elif rule.dtype == "float":
            if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    ok = False
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                value = float(value)
            else:
                ok = False
            ok = ok and math.isfinite(value)
        elif rule.dtype == "bool":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str) and value in rule.options
        if ok and rule.lo is not None:
            ok = value >= rule.lo
        if ok and rule.hi is not None:
            ok = value < rule.hi if rule.hi_open else value <= rule.hi
        if not ok:
            self.fail(path, f"must be {rule.describe()}. Received: {_show(value)}.")
        return value

    def param(self, raw, path: str, rule: _Rule) -> Param:
        if isinstance(raw, (list, tuple)):
            if not rule.tunable:
                self.fail(path, f"must be {rule.describe()}, a single value. Received: {raw!r}.")
            if not raw:
                self.fail(path, "empty choice; give at least one value.")
            values = []
            for i, item in enumerate(raw):
                value = self.scalar(item, f"{path}[{i}]", dataclasses.replace(rule, nullable=False))
                if value in values:
                    self.fail(f"{path}[{i}]", f"duplicate value {_show(value)}.")
                values.append(value)
            return Param("choice", rule.dtype, values=tuple(values))
        if isinstance(raw, Mapping):
            if not rule.tunable or rule.dtype not in ("int", "float"):
                kinds = "a single value" if not rule.tunable else "a value or a list of values"
                self.fail(
                    path,
                    f"must be {rule.describe()} ({kinds}); a {{min, max}} range is only for "
                    f"tunable numbers. Received: {dict(raw)!r}.",
                )
            return self.range(raw, path, rule)
        return Param("fixed", rule.dtype, value=self.scalar(raw, path, rule))

    def range(self, raw, path: str, rule: _Rule) -> Param:
        raw = self.mapping(raw, path, ("min", "max", "step", "sampling"))
        if "min" not in raw or "max" not in raw:
            self.fail(path, f"a range needs both min and max. Received: {raw!r}.")
        inner = dataclasses.replace(rule, nullable=False)
        lo = self.scalar(raw["min"], f"{path}.min", inner)
        hi = self.scalar(raw["max"], f"{path}.max", inner)
        if lo > hi:
            self.fail(path, f"min must be <= max. Received: min={_num(lo)}, max={_num(hi)}.")
        sampling = raw.get("sampling", "linear")
        if sampling not in _SAMPLINGS:
            self.fail(
                f"{path}.sampling",
                f"must be one of 'linear', 'log', 'reverse_log'. Received: {_show(sampling)}.",
            )
        if sampling != "linear" and lo <= 0:
            self.fail(path, f"{sampling} sampling needs min > 0. Received: min={_num(lo)}.")
        step = raw.get("step")
        if step is not None:
            step_rule = _Rule(rule.dtype, None, lo=2 if sampling != "linear" else 1)
            if rule.dtype == "float":
                step_rule = _Rule("float", None, lo=1.0 if sampling != "linear" else 0.0)
            step = self.scalar(step, f"{path}.step", step_rule)
            if step == 0 or (sampling != "linear" and step <= 1):
                self.fail(
                    f"{path}.step",
                    f"must be > {'1 (a factor, with log sampling)' if sampling != 'linear' else 0}"
                    f". Received: {_num(step)}.",
                )
        return Param("range", rule.dtype, min=lo, max=hi, step=step, sampling=sampling)


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return repr(value)


def _validate(raw: Any, source: str, default_name: str) -> SearchSpace:
    check = _Checker(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        check.fail(
            "",
            "the top level must be a mapping of sections (" + ", ".join(_SECTIONS) + "). "
            f"Received: {_show(raw)}.",
        )
    raw = check.mapping(raw, "", _SECTIONS)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        check.fail("name", f"must be a non-empty string. Received: {_show(name)}.")
    description = raw.get("description", "")
    if not isinstance(description, str):
        check.fail("description", f"must be a string. Received: {_show(description)}.")

    sections: dict[str, dict[str, Param]] = {}
    for section, rules in _SCHEMA.items():
        known = tuple(rules) + (("early_stopping",) if section == "training" else ())
        given = check.mapping(raw.get(section) or {}, section, known)
        sections[section] = {
            key: check.param(given.get(key, rule.default), f"{section}.{key}", rule)
            for key, rule in rules.items()
        }

    early = _early_stopping(check, (raw.get("training") or {}).get("early_stopping", True))
    baselines, share = _baselines(check, raw.get("baselines"))

    # Placements must exist for every block count the backbone may sample.
    min_blocks = sections["backbone"]["blocks"].lowest()
    placements = sections["attention"]["placements"]
    for i, p in enumerate(placements.candidates()):
        if p > min_blocks:
            where = "attention.placements" + (f"[{i}]" if placements.kind == "choice" else "")
            check.fail(
                where,
                f"placement {p} is deeper than the number of conv blocks (backbone.blocks can "
                f"be as low as {min_blocks}); use a placement in 0..{min_blocks}.",
            )
    return SearchSpace(
        name=name,
        source=source,
        description=description,
        backbone=sections["backbone"],
        head=sections["head"],
        attention=sections["attention"],
        baselines=baselines,
        baseline_share=share,
        training=sections["training"],
        early_stopping=early,
    )


def _early_stopping(check: _Checker, raw) -> dict | None:
    if raw is False or raw is None:
        return None
    if raw is True:
        return dict(_EARLY_STOPPING)
    raw = check.mapping(raw, "training.early_stopping", tuple(_EARLY_STOPPING))
    out = dict(_EARLY_STOPPING)
    if "monitor" in raw:
        if not isinstance(raw["monitor"], str) or not raw["monitor"]:
            check.fail(
                "training.early_stopping.monitor",
                f"must be a metric name such as 'val_loss'. Received: {_show(raw['monitor'])}.",
            )
        out["monitor"] = raw["monitor"]
    if "patience" in raw:
        out["patience"] = check.scalar(
            raw["patience"], "training.early_stopping.patience", _Rule("int", None, lo=0)
        )
    if "min_delta" in raw:
        out["min_delta"] = check.scalar(
            raw["min_delta"], "training.early_stopping.min_delta", _Rule("float", None, lo=0.0)
        )
    return out


def _baselines(check: _Checker, raw) -> tuple[tuple[str, ...], float]:
    raw = check.mapping(raw or {}, "baselines", ("include", "share"))
    include = raw.get("include", list(BASELINES))
    if not isinstance(include, (list, tuple)):
        check.fail(
            "baselines.include",
            f"must be a list drawn from 'plain', 'matched' (may be empty). Received: "
            f"{_show(include)}.",
        )
    names: list[str] = []
    for i, item in enumerate(include):
        if item not in BASELINES:
            check.fail(
                f"baselines.include[{i}]", f"must be 'plain' or 'matched'. Received: {item!r}."
            )
        if item in names:
            check.fail(f"baselines.include[{i}]", f"duplicate value {item!r}.")
        names.append(item)
    names.sort(key=BASELINES.index)
    if "share" not in raw:
        return tuple(names), (0.25 if names else 0.0)
    share = check.scalar(
        raw["share"], "baselines.share", _Rule("float", None, lo=0.0, hi=1.0, hi_open=True)
    )
    if not names and share > 0:
        check.fail(
            "baselines.share",
            f"must be 0 when baselines.include is empty. Received: {_num(share)}.",
        )
    return tuple(names), share


# -- loading -------------------------------------------------------------------------------


def _shipped() -> dict[str, pathlib.Path]:
    root = importlib.resources.files("attn_search.search_spaces")
    return {
        entry.name[: -len(".yaml")]: pathlib.Path(str(entry))
        for entry in root.iterdir()
        if entry.name.endswith(".yaml")
    }


def _read_yaml(path: pathlib.Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SearchSpaceError(
            f"Cannot read search space {path}: {e.strerror or e}."
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SearchSpaceError(
            f"Invalid search space {path}: not valid YAML{where}: {problem}."
        ) from None


def load_space(space: str | os.PathLike | Mapping | SearchSpace) -> SearchSpace:
    """Loads and validates a search space.

    Args:
        space: A shipped space's name (`"default"`, `"mnist"`, `"cifar"`; see `list_spaces()`),
            the path of a YAML file, a dict with the same content, or a `SearchSpace` (returned
            as is). Keys left out take the defaults of `default.yaml`'s format.

    Returns:
        A validated `SearchSpace`.

    Raises:
        SearchSpaceError: For an unknown name, a missing or unreadable file, invalid YAML, or
            an invalid space; the message names the file, the key path (e.g.
            `attention.num_heads[2]`) and the rule that was broken.

    Example:
    >>> from attn_search.spaces import load_space
    >>> load_space({"attention": {"placements": [1, 2]}}).placements
    (1, 2)
    """
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return _validate(space, "<dict>", str(space.get("name") or "custom"))
    if not isinstance(space, (str, os.PathLike)):
        raise SearchSpaceError(
            "`space` must be a shipped space name, a YAML path, a dict or a SearchSpace. "
            f"Received: space={space!r}"
        )
    text = os.fspath(space)
    shipped = _shipped()
    path = pathlib.Path(text).expanduser()
    looks_like_path = text.endswith((".yaml", ".yml")) or os.sep in text or path.exists()
    if not looks_like_path:
        if text not in shipped:
            close = difflib.get_close_matches(text, list(shipped), n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise SearchSpaceError(
                f"Unknown search space {text!r}. {hint}Shipped spaces: "
                f"{', '.join(sorted(shipped))}; or give the path of a YAML file."
            )
        path = shipped[text]
    elif not path.is_file():
        raise SearchSpaceError(f"Search space file not found: {text}")
    return _validate(_read_yaml(path), str(path), path.stem)


def list_spaces() -> list[dict]:
    """The search spaces shipped with attn-search.

    Returns:
        One dict per space, sorted by name: `{"name", "path", "description"}`.
    """
    out = []
    for name, path in sorted(_shipped().items()):
        space = load_space(path)
        out.append({"name": name, "path": str(path), "description": space.description})
    return out

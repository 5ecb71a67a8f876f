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
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from attn_search._backbone_spec import check_settings, default_settings
from attn_search._space_params import Checker, Param, Rule, number_text, value_text
from attn_search.errors import SearchSpaceError

__all__ = [
    "AUGMENTATIONS",
    "BASELINES",
    "FAMILIES",
    "Param",
    "SearchSpace",
    "list_spaces",
    "load_space",
]

FAMILIES = ("attention", "plain", "matched")
BASELINES = ("plain", "matched")
_ACTIVATIONS = (
    "linear", "relu", "tanh", "sigmoid", "gelu", "swish", "silu", "elu", "selu", "softplus",
    "leaky_relu",
)  # fmt: skip
#: `training.augment`'s values: random horizontal flips, random shifts (up to 10% of each side),
#: both, or none. Keras preprocessing layers at the model's input, active in training only.
AUGMENTATIONS = ("none", "flip", "translate", "both")
_SECTIONS = ("name", "description", "backbone", "head", "attention", "baselines", "training")


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
        training: `Param`s: optimizer, learning_rate, batch_size, epochs, and augment unless
            it is fixed to "none" (left out then, so a space without augmentation reads, and
            samples, exactly as before the key existed).
        early_stopping: `{"monitor", "patience", "min_delta"}`, or `None` for no early stopping.
        network: The network attention goes into, from `backbone.model` (`"cnn"`, the default:
            the small CNN above; a `keras.applications` name; or `file.py:function`),
            `backbone.weights`, `backbone.options` and `backbone.points`.

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
    # The network attention goes into (backbone.model, weights, options, points): see
    # attn_search._backbone_spec. The default is the small CNN of `backbone`'s other keys.
    network: Mapping[str, Any] = dataclasses.field(default_factory=default_settings)

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
        backbone = {k: p.to_plain() for k, p in self.backbone.items()}
        backbone.update(
            {k: list(v) if isinstance(v, tuple) else v
             for k, v in self.network.items() if v != default_settings()[k]}
        )  # fmt: skip
        return {
            "name": self.name,
            "description": self.description,
            "backbone": backbone,
            "head": {k: p.to_plain() for k, p in self.head.items()},
            "attention": {k: p.to_plain() for k, p in self.attention.items()},
            "baselines": {"include": list(self.baselines), "share": self.baseline_share},
            "training": training,
        }


# -- schema --------------------------------------------------------------------------------
# Defaults are those of search_spaces/default.yaml, so a dict may give only what it changes.


_SCHEMA: dict[str, dict[str, Rule]] = {
    "backbone": {
        "blocks": Rule("int", [2, 3], lo=1, hi=12),
        "filters": Rule("int", [16, 32], lo=1),
        "growth": Rule("float", 2.0, lo=1.0),
        "convs_per_block": Rule("int", 1, lo=1),
        "kernel_size": Rule("int", 3, lo=1),
        "normalization": Rule("str", "batch", options=("none", "batch", "layer")),
        "pooling": Rule("str", "max", options=("max", "avg")),
        "dropout": Rule("float", [0.0, 0.2], lo=0.0, hi=1.0, hi_open=True),
        "min_resolution": Rule("int", 4, lo=1, tunable=False),
    },
    "head": {
        "pooling": Rule("str", "avg", options=("avg", "max", "flatten")),
        "dense": Rule("int", 0, lo=0),
        "dropout": Rule("float", 0.0, lo=0.0, hi=1.0, hi_open=True),
    },
    "attention": {
        "placements": Rule("int", [0, 1, 2], lo=0),
        "max_layers": Rule("int", 1, lo=1, hi=4, tunable=False),
        "filters": Rule("int", [8, 16], lo=1, nullable=True),
        "num_heads": Rule("int", [1, 2], lo=1),
        "activation": Rule("str", ["linear", "relu"], options=_ACTIVATIONS),
        "gamma": Rule("float", [0.0, 0.01, 0.1]),
        "kv_pool": Rule("int", 1, lo=1),
        "auto_kv_pool": Rule("bool", True, tunable=False),
    },
    "training": {
        "optimizer": Rule("str", "adam", options=("adam", "adamw", "sgd", "rmsprop", "nadam")),
        "learning_rate": Rule("float", {"min": 0.001, "max": 0.01, "sampling": "log"}, lo=0.0),
        "batch_size": Rule("int", [32, 64], lo=1),
        "epochs": Rule("int", 6, lo=1),
        "augment": Rule("str", "none", options=AUGMENTATIONS),
    },
}
_EARLY_STOPPING = {"monitor": "val_loss", "patience": 2, "min_delta": 0.0}


def _validate(raw: Any, source: str, default_name: str) -> SearchSpace:
    check = Checker(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        check.fail(
            "",
            "the top level must be a mapping of sections (" + ", ".join(_SECTIONS) + "). "
            f"Received: {value_text(raw)}.",
        )
    raw = check.mapping(raw, "", _SECTIONS)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        check.fail("name", f"must be a non-empty string. Received: {value_text(name)}.")
    description = raw.get("description", "")
    if not isinstance(description, str):
        check.fail("description", f"must be a string. Received: {value_text(description)}.")

    sections: dict[str, dict[str, Param]] = {}
    network = default_settings()
    for section, rules in _SCHEMA.items():
        known = tuple(rules) + (("early_stopping",) if section == "training" else ())
        known += tuple(network) if section == "backbone" else ()
        given = check.mapping(raw.get(section) or {}, section, known)
        if section == "backbone":
            network = check_settings(check, given)
        sections[section] = {
            key: check.param(given.get(key, rule.default), f"{section}.{key}", rule)
            for key, rule in rules.items()
        }
    augment = sections["training"]["augment"]
    if augment.kind == "fixed" and augment.value == "none":
        del sections["training"]["augment"]

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
        network=network,
    )


def _early_stopping(check: Checker, raw) -> dict | None:
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
                "must be a metric name such as 'val_loss'. "
                f"Received: {value_text(raw['monitor'])}.",
            )
        out["monitor"] = raw["monitor"]
    if "patience" in raw:
        out["patience"] = check.scalar(
            raw["patience"], "training.early_stopping.patience", Rule("int", None, lo=0)
        )
    if "min_delta" in raw:
        out["min_delta"] = check.scalar(
            raw["min_delta"], "training.early_stopping.min_delta", Rule("float", None, lo=0.0)
        )
    return out


def _baselines(check: Checker, raw) -> tuple[tuple[str, ...], float]:
    raw = check.mapping(raw or {}, "baselines", ("include", "share"))
    include = raw.get("include", list(BASELINES))
    if not isinstance(include, (list, tuple)):
        check.fail(
            "baselines.include",
            f"must be a list drawn from 'plain', 'matched' (may be empty). Received: "
            f"{value_text(include)}.",
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
        raw["share"], "baselines.share", Rule("float", None, lo=0.0, hi=1.0, hi_open=True)
    )
    if not names and share > 0:
        check.fail(
            "baselines.share",
            f"must be 0 when baselines.include is empty. Received: {number_text(share)}.",
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
        raise SearchSpaceError(f"Cannot read search space {path}: {e.strerror or e}.") from None
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

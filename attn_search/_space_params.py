"""The parameters of a search space, and the checks that turn raw YAML values into them.

A `Param` is one value of a space: fixed, a choice or a range. A `Rule` says what one key
accepts; `Checker` validates one raw value (or mapping) against a rule and raises a
`SearchSpaceError` that names the file, the key path and the broken rule. `attn_search.spaces`
holds the schema of rules and the `SearchSpace` built from them.

Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from typing import Any

from attn_search.errors import SearchSpaceError

_SAMPLINGS = ("linear", "log", "reverse_log")


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


@dataclasses.dataclass(frozen=True)
class Rule:
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
            text = f"{noun} in [{number_text(self.lo)}, {number_text(self.hi)}{right}"
        elif self.lo is not None:
            text = f"{noun} >= {number_text(self.lo)}"
        else:
            text = noun
        return text + (" or null" if self.nullable else "")


def number_text(x) -> str:
    return repr(x) if isinstance(x, float) and not x.is_integer() else str(int(x))


class Checker:
    """Validates one raw space, raising SearchSpaceError(source, key path, rule)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, rule: str):
        where = f"{path}: " if path else ""
        raise SearchSpaceError(f"Invalid search space {self.source}: {where}{rule}")

    def mapping(self, raw, path: str, known) -> dict:
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be a mapping of keys to values. Received: {value_text(raw)}.")
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

    def scalar(self, value, path: str, rule: Rule):
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
            self.fail(path, f"must be {rule.describe()}. Received: {value_text(value)}.")
        return value

    def param(self, raw, path: str, rule: Rule) -> Param:
        if isinstance(raw, (list, tuple)):
            if not rule.tunable:
                self.fail(path, f"must be {rule.describe()}, a single value. Received: {raw!r}.")
            if not raw:
                self.fail(path, "empty choice; give at least one value.")
            values = []
            for i, item in enumerate(raw):
                value = self.scalar(item, f"{path}[{i}]", dataclasses.replace(rule, nullable=False))
                if value in values:
                    self.fail(f"{path}[{i}]", f"duplicate value {value_text(value)}.")
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

    def range(self, raw, path: str, rule: Rule) -> Param:
        raw = self.mapping(raw, path, ("min", "max", "step", "sampling"))
        if "min" not in raw or "max" not in raw:
            self.fail(path, f"a range needs both min and max. Received: {raw!r}.")
        inner = dataclasses.replace(rule, nullable=False)
        lo = self.scalar(raw["min"], f"{path}.min", inner)
        hi = self.scalar(raw["max"], f"{path}.max", inner)
        if lo > hi:
            self.fail(
                path, f"min must be <= max. Received: min={number_text(lo)}, max={number_text(hi)}."
            )
        sampling = raw.get("sampling", "linear")
        if sampling not in _SAMPLINGS:
            self.fail(
                f"{path}.sampling",
                f"must be one of 'linear', 'log', 'reverse_log'. Received: {value_text(sampling)}.",
            )
        if sampling != "linear" and lo <= 0:
            self.fail(path, f"{sampling} sampling needs min > 0. Received: min={number_text(lo)}.")
        step = raw.get("step")
        if step is not None:
            step_rule = Rule(rule.dtype, None, lo=2 if sampling != "linear" else 1)
            if rule.dtype == "float":
                step_rule = Rule("float", None, lo=1.0 if sampling != "linear" else 0.0)
            step = self.scalar(step, f"{path}.step", step_rule)
            if step == 0 or (sampling != "linear" and step <= 1):
                self.fail(
                    f"{path}.step",
                    f"must be > {'1 (a factor, with log sampling)' if sampling != 'linear' else 0}"
                    f". Received: {number_text(step)}.",
                )
        return Param("range", rule.dtype, min=lo, max=hi, step=step, sampling=sampling)


def value_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return repr(value)

"""`OptunaHyperParameters`: a KerasTuner hypermodel's `hp.*` calls answered by an Optuna trial.

The hypermodel calls `hp.Int`, `hp.Float`, `hp.Choice`, `hp.Boolean` and `hp.Fixed` as it
builds, and each call is answered with the matching `trial.suggest_*`, so conditional
hyperparameters are only sampled when the model actually asks for them.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["OptunaHyperParameters"]


class OptunaHyperParameters:
    """Answers a KerasTuner hypermodel's `hp.*` calls with an Optuna trial's `suggest_*`.

    It offers the part of `keras_tuner.HyperParameters` a hypermodel uses while building:
    `Int`, `Float`, `Choice`, `Boolean`, `Fixed`, `conditional_scope`, `get`, `values`.
    A value is sampled the first time its name is asked for, then answered from `values`.

    Args:
        trial: An `optuna.trial.Trial`, or `None` to answer only from `fixed` and defaults.
        fixed: Values to answer as given, without asking the sampler. Defaults to none.
        use_defaults: Whether to answer every other call with its default (KerasTuner's
            defaults: `min_value`, the first choice, `False`). Defaults to `False`.

    Example:

    >>> hp = OptunaHyperParameters(None, use_defaults=True)
    >>> hp.Int("units", 8, 64, step=8), hp.Choice("act", ["relu", "tanh"])
    (8, 'relu')
    """

    def __init__(self, trial: Any = None, *, fixed: dict | None = None, use_defaults: bool = False):
        self.trial = trial
        self.values: dict[str, Any] = {}
        self._fixed = dict(fixed or {})
        self._use_defaults = use_defaults or trial is None
        self._scopes: list[tuple[str, list]] = []

    # --- the KerasTuner surface -------------------------------------------------------------
    def Int(
        self,
        name: str,
        min_value: int,
        max_value: int,
        step: int | None = None,
        sampling: str = "linear",
        default: int | None = None,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> int | None:
        bounds = (int(min_value), int(max_value), step, sampling, default)
        return self._number(name, *bounds, int, (parent_name, parent_values))

    def Float(
        self,
        name: str,
        min_value: float,
        max_value: float,
        step: float | None = None,
        sampling: str = "linear",
        default: float | None = None,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> float | None:
        bounds = (float(min_value), float(max_value), step, sampling, default)
        return self._number(name, *bounds, float, (parent_name, parent_values))

    def _number(self, name, low, high, step, sampling, default, kind, parent):
        """`Int` and `Float`: `kind` is `int` or `float`."""
        default = low if default is None else kind(default)
        log = (sampling or "linear").lower() in ("log", "reverse_log")
        integer = kind is int
        no_step = (None, 1) if integer else (None,)

        def suggest():  # asked only when the value is sampled (there is a trial then)
            suggest_range = self.trial.suggest_int if integer else self.trial.suggest_float
            if log and step not in no_step:
                # KerasTuner's log sampling with a step is multiplicative: low, low*step, ...
                choices = _geometric(low, high, step, integer=integer)
                return self.trial.suggest_categorical(name, choices)
            if log:
                return suggest_range(name, low, high, log=True)
            if integer:
                return suggest_range(name, low, high, step=int(step or 1))
            return suggest_range(name, low, high, step=step)

        return self._answer(name, default, suggest, *parent)

    def Choice(
        self,
        name: str,
        values: list,
        ordered: bool | None = None,
        default: Any = None,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> Any:
        values = list(values)
        default = values[0] if default is None else default
        return self._answer(
            name,
            default,
            lambda: self.trial.suggest_categorical(name, values),
            parent_name,
            parent_values,
        )

    def Boolean(
        self,
        name: str,
        default: bool = False,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> bool | None:
        return self._answer(
            name,
            bool(default),
            lambda: self.trial.suggest_categorical(name, [False, True]),
            parent_name,
            parent_values,
        )

    def Fixed(
        self, name: str, value: Any, parent_name: str | None = None, parent_values: Any = None
    ) -> Any:
        if not self._active(parent_name, parent_values):
            return None
        self.values[name] = value
        return value

    @contextlib.contextmanager
    def conditional_scope(self, parent_name: str, parent_values: Any):
        """Hyperparameters asked inside are active only when `parent_name` is in `parent_values`."""
        self._scopes.append((parent_name, _as_list(parent_values)))
        try:
            yield
        finally:
            self._scopes.pop()

    def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        raise KeyError(f"{name} does not exist.")

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    # --- internals ---------------------------------------------------------------------------
    def _active(self, parent_name, parent_values) -> bool:
        conditions = list(self._scopes)
        if parent_name is not None:
            conditions.append((parent_name, _as_list(parent_values)))
        return all(self.values.get(p) in vals for p, vals in conditions)

    def _answer(self, name, default, suggest, parent_name, parent_values):
        if not self._active(parent_name, parent_values):
            return None
        if name in self.values:
            return self.values[name]
        if name in self._fixed:
            value = self._fixed[name]
        elif self._use_defaults:
            value = default
        else:
            value = suggest()
        self.values[name] = value
        return value


def _as_list(values) -> list:
    return list(values) if isinstance(values, (list, tuple, set)) else [values]


def _geometric(low, high, factor, *, integer: bool) -> list:
    # KerasTuner's log sampling with a step is multiplicative: low, low*step, ... <= high.
    factor = float(factor)
    if factor <= 1:
        return [low, high]
    out, value = [], float(low)
    while value <= high * (1 + 1e-9):
        out.append(int(round(value)) if integer else value)
        value *= factor
    return sorted(set(out))

"""Search engines behind one interface: Optuna and KerasTuner, a registry and one resolver.

```python
from attn_search.engines import get_engine

engine = get_engine("optuna", sampler="tpe", pruner="median")   # or "keras-tuner", tuner="bayesian"
```

`Engine` (in `base`) is the small interface the runner drives: `open`, `ask`, `tell`,
`interrupt`, `records`, `n_counted`, `close`. Each engine declares its options
(`Engine.options`, a tuple of `EngineOption`), so the runner and the command line validate and
pass them without knowing which engine takes which. Neither Optuna nor KerasTuner is imported
until an engine is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attn_search.engines.base import (
    STATUSES,
    Engine,
    EngineOption,
    EngineTrial,
    TrialPlan,
)
from attn_search.engines.keras_tuner import TUNERS, KerasTunerEngine
from attn_search.engines.optuna import PRUNERS, SAMPLERS, OptunaEngine, OptunaHyperParameters
from attn_search.errors import ConfigError

__all__ = [
    "ENGINES",
    "ENGINE_ALIASES",
    "STATUSES",
    "TUNERS",
    "SAMPLERS",
    "PRUNERS",
    "Engine",
    "EngineOption",
    "EngineTrial",
    "TrialPlan",
    "engine_class",
    "engine_options",
    "get_engine",
    "options_for",
    "OptunaEngine",
    "OptunaHyperParameters",
    "KerasTunerEngine",
]

_REGISTRY: dict[str, type[Engine]] = {
    OptunaEngine.name: OptunaEngine,
    KerasTunerEngine.name: KerasTunerEngine,
}

#: The names `get_engine` accepts, the first being the default.
ENGINES = tuple(_REGISTRY)

#: Other spellings of engine names, each mapped to its name in `ENGINES`.
ENGINE_ALIASES = {"keras_tuner": "keras-tuner", "kerastuner": "keras-tuner"}


def engine_class(name: str | None = None) -> type[Engine]:
    """Returns the engine class a name stands for.

    Args:
        name: A name in `ENGINES` or `ENGINE_ALIASES` (any case, spaces around ignored), or
            `None` for the default (`"optuna"`).

    Raises:
        ConfigError: The name is not an engine's.

    Example:

    >>> engine_class("Keras_Tuner").__name__
    'KerasTunerEngine'
    """
    if name is None:
        return _REGISTRY[ENGINES[0]]
    key = name.strip().lower() if isinstance(name, str) else None
    key = ENGINE_ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ConfigError(
            f"`engine` must be one of {', '.join(map(repr, ENGINES))} or an Engine "
            f"instance. Received: engine={name!r}"
        )
    return _REGISTRY[key]


def get_engine(name_or_instance: str | Engine | None = None, **options: Any) -> Engine:
    """Turns what the user typed into an engine.

    Args:
        name_or_instance: `"optuna"`, `"keras-tuner"` (also `"keras_tuner"`, `"kerastuner"`),
            an `Engine` instance (returned as is), or `None` for the default (`"optuna"`).
        **options: The engine's options (see `engine_options()`): for Optuna `sampler`,
            `pruner`, `storage`, `study`; for KerasTuner `tuner`.

    Returns:
        An `Engine`.

    Raises:
        ConfigError: The name is not an engine, an option is not one of that engine's, or a
            value is invalid for it.

    Example:

    >>> get_engine("optuna", sampler="random", pruner="none").name
    'optuna'
    """
    if isinstance(name_or_instance, Engine):
        return name_or_instance
    cls = engine_class(name_or_instance)
    return cls(**cls.check_options(options))


def engine_options() -> dict[str, EngineOption]:
    """Returns every option of every engine, by name (for a configuration and its flags).

    Example:

    >>> sorted(engine_options())
    ['pruner', 'sampler', 'storage', 'study', 'tuner']
    """
    return {option.name: option for cls in _REGISTRY.values() for option in cls.options}


def options_for(name: str | Engine | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """Picks out of `values` the options the engine `name` declares.

    An `Engine` instance is already configured: nothing is picked for it.

    Args:
        name: What `get_engine` accepts.
        values: Any mapping holding option values, e.g. a run configuration as a dict.

    Raises:
        ConfigError: The name is not an engine's.

    Example:

    >>> options_for("keras-tuner", {"tuner": "grid", "sampler": "tpe", "trials": 3})
    {'tuner': 'grid'}
    """
    if isinstance(name, Engine):
        return {}
    return {o.name: values[o.name] for o in engine_class(name).options if o.name in values}

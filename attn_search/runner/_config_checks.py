"""The value checks behind `RunConfig.validate`: one function per field `kind`.

Each is `check(name, value, optional)` and raises `ConfigError` naming the field and echoing the
value. Plain Python: no TensorFlow, Keras or engine library (the engine checks import the light
engine registry on first use).
"""

from __future__ import annotations

import math
import os
from typing import Any

from attn_search.errors import ConfigError

_TEXT_RULES = {
    "dataset": "a name, a path or a Dataset",
    "space": "a space name, a YAML path or a dict",
    "out": "a folder path",
}


def _text(name: str, value: Any, optional: bool) -> None:
    if name == "dataset" and isinstance(value, str) and not value.strip():
        raise ConfigError(f"`dataset` must not be empty. Received: dataset={value!r}")
    if value is None and optional:
        return
    empty = value is None or (isinstance(value, str) and not value.strip())
    if empty or (name == "out" and not isinstance(value, (str, os.PathLike))):
        raise ConfigError(f"`{name}` must be {_TEXT_RULES[name]}. Received: {name}={value!r}")


def _engine(name: str, value: Any, optional: bool) -> None:
    from attn_search.engines import ENGINE_ALIASES, ENGINES, Engine

    if isinstance(value, Engine):
        return
    key = _key(value)
    if ENGINE_ALIASES.get(key, key) not in ENGINES:
        raise ConfigError(
            f"`engine` must be one of {', '.join(map(repr, ENGINES))}. Received: engine={value!r}"
        )


def _engine_option(name: str, value: Any, optional: bool) -> None:
    from attn_search.engines import engine_options

    engine_options()[name].check(value)


def _image_size(name: str, size: Any, optional: bool) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if not (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair)
    ):
        raise ConfigError(
            "`image_size` must be (height, width), two positive integers. "
            f"Received: image_size={size!r}"
        )
    return int(pair[0]), int(pair[1])


def _flag(name: str, value: Any, optional: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"`{name}` must be True or False. Received: {name}={value!r}")


def _count(name: str, value: Any, optional: bool) -> None:
    if value not in (0, 1, 2) or isinstance(value, bool):
        raise ConfigError(f"`{name}` must be 0, 1 or 2. Received: {name}={value!r}")


def _precision(name: str, value: Any, optional: bool) -> None:
    if value not in (None, "float16", "bfloat16"):
        rule = "'float16', 'bfloat16' or None (float32)"
        raise ConfigError(f"`{name}` must be {rule}. Received: {name}={value!r}")


def _key(value: Any) -> Any:
    return value.strip().lower().replace("_", "-") if isinstance(value, str) else value


def _int(name: str, value: Any, low: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        rule = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(
            f"`{name}` must be {rule}{' or None' if optional else ''}. Received: {name}={value!r}"
        )


def _number(name: str, value: Any, optional: bool) -> None:
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

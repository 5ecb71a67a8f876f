"""How command-line text becomes typed values: argument types, and the `run` flags.

The `attn-search run` flags are generated from `RunConfig`'s field metadata (one declaration
per option, see `attn_search.runner.config`), with the engines' choices and help
(`attn_search.engines.engine_options`), and turned back into a checked `RunConfig` by
`run_config`. Every argument type's error names the option and echoes the value. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["add_run_flags", "bounded", "choice", "positive_int", "run_config"]


def bounded(name: str, convert: Callable[[str], Any], rule: str, ok: Callable[[Any], bool]):
    """An argparse type: `convert` the text, then check `ok`; both failures say `rule`."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be {rule}. Received: {name}={text!r}"
            ) from None
        if not ok(value):
            shown = text if isinstance(value, float) else value
            raise argparse.ArgumentTypeError(f"{name} must be {rule}. Received: {name}={shown}")
        return value

    parse.__name__ = name
    return parse


def positive_int(name: str) -> Callable[[str], int]:
    return bounded(name, int, "a positive integer", lambda v: v >= 1)


def _non_negative_int(name: str) -> Callable[[str], int]:
    return bounded(name, int, "a non-negative integer", lambda v: v >= 0)


def _positive_float(name: str) -> Callable[[str], float]:
    return bounded(name, float, "a positive number", lambda v: 0 < v < float("inf"))


def _image_size(text: str) -> tuple[int, int]:
    """``32`` -> (32, 32); ``32x48`` or ``32,48`` -> (32, 48) (height, width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            "--image-size must be SIZE or HEIGHTxWIDTH with positive integers, e.g. 32 or "
            f"32x48. Received: --image-size={text!r}"
        )
    return values[0], values[1]


def choice(
    name: str,
    choices: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    *,
    strict: bool = True,
) -> Callable[[str], str]:
    """A case-insensitive choice (`_` read as `-`) whose error names the option and echoes
    the value; with `strict=False` an unknown value is passed on as typed, for a later check."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        value = (aliases or {}).get(value, value).replace("_", "-")
        value = (aliases or {}).get(value, value)
        if value in choices:
            return value
        if not strict:
            return text
        raise argparse.ArgumentTypeError(
            f"{name} must be one of {', '.join(choices)}. Received: {name}={text!r}"
        )

    parse.__name__ = name
    return parse


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Adds one flag per `RunConfig` field to `parser`, in the field's --help group.

    The flag is `--` + the field name with `-` for `_` (plus the field's short `flag`); its
    type comes from the field's `kind`, its help from the field (or, for an engine option,
    from the engine that declares it), and "Defaults to X." from the field's default.
    """
    from attn_search.runner.config import FLAG_GROUPS, RunConfig  # plain Python: no TensorFlow

    groups = {name: parser.add_argument_group(name) for name in FLAG_GROUPS}
    # -v and -q ask for more and for less output: one or the other.
    groups["output"] = groups["output"].add_mutually_exclusive_group()
    for field in dataclasses.fields(RunConfig):
        meta = field.metadata
        flag = "--" + field.name.replace("_", "-")
        names = [meta["flag"], flag] if meta.get("flag") else [flag]
        kwargs = _flag_kwargs(flag, field.name, meta["kind"], meta["help"])
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if field.default is not None and meta["kind"] not in ("flag", "count"):
            text = kwargs["help"].rstrip()
            kwargs["help"] = (
                f"{text}{' ' if text.endswith('.') else '. '}Defaults to {field.default}."
            )
        groups[meta["group"]].add_argument(*names, default=field.default, **kwargs)


def _flag_kwargs(flag: str, name: str, kind: str, help: str) -> dict[str, Any]:
    """`add_argument`'s type (or action) and help for a `RunConfig` field of `kind`."""
    if kind == "flag":
        return {"action": "store_true", "help": help}
    if kind == "count":
        return {"action": "count", "help": help}
    if kind in ("engine", "engine_option"):
        return _engine_flag(flag, name, help)
    types: dict[str, Callable[[str], Callable[[str], Any]]] = {
        "text": lambda _: str,
        "positive_int": positive_int,
        "non_negative_int": _non_negative_int,
        "positive_float": _positive_float,
        "image_size": lambda _: _image_size,
        "precision": lambda flag: choice(flag, ("float16", "bfloat16")),
        "backbone": lambda _: str,
    }
    if kind not in types:
        raise ValueError(f"`kind` of RunConfig.{name} is unknown. Received: kind={kind!r}")
    return {"type": types[kind](flag), "help": help}


def _engine_flag(flag: str, name: str, help: str) -> dict[str, Any]:
    """The engine's, or an engine option's, choices and help, as the engines declare them."""
    from attn_search.engines import ENGINE_ALIASES, ENGINES, engine_options

    if name == "engine":
        return {
            "type": choice(flag, ENGINES, ENGINE_ALIASES),
            "help": f"{help}: {' or '.join(ENGINES)}",
        }
    option = engine_options()[name]
    kwargs: dict[str, Any] = {"help": option.help}
    if option.choices is not None:
        # An option that also takes a library object (Optuna's sampler, pruner) is checked
        # by RunConfig, whose message names the field; a name-only option, here.
        kwargs["type"] = choice(
            flag, option.choices, option.aliases, strict=not option.allow_objects
        )
    return kwargs


def run_config(args: argparse.Namespace) -> Any:
    """The `RunConfig` of the parsed `run` flags, checked without TensorFlow.

    Raises:
        ConfigError, SearchSpaceError, DatasetError: see `RunConfig.check`.
    """
    from attn_search.runner.config import RunConfig

    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(RunConfig)}
    for field in dataclasses.fields(RunConfig):
        if field.metadata["kind"] == "count":  # -vvv: Keras' verbose levels stop at 2
            values[field.name] = min(values[field.name], 2)
    config = RunConfig(**values)
    config.check()
    return config

"""The ``attn-search`` command line: a thin adapter over the public Python API.

Each command parses its arguments, calls one public library function, and prints the result::

    attn-search run --dataset digits --trials 10      # attn_search.run_search(RunConfig(...))
    attn-search leaderboard RUN_DIR --top 5           # attn_search.leaderboard.read_leaderboard
    attn-search export RUN_DIR --format tflite --to model.tflite   # attn_search.export.export_model
    attn-search report RUN_DIR                        # attn_search.report.write_report
    attn-search datasets                              # attn_search.datasets.available
    attn-search spaces                                # attn_search.spaces.list_spaces

Start-up stays fast: ``--help``, ``--version`` and argument errors never import TensorFlow or
Keras; the handlers import what they need when they run.

Exit codes: 0 success; 1 a run or command failed (e.g. every trial failed, an export could not
be converted); 2 bad usage or bad input (unknown option, unknown dataset or space, a folder that
holds another run); 130 interrupted with Ctrl-C. Errors are one line on stderr,
``attn-search: error: <message>``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from attn_search import __version__
from attn_search.errors import (
    AttnSearchError,
    ConfigError,
    DatasetError,
    RunDirError,
    SearchSpaceError,
)

__all__ = ["main", "build_parser"]

PROG = "attn-search"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Errors that mean "what you typed or pointed at is wrong": usage-style exit code.
_BAD_INPUT = (ConfigError, DatasetError, SearchSpaceError, RunDirError)

FAMILIES = ("attention", "plain", "matched")
EXPORT_FORMATS = ("keras", "savedmodel", "tflite")


class _UsageError(Exception):
    """An argument error found by the parser; carries the one-line message."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``attn-search: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse hook
        # "argument --trials: --trials must be ..." -> "--trials must be ...": our argument
        # types already name the option.
        # Unknown command: argparse's wording (quotes) differs across Python versions.
        command = re.match(r"argument COMMAND: invalid choice: '?([^' ]*)'?", message)
        if command:
            message = (
                f"unknown command {command.group(1)!r}: choose from run, leaderboard, export, "
                "report, datasets or spaces"
            )
        match = re.match(r"argument ([^:]+): (.*)$", message, flags=re.S)
        if match:
            names = match.group(1).split("/")
            if any(match.group(2).startswith(name + " ") for name in names):
                message = match.group(2)
        raise _UsageError(message)


# --------------------------------------------------------------------------- argument types
def _bounded(name: str, convert: Callable[[str], Any], rule: str, ok: Callable[[Any], bool]):
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


def _positive_int(name: str) -> Callable[[str], int]:
    return _bounded(name, int, "a positive integer", lambda v: v >= 1)


def _non_negative_int(name: str) -> Callable[[str], int]:
    return _bounded(name, int, "a non-negative integer", lambda v: v >= 0)


def _positive_float(name: str) -> Callable[[str], float]:
    return _bounded(name, float, "a positive number", lambda v: 0 < v < float("inf"))


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


def _choice(
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


# --------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    """Returns the ``attn-search`` argument parser (no heavy imports)."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Search where, and how, a self-attention layer should go in a convnet, and compare "
            "it honestly against plain-conv baselines."
        ),
        epilog=(
            "Exit codes: 0 success, 1 the command failed, 2 bad usage or input, "
            "130 interrupted. Run 'attn-search COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--debug", action="store_true", default=False, help="show tracebacks on errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # --debug is accepted before or after the command; SUPPRESS keeps the subparser from
    # overwriting a top-level --debug with its default.
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )

    _add_run_parser(commands, common)

    p = commands.add_parser(
        "leaderboard",
        parents=[common],
        help="print a run's leaderboard (or its comparison)",
        description="Print a run's leaderboard, best trial first, as a readable table.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'attn-search run'")
    p.add_argument("--top", type=_positive_int("--top"), default=None, help="show the best N rows")
    p.add_argument(
        "--family",
        type=_choice("--family", FAMILIES),
        default=None,
        help="only this family: attention, plain or matched",
    )
    p.add_argument(
        "--comparison",
        action="store_true",
        help="print comparison.csv (attention against its baselines) instead",
    )
    p.add_argument(
        "--wide",
        action="store_true",
        help="also show every hyperparameter column (the full leaderboard.csv)",
    )
    p.set_defaults(handler=_cmd_leaderboard)

    p = commands.add_parser(
        "export",
        parents=[common],
        help="export a run's best model (.keras, SavedModel, TFLite)",
        description=(
            "Export a run's best model. keras: a .keras file (load it after 'import "
            "attn_search'); savedmodel: a TensorFlow SavedModel folder that loads with "
            "tf.saved_model.load without attn_search; tflite: a TensorFlow Lite flatbuffer."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'attn-search run'")
    p.add_argument(
        "--format",
        dest="format",
        type=_choice("--format", EXPORT_FORMATS),
        required=True,
        help="keras, savedmodel or tflite",
    )
    p.add_argument("--to", required=True, metavar="PATH", help="where to write the export")
    p.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    p.set_defaults(handler=_cmd_export)

    p = commands.add_parser(
        "report",
        parents=[common],
        help="write a run's report (report.md and two PNG plots) into its folder",
        description=(
            "Write report.md into RUN_DIR: the run's status and timings, its settings, "
            "attention against its baselines, validation accuracy by family and placement "
            "(with report_families.png), the best trials, and the best model's learned gamma "
            "and attention maps (report_attention.png)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by 'attn-search run'")
    p.set_defaults(handler=_cmd_report)

    p = commands.add_parser(
        "datasets",
        parents=[common],
        help="list the built-in dataset names",
        description=(
            "List the built-in dataset names. --dataset also accepts a folder of images (one "
            "sub-folder per class) or an .npz file."
        ),
    )
    p.set_defaults(handler=_cmd_datasets)

    p = commands.add_parser(
        "spaces",
        parents=[common],
        help="list the shipped search spaces",
        description="List the search spaces shipped with attn-search. --space also accepts a "
        "path to your own YAML file.",
    )
    p.set_defaults(handler=_cmd_spaces)
    return parser


def _add_run_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """The `run` command: one flag per `RunConfig` field, declared in the field's metadata."""
    from attn_search.runner.config import FLAG_GROUPS, RunConfig  # plain Python: no TensorFlow

    p = commands.add_parser(
        "run",
        parents=[common],
        help="search attention placements on a dataset and compare them with baselines",
        description=(
            "Search where and how to place self-attention on a dataset, with plain and "
            "parameter-matched baselines, retrain the finalists with several seeds, and write "
            "leaderboard.csv, comparison.csv, best_model.keras, config.yaml and run.json to "
            "the run folder. Re-running the same command on the same folder resumes it."
        ),
    )
    groups = {name: p.add_argument_group(name) for name in FLAG_GROUPS}
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
    p.set_defaults(handler=_cmd_run)


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
        "positive_int": _positive_int,
        "non_negative_int": _non_negative_int,
        "positive_float": _positive_float,
        "image_size": lambda _: _image_size,
    }
    if kind not in types:
        raise ValueError(f"`kind` of RunConfig.{name} is unknown. Received: kind={kind!r}")
    return {"type": types[kind](flag), "help": help}


def _engine_flag(flag: str, name: str, help: str) -> dict[str, Any]:
    """The engine's, or an engine option's, choices and help, as the engines declare them."""
    from attn_search.engines import ENGINE_ALIASES, ENGINES, engine_options

    if name == "engine":
        return {
            "type": _choice(flag, ENGINES, ENGINE_ALIASES),
            "help": f"{help}: {' or '.join(ENGINES)}",
        }
    option = engine_options()[name]
    kwargs: dict[str, Any] = {"help": option.help}
    if option.choices is not None:
        # An option that also takes a library object (Optuna's sampler, pruner) is checked
        # by RunConfig, whose message names the field; a name-only option, here.
        kwargs["type"] = _choice(
            flag, option.choices, option.aliases, strict=not option.allow_objects
        )
    return kwargs


# --------------------------------------------------------------------------- handlers
def _quiet_tensorflow(args: argparse.Namespace) -> None:
    """Keeps TensorFlow's and Keras' chatter from burying the progress lines.

    --verbose or --debug keep everything.
    """
    if getattr(args, "debug", False) or getattr(args, "verbose", 0):
        return
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    _import_tensorflow_quietly()


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up lines (oneDNN, CUDA probing) kept off stderr.

    Those lines are printed before TF_CPP_MIN_LOG_LEVEL takes effect, straight to file
    descriptor 2; they are captured here and shown only if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe prints its line here
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _run_config(args: argparse.Namespace) -> Any:
    """The RunConfig of the parsed flags, checked without TensorFlow (`RunConfig.check`)."""
    from attn_search.runner.config import RunConfig

    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(RunConfig)}
    for field in dataclasses.fields(RunConfig):
        if field.metadata["kind"] == "count":  # -vvv: Keras' verbose levels stop at 2
            values[field.name] = min(values[field.name], 2)
    config = RunConfig(**values)
    config.check()
    return config


def _cmd_run(args: argparse.Namespace) -> int:
    config = _run_config(args)
    _quiet_tensorflow(args)
    import attn_search.layers  # noqa: F401 - registers the layer before any model is loaded
    from attn_search.runner import run_search

    # A run either returns ("complete" or "stopped": both succeeded) or raises: every trial
    # failing (exit 1) and Ctrl-C (exit 130) reach `main` as exceptions.
    result = run_search(config)
    if args.quiet:
        print(result.run_dir)
    else:
        _print_run_summary(result)
    return EXIT_OK


def _print_run_summary(result: Any) -> None:
    from attn_search.leaderboard import format_table
    from attn_search.runfolder import RunFolder

    print()
    print(f"Run folder: {result.run_dir} (status: {result.status})")
    leaderboard = getattr(result, "leaderboard", None)
    if leaderboard is not None and len(leaderboard):
        print()
        print("Leaderboard (best 10; every trial and hyperparameter in leaderboard.csv):")
        print(format_table(_narrow(leaderboard), top=10))
    comparison = getattr(result, "comparison", None)
    if comparison is not None and len(comparison):
        print()
        print("Comparison (comparison.csv):")
        print(format_table(comparison))
    report = RunFolder(result.run_dir).report_path("report.md")
    if report.is_file():
        print()
        print(f"Report: {report}")
    if getattr(result, "best_model_path", None):
        print()
        print(f"Best model: {result.best_model_path}")
        print(
            f"Export it: attn-search export {result.run_dir} --format savedmodel "
            f"--to best_savedmodel"
        )


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from attn_search.leaderboard import format_table
    from attn_search.runfolder import RunFolder

    folder = RunFolder(args.run_dir)
    table = folder.read_comparison() if args.comparison else folder.read_leaderboard()
    if args.family is not None:
        if "family" not in table.columns:
            raise RunDirError(
                f"The table in {args.run_dir} has no 'family' column; cannot filter by "
                f"--family. Received: --family={args.family}"
            )
        table = table[table["family"] == args.family]
    if not len(table):
        what = f"family {args.family!r}" if args.family else "any trial"
        print(f"No rows for {what} in {args.run_dir}.")
        return EXIT_OK
    if not args.comparison and not args.wide:
        table = _narrow(table)
    print(format_table(table, top=args.top))
    return EXIT_OK


def _narrow(table: Any) -> Any:
    """The columns a terminal shows by default: the summary, gamma_* and the error; the
    hyperparameters (dozens of columns) only with --wide."""
    from attn_search.leaderboard import SUMMARY_COLUMNS

    columns = [c for c in SUMMARY_COLUMNS if c in table.columns]
    columns += [c for c in table.columns if str(c).startswith("gamma_")]
    columns += [c for c in ("error",) if c in table.columns]
    return table[columns] if len(columns) > 2 else table


def _cmd_export(args: argparse.Namespace) -> int:
    _quiet_tensorflow(args)
    from attn_search.export import export_model

    path = export_model(args.run_dir, args.format, args.to, overwrite=args.overwrite)
    print(f"Exported the best model ({args.format}) to {path}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    _quiet_tensorflow(args)
    from attn_search.report import write_report

    path = write_report(args.run_dir)
    print(f"Report written to {path}")
    return EXIT_OK


def _cmd_datasets(args: argparse.Namespace) -> int:
    from attn_search.datasets import available
    from attn_search.formatting import records_table

    columns = ["name", "shape", "classes", "size", "download", "description"]
    print(records_table(available(), columns))
    return EXIT_OK


def _cmd_spaces(args: argparse.Namespace) -> int:
    from attn_search.formatting import records_table
    from attn_search.spaces import list_spaces

    print(records_table(list_spaces(), ["name", "description", "path"]))
    return EXIT_OK


# --------------------------------------------------------------------------- entry point
def _error(message: str) -> None:
    # One line: collapse any newlines a library message may carry.
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``attn-search`` with ``argv`` (defaults to ``sys.argv[1:]``).

    Args:
        argv: the arguments, without the program name.

    Returns:
        The exit code: 0 success, 1 failure, 2 bad usage or input, 130 interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        _error(exc)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    debug = bool(getattr(args, "debug", debug))
    handler = getattr(args, "handler", None)
    if handler is None:
        _error(
            "a command is required: run, leaderboard, export, report, datasets or spaces. "
            "See 'attn-search --help'."
        )
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _error("interrupted")
        return EXIT_INTERRUPTED
    except AttnSearchError as exc:
        if debug:
            traceback.print_exc()
        _error(exc)
        return EXIT_USAGE if isinstance(exc, _BAD_INPUT) else EXIT_FAILURE
    except OSError as exc:  # a full disk, a read-only folder: the system's words suffice
        if debug:
            traceback.print_exc()
        where = f": '{exc.filename}'" if getattr(exc, "filename", None) else ""
        _error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            traceback.print_exc()
            _error(f"{type(exc).__name__}: {exc}")
        else:
            _error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

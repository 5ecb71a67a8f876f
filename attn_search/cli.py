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
import os
import pathlib
import re
import sys
import traceback
from collections.abc import Callable, Sequence
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

ENGINES = ("optuna", "keras-tuner")
TUNERS = ("random", "bayesian", "hyperband", "grid")
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
    name: str, choices: Sequence[str], aliases: dict[str, str] | None = None
) -> Callable[[str], str]:
    """A case-insensitive choice whose error names the option and echoes the value."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        value = (aliases or {}).get(value, value)
        if value not in choices:
            allowed = ", ".join(choices)
            raise argparse.ArgumentTypeError(
                f"{name} must be one of {allowed}. Received: {name}={text!r}"
            )
        return value

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
        help="write a run's report (report.md and plots) into its folder",
        description="Write report.md (and plots, when matplotlib is installed) into RUN_DIR.",
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
    from attn_search.runner import RunConfig  # plain Python: no TensorFlow

    d = RunConfig()  # one source for every default
    what = p.add_argument_group("what to search")
    what.add_argument(
        "--dataset",
        default=d.dataset,
        help="a built-in name (see 'attn-search datasets'), a folder of images or an .npz "
        f"file. Defaults to {d.dataset}.",
    )
    what.add_argument(
        "--space",
        default=d.space,
        help="a shipped search space (see 'attn-search spaces') or a YAML path. "
        f"Defaults to {d.space}.",
    )
    what.add_argument(
        "--limit",
        type=_positive_int("--limit"),
        default=None,
        help="use at most N examples of the dataset (quick tries)",
    )
    what.add_argument(
        "--skip-corrupt",
        action="store_true",
        default=False,
        help="skip unreadable images in a folder dataset (counted in a warning) instead of "
        "stopping",
    )
    what.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="HxW",
        help="resize images, e.g. 32 or 32x48",
    )

    how = p.add_argument_group("how to search")
    how.add_argument(
        "--engine",
        type=_choice("--engine", ENGINES, {"keras_tuner": "keras-tuner", "kerastuner": "keras-tuner"}),
        default=d.engine,
        help=f"optuna or keras-tuner. Defaults to {d.engine}.",
    )
    how.add_argument(
        "--tuner",
        type=_choice("--tuner", TUNERS),
        default=d.tuner,
        help=f"keras-tuner only: random, bayesian, hyperband or grid. Defaults to {d.tuner}.",
    )
    how.add_argument(
        "--sampler", default=d.sampler, help="optuna only: the sampler (e.g. tpe, random). "
        f"Defaults to {d.sampler}."
    )
    how.add_argument(
        "--pruner",
        default=d.pruner,
        help=f"optuna only: the pruner (e.g. median, hyperband, none). Defaults to {d.pruner}.",
    )
    how.add_argument(
        "--seed", type=_non_negative_int("--seed"), default=d.seed, help=f"Defaults to {d.seed}."
    )

    budget = p.add_argument_group("budget")
    budget.add_argument(
        "--trials", type=_positive_int("--trials"), default=d.trials, help="search trials. "
        f"Defaults to {d.trials}."
    )
    budget.add_argument(
        "--max-epochs",
        type=_positive_int("--max-epochs"),
        default=None,
        help="cap on training epochs per trial",
    )
    budget.add_argument(
        "--time-budget",
        type=_positive_float("--time-budget"),
        default=None,
        metavar="SECONDS",
        help="stop starting new trials after this many seconds",
    )
    budget.add_argument(
        "--finalists",
        type=_non_negative_int("--finalists"),
        default=d.finalists,
        help="attention configurations retrained with --repeats seeds beside their baselines "
        f"(0: none). Defaults to {d.finalists}.",
    )
    budget.add_argument(
        "--repeats",
        type=_positive_int("--repeats"),
        default=d.repeats,
        help=f"seeds per finalist. Defaults to {d.repeats}.",
    )
    budget.add_argument(
        "--max-consecutive-failures",
        type=_positive_int("--max-consecutive-failures"),
        default=d.max_consecutive_failures,
        metavar="N",
        help=f"stop the search after N failed trials in a row. Defaults to "
        f"{d.max_consecutive_failures}.",
    )
    budget.add_argument(
        "--memory-budget-mb",
        type=_positive_float("--memory-budget-mb"),
        default=None,
        metavar="MB",
        help="skip configurations whose attention maps would need more memory",
    )

    where = p.add_argument_group("where to write")
    where.add_argument(
        "--out",
        default=None,
        metavar="RUN_DIR",
        help="the run folder. Defaults to results/<dataset>-<timestamp>/.",
    )
    where.add_argument(
        "--resume", action="store_true", help="continue the run in --out (same configuration)"
    )
    where.add_argument(
        "--overwrite", action="store_true", help="replace a run folder holding another run"
    )
    where.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="optuna only: a storage URL (e.g. postgresql://...) shared by several workers. "
        "Defaults to study.db in the run folder.",
    )
    where.add_argument("--study", default=None, metavar="NAME", help="optuna only: study name")

    out = p.add_argument_group("output")
    loud = out.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show Keras' training output: -v progress bars, -vv one line per epoch",
    )
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress; print only the run folder (for scripts)",
    )
    p.set_defaults(handler=_cmd_run)


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
    """Builds and validates the RunConfig (cheap: the runner module does not import TF)."""
    from attn_search.runner import RunConfig

    config = RunConfig(
        dataset=args.dataset,
        space=args.space,
        engine=args.engine,
        tuner=args.tuner,
        sampler=args.sampler,
        pruner=args.pruner,
        trials=args.trials,
        max_epochs=args.max_epochs,
        time_budget=args.time_budget,
        seed=args.seed,
        finalists=args.finalists,
        repeats=args.repeats,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        storage=args.storage,
        study=args.study,
        limit=args.limit,
        image_size=args.image_size,
        skip_corrupt=args.skip_corrupt,
        memory_budget_mb=args.memory_budget_mb,
        max_consecutive_failures=args.max_consecutive_failures,
        verbose=min(args.verbose, 2),
        quiet=args.quiet,
    )
    config.validate()
    return config


def _check_names(args: argparse.Namespace) -> None:
    """Rejects unknown dataset and space names (and missing paths) before TensorFlow starts."""
    from attn_search.datasets import check_spec
    from attn_search.spaces import load_space

    load_space(args.space)  # plain YAML and Python: validates the whole space, no TensorFlow
    check_spec(args.dataset)


def _cmd_run(args: argparse.Namespace) -> int:
    config = _run_config(args)
    _check_names(args)
    _quiet_tensorflow(args)
    import attn_search.layers  # noqa: F401 - registers the layer before any model is loaded
    from attn_search.runner import run_search

    result = run_search(config)
    status = str(getattr(result, "status", "complete"))
    if args.quiet:
        print(result.run_dir)
    else:
        _print_run_summary(result)
    if status in ("interrupted",):
        return EXIT_INTERRUPTED
    if status in ("failed", "error"):
        return EXIT_FAILURE
    return EXIT_OK


def _print_run_summary(result: Any) -> None:
    from attn_search.leaderboard import format_table

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
    report = pathlib.Path(result.run_dir) / "report.md"
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
    from attn_search import leaderboard as lb

    if args.comparison:
        table = lb.read_comparison(args.run_dir)
    else:
        table = lb.read_leaderboard(args.run_dir)
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
    print(lb.format_table(table, top=args.top))
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

    rows = available()
    print(_format_rows(rows, ["name", "shape", "classes", "size", "download", "description"]))
    return EXIT_OK


def _cmd_spaces(args: argparse.Namespace) -> int:
    from attn_search.spaces import list_spaces

    rows = list_spaces()
    print(_format_rows(rows, ["name", "description", "path"]))
    return EXIT_OK


def _format_rows(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain aligned text table of ``rows`` (list of dicts), without pandas."""
    if not rows:
        return "(none)"
    columns = [c for c in columns if any(c in r for r in rows)] or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (tuple, list)):
            return "x".join(str(v) for v in value)
        return "" if value is None else str(value)

    table = [[c for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = []
    for row in table:
        line = "  ".join(text.ljust(width) for text, width in zip(row, widths))
        lines.append(line.rstrip())
    return "\n".join(lines)


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
        _error("a command is required: run, leaderboard, export, report, datasets or spaces. "
               "See 'attn-search --help'.")
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

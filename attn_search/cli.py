"""The ``attn-search`` command line: a thin adapter over the public Python API.

Each command parses its arguments, calls one public library function, and prints the result::

    attn-search run --dataset digits --trials 10      # attn_search.run_search(RunConfig(...))
    attn-search leaderboard RUN_DIR --top 5           # attn_search.leaderboard.read_leaderboard
    attn-search export RUN_DIR --format tflite --to model.tflite   # attn_search.export.export_model
    attn-search report RUN_DIR                        # attn_search.report.write_report
    attn-search predict RUN_DIR photos/ --out p.csv   # attn_search.inference.predict (explain)
    attn-search dashboard RUN_DIR --port 8080         # attn_search.dashboard.serve_dashboard
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
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from attn_search import __version__, _dashboard_cli, _inference_cli
from attn_search._cli_flags import add_run_flags, choice, positive_int, run_config
from attn_search._cli_quiet import quiet_tensorflow
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
            message = f"unknown command {command.group(1)!r}: choose from {_command_names()}"
        match = re.match(r"argument ([^:]+): (.*)$", message, flags=re.S)
        if match:
            names = match.group(1).split("/")
            if any(match.group(2).startswith(name + " ") for name in names):
                message = match.group(2)
        raise _UsageError(message)


# --------------------------------------------------------------------------- the parser
#: Each command's one-line help (the command list) and its description (its own --help).
_DESCRIPTIONS = {
    "run": (
        "search attention placements on a dataset and compare them with baselines",
        "Search where and how to place self-attention on a dataset, with plain and "
        "parameter-matched baselines, retrain the finalists with several seeds, and write "
        "leaderboard.csv, comparison.csv, best_model.keras, config.yaml and run.json to the run "
        "folder. Re-running the same command on the same folder resumes it.",
    ),
    "leaderboard": (
        "print a run's leaderboard (or its comparison)",
        "Print a run's leaderboard, best trial first, as a readable table; from its run "
        "folder, or with --storage URL --study NAME from the study's storage alone.",
    ),
    "export": (
        "export a run's best model (.keras, SavedModel, TFLite)",
        "Export a run's best model. keras: a .keras file (load it after 'import attn_search'); "
        "savedmodel: a TensorFlow SavedModel folder that loads with tf.saved_model.load "
        "without attn_search; tflite: a TensorFlow Lite flatbuffer.",
    ),
    "report": (
        "write a run's report (report.html and report.md, with figures) into its folder",
        "Write report.html and report.md into RUN_DIR, also for a run still going or "
        "interrupted: the verdict beside each finalist's difference to its twins, validation "
        "accuracy by family and placement, the finalists' test accuracy per seed, accuracy "
        "against parameters and training time, the optimisation history, the learned gamma, "
        "attention maps of the best model, and the settings, timings and best trials.",
    ),
    **_inference_cli.DESCRIPTIONS,  # explain, predict
    **_dashboard_cli.DESCRIPTIONS,  # dashboard
    "datasets": (
        "list the built-in dataset names",
        "List the built-in dataset names. --dataset also accepts a folder of images (one "
        "sub-folder per class) or an .npz file.",
    ),
    "spaces": (
        "list the shipped search spaces, or show what --space auto resolves to",
        "List the search spaces shipped with attn-search. --space also accepts a path to your "
        "own YAML file. With --resolve DATASET, print the space that --space auto (the "
        "default) makes for DATASET, as YAML to edit and pass back with --space FILE.",
    ),
}


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

    def command(name: str, handler: Callable, help: str, description: str, run_dir: bool):
        p = commands.add_parser(name, parents=[common], help=help, description=description)
        if run_dir:
            p.add_argument(
                "run_dir", metavar="RUN_DIR", help="a run folder written by 'attn-search run'"
            )
        p.set_defaults(handler=handler)
        return p

    add_run_flags(command("run", _cmd_run, *_DESCRIPTIONS["run"], run_dir=False))
    p = command("leaderboard", _cmd_leaderboard, *_DESCRIPTIONS["leaderboard"], run_dir=False)
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a run folder (or --storage)")
    p.add_argument("--storage", metavar="URL", help="read the study from its storage instead")
    p.add_argument("--study", metavar="NAME", help="the study's name (with --storage)")
    p.add_argument("--top", type=positive_int("--top"), default=None, help="show the best N rows")
    p.add_argument(
        "--family",
        type=choice("--family", FAMILIES),
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
    p.add_argument(
        "--verdict",
        action="store_true",
        help="print the verdict in words (from comparison.csv): one sentence per finalist "
        "and baseline twin",
    )
    p = command("export", _cmd_export, *_DESCRIPTIONS["export"], run_dir=True)
    p.add_argument(
        "--format",
        dest="format",
        type=choice("--format", EXPORT_FORMATS),
        required=True,
        help="keras, savedmodel or tflite",
    )
    p.add_argument("--to", required=True, metavar="PATH", help="where to write the export")
    p.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    command("report", _cmd_report, *_DESCRIPTIONS["report"], run_dir=True)
    _inference_cli.add_commands(command)  # explain, predict
    _dashboard_cli.add_command(command)
    command("datasets", _cmd_datasets, *_DESCRIPTIONS["datasets"], run_dir=False)
    p = command("spaces", _cmd_spaces, *_DESCRIPTIONS["spaces"], run_dir=False)
    p.add_argument("--resolve", metavar="DATASET", help="print the space auto makes for DATASET")
    return parser


# --------------------------------------------------------------------------- handlers
def _cmd_run(args: argparse.Namespace) -> int:
    config = run_config(args)
    quiet_tensorflow(args)
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
    if getattr(result, "verdict", None):
        print()
        print("Verdict:")
        for line in result.verdict:
            print(f"  {line}")
    report = RunFolder(result.run_dir).report_path("report.html")
    if report.is_file():
        print()
        print(f"Report: {report} (and report.md)")
    if getattr(result, "best_model_path", None):
        print()
        print(f"Best model: {result.best_model_path}")
        print(
            f"Export it: attn-search export {result.run_dir} --format savedmodel "
            f"--to best_savedmodel"
        )


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from attn_search.engines._optuna_storage import STORAGE_ENV
    from attn_search.leaderboard import format_table
    from attn_search.runfolder import RunFolder

    if args.run_dir is None and args.storage is None and not os.environ.get(STORAGE_ENV):
        raise ConfigError("the following arguments are required: RUN_DIR")  # as argparse says
    if args.run_dir is None or args.storage is not None:  # the study's storage alone
        from attn_search.runner.workers import tables_from_storage

        board, comparison = tables_from_storage(args.storage, args.study)
        read = {False: lambda: board, True: lambda: comparison}
    else:
        folder = RunFolder(args.run_dir)
        read = {False: folder.read_leaderboard, True: folder.read_comparison}
    if args.verdict:
        from attn_search.comparison import verdict_sentences

        print("\n".join(verdict_sentences(read[True]())))
        return EXIT_OK
    table = read[bool(args.comparison)]()
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
    quiet_tensorflow(args)
    from attn_search.export import export_model

    path = export_model(args.run_dir, args.format, args.to, overwrite=args.overwrite)
    print(f"Exported the best model ({args.format}) to {path}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    quiet_tensorflow(args)
    from attn_search.report import write_report

    path = write_report(args.run_dir)
    print(f"Report written to {path.with_name('report.html')} (and {path.name})")
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

    if args.resolve is not None:
        quiet_tensorflow(args)
        from attn_search.space_auto import resolve_space, resolved_yaml

        print(resolved_yaml(resolve_space(args.resolve), args.resolve), end="")
        return EXIT_OK
    print(records_table(list_spaces(), ["name", "description", "path"]))
    return EXIT_OK


# --------------------------------------------------------------------------- entry point
def _command_names() -> str:
    """`"run, leaderboard, ... or spaces"`: every command, as the usage errors list them."""
    names = list(_DESCRIPTIONS)
    return ", ".join(names[:-1]) + " or " + names[-1]


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
        _error(f"a command is required: {_command_names()}. See 'attn-search --help'.")
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

"""`attn-search dashboard`: its arguments and handler, a thin adapter over
`attn_search.dashboard.serve_dashboard`; nothing here imports Optuna until the handler runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from attn_search._cli_flags import bounded

#: The command's one-line help and its description (merged into `cli._DESCRIPTIONS`).
DESCRIPTIONS = {
    "dashboard": (
        "open a run's Optuna study in optuna-dashboard (the dashboard extra)",
        "Serve the run's Optuna study in optuna-dashboard on HOST:PORT until Ctrl-C: "
        "optimisation history, parameter plots, and a trial table with each trial's family, "
        "placement and parameter count. Needs pip install 'attn-search[dashboard]' and a run "
        "searched with --engine optuna.",
    ),
}

_port = bounded("--port", int, "an integer from 0 to 65535", range(65536).__contains__)


def add_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds `dashboard` with `command(name, handler, help, description, run_dir)`."""
    p = command("dashboard", _cmd_dashboard, *DESCRIPTIONS["dashboard"], run_dir=True)
    p.add_argument("--host", default="127.0.0.1", help="listen here (default: this machine only)")
    p.add_argument("--port", type=_port, default=8080, help="default: 8080; 0: any free port")
    p.add_argument("--storage", metavar="URL", help="the run's storage URL, password included")


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from attn_search.dashboard import serve_dashboard

    def ready(dashboard: Any) -> None:
        print(f"optuna-dashboard: {dashboard.study_url}  (Ctrl-C stops it)", flush=True)

    # Serves until Ctrl-C, which `main` turns into exit 130.
    serve_dashboard(
        args.run_dir, host=args.host, port=args.port, storage=args.storage, on_ready=ready
    )
    return 0

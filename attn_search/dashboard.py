"""A run's Optuna study in optuna-dashboard: `attn-search dashboard RUN_DIR`.

The run's `config.yaml` says which engine searched and where its study is stored: by default
the Optuna engine's file in the run folder (`OptunaEngine.files`), or the storage URL the run
was given (written with its password masked, so such a run needs the URL again). The study is
served by optuna-dashboard's WSGI application (`optuna_dashboard.wsgi`, its public API) on a
loopback address, the way its own command line serves it (a threaded `wsgiref` server).
Each trial's family, placement and parameter count are user attributes of the trial (the
Optuna engine sets them), which the dashboard shows as columns of its trial table.

optuna-dashboard is an optional extra: `pip install 'attn-search[dashboard]'`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import socketserver
from collections.abc import Callable
from typing import Any
from wsgiref import simple_server

from attn_search.engines import OptunaEngine, engine_class
from attn_search.errors import ConfigError, RunDirError
from attn_search.formatting import mask_url
from attn_search.runfolder import RunFolder

__all__ = ["Dashboard", "StudyLocation", "find_study", "open_dashboard", "serve_dashboard"]

INSTALL = "pip install 'attn-search[dashboard]'"


@dataclasses.dataclass(frozen=True)
class StudyLocation:
    """Where a run's Optuna study is.

    Args:
        storage: The storage URL (it may hold a password: show `shown` instead).
        study: The study's name in the storage.
        run_dir: The run folder.
    """

    storage: str
    study: str
    run_dir: pathlib.Path

    @property
    def shown(self) -> str:
        """The storage URL with any password masked."""
        return mask_url(self.storage)


def find_study(run_dir: Any, storage: str | None = None) -> StudyLocation:
    """Where the Optuna study of the run in `run_dir` is, from its `config.yaml`.

    Args:
        run_dir: A run folder (a path or a `RunResult`).
        storage: The storage URL, for a run whose study is not in its folder (its URL is in
            config.yaml with the password masked). Defaults to `None`: the run's own storage.

    Returns:
        A `StudyLocation`.

    Raises:
        RunDirError: `run_dir` is not a run folder, was searched by another engine, or has no
            study file yet.
        ConfigError: `storage` is not a URL, or is needed (a masked password) and missing.
    """
    folder = RunFolder.existing(run_dir)
    where = os.fspath(folder.path)
    if storage is not None and (not isinstance(storage, str) or "://" not in storage):
        raise ConfigError(
            "`storage` must be an Optuna storage URL such as 'sqlite:///study.db' or "
            f"'postgresql://user:pass@host/db'. Received: storage={storage!r}"
        )
    config = folder.read_config()
    engine = (config or {}).get("engine")
    if not isinstance(engine, dict):
        raise RunDirError(
            f"`run_dir` has no readable config.yaml naming its engine, so its study cannot be "
            f"found; open it with optuna-dashboard STORAGE_URL instead. Received: "
            f"run_dir='{where}'"
        )
    name = engine.get("name")
    if name != OptunaEngine.name:
        raise RunDirError(_other_engine(folder, name))
    defaults = OptunaEngine()
    study = engine.get("study") or defaults.study_name
    saved = engine.get("storage")
    if storage is None and saved not in (None, OptunaEngine.DEFAULT_STORAGE):
        if "***" in str(saved):
            raise ConfigError(
                f"`storage` is required: the run's study is in {saved} and config.yaml keeps "
                "its password masked; pass the full URL with --storage (storage= in Python). "
                f"Received: run_dir='{where}'"
            )
        storage = saved
    if storage is None:
        path = folder.path / OptunaEngine.files[0]
        if not path.is_file():
            raise RunDirError(
                f"`run_dir` has no Optuna study yet (no {path.name}: the run has not started a "
                f"trial). Received: run_dir='{where}'"
            )
        storage = f"sqlite:///{path.resolve()}"
    elif _sqlite_file(storage) is not None and not _sqlite_file(storage).is_file():
        # Opening it would create an empty database.
        raise ConfigError(
            f"`storage` names an SQLite file that does not exist ({_sqlite_file(storage)}); "
            "pass the study's URL with --storage (storage= in Python), a relative path being "
            f"relative to the current folder. Received: storage={mask_url(storage)!r}"
        )
    return StudyLocation(storage=storage, study=str(study), run_dir=folder.path)


def _other_engine(folder: RunFolder, name: Any) -> str:
    where = os.fspath(folder.path)
    try:
        files = ", ".join(f"{where}/{f}/" for f in engine_class(str(name)).files)
    except ConfigError:  # an engine this version does not know
        files = ""
    kept = f", and in {name}'s own files ({files})" if files else ""
    return (
        f"`run_dir` was searched with engine {name!r}, which keeps no Optuna study for "
        "optuna-dashboard to show (only runs with engine 'optuna' have one); its trials are "
        f"in 'attn-search leaderboard {where}' and 'attn-search report {where}'{kept}. "
        f"Received: run_dir='{where}'"
    )


def _sqlite_file(url: str) -> pathlib.Path | None:
    """`sqlite:///a/b.db?x=1` -> `a/b.db`; `None` for other databases and in-memory SQLite."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return pathlib.Path(path) if path and path != ":memory:" else None


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True  # Ctrl-C does not wait for a browser's open connections


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # one line per request would bury the URL the command prints


class Dashboard:
    """optuna-dashboard serving one run's study, bound to its address and ready to serve.

    Make one with `open_dashboard`; call `serve_forever()` (it returns after `shutdown()`
    from another thread, or raises `KeyboardInterrupt` on Ctrl-C) and `close()` at the end,
    or use it as a context manager.

    Attributes:
        url: The dashboard's address, e.g. `http://127.0.0.1:8080/dashboard`.
        study_url: The run's study in it.
        location: The `StudyLocation` served.
    """

    def __init__(self, server: Any, location: StudyLocation, study_id: int):
        self._server = server
        self.location = location
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}/dashboard"
        self.study_url = f"{self.url}/studies/{study_id}"

    def __repr__(self) -> str:
        return f"Dashboard({self.study_url!r})"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stops `serve_forever` (call it from another thread)."""
        self._server.shutdown()

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_dashboard(
    run_dir: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    storage: str | None = None,
) -> Dashboard:
    """Opens the run's study in optuna-dashboard, bound to `host:port` (not serving yet).

    Args:
        run_dir: A run folder searched with the Optuna engine (a path or a `RunResult`).
        host: The address to listen on. Defaults to `"127.0.0.1"`: this machine only (anyone
            who can reach the address can change or delete the study).
        port: The port; 0 picks a free one (see `Dashboard.url`). Defaults to 8080.
        storage: The study's storage URL, for a run whose storage URL had a password (see
            `find_study`). Defaults to `None`: the run's own storage.

    Returns:
        A `Dashboard`.

    Raises:
        RunDirError: See `find_study`; or the storage holds no study of the run's name.
        ConfigError: optuna-dashboard is not installed, `storage` cannot be opened, `port` is
            out of range, or `host:port` cannot be bound (in use).

    Example:

    ```python
    with open_dashboard("results/reference", port=0) as dashboard:
        print(dashboard.study_url)
        dashboard.serve_forever()  # until Ctrl-C
    ```
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(
            f"`port` must be an integer from 0 to 65535 (0: any free port). Received: port={port!r}"
        )
    location = find_study(run_dir, storage)
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError(
            f"`attn-search dashboard` needs optuna-dashboard, which is not installed; install "
            f"it with {INSTALL}. Received: run_dir='{location.run_dir}'"
        ) from None
    rdb, study_id = _open_study(location)
    app = optuna_dashboard.wsgi(rdb)
    try:
        server = simple_server.make_server(
            host, port, app, server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as error:
        reason = "it is in use" if error.errno in _IN_USE else (error.strerror or str(error))
        raise ConfigError(
            f"`port` {port} on {host} cannot be listened on ({reason}); choose another port "
            f"with --port (port= in Python; 0 picks a free one). Received: host={host!r}, "
            f"port={port}"
        ) from None
    return Dashboard(server, location, study_id)


_IN_USE = (98, 48, 10048)  # EADDRINUSE on Linux, macOS, Windows


def _open_study(location: StudyLocation) -> tuple[Any, int]:
    """The storage, opened, and the id of the run's study in it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = optuna.storages.RDBStorage(location.storage)
    except Exception as error:  # noqa: BLE001 - bad URL, driver missing, server down
        raise ConfigError(
            f"`storage` cannot be opened ({type(error).__name__}: {error}). "
            f"Received: storage={location.shown!r}"
        ) from None
    try:
        return rdb, rdb.get_study_id_from_name(location.study)
    except KeyError:
        names = ", ".join(repr(n) for n in optuna.get_all_study_names(rdb)) or "none"
        raise RunDirError(
            f"The storage {location.shown} holds no study named {location.study!r} (it holds: "
            f"{names}); pass the run's storage with --storage. Received: "
            f"run_dir='{location.run_dir}'"
        ) from None


def serve_dashboard(
    run_dir: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    storage: str | None = None,
    on_ready: Callable[[Dashboard], None] | None = None,
) -> None:
    """Serves the run's study in optuna-dashboard until Ctrl-C (`KeyboardInterrupt`).

    Args:
        run_dir: A run folder searched with the Optuna engine.
        host: The address to listen on. Defaults to `"127.0.0.1"` (this machine only).
        port: The port; 0 picks a free one. Defaults to 8080.
        storage: The study's storage URL, when config.yaml masks its password. Defaults to
            `None`: the run's own storage.
        on_ready: Called with the `Dashboard` once it listens (e.g. to print its URL).

    Raises:
        RunDirError, ConfigError: See `open_dashboard`.
        KeyboardInterrupt: On Ctrl-C, after the server is closed.
    """
    with open_dashboard(run_dir, host=host, port=port, storage=storage) as dashboard:
        if on_ready is not None:
            on_ready(dashboard)
        dashboard.serve_forever()

"""Opening an Optuna storage that several worker processes share safely.

- no URL: `study.db`, an SQLite file in the run folder (one process);
- `journal:///path/study.journal`: Optuna's `JournalStorage` on a `JournalFileBackend`, the
  storage Optuna recommends for several processes on one machine (`attn-search run --workers
  N` uses it by default); the path follows SQLite URLs (`journal:////abs/path` is absolute);
- `sqlite:///...`: an `RDBStorage` with a long busy timeout, so workers wait for the file's
  lock instead of failing with "database is locked" (optuna #820, #2950);
- `postgresql://...`, `mysql://...`: an `RDBStorage` with Optuna's heartbeat, so a crashed
  worker's trial is failed (and re-run) by whichever worker looks next (optuna #4234).

Creating the tables of a new database races when workers start together (each one runs
`CREATE TABLE`): opening is retried a few times, the loser finding the tables made.

The URL may also come from the environment variable `ATTN_SEARCH_STORAGE` (`STORAGE_ENV`), so
that a password need not appear in a command line or a shell history. Every error shows the URL
with its password masked.
"""

from __future__ import annotations

import os
import pathlib
import random
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from attn_search.errors import ConfigError
from attn_search.formatting import mask_url

STUDY_FILE = "study.db"  # the default storage: an SQLite file in the run folder
STORAGE_ENV = "ATTN_SEARCH_STORAGE"
HEARTBEAT_ENV = "ATTN_SEARCH_HEARTBEAT"  # seconds between heartbeats (default 60)
JOURNAL = "journal:///"
_OPEN_ATTEMPTS = 5


def storage_url(value: str | None) -> str | None:
    """`value`, or else the URL in `$ATTN_SEARCH_STORAGE`, or `None` (the run folder's file)."""
    if value:
        return value
    return os.environ.get(STORAGE_ENV) or None


def is_local(url: str | None) -> bool:
    """Whether every worker of `url` runs on this machine (a file storage, or none)."""
    return url is None or url.startswith(("sqlite", JOURNAL))


def heartbeat_interval() -> int:
    """Seconds between two heartbeats of a running trial (`$ATTN_SEARCH_HEARTBEAT`, or 60)."""
    text = os.environ.get(HEARTBEAT_ENV, "")
    return int(text) if text.isdigit() and int(text) > 0 else 60


def open_storage(
    url: str | None, run_dir: pathlib.Path, on_stale: Callable[[Any, Any], None]
) -> Any:
    """Opens the storage `url` names (see the module docstring).

    Args:
        url: A storage URL, or `None` for `study.db` in `run_dir`.
        run_dir: The run folder.
        on_stale: Called as `on_stale(study, frozen_trial)` for each trial whose heartbeat
            stopped, by the one worker that failed it (Optuna's `failed_trial_callback`).

    Raises:
        ConfigError: The storage cannot be opened (bad URL, driver missing, server down),
            with the URL's password masked.
    """
    import optuna

    url = url or f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"
    for attempt in range(1, _OPEN_ATTEMPTS + 1):
        try:
            return _open(optuna, url, on_stale)
        except Exception as error:  # bad URL, driver missing, server down, a schema race
            if attempt == _OPEN_ATTEMPTS or not _transient(error):
                raise ConfigError(
                    f"`storage` cannot be opened ({type(error).__name__}: "
                    f"{mask_url(str(error)) if '://' in str(error) else error}). "
                    f"Received: storage={mask_url(url)!r}"
                ) from None
            time.sleep(random.uniform(0.2, 1.0) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _open(optuna: Any, url: str, on_stale: Callable[[Any, Any], None]) -> Any:
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = pathlib.Path(url[len(JOURNAL) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(os.fspath(path)))
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    import inspect

    url = with_driver(url)
    interval = heartbeat_interval()
    # Optuna 5 renamed `failed_trial_callback` (deprecated) to `heartbeat_stale_trial_callback`.
    names = inspect.signature(optuna.storages.RDBStorage).parameters
    callback = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in names
        else "failed_trial_callback"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=interval,
            grace_period=3 * interval,
            **{callback: on_stale},
        )


#: URL schemes whose SQLAlchemy default driver may be missing, and the extra's driver.
_DRIVERS = {
    "postgresql://": ("psycopg2", "postgresql+psycopg://", "psycopg"),
    "mysql://": ("MySQLdb", "mysql+pymysql://", "pymysql"),
}


def with_driver(url: str) -> str:
    """`url` with the driver attn-search's extras install (`attn-search[postgres]`:
    psycopg 3; `[mysql]`: PyMySQL) when SQLAlchemy's default one is not installed."""
    import importlib.util

    for scheme, (default, replacement, extra) in _DRIVERS.items():
        if url.startswith(scheme) and importlib.util.find_spec(default) is None:
            if importlib.util.find_spec(extra) is not None:
                return replacement + url[len(scheme) :]
    return url


def _transient(error: Exception) -> bool:
    """Whether opening may succeed on a second try (two workers creating the tables at once)."""
    text = f"{type(error).__name__} {error}".lower()
    return any(
        word in text
        for word in ("already exists", "duplicate", "locked", "unique", "deadlock", "integrity")
    )


def uses_heartbeat(storage: Any) -> bool:
    """Whether `storage` records heartbeats (an RDB server storage)."""
    from optuna.storages import RDBStorage

    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


class Heartbeat:
    """Records a running trial's heartbeat every interval, on a daemon thread, until `stop`.

    Optuna beats only inside `study.optimize`; the runner drives trials with ask and tell, so
    it beats itself through the storage's public `record_heartbeat`.
    """

    def __init__(self, storage: Any, trial: Any):
        self._stop = threading.Event()
        trial_id = _trial_id(trial)
        interval = storage.get_heartbeat_interval()

        def beat() -> None:
            while True:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried; never kill a trial
                    pass
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=beat, name="attn-search-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _trial_id(trial: Any) -> int:
    # Optuna (checked against 5.0) has no public accessor for a trial's storage id, which
    # `record_heartbeat` takes; tests/test_workers.py fails loudly if this attribute moves.
    return int(trial._trial_id)

"""The one interface every search engine implements, and the resolver that picks one.

An engine knows search (which configuration to try next, where trials are stored, when to
prune) and nothing of Keras layers: the runner asks it for a trial, builds and trains the
model the trial's hyperparameters describe, and tells it the result as a *trial record* (a
plain dict). Every record is kept in the engine's own storage, and `Engine.records()` reads
them back from there, so a resumed run, or several workers sharing one storage, all derive
the same leaderboard.

This module imports neither Keras nor an engine's library, so the command line can resolve
and validate an engine name without waiting for TensorFlow.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import socket
from typing import Any

from attn_search.errors import ConfigError

__all__ = [
    "ENGINES",
    "STATUSES",
    "Engine",
    "EngineTrial",
    "TrialPlan",
    "clean_record",
    "get_engine",
    "worker_id",
]

#: The names `get_engine` accepts, the first being the default.
ENGINES = ("optuna", "keras-tuner")

#: Every status a trial record can have, best first.
STATUSES = ("complete", "skipped", "pruned", "failed")


@dataclasses.dataclass
class TrialPlan:
    """What the runner wants a trial to be, beyond what the engine samples.

    Args:
        family: The model family to build: `"attention"`, `"plain"` or `"matched"`.
        fixed: Hyperparameter values to answer as given instead of sampling them (a baseline
            twin copies its attention trial's values). Defaults to none.
        use_defaults: Whether to answer every hyperparameter with its default value (the
            plain backbone that opens every run). Defaults to `False`.
        twin_of: The trial number whose values `fixed` copies, if any.
    """

    family: str = "attention"
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    use_defaults: bool = False
    twin_of: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialPlan:
        return cls(
            family=data.get("family", "attention"),
            fixed=dict(data.get("fixed") or {}),
            use_defaults=bool(data.get("use_defaults", False)),
            twin_of=data.get("twin_of"),
        )


class EngineTrial(abc.ABC):
    """One trial handed out by `Engine.ask`.

    Attributes:
        number: The trial's number in the engine's storage, from 0; it is the leaderboard's
            `trial_id`.
        plan: The plan this trial runs under. An engine sets it when it re-runs an interrupted
            trial (the runner keeps it); otherwise the runner sets it before `make_hp`.
        max_epochs: A number of epochs the engine imposes on this trial (KerasTuner's
            Hyperband brackets), or `None`.
    """

    number: int
    plan: TrialPlan | None = None
    max_epochs: int | None = None

    @abc.abstractmethod
    def make_hp(self) -> Any:
        """Returns the object the hypermodel's `build(hp)` receives for this trial.

        It answers `hp.Int`, `hp.Float`, `hp.Choice`, `hp.Boolean` and `hp.Fixed` as the
        engine decides, honouring `self.plan` (fixed values first, then defaults or sampling).
        """

    @abc.abstractmethod
    def hp_values(self, hp: Any) -> dict[str, Any]:
        """Returns the values `hp` actually answered (the active hyperparameters), by name."""

    def report(self, epoch: int, value: float) -> bool:
        """Reports the validation accuracy after `epoch` (from 0).

        Returns:
            Whether the engine wants the trial stopped now (pruned). Defaults to never.
        """
        return False


class Engine(abc.ABC):
    """A search engine: hands out trials, stores their records, reads them back.

    The runner calls `open` once, then `ask` / `tell` per trial until `ask` returns `None`
    or the runner's own budget is spent, then `records` to build the tables, then `close`.

    Attributes:
        name: The engine's name, as `get_engine` accepts it and the leaderboard shows it.
    """

    name: str = ""

    @abc.abstractmethod
    def open(
        self,
        run_dir: os.PathLike | str,
        *,
        hypermodel: Any,
        trials: int,
        seed: int,
        max_epochs: int | None,
        overwrite: bool = False,
    ) -> None:
        """Creates or reopens the engine's storage for a run.

        Reopening continues a previous search: finished trials are kept, and a trial that
        was running when its process died is re-run (or recorded as failed), never lost.

        Args:
            run_dir: The run folder; the default storage lives inside it.
            hypermodel: The attention `AttentionCNN`, for engines that need the search space
                before the first trial.
            trials: The number of trials the search should reach.
            seed: Seed of the engine's sampler.
            max_epochs: The most epochs a trial trains for (pruners' resource), or `None`.
            overwrite: Whether to delete what the storage holds first.
        """

    @abc.abstractmethod
    def ask(self) -> EngineTrial | None:
        """Starts the next trial; returns `None` when the engine has none left to give."""

    @abc.abstractmethod
    def tell(self, trial: EngineTrial, record: dict[str, Any]) -> None:
        """Finishes `trial` with its record (`record["status"]` is one of `STATUSES`)."""

    @abc.abstractmethod
    def interrupt(self, trial: EngineTrial, error: str) -> None:
        """Marks `trial` as interrupted (Ctrl-C): it will be re-run when the run resumes."""

    @abc.abstractmethod
    def records(self) -> list[dict[str, Any]]:
        """Returns every finished trial's record, read from the storage, by trial number."""

    @abc.abstractmethod
    def n_counted(self) -> int:
        """Returns how many trials count toward the budget (finished or running elsewhere)."""

    def close(self) -> None:
        """Releases what `open` acquired. Defaults to nothing."""

    def describe(self) -> dict[str, Any]:
        """Returns the engine's settings as plain data (for config.yaml)."""
        return {"name": self.name}


def get_engine(name_or_instance: str | Engine | None = None, **options: Any) -> Engine:
    """Turns what the user typed into an engine.

    Args:
        name_or_instance: `"optuna"`, `"keras-tuner"` (also `"keras_tuner"`, `"kerastuner"`),
            an `Engine` instance (returned as is), or `None` for the default (`"optuna"`).
        **options: Passed to the engine's constructor: for Optuna `sampler`, `pruner`,
            `storage`, `study`; for KerasTuner `tuner`.

    Returns:
        An `Engine`.

    Raises:
        ConfigError: The name is not an engine, or an option is invalid for it.

    Example:

    >>> get_engine("optuna", sampler="random", pruner="none").name
    'optuna'
    """
    if isinstance(name_or_instance, Engine):
        return name_or_instance
    name = ENGINES[0] if name_or_instance is None else name_or_instance
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key in ("keras-tuner", "kerastuner"):
        from attn_search.engines.keras_tuner import KerasTunerEngine

        return KerasTunerEngine(**options)
    if key == "optuna":
        from attn_search.engines.optuna import OptunaEngine

        return OptunaEngine(**options)
    raise ConfigError(
        f"`engine` must be one of {', '.join(repr(e) for e in ENGINES)} or an Engine "
        f"instance. Received: engine={name_or_instance!r}"
    )


def worker_id() -> str:
    """Returns `host:pid`, which identifies the process running a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_is_dead(worker: str | None) -> bool:
    """Whether `worker` (a `worker_id()`) names a process on this host that no longer runs."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only its heartbeat can tell
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_record(value: Any) -> Any:
    """Returns `value` as JSON-safe plain data: NaN and infinities become `None`."""
    if isinstance(value, dict):
        return {str(k): clean_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_record(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

"""The one interface every search engine implements, and the options an engine declares.

An engine knows search (which configuration to try next, where trials are stored, when to
prune) and nothing of Keras layers: the runner asks it for a trial, builds and trains the
model the trial's hyperparameters describe, and tells it the result as a *trial record* (a
plain dict). Every record is kept in the engine's own storage, and `Engine.records()` reads
them back from there, so a resumed run, or several workers sharing one storage, all derive
the same leaderboard.

This module is a leaf: it imports the standard library and `attn_search.errors` only (no
engine, no Keras), so the command line can validate engine options without waiting for
TensorFlow. The registry and the resolver (`get_engine`) live in `attn_search.engines`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import pathlib
import socket
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from attn_search.errors import ConfigError

__all__ = [
    "STATUSES",
    "Engine",
    "EngineOption",
    "EngineTrial",
    "TrialPlan",
    "clean_record",
    "process_start",
    "worker_id",
    "worker_is_dead",
]

#: Every status a trial record can have, best first.
STATUSES = ("complete", "skipped", "pruned", "failed")


@dataclasses.dataclass(frozen=True)
class EngineOption:
    """One option an engine accepts (`sampler`, `tuner`, ...), with its check.

    The runner validates a configuration, and the command line builds its flags, from these
    declarations: one place says what an option accepts.

    Args:
        name: The option's name, as the engine's constructor and `RunConfig` spell it.
        choices: The names it accepts (normalized: stripped, lower case, `_` read as `-`), or
            `None` for free text such as a storage URL.
        default: The value when it is not given; `None` accepted as "not set" only when this
            is `None`. Defaults to `None`.
        help: One line for `--help`.
        aliases: Other spellings, each mapped to a name in `choices`. Defaults to none.
        allow_objects: Whether a library object (anything not a string, such as an
            `optuna.samplers.BaseSampler`) is accepted as is. Defaults to `False`.
        rule: What a free-text value must be, as the error says it ("a non-empty string").
        validate: For free text, whether a value meets `rule`. Defaults to any string.

    Example:

    >>> EngineOption("tuner", ("random", "grid"), "random", aliases={"gridsearch": "grid"}).check(
    ...     " GridSearch")
    'grid'
    """

    name: str
    choices: tuple[str, ...] | None = None
    default: Any = None
    help: str = ""
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    allow_objects: bool = False
    rule: str = "a string"
    validate: Callable[[Any], bool] | None = None

    def check(self, value: Any) -> Any:
        """Returns `value` normalized (a choice's canonical name, or the value as given).

        Raises:
            ConfigError: Naming the option, the rule it broke, and echoing `value`.
        """
        if value is None and self.default is None:
            return None
        if self.choices is None:
            ok = self.validate(value) if self.validate is not None else isinstance(value, str)
            if ok:
                return value
            self._fail(self.rule, value)
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "-")
            key = self.aliases.get(key, key)
            if key in self.choices:
                return key
        elif self.allow_objects and value is not None:
            return value
        self._fail(f"one of {', '.join(map(repr, self.choices))}", value)

    def _fail(self, rule: str, value: Any) -> None:
        raise ConfigError(f"`{self.name}` must be {rule}. Received: {self.name}={value!r}")


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

    The runner reads `plan` (set when the trial re-runs an interrupted one), decides the plan,
    and passes it to `make_hp`; nothing outside the engine sets a trial's attributes.

    Attributes:
        number: The trial's number in the engine's storage, from 0; it is the leaderboard's
            `trial_id`.
        max_epochs: A number of epochs the engine imposes on this trial (KerasTuner's
            Hyperband brackets), or `None`.
        slot: The trial's place in the search's budget (from 0), as the storage assigned it
            atomically among all workers: slot k decides trial k's plan (slot 0 is the plain
            baseline, run once). `None`: the runner counts instead.
    """

    number: int
    max_epochs: int | None = None
    slot: int | None = None
    _plan: TrialPlan | None = None

    @property
    def plan(self) -> TrialPlan | None:
        """The plan stored for this trial, or `None`.

        Before `make_hp`, a plan here was stored by an earlier session (this trial re-runs an
        interrupted one) and the runner keeps it; after `make_hp`, the plan it recorded.
        """
        return self._plan

    @abc.abstractmethod
    def make_hp(self, plan: TrialPlan) -> Any:
        """Records `plan` in the engine's storage; returns what `build(hp)` receives.

        The object answers `hp.Int`, `hp.Float`, `hp.Choice`, `hp.Boolean` and `hp.Fixed` as
        the engine decides, honouring `plan` (fixed values first, then defaults or sampling).
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
        options: The options its constructor accepts, each checked by its `EngineOption`.
        files: The names its default storage takes in a run folder (what `overwrite` deletes).
    """

    name: ClassVar[str] = ""
    options: ClassVar[tuple[EngineOption, ...]] = ()
    files: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_options(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """Returns `values` checked and normalized by the engine's `options`.

        Raises:
            ConfigError: A name that is not one of the engine's options (naming them all), or
                a value its option refuses.
        """
        known = {option.name: option for option in cls.options}
        unknown = [key for key in values if key not in known]
        if unknown:
            s = "s" if len(unknown) > 1 else ""
            raise ConfigError(
                f"Engine {cls.name!r} has no option{s} {', '.join(map(repr, unknown))} (its "
                f"options: {', '.join(map(repr, known)) or 'none'}). Received: "
                + ", ".join(f"{key}={values[key]!r}" for key in unknown)
            )
        return {key: known[key].check(value) for key, value in values.items()}

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

    def join(self, identity: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Checks that a shared study runs this configuration (`identity`: the resolved
        configuration without what differs between workers, such as the run folder).

        Raises:
            ConfigError: The study's workers run another configuration. Defaults to no check.
        """

    def others_running(self) -> bool:
        """Whether other workers still run (or are due to re-run) trials of a shared study:
        the search waits for them before the finalists. Defaults to `False` (no sharing)."""
        return False

    @property
    def runs_finalists(self) -> bool:
        """Whether this process retrains the finalists (a KerasTuner worker leaves them to
        its chief). Defaults to `True`."""
        return True

    def work_queue(self, stage: str, keys: list[str]) -> Any | None:
        """The units `keys` of a stage (the finalist fits) shared with the study's other
        workers, each claimed by one of them (`claim`, `done`, `interrupt`, `others_running`,
        `entries`: see `attn_search.engines._optuna_work.WorkQueue`). Defaults to `None`: this
        process runs every unit itself."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most engines hold nothing to release
        """Releases what `open` acquired. Defaults to nothing."""

    def describe(self) -> dict[str, Any]:
        """Returns the engine's settings as plain data (for config.yaml)."""
        return {"name": self.name}


def worker_id() -> str:
    """Returns `host:pid`, which identifies the process running a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, from /proc), or `None` if unknown.

    A process id alone does not name a process for long: on a busy machine the kernel hands a
    dead worker's id to a new process or thread within minutes, so a trial's worker is
    recorded with its start time too.
    """
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def worker_is_dead(worker: str | None, started: int | None = None) -> bool:
    """Whether `worker` (a `worker_id()`) names a process on this host that no longer runs.

    Args:
        worker: The trial's `worker_id()`.
        started: That process's `process_start` when it claimed the trial, if recorded: a
            process now running under the same id but started at another time is not it.
    """
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
    now = process_start(int(pid))
    return started is not None and now is not None and now != started


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

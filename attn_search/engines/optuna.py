"""The Optuna engine: the same hypermodel driven define-by-run, with pruning and a stored study.

`OptunaHyperParameters` is the adapter: the hypermodel calls `hp.Int`, `hp.Float`,
`hp.Choice`, `hp.Boolean` and `hp.Fixed` as it builds, and each call is answered with the
matching `trial.suggest_*`, so conditional hyperparameters are only sampled when the model
actually asks for them. The study lives in a storage (by default `study.db`, an SQLite file
in the run folder; any Optuna storage URL for several workers), and every trial record is a
user attribute of its trial, so the leaderboard is read back from the storage. The record's
family, placement and parameter count are also flat user attributes, which optuna-dashboard
shows as columns (`attn-search dashboard RUN_DIR`).
"""

from __future__ import annotations

import contextlib
import datetime
import math
import pathlib
from typing import Any

from attn_search.engines._optuna_hp import OptunaHyperParameters
from attn_search.engines._optuna_make import make_pruner, make_sampler
from attn_search.engines._optuna_records import IDENTITY, check_identity, study_records
from attn_search.engines._optuna_slots import PLAN, RECORD, SlotStudy, on_stale
from attn_search.engines._optuna_storage import STUDY_FILE, open_storage, storage_url
from attn_search.engines._optuna_work import WorkQueue, stored_entries
from attn_search.engines.base import (
    Engine,
    EngineOption,
    EngineTrial,
    TrialPlan,
    clean_record,
)
from attn_search.errors import ConfigError
from attn_search.formatting import mask_url, placement_label

__all__ = ["SAMPLERS", "PRUNERS", "OptunaEngine", "OptunaHyperParameters"]

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
_STUDY_DEFAULT = "attn-search"


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


_OPTIONS = (
    EngineOption(
        "sampler",
        SAMPLERS,
        "tpe",
        help="optuna only: the sampler that proposes trials: tpe, random, cmaes, qmc or gp.",
        allow_objects=True,
    ),
    EngineOption(
        "pruner",
        PRUNERS,
        "median",
        help="optuna only: the pruner that stops weak trials: median, hyperband, "
        "successive-halving (sha) or none.",
        aliases={"successivehalving": "successive-halving", "sha": "successive-halving"},
        allow_objects=True,
    ),
    EngineOption(
        "storage",
        help="optuna only: a storage URL shared by several workers (journal:///path, "
        "postgresql://..., mysql://..., sqlite:///...). Defaults to $ATTN_SEARCH_STORAGE, "
        "else study.db in the run folder.",
        rule="an Optuna storage URL such as 'sqlite:///study.db' or "
        "'postgresql://user:pass@host/db'",
        validate=_is_url,
    ),
    EngineOption(
        "study",
        help=f"optuna only: the study's name in the storage. Defaults to {_STUDY_DEFAULT}.",
        rule="a non-empty string",
        validate=_is_name,
    ),
)


def _flat_attrs(record: dict[str, Any]) -> dict[str, Any]:
    """The record's family, placement and parameter count as flat user attributes, so that
    optuna-dashboard shows them as columns of its trial table (it shows the nested `record`
    as one JSON string)."""
    flat: dict[str, Any] = {}
    if record.get("family") is not None:
        flat["family"] = str(record["family"])
    placements = record.get("placements")
    if isinstance(placements, (list, tuple)):  # None: the model was never built
        flat["placement"] = placement_label(placements)
    if isinstance(record.get("params"), int):
        flat["params"] = record["params"]
    return flat


class _OptunaTrial(EngineTrial):
    def __init__(self, engine: OptunaEngine, trial: Any, plan: TrialPlan | None):
        self._engine = engine
        self.trial = trial
        self.number = trial.number
        self._plan = plan

    def make_hp(self, plan: TrialPlan) -> OptunaHyperParameters:
        self.trial.set_user_attr(PLAN, clean_record(plan.to_dict()))
        self._plan = plan
        return OptunaHyperParameters(self.trial, fixed=plan.fixed, use_defaults=plan.use_defaults)

    def hp_values(self, hp: OptunaHyperParameters) -> dict[str, Any]:
        return dict(hp.values)

    def report(self, epoch: int, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        self.trial.report(float(value), step=int(epoch))
        return bool(self.trial.should_prune())


class OptunaEngine(Engine):
    """Optuna: a sampler proposes, a pruner stops weak trials early, a study stores all.

    Args:
        sampler: `"tpe"` (seeded), `"random"`, `"cmaes"`, `"qmc"`, `"gp"`, or an
            `optuna.samplers.BaseSampler`. Defaults to `"tpe"`.
        pruner: `"median"`, `"hyperband"`, `"successive-halving"`, `"none"`, or an
            `optuna.pruners.BasePruner`. Defaults to `"median"`.
        storage: An Optuna storage URL shared by the workers of one study:
            `journal:///path/study.journal` (several processes on one machine),
            `postgresql://...` or `mysql://...` (several machines), or `sqlite:///...`.
            Defaults to `None`: `$ATTN_SEARCH_STORAGE` if set, else `study.db` in the run
            folder.
        study: The study's name in the storage. Defaults to `"attn-search"`.

    Raises:
        ConfigError: An unknown sampler or pruner name, or a storage that is not a URL.

    Example:

    >>> engine = OptunaEngine(sampler="random", pruner="none")
    >>> engine.describe()["pruner"]
    'none'
    """

    name = "optuna"
    files = (STUDY_FILE,)
    options = _OPTIONS
    #: How config.yaml names the default storage (whatever `$ATTN_SEARCH_STORAGE` holds).
    DEFAULT_STORAGE = "sqlite:///<run folder>/study.db"

    def __init__(
        self,
        sampler: Any = "tpe",
        pruner: Any = "median",
        storage: str | None = None,
        study: str | None = None,
    ):
        checked = self.check_options(
            {"sampler": sampler, "pruner": pruner, "storage": storage, "study": study}
        )
        self.sampler_name = checked["sampler"]
        self.pruner_name = checked["pruner"]
        self.storage_url = checked["storage"]
        self.study_name = checked["study"] or _STUDY_DEFAULT
        self.study = None
        self.storage = None
        self._slots: SlotStudy | None = None

    @property
    def shared(self) -> bool:
        """Whether the study lives in a storage that other workers may share (a URL)."""
        return storage_url(self.storage_url) is not None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sampler": _as_text(self.sampler_name),
            "pruner": _as_text(self.pruner_name),
            "storage": storage_url(self.storage_url) or self.DEFAULT_STORAGE,
            "study": self.study_name,
        }

    # --- the Engine interface -----------------------------------------------------------------
    def open(self, run_dir, *, hypermodel=None, trials, seed, max_epochs, overwrite=False):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opened_at = datetime.datetime.now()  # Optuna's trial times are naive local
        url = storage_url(self.storage_url)
        self.storage = open_storage(url, pathlib.Path(run_dir), on_stale=on_stale)
        if overwrite:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=self.study_name, storage=self.storage)
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=self.study_name,
            sampler=make_sampler(self.sampler_name, seed, trials, shared=url is not None),
            pruner=make_pruner(self.pruner_name, trials, max_epochs),
            direction="maximize",
            load_if_exists=True,
        )
        # The objective's name in optuna-dashboard and Optuna's plots ("Objective 0" otherwise).
        self.study.set_metric_names(["best_val_accuracy"])
        self._slots = SlotStudy(self.study, self.storage, trials, url, opened_at)
        self._slots.recover()

    def join(self, identity: dict[str, Any]) -> None:
        check_identity(self.study, self._slots, identity)

    def ask(self) -> EngineTrial | None:
        check_identity(self.study, self._slots, None)  # another configuration took over?
        claimed = self._slots.ask()
        if claimed is None:
            return None
        trial, slot = claimed
        plan = trial.user_attrs.get(PLAN)
        out = _OptunaTrial(self, trial, TrialPlan.from_dict(plan) if plan else None)
        out.slot = slot
        return out

    def tell(self, trial: EngineTrial, record: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        record = clean_record({**record, "trial_id": trial.number, "engine": self.name})
        t = trial.trial
        t.set_user_attr(RECORD, record)
        for key, value in _flat_attrs(record).items():
            t.set_user_attr(key, value)
        status = record.get("status")
        value = record.get("best_val_accuracy")
        if status in ("complete", "skipped") and value is not None:
            self.study.tell(t, float(value))
        elif status == "pruned":
            self.study.tell(t, state=TrialState.PRUNED)
        else:
            self.study.tell(t, state=TrialState.FAIL)
        self._slots.finished()

    def interrupt(self, trial: EngineTrial, error: str) -> None:
        from optuna.trial import TrialState

        self._slots.finished()
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        frozen = next((t for t in running if t.number == trial.number), None)
        if frozen is None:
            return  # it was told already: its record stands
        self._slots.fail_and_requeue(frozen, error)

    def records(self) -> list[dict[str, Any]]:
        return study_records(self._slots.trials(), self.name)

    def n_counted(self) -> int:
        # A queued re-run replaces an interrupted trial: neither counts until it runs.
        return self._slots.n_counted()

    def others_running(self) -> bool:
        self._slots.recover()
        return self._slots.running_elsewhere()

    # --- sharing with other workers ---------------------------------------------------------
    def work_queue(self, stage: str, keys: list[str]) -> WorkQueue | None:
        if not self.shared:
            return None
        return WorkQueue(self.storage, self.study_name, stage, keys, self._slots.url)

    @classmethod
    def attach(cls, storage: str, study: str | None = None) -> OptunaEngine:
        """The engine of an existing study, opened from its storage alone (no run folder).

        Raises:
            ConfigError: The storage cannot be opened or holds no study of that name.
        """
        import optuna

        engine = cls(storage=storage, study=study)
        url = storage_url(storage)
        engine.storage = open_storage(url, pathlib.Path("."), on_stale=on_stale)
        try:
            engine.study = optuna.load_study(study_name=engine.study_name, storage=engine.storage)
        except KeyError:
            names = sorted(n for n in optuna.get_all_study_names(engine.storage) if "." not in n)
            raise ConfigError(
                f"The storage {mask_url(url)} holds no study named {engine.study_name!r} (it "
                f"holds: {', '.join(map(repr, names)) or 'none'}); pass the run's --study. "
                f"Received: study={engine.study_name!r}"
            ) from None
        engine._slots = SlotStudy(engine.study, engine.storage, 0, url, datetime.datetime.now())
        return engine

    def shared_config(self) -> dict[str, Any] | None:
        """The configuration the study's workers share (see `join`), if stored."""
        return self.study.user_attrs.get(IDENTITY)

    def stored_units(self, stage: str) -> dict[str, list[dict[str, Any]]]:
        """Every finished unit of a shared stage, by key, read from the storage."""
        return stored_entries(self.storage, self.study_name, stage)

    def close(self) -> None:
        if self._slots is not None:
            self._slots.finished()
        self.study = None

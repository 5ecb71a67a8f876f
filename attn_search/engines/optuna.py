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
from attn_search.engines.base import (
    Engine,
    EngineOption,
    EngineTrial,
    TrialPlan,
    clean_record,
    worker_id,
    worker_is_dead,
)
from attn_search.errors import ConfigError
from attn_search.formatting import placement_label

__all__ = ["SAMPLERS", "PRUNERS", "OptunaEngine", "OptunaHyperParameters"]

SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
_STUDY_DEFAULT = "attn-search"
STUDY_FILE = "study.db"  # the default storage: an SQLite file in the run folder
_RECORD = "record"
_PLAN = "plan"
_WORKER = "worker"
_RERUN_OF = "rerun_of"
_INTERRUPTED = "interrupted"


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
        help="optuna only: a storage URL (e.g. postgresql://...) shared by several workers. "
        "Defaults to study.db in the run folder.",
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


def _make_sampler(sampler: Any, seed: int, trials: int) -> Any:
    if not isinstance(sampler, str):
        return sampler
    import warnings

    import optuna

    startup = min(10, max(3, trials // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QMC and GP are marked experimental
        if sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        if sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
        if sampler == "qmc":
            return optuna.samplers.QMCSampler(seed=seed)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)


def _make_pruner(pruner: Any, trials: int, max_epochs: int | None) -> Any:
    if not isinstance(pruner, str):
        return pruner
    import optuna

    if pruner == "median":
        # Few trials per run here: start pruning after a handful of finished trials (and,
        # as Optuna's default, from the first epoch on).
        return optuna.pruners.MedianPruner(
            n_startup_trials=min(5, max(2, trials // 4)), n_warmup_steps=0
        )
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_epochs or "auto", reduction_factor=3
        )
    if pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _make_storage(url: str | None, run_dir: pathlib.Path) -> Any:
    import optuna

    url = url or f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"
    kwargs: dict[str, Any] = {}
    if not url.startswith("sqlite"):
        # A server database may be shared by workers on several machines: a heartbeat
        # lets any of them tell a crashed worker's trial from a running one.
        kwargs.update(heartbeat_interval=60, grace_period=180)
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as error:  # bad URL, driver missing, server down
        raise ConfigError(
            f"`storage` cannot be opened ({type(error).__name__}: {error}). "
            f"Received: storage={url!r}"
        ) from None


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
        self.trial.set_user_attr(_PLAN, clean_record(plan.to_dict()))
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
        storage: An Optuna storage URL (`sqlite:///...`, `postgresql://...`,
            `mysql://...`). Defaults to `None`: `study.db` in the run folder.
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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sampler": _as_text(self.sampler_name),
            "pruner": _as_text(self.pruner_name),
            "storage": self.storage_url or "sqlite:///<run folder>/study.db",
            "study": self.study_name,
        }

    # --- the Engine interface -----------------------------------------------------------------
    def open(self, run_dir, *, hypermodel=None, trials, seed, max_epochs, overwrite=False):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._opened_at = datetime.datetime.now()  # Optuna's trial times are naive local
        run_dir = pathlib.Path(run_dir)
        storage = _make_storage(self.storage_url, run_dir)
        if overwrite:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=self.study_name, storage=storage)
        self.study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=_make_sampler(self.sampler_name, seed, trials),
            pruner=_make_pruner(self.pruner_name, trials, max_epochs),
            direction="maximize",
            load_if_exists=True,
        )
        # The objective's name in optuna-dashboard and Optuna's plots ("Objective 0" otherwise).
        self.study.set_metric_names(["best_val_accuracy"])
        self._recover()

    def _recover(self) -> None:
        """Fails the trials whose process died, and queues their re-runs."""
        import optuna
        from optuna.trial import TrialState

        if self.storage_url and not self.storage_url.startswith("sqlite"):
            optuna.storages.fail_stale_trials(self.study)
        trials = self.study.get_trials(deepcopy=False)
        requeued = self._reruns(trials)
        for t in trials:
            stale = t.state == TrialState.RUNNING and (
                worker_is_dead(t.user_attrs.get(_WORKER)) or self._unclaimed(t)
            )
            orphan = (
                t.state == TrialState.FAIL
                and _RECORD not in t.user_attrs
                and t.number not in requeued
            )
            if stale or orphan:
                worker = t.user_attrs.get(_WORKER, "unknown worker")
                error = f"interrupted: the process running this trial stopped ({worker})"
                self._fail_and_requeue(t, error)

    def _unclaimed(self, frozen: Any) -> bool:
        """A running trial of the run folder's own study that no process ever claimed: `ask`
        creates the trial, then writes its worker, so a kill between the two leaves a trial
        that no heartbeat or pid can vouch for. One started before this engine opened is dead
        (a live worker claims its trial within milliseconds of asking)."""
        if self.storage_url is not None or _WORKER in frozen.user_attrs:
            return False
        started = frozen.datetime_start
        return started is not None and started < self._opened_at

    def _fail_and_requeue(self, frozen: Any, error: str) -> None:
        # Optuna refuses to change a finished trial, and offers no public way to set an
        # attribute of a trial this process did not start: the interrupted trial's story is
        # kept on its re-run instead, and `records` tells it.
        from optuna.trial import TrialState

        self.study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
        user_attrs = {_RERUN_OF: frozen.number, _INTERRUPTED: error}
        if _PLAN in frozen.user_attrs:
            user_attrs[_PLAN] = frozen.user_attrs[_PLAN]
        self.study.enqueue_trial(dict(frozen.params), user_attrs=user_attrs)

    @staticmethod
    def _reruns(trials: list[Any]) -> dict[int, Any]:
        """Each interrupted trial's number -> the trial queued to re-run it."""
        return {t.user_attrs[_RERUN_OF]: t for t in trials if _RERUN_OF in t.user_attrs}

    def ask(self) -> EngineTrial | None:
        trial = self.study.ask()
        trial.set_user_attr(_WORKER, worker_id())
        plan = trial.user_attrs.get(_PLAN)
        return _OptunaTrial(self, trial, TrialPlan.from_dict(plan) if plan else None)

    def tell(self, trial: EngineTrial, record: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        record = clean_record({**record, "trial_id": trial.number, "engine": self.name})
        t = trial.trial
        t.set_user_attr(_RECORD, record)
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

    def interrupt(self, trial: EngineTrial, error: str) -> None:
        from optuna.trial import TrialState

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        frozen = next((t for t in running if t.number == trial.number), None)
        if frozen is None:
            return  # it was told already: its record stands
        self._fail_and_requeue(frozen, error)

    def records(self) -> list[dict[str, Any]]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        reruns = self._reruns(trials)
        out = []
        for t in trials:
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
                continue
            record = dict(t.user_attrs.get(_RECORD) or {})
            if not record:
                rerun = reruns.get(t.number)
                record = {
                    "status": "failed",
                    "family": (t.user_attrs.get(_PLAN) or {}).get("family"),
                    "hp": dict(t.params),
                    "error": "no record: the trial ended outside attn-search",
                }
                if rerun is not None:
                    error = f"{rerun.user_attrs[_INTERRUPTED]}; re-run as trial {rerun.number}"
                    record.update(error=error, interrupted=True)
            record.update(trial_id=t.number, engine=self.name)
            out.append(record)
        return out

    def n_counted(self) -> int:
        # A queued re-run replaces an interrupted trial: neither counts until it runs.
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        reruns = self._reruns(trials)
        return sum(
            1
            for t in trials
            if t.state != TrialState.WAITING
            and not (t.state == TrialState.FAIL and t.number in reruns)
        )

    def close(self) -> None:
        self.study = None

"""A study whose trials fill a fixed number of *slots*, exactly once, whatever the workers.

The storage numbers a study's trials atomically (RDB storages lock the study row; a journal
orders its log), so the number of a new trial decides its slot: the count of *fresh* trials
numbered below it (a fresh trial is neither a re-run nor surplus). A trial whose slot is past
the budget is surplus: it is failed at once, marked `surplus`, and asks no more. A trial that
was interrupted (Ctrl-C, a dead process, a stopped heartbeat) is failed by exactly one worker
(the storage refuses a second), which enqueues its re-run carrying the same slot; `ask` pops
queued re-runs first (Optuna's `enqueue_trial`). So every slot below the budget is filled by
one finished trial, never two, with no lock of ours: the same mechanism serves the search
trials (slot k decides trial k's plan: k = 0 is the plain baseline, once) and the units of
the shared finalist stage.
"""

from __future__ import annotations

import datetime
import os
import warnings
from typing import Any

from attn_search.engines._optuna_storage import Heartbeat, is_local, uses_heartbeat
from attn_search.engines.base import process_start, worker_id, worker_is_dead

SLOT = "slot"
SURPLUS = "surplus"
WORKER = "worker"
WORKER_START = "worker_start"
RERUN_OF = "rerun_of"
INTERRUPTED = "interrupted"
PLAN = "plan"
RECORD = "record"
#: A trial of a shared storage that no worker claimed this long after it started is dead.
_CLAIM_SECONDS = 120


class SlotStudy:
    """An Optuna study handing out slots 0 .. budget-1 (see the module docstring).

    Args:
        study: The opened `optuna.Study`.
        storage: Its storage.
        budget: The number of slots.
        url: The storage URL the user gave (`None`: the run folder's own file).
        opened_at: When this process opened the storage (naive local time, as Optuna's).
    """

    def __init__(
        self,
        study: Any,
        storage: Any,
        budget: int,
        url: str | None,
        opened_at: datetime.datetime,
    ):
        self.study = study
        self.storage = storage
        self.budget = budget
        self.url = url
        self._opened_at = opened_at
        self._heartbeat: Heartbeat | None = None
        self.identity: dict[str, Any] | None = None  # the configuration this worker shares

    # --- reading ------------------------------------------------------------------------------
    def trials(self) -> list[Any]:
        """Every trial but the surplus ones, by number."""
        return [t for t in self.study.get_trials(deepcopy=False) if SURPLUS not in t.user_attrs]

    @staticmethod
    def reruns(trials: list[Any]) -> dict[int, Any]:
        """Each interrupted trial's number -> the trial queued to re-run it."""
        return {t.user_attrs[RERUN_OF]: t for t in trials if RERUN_OF in t.user_attrs}

    def n_counted(self) -> int:
        """Slots taken: trials that are not waiting, nor replaced by a queued re-run."""
        from optuna.trial import TrialState

        trials = self.trials()
        reruns = self.reruns(trials)
        return sum(
            1
            for t in trials
            if t.state != TrialState.WAITING
            and not (t.state == TrialState.FAIL and t.number in reruns)
        )

    def running_elsewhere(self) -> bool:
        """Whether another worker still runs (or is about to re-run) a trial of this study."""
        from optuna.trial import TrialState

        mine = self._heartbeat is not None
        states = [t.state for t in self.trials()]
        running = sum(1 for s in states if s == TrialState.RUNNING) - (1 if mine else 0)
        return running > 0 or TrialState.WAITING in states

    # --- claiming -----------------------------------------------------------------------------
    def ask(self) -> tuple[Any, int] | None:
        """The next trial and its slot, or `None` when every slot is taken."""
        from optuna.trial import TrialState

        self.recover()
        with warnings.catch_warnings():
            # "Heartbeat of storage is supposed to be used with Study.optimize": the runner
            # drives trials with ask and tell, and beats itself (`Heartbeat`).
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = self.study.ask()
        trial.set_user_attr(WORKER, worker_id())
        trial.set_user_attr(WORKER_START, process_start(os.getpid()))
        slot = trial.user_attrs.get(SLOT)
        if slot is None:
            slot = fresh_slot(self.study.get_trials(deepcopy=False), trial.number)
            trial.set_user_attr(SLOT, slot)
        if slot >= self.budget:
            trial.set_user_attr(SURPLUS, True)
            self.study.tell(trial, state=TrialState.FAIL)
            return None
        if uses_heartbeat(self.storage):
            self._heartbeat = Heartbeat(self.storage, trial)
        return trial, int(slot)

    def finished(self) -> None:
        """Stops the heartbeat of this process's trial (it was told)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    # --- recovering ---------------------------------------------------------------------------
    def recover(self) -> None:
        """Fails the trials whose worker died, and queues their re-runs (each exactly once)."""
        import optuna
        from optuna.trial import TrialState

        if uses_heartbeat(self.storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)  # its callback: `on_stale`
        trials = self.trials()
        # Every trial re-run already, by a surplus re-run too: re-queued once, never again.
        requeued = self.reruns(self.study.get_trials(deepcopy=False))
        for t in trials:
            worker = t.user_attrs.get(WORKER, "unknown worker")
            error = f"interrupted: the process running this trial stopped ({worker})"
            if t.state == TrialState.RUNNING and (
                worker_is_dead(t.user_attrs.get(WORKER), t.user_attrs.get(WORKER_START))
                or self._unclaimed(t)
            ):
                self.fail_and_requeue(t, error)
            elif (
                self.url is None
                and t.state == TrialState.FAIL
                and RECORD not in t.user_attrs
                and t.number not in requeued
            ):
                # Failed outside attn-search (an earlier version, a crash between fail and
                # enqueue): in the run folder's own study no other worker can race this.
                self.requeue(t, error)

    def _unclaimed(self, frozen: Any) -> bool:
        """A running trial no process ever claimed: `ask` creates the trial, then writes its
        worker, so a kill between the two leaves a trial no heartbeat or pid vouches for. In
        the run folder's own study, one started before this engine opened is dead; in a shared
        storage, one unclaimed for two minutes (a live worker claims it within milliseconds)."""
        if WORKER in frozen.user_attrs or frozen.datetime_start is None:
            return False
        if self.url is None:
            return frozen.datetime_start < self._opened_at
        if not is_local(self.url):
            return False  # another machine's clock: its heartbeat decides
        age = datetime.datetime.now() - frozen.datetime_start
        return age.total_seconds() > _CLAIM_SECONDS

    def fail_and_requeue(self, frozen: Any, error: str) -> None:
        """Fails `frozen` and queues its re-run, unless another worker failed it first."""
        from optuna.trial import TrialState

        try:
            self.study.tell(frozen.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # finished already: by its worker, or by another
            return
        self.requeue(frozen, error)

    def requeue(self, frozen: Any, error: str) -> None:
        """Queues the re-run of the failed trial `frozen`, in the same slot and plan."""
        requeue(self.study, frozen, error)


def requeue(study: Any, frozen: Any, error: str) -> None:
    """Queues in `study` the re-run of its failed trial `frozen`, in the same slot and plan."""
    # Optuna refuses to change a finished trial, and offers no public way to set an attribute
    # of a trial this process did not start: the interrupted trial's story is kept on its
    # re-run instead, and `records` tells it.
    user_attrs = {RERUN_OF: frozen.number, INTERRUPTED: error}
    for key in (PLAN, SLOT):
        if key in frozen.user_attrs:
            user_attrs[key] = frozen.user_attrs[key]
    if SLOT not in user_attrs and RERUN_OF not in frozen.user_attrs:
        # Stopped between being created and being given its slot: the slot it would have had.
        user_attrs[SLOT] = fresh_slot(study.get_trials(deepcopy=False), frozen.number)
    study.enqueue_trial(dict(frozen.params), user_attrs=user_attrs)


def fresh_slot(trials: list[Any], number: int) -> int:
    """The slot of the fresh trial `number`: how many fresh trials (neither re-runs nor
    surplus) the storage numbered below it."""
    return sum(
        1
        for t in trials
        if t.number < number and RERUN_OF not in t.user_attrs and SURPLUS not in t.user_attrs
    )


def on_stale(study: Any, frozen: Any) -> None:
    """Optuna's `failed_trial_callback`: the one worker that failed a trial whose heartbeat
    stopped queues its re-run."""
    worker = frozen.user_attrs.get(WORKER, "unknown worker")
    requeue(study, frozen, f"interrupted: its worker's heartbeat stopped ({worker})")

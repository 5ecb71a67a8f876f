"""Units of work shared by the workers of one study: the finalist fits, each done once.

The units of a stage (a deterministic list of keys, the same on every worker once the search
is over) are the slots of a *companion study* in the same storage, named after the study, the
stage and the list (`<study>.finalists.<digest>`). A worker claims unit k by asking the
companion study for a trial: the storage numbers it, and its slot is the unit (see
`_optuna_slots`), so each unit is claimed by exactly one worker; a dead worker's unit is
failed and queued again like a search trial. A finished unit keeps its entries (plain dicts)
as a user attribute, so any process reads every unit's results from the storage alone; a
later list (a resume with more repeats) reuses the entries of the units it shares with an
earlier one instead of running them again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from attn_search.engines._optuna_slots import SlotStudy
from attn_search.engines.base import clean_record

UNIT = "unit"
ENTRIES = "entries"


def companion_prefix(study_name: str, stage: str) -> str:
    """The names of a stage's companion studies start with this."""
    return f"{study_name}.{stage}."


def stored_entries(storage: Any, study_name: str, stage: str) -> dict[str, list[dict]]:
    """Every finished unit's entries, by unit key, from all of a stage's companion studies."""
    import optuna
    from optuna.trial import TrialState

    prefix = companion_prefix(study_name, stage)
    out: dict[str, list[dict]] = {}
    for name in sorted(optuna.get_all_study_names(storage)):
        if not name.startswith(prefix):
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if UNIT in t.user_attrs and ENTRIES in t.user_attrs:
                out.setdefault(t.user_attrs[UNIT], list(t.user_attrs[ENTRIES]))
    return out


class WorkQueue:
    """The units of one stage, claimed through a companion study (see the module docstring).

    Args:
        storage: The opened Optuna storage of the study.
        study_name: The study's name.
        stage: The stage's name (`"finalists"`).
        keys: The units' keys (JSON-able text), in the order every worker computes them.
        url: The storage URL as the user gave it.
    """

    def __init__(
        self, storage: Any, study_name: str, stage: str, keys: Sequence[str], url: str | None
    ):
        import optuna

        self.keys = list(keys)
        self._storage, self._study_name, self._stage = storage, study_name, stage
        digest = hashlib.sha1(json.dumps(self.keys).encode()).hexdigest()[:12]
        study = optuna.create_study(
            storage=storage,
            study_name=companion_prefix(study_name, stage) + digest,
            direction="maximize",
            load_if_exists=True,
        )
        self._slots = SlotStudy(study, storage, len(self.keys), url, datetime.datetime.now())

    def claim(self) -> tuple[Any, str] | None:
        """The next unit (a handle and its key), or `None` when every unit is claimed."""
        earlier = None
        while True:
            claimed = self._slots.ask()
            if claimed is None:
                return None
            trial, slot = claimed
            key = self.keys[slot]
            trial.set_user_attr(UNIT, key)
            if earlier is None:
                earlier = self.entries()
            if key in earlier:  # done in an earlier list of units: reuse its entries
                self.done(trial, earlier[key])
                continue
            return trial, key

    def done(self, handle: Any, entries: list[dict[str, Any]]) -> None:
        """Finishes a claimed unit with its entries."""
        handle.set_user_attr(ENTRIES, clean_record(list(entries)))
        self._slots.study.tell(handle, float(len(entries)))
        self._slots.finished()

    def interrupt(self, handle: Any, error: str) -> None:
        """Gives a claimed unit back (Ctrl-C): another worker, or a resume, runs it."""
        self._slots.finished()
        frozen = self._slots.study.trials[handle.number]
        self._slots.fail_and_requeue(frozen, error)

    def others_running(self) -> bool:
        """Whether another worker still runs (or is due to re-run) a unit of this list."""
        self._slots.recover()
        return self._slots.running_elsewhere()

    def entries(self) -> dict[str, list[dict[str, Any]]]:
        """Every finished unit's entries, by key (this list's and earlier ones')."""
        return stored_entries(self._storage, self._study_name, self._stage)

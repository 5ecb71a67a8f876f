"""Reading a study back: trial records, and the configuration every worker of a study shares."""

from __future__ import annotations

from typing import Any

from attn_search.engines._optuna_slots import INTERRUPTED, PLAN, RECORD, SlotStudy
from attn_search.engines.base import clean_record
from attn_search.errors import ConfigError

#: The study user attribute holding the configuration its workers share.
IDENTITY = "attn_search_config"


def study_records(trials: list[Any], engine: str) -> list[dict[str, Any]]:
    """Every finished trial's record (see `Engine.records`), from a study's trials."""
    from optuna.trial import TrialState

    reruns = SlotStudy.reruns(trials)
    out = []
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        record = dict(t.user_attrs.get(RECORD) or {})
        if not record:
            rerun = reruns.get(t.number)
            record = {
                "status": "failed",
                "family": (t.user_attrs.get(PLAN) or {}).get("family"),
                "hp": dict(t.params),
                "error": "no record: the trial ended outside attn-search",
            }
            if rerun is not None:
                error = f"{rerun.user_attrs[INTERRUPTED]}; re-run as trial {rerun.number}"
                record.update(error=error, interrupted=True)
        record.update(trial_id=t.number, engine=engine)
        out.append(record)
    return out


def check_identity(study: Any, slots: SlotStudy, identity: dict[str, Any] | None) -> None:
    """Refuses a worker whose configuration differs from the one its study's workers share.

    The first worker of a study stores `identity` in the study; a later one must match it,
    unless no trial is running (a resume, which may change the budget): then its own replaces
    it. With `identity=None`, checks only that the stored one is still this worker's.

    Raises:
        ConfigError: Naming the first key that differs, with both values.
    """
    from optuna.trial import TrialState

    mine = getattr(slots, "identity", None) if identity is None else clean_record(identity)
    if mine is None:
        return
    stored = study.user_attrs.get(IDENTITY)
    if identity is not None and stored != mine:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if stored is None or not running:
            study.set_user_attr(IDENTITY, mine)
            stored = study.user_attrs.get(IDENTITY)
    slots.identity = mine
    path = first_difference(stored, mine)
    if path is not None:
        theirs, ours = path[1], path[2]
        raise ConfigError(
            f"`{path[0]}` differs from the configuration of study {study.study_name!r}, which "
            "other workers are running: every worker of a study needs the same configuration. "
            "Start this one with the study's options, or give it another --study. Received: "
            f"{path[0]}={ours!r} (the study's: {theirs!r})"
        )


def first_difference(theirs: Any, ours: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first key path (`budget.trials`) where two nested dicts differ, with both values."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            found = first_difference(theirs.get(key), ours.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if theirs == ours else (prefix.rstrip("."), theirs, ours)

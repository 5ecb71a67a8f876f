"""Every use of a dependency's private API or file format, one small function or constant each.

The engines use only public APIs of Optuna and KerasTuner, except what recovering a KerasTuner
project after a kill needs: the layout of the state KerasTuner saves. Each item names the
version it was checked against (keras-tuner 1.4.8); `tests/test_engine_resume.py` pins each
one, so a release that moves them fails loudly there instead of corrupting a resume.
"""

from __future__ import annotations

import json
from typing import Any

# keras-tuner 1.4.8: `BaseTuner.get_state()` is `{}`; `<tuner id>.json` holds nothing else.
EMPTY_TUNER_STATE = "{}"

# keras-tuner 1.4.8: the keys of `Oracle.get_state()` (oracle.json) that name trials.
ORACLE_TRIAL_KEYS = ("ongoing_trials", "start_order", "end_order", "retry_queue")


def reconcile_oracle_state(
    state: dict[str, Any], statuses: dict[str, str], recorded: set[str]
) -> bool:
    """Makes a saved KerasTuner oracle state agree with the project's trial files.

    Checked against keras-tuner 1.4.8 (`Oracle.get_state` / `set_state` / `reload`): reload
    re-queues every trial in `ongoing_trials` (tuner id -> trial id) for a re-run, and fails
    on an id without a trial file.

    Args:
        state: The oracle's state (oracle.json), changed in place.
        statuses: Each trial file's trial id -> status (`"RUNNING"`, `"COMPLETED"`, ...).
        recorded: The trial ids whose attn-search record was written (told): not re-run.

    Returns:
        Whether `state` changed.
    """
    before = json.dumps(state, sort_keys=True)
    rerun = {t for t, status in statuses.items() if status == "RUNNING" and t not in recorded}
    ongoing = state["ongoing_trials"]
    for tuner_id, trial_id in list(ongoing.items()):
        if trial_id not in rerun:
            del ongoing[tuner_id]
    state["retry_queue"] = [t for t in state["retry_queue"] if t in rerun]
    for key in ("start_order", "end_order"):
        state[key] = [t for t in state[key] if t in statuses]
    queued = set(ongoing.values()) | set(state["retry_queue"])
    for trial_id, status in sorted(statuses.items()):
        if trial_id not in state["start_order"]:
            state["start_order"].append(trial_id)
        if trial_id in rerun and trial_id not in queued:
            ongoing[f"recovered-{trial_id}"] = trial_id  # its process died: re-run it
        if status != "RUNNING" and trial_id not in state["end_order"]:
            state["end_order"].append(trial_id)
    return json.dumps(state, sort_keys=True) != before

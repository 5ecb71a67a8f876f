"""The files of a KerasTuner project, and recovering one a killed process left half-written.

KerasTuner writes `oracle.json`, `<tuner id>.json` and each `trial_<id>/trial.json` in place,
so a process killed during a write leaves an empty or truncated file, and KerasTuner's reload
then fails (keras-tuner #439, #835). The engine therefore keeps, after each step, an atomic
last-good copy of the oracle's state and of the current trial's, and `repair` runs before the
project is reloaded: it restores each unreadable file from its copy, drops a trial that never
started when it has none, and makes the oracle's state agree with the trial files (a trial
running when the process died is re-run; one whose record was written is not).

Beside KerasTuner's files, each trial folder holds attn-search's own `plan.json` and
`record.json`, written atomically.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

from attn_search._atomic import write_text_atomic
from attn_search.engines import _private
from attn_search.engines.base import STATUSES
from attn_search.errors import RunDirError

PROJECT = "keras_tuner"
PLAN = "plan.json"
RECORD = "record.json"
TRIAL = "trial.json"
ORACLE = "oracle.json"
GOOD_TRIAL = "trial.last-good.json"
GOOD_ORACLE = "oracle.last-good.json"


def read_json(path: pathlib.Path) -> Any:
    """The JSON in `path`, or `None` when it is missing, empty or truncated."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(record: Any) -> bool:
    """Whether `record` is a told trial's record (not missing, not an interrupted one's)."""
    return (
        isinstance(record, dict)
        and record.get("status") in STATUSES
        and not record.get("interrupted")
    )


def save_good_copies(project: pathlib.Path, oracle_state: dict, trial_state: dict | None) -> None:
    """Writes the last-good copies of the oracle's state and (if given) of one trial's."""
    if trial_state is not None:
        folder = project / f"trial_{trial_state['trial_id']}"
        write_text_atomic(folder / GOOD_TRIAL, json.dumps(trial_state))
    write_text_atomic(project / GOOD_ORACLE, json.dumps(oracle_state))


def repair(project: pathlib.Path, tuner_file: str) -> list[str]:
    """Makes a KerasTuner project reloadable after a kill; returns one line per repair.

    Args:
        project: The project folder (`<run folder>/keras_tuner`).
        tuner_file: The tuner's state file name (`tuner0.json`); KerasTuner reloads the
            project only when it exists, so nothing is repaired otherwise.

    Raises:
        RunDirError: `oracle.json` is unreadable and there is no last-good copy (a project
            written before attn-search kept one).
    """
    if not (project / tuner_file).exists():
        return []
    notes: list[str] = []
    statuses: dict[str, str] = {}
    recorded: set[str] = set()
    for folder in sorted(project.glob("trial_*")):
        state = _repair_trial(folder, notes)
        if state is None:
            continue
        statuses[state["trial_id"]] = state["status"]
        if is_complete(read_json(folder / RECORD)):
            recorded.add(state["trial_id"])
    state = read_json(project / ORACLE)
    changed = False
    if not isinstance(state, dict):
        state = read_json(project / GOOD_ORACLE)
        if state is None:
            raise RunDirError(
                f"{project / ORACLE} is unreadable (a run killed while writing it?) and has no "
                "last-good copy: it cannot be resumed. Start it again with `overwrite=True` "
                "(--overwrite)."
            )
        notes.append(f"{project / ORACLE} was unreadable: restored from its last good copy")
        changed = True
    if _private.reconcile_oracle_state(state, statuses, recorded):
        changed = True
    if changed:
        write_text_atomic(project / ORACLE, json.dumps(state))
    if read_json(project / tuner_file) is None:
        write_text_atomic(project / tuner_file, _private.EMPTY_TUNER_STATE)
        notes.append(f"{project / tuner_file} was unreadable: rewritten (it holds no state)")
    return notes


def _repair_trial(folder: pathlib.Path, notes: list[str]) -> dict | None:
    """The trial's state, restored from its last-good copy if need be; `None` if dropped."""
    state = read_json(folder / TRIAL)
    if isinstance(state, dict):
        return state
    good = read_json(folder / GOOD_TRIAL)
    if isinstance(good, dict):
        write_text_atomic(folder / TRIAL, json.dumps(good))
        notes.append(f"{folder / TRIAL} was unreadable: restored from its last good copy")
        return good
    # KerasTuner wrote it when the trial was created, before any copy: it never started.
    shutil.rmtree(folder)
    notes.append(f"{folder / TRIAL} was unreadable and the trial had not started: dropped")
    return None


def shared_records(project: pathlib.Path, engine: str) -> list[dict[str, Any]]:
    """The records a KerasTuner worker reads: every trial folder's told record, by trial id
    (the chief and its workers share the run folder, as KerasTuner's `directory`)."""
    out = []
    for folder in sorted(project.glob("trial_*"), key=lambda p: p.name):
        record = read_json(folder / RECORD)
        if is_complete(record):
            out.append({**record, "trial_id": int(folder.name[len("trial_") :]), "engine": engine})
    return sorted(out, key=lambda r: r["trial_id"])

"""Undertraining: was a fit still learning when its epochs ran out, and what a run says if so.

A fit is *still improving* when it trained every epoch it was given (early stopping did not
end it) and the last quarter of its epochs (at least one) raised its best validation accuracy
by more than a tenth of everything it gained over chance (`1 / num_classes`) so far: its
learning curve had not flattened. A fit given fewer than 5 epochs that is still at chance had
no time to start learning, and counts as still improving too (given 5 or more, it is a
configuration that fails to learn, not one that needs more epochs). A 1-epoch fit is always
still improving; a digits model at 6 epochs that gained 80 points over chance, 3 of them in
its last 2 epochs, is not. The run warns when most complete search trials, or any finalist
fit, were still improving, and the verdict sentences say the comparison is of undertrained models
(`attn_search.stats.UNDERTRAINED_NOTE`, from comparison.csv's `undertrained` column).

Pure functions: no TensorFlow, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["still_improving", "undertraining_warning"]

#: The share of the gain over chance that the last quarter of the epochs may bring at most.
_FLAT_SHARE = 0.1
#: Fewer epochs than this, still at chance: too few to have started learning.
_EPOCHS_TO_START = 5


def still_improving(val_accuracy: Sequence[float], *, epochs: int, num_classes: int) -> bool:
    """Whether a fit was still improving when it stopped (the module docstring's rule).

    Args:
        val_accuracy: The validation accuracy after each epoch it trained.
        epochs: The epochs it was given (fewer trained means early stopping ended it).
        num_classes: Classes (chance accuracy is `1 / num_classes`).
    """
    values = [float(v) for v in val_accuracy if v is not None and math.isfinite(float(v))]
    if not values or len(values) < epochs:
        return False
    chance = 1.0 / max(1, num_classes)
    window = max(1, math.ceil(len(values) / 4))
    before = max([chance, *values[:-window]])
    gained = max(values) - chance
    if gained <= 0:
        return epochs < _EPOCHS_TO_START
    return max(values[-window:]) - before > _FLAT_SHARE * gained


def undertraining_warning(
    records: Sequence[Mapping[str, Any]], fits: Sequence[Mapping[str, Any]]
) -> str | None:
    """The end-of-run warning, or `None`: most complete trials, or any finalist fit, were
    still improving (their `still_improving` flag)."""
    complete = [r for r in records if r.get("status") == "complete"]
    trials = sum(bool(r.get("still_improving")) for r in complete)
    finalists = sum(bool(f.get("still_improving")) for f in fits)
    if not (complete and trials > len(complete) / 2) and not finalists:
        return None
    parts = []
    if complete and trials:
        parts.append(f"{trials} of {len(complete)} complete trials")
    if finalists:
        parts.append(f"{finalists} of {len(fits)} finalist fits")
    return (
        f"Undertrained: {' and '.join(parts)} were still improving when their epochs ran out, "
        "so the comparison is of undertrained models. Train longer: pass `--epochs N` with N "
        "above the epochs they had (`--max-epochs` only caps them)."
    )

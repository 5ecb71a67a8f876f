"""Undertraining: the per-fit flag, the end-of-run warning, the verdict's caution, and a run
forced to 1 epoch (`epochs=1`) that must be told it compared undertrained models."""

from __future__ import annotations

import pytest

from attn_search import stats
from attn_search.runner._undertraining import still_improving, undertraining_warning

# Validation accuracy per epoch of a default-space digits model (8x8, 10 classes), measured.
DIGITS_6_EPOCHS = [0.511, 0.833, 0.893, 0.911, 0.911, 0.941]


@pytest.mark.parametrize(
    "curve, epochs, classes, want",
    [
        ([0.5], 1, 10, True),  # one epoch that learned anything
        (DIGITS_6_EPOCHS, 6, 10, False),  # +3 points in the last 2 of 6 epochs: flat enough
        ([0.3, 0.4, 0.5, 0.6], 4, 4, True),  # still climbing: +10 of 35 points at the end
        ([0.3, 0.4, 0.5, 0.6], 8, 4, False),  # early stopping ended it (4 of 8 epochs)
        ([0.08], 1, 10, True),  # still at chance after 1 epoch: had no time to start
        ([0.1] * 6, 6, 10, False),  # 6 epochs at chance: fails to learn, not undertrained
        ([], 3, 10, False),
    ],
)
def test_still_improving(curve, epochs, classes, want):
    assert still_improving(curve, epochs=epochs, num_classes=classes) is want


def test_warning_when_most_trials_or_any_finalist_were_still_improving():
    done = [{"status": "complete", "still_improving": flag} for flag in (True, True, False)]
    pruned = [{"status": "pruned", "still_improving": True}] * 5
    assert undertraining_warning(done + pruned, []) == (
        "Undertrained: 2 of 3 complete trials were still improving when their epochs ran out, "
        "so the comparison is of undertrained models. Train longer: pass `--epochs N` with N "
        "above the epochs they had (`--max-epochs` only caps them)."
    )
    fits = [{"still_improving": False}, {"still_improving": True}]
    assert undertraining_warning(done[1:], fits) == (
        "Undertrained: 1 of 2 complete trials and 1 of 2 finalist fits were still improving "
        "when their epochs ran out, so the comparison is of undertrained models. Train longer: "
        "pass `--epochs N` with N above the epochs they had (`--max-epochs` only caps them)."
    )
    assert undertraining_warning(done[1:], fits[:1]) is None


def test_an_undertrained_row_adds_the_caution_to_its_verdict():
    row = {"finalist": 1, "trial_id": 4, "placement": "2", "family": "plain", "repeats": 5,
           "diff_mean": 0.018, "diff_ci_low": 0.009, "diff_ci_high": 0.027,
           "p_adjusted": 0.004, "verdict": "attention better"}  # fmt: skip
    plain = stats.sentence(row)
    assert stats.sentence({**row, "undertrained": True}) == f"{plain} {stats.UNDERTRAINED_NOTE}"
    assert stats.sentence({**row, "undertrained": "False"}) == plain
    assert stats.UNDERTRAINED_NOTE == (
        "Caution: models compared here were still improving when their epochs ran out, so this "
        "compares undertrained models; train longer with `--epochs`."
    )


# The run forced to 1 epoch (`epochs=1`) is tests/test_cv.py's `cv_run`: one small run serves
# both files' checks (see test_a_run_forced_to_one_epoch_warns_and_cautions_its_verdict there).

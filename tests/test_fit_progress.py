"""Progress within a fit: one refreshing line on a terminal, nothing when piped or quiet."""

from __future__ import annotations

import io

import pytest

from attn_search.runner import ProgressPrinter, progress
from attn_search.runner.progress import Progress

RECORD = {"trial_id": 4, "status": "complete", "family": "plain", "best_val_accuracy": 0.5}
TRIAL_LINE = "[ 1/10] #4 plain | val_acc 0.5000 | best - | 0:00:00 elapsed, ~0:00:09 left\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    monkeypatch.setenv("COLUMNS", "120")
    return fake


def test_one_refreshing_line_on_a_terminal(clock):
    stream = _Terminal()
    printer = ProgressPrinter(10, stream=stream)
    printer.fit_progress(2, 10, 120, 625, 3.0)
    first = "\r  epoch 2/10 batch 120/625 | 40.0 batches/s | ~0:00:13 left in epoch\x1b[K"
    assert stream.getvalue() == first
    clock.now += 0.1  # too soon: not redrawn
    printer.fit_progress(2, 10, 124, 625, 3.1)
    assert stream.getvalue() == first
    clock.now += 0.2
    printer.fit_progress(2, 10, 130, 625, 3.25)
    second = "\r  epoch 2/10 batch 130/625 | 40.0 batches/s | ~0:00:12 left in epoch\x1b[K"
    assert stream.getvalue() == first + second
    # The trial's line replaces the live line; the next fit draws a new one at once.
    printer.trial(1, RECORD, None, 1.0)
    assert stream.getvalue() == first + second + "\r\x1b[K" + TRIAL_LINE
    printer.fit_progress(1, 3, 5, None, 0.0)
    assert stream.getvalue().endswith(TRIAL_LINE + "\r  epoch 1/3 batch 5\x1b[K")


def test_the_live_line_is_cut_to_the_terminal_width(clock, monkeypatch):
    monkeypatch.setenv("COLUMNS", "21")
    stream = _Terminal()
    ProgressPrinter(10, stream=stream).fit_progress(2, 10, 120, 625, 3.0)
    assert stream.getvalue() == "\r  epoch 2/10 batch 1\x1b[K"  # 20 characters: no wrapping


def test_nothing_within_a_fit_when_piped_or_quiet(clock):
    piped = io.StringIO()
    printer = ProgressPrinter(10, stream=piped)
    printer.fit_progress(1, 2, 3, 4, 1.0)
    printer.trial(1, RECORD, None, 1.0)
    assert piped.getvalue() == TRIAL_LINE
    terminal = _Terminal()
    for quiet_printer in (
        ProgressPrinter(10, stream=terminal, quiet=True),
        ProgressPrinter(10, stream=terminal, live=False),
    ):
        quiet_printer.fit_progress(1, 2, 3, 4, 1.0)
    assert terminal.getvalue() == ""
    forced = io.StringIO()
    ProgressPrinter(10, stream=forced, live=True).fit_progress(1, 2, 3, 4, 1.0)
    assert (
        forced.getvalue()
        == "\r  epoch 1/2 batch 3/4 | 3.0 batches/s | ~0:00:00 left in epoch\x1b[K"
    )


SMALL_SPACE = {
    "name": "p",
    "backbone": {"blocks": 1, "filters": 4},
    "attention": {"placements": [1]},
    "training": {"epochs": 2, "batch_size": 32},
}


class _Recorder(Progress):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def fit_progress(self, epoch, epochs, batch, batches, seconds):
        self.calls.append((epoch, epochs, batch, batches))
        assert seconds >= 0


def test_fit_tells_the_observer_of_every_batch_unless_keras_prints():
    import keras_tuner

    from attn_search.datasets import load_dataset
    from attn_search.hypermodels import AttentionCNN
    from attn_search.runner import training

    data = load_dataset("digits", limit=200, seed=0)  # 140 training images: 4 batches of 32
    space = SMALL_SPACE
    hypermodel = AttentionCNN(space, data.info.input_shape, data.info.num_classes, family="plain")
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    recorder = _Recorder()
    result = training.fit(hypermodel, hp, model, data, seed=0, epochs=2, progress=recorder)
    assert result.epochs == 2
    assert recorder.calls == [(e, 2, b, 4) for e in (1, 2) for b in (1, 2, 3, 4)]
    silent = _Recorder()
    training.fit(hypermodel, hp, model, data, seed=0, epochs=1, progress=silent, verbose=2)
    assert silent.calls == []


def test_a_fused_finalist_fit_tells_the_observer_of_every_batch_too():
    """Finalists train as fused groups (`runner._fused`): a long finalist fit shows the same
    live line as a search trial."""
    import keras_tuner

    from attn_search.datasets import load_dataset
    from attn_search.hypermodels import AttentionCNN
    from attn_search.runner import _fused

    data = load_dataset("digits", limit=200, seed=0)  # 140 training images: 4 batches of 32
    space = SMALL_SPACE
    attention = AttentionCNN(space, data.info.input_shape, data.info.num_classes)
    hp = keras_tuner.HyperParameters()
    attention.build(hp)
    hypermodels = {"attention": attention, "plain": attention.with_family("plain")}
    recorder = _Recorder()
    group = _fused.build_group(hypermodels, hp, seed=3)
    fits = _fused.fit_group(
        group, data, early_stopping=lambda _: None, batch=32, seed=3, epochs=2, progress=recorder
    )
    assert {f: r.epochs for f, r in fits.items()} == {"attention": 2, "plain": 2}
    assert recorder.calls == [(e, 2, b, 4) for e in (1, 2) for b in (1, 2, 3, 4)]

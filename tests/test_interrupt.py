"""Ctrl-C in a worker (`runner._interrupt`): raised where it came, except where Python would
print and ignore it (a garbage-collection callback, a `__del__`): there deferred to the next
training batch."""

from __future__ import annotations

import gc
import os
import signal
import sys

import pytest


@pytest.fixture
def handler():
    from attn_search.runner import _interrupt

    previous = signal.getsignal(signal.SIGINT)
    _interrupt.install()
    yield _interrupt
    signal.signal(signal.SIGINT, previous)
    _interrupt._received = _interrupt._pending = False  # other tests run in this process


def test_ctrl_c_raises_where_it_comes(handler):
    with pytest.raises(KeyboardInterrupt):
        handler._handler(signal.SIGINT, sys._getframe())
    handler.raise_pending()  # nothing pending: it was raised


def test_ctrl_c_inside_a_gc_callback_is_deferred_not_lost(handler, capsys):
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the handler runs here, inside the callback
                pass

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert fired
    assert "Exception ignored" not in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        handler.raise_pending()
    handler.raise_pending()  # once only


def test_a_pending_ctrl_c_stops_the_fit_at_its_next_batch(handler):
    import keras_tuner

    from attn_search.datasets import load_dataset
    from attn_search.hypermodels import AttentionCNN
    from attn_search.runner import training

    data = load_dataset("digits", limit=200, seed=0)
    space = {
        "name": "p",
        "backbone": {"blocks": 1, "filters": 4},
        "attention": {"placements": [1]},
        "training": {"epochs": 2},
    }
    hypermodel = AttentionCNN(space, data.info.input_shape, data.info.num_classes, family="plain")
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    handler._pending = True
    with pytest.raises(KeyboardInterrupt):
        training.fit(hypermodel, hp, model, data, seed=0, epochs=2)
    assert handler._pending is False

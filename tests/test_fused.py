"""Fused finalist fits: a finalist's networks trained together as one model give each network
what training it alone with the same seed and batches gives.

One group (attention, plain, matched; digits cut to 200 examples; 3 epochs, dropout on, so the
seed-generator states count) is fitted together once, in a module-scoped fixture, and each
network alone once. Early stopping differs by network on purpose: the attention network's
stops after 2 epochs and restores its first epoch's weights, the twins train all 3 epochs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

SPACE = {
    "name": "fused_test",
    "backbone": {"blocks": 2, "filters": 8, "dropout": 0.2},
    "attention": {"placements": [1], "num_heads": 1, "gamma": 0.1},
    "training": {"epochs": 3, "batch_size": 32, "early_stopping": False},
}
FAMILIES = ("attention", "plain", "matched")
SEED, EPOCHS, BATCH = 1000, 3, 32


def _stopper(family):
    """Stops the attention network after its 2nd epoch (nothing beats a min_delta of 100)."""
    import keras

    if family != "attention":
        return None
    return keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=1, min_delta=100.0, restore_best_weights=True
    )


@pytest.fixture(scope="module")
def parts():
    import keras_tuner

    from attn_search.datasets import load_dataset
    from attn_search.hypermodels import AttentionCNN

    data = load_dataset("digits", limit=200, seed=0)
    attention = AttentionCNN(SPACE, data.info.input_shape, data.info.num_classes)
    hypermodels = {f: attention.with_family(f) for f in FAMILIES}
    hp = keras_tuner.HyperParameters()
    attention.build(hp)  # samples the defaults into hp
    return data, hypermodels, hp


def _alone(parts, family):
    """The network of `family` fitted alone: weights, epochs, (test loss, test accuracy)."""
    import keras

    from attn_search.runner.training import train_batches

    data, hypermodels, hp = parts
    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED)
    model = hypermodels[family].build(hp)
    stopper = _stopper(family)
    history = hypermodels[family].fit(
        hp,
        model,
        train_batches(data, BATCH, SEED),
        validation_data=data.val(BATCH),
        epochs=EPOCHS,
        callbacks=[stopper] if stopper else [],
        shuffle=False,
        verbose=0,
    )
    loss, acc = model.evaluate(data.test(BATCH), verbose=0)[:2]
    return model.get_weights(), len(history.history["loss"]), (loss, acc)


@pytest.fixture(scope="module")
def together(parts):
    import keras

    from attn_search.runner import _fused

    data, hypermodels, hp = parts
    keras.backend.clear_session()
    group = _fused.build_group(hypermodels, hp, SEED)
    traces, step = [], group.model.train_step
    group.model.train_step = lambda batch: traces.append(1) or step(batch)
    fits = _fused.fit_group(
        group, data, early_stopping=_stopper, batch=BATCH, seed=SEED, epochs=EPOCHS
    )
    tests = _fused.evaluate_group(group, data, BATCH)
    weights = {f: group.networks[f].get_weights() for f in FAMILIES}
    return weights, fits, tests, len(traces)


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_fit_gives_each_network_its_solo_weights(parts, together, family):
    weights, fits, tests, _ = together
    solo_weights, solo_epochs, solo_test = _alone(parts, family)
    assert fits[family].epochs == solo_epochs == (2 if family == "attention" else 3)
    assert fits[family].nan_at is None
    assert len(weights[family]) == len(solo_weights)
    for fused, solo in zip(weights[family], solo_weights, strict=True):
        np.testing.assert_allclose(fused, solo, rtol=1e-4, atol=1e-5)
    assert tests[family] == pytest.approx(solo_test, rel=1e-4, abs=1e-5)
    assert set(fits[family].history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == solo_epochs for v in fits[family].history.values())


def test_the_groups_training_step_is_traced_once(together):
    """`training.build_for_fit` creates the optimizer's and metrics' variables before `fit`:
    left to the first trace, they make TensorFlow trace the step twice."""
    assert together[3] == 1


def test_a_renewed_group_trains_as_a_new_one_without_tracing_again(parts, together):
    """A group fitted with another seed, then renewed with the test's seed (the next seed of a
    finalist): each network ends with the weights of a new group fitted with that seed, the
    optimizer restarting from step 0, and the training step is not traced again."""
    import keras

    from attn_search.runner import _fused

    data, hypermodels, hp = parts
    keras.backend.clear_session()
    group = _fused.build_group(hypermodels, hp, SEED + 1)
    traces, step = [], group.model.train_step
    group.model.train_step = lambda batch: traces.append(1) or step(batch)
    fit = {"early_stopping": _stopper, "batch": BATCH, "epochs": EPOCHS}
    _fused.fit_group(group, data, seed=SEED + 1, **fit)
    assert int(group.model.optimizer.iterations) > 0
    assert _fused.renew_group(group, hypermodels, hp, SEED)
    assert int(group.model.optimizer.iterations) == 0
    fits = _fused.fit_group(group, data, seed=SEED, **fit)
    assert len(traces) == 1
    assert {f: fits[f].epochs for f in FAMILIES} == {f: together[1][f].epochs for f in FAMILIES}
    for family in FAMILIES:
        for renewed, new in zip(
            group.networks[family].get_weights(), together[0][family], strict=True
        ):
            np.testing.assert_allclose(renewed, new, rtol=1e-5, atol=1e-6)
    pair = {f: hypermodels[f] for f in ("attention", "plain")}
    assert not _fused.renew_group(group, pair, hp, SEED)  # other networks: build a new group


def test_a_network_with_a_non_finite_loss_fails_alone(parts, together):
    """The plain network's weights are made NaN: it fails at its first batch, and the attention
    network beside it trains exactly as in the clean group."""
    import keras

    from attn_search.runner import _fused

    data, hypermodels, hp = parts
    keras.backend.clear_session()
    pair = {f: hypermodels[f] for f in ("attention", "plain")}
    group = _fused.build_group(pair, hp, SEED)
    kernel = group.networks["plain"].trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    fits = _fused.fit_group(
        group, data, early_stopping=_stopper, batch=BATCH, seed=SEED, epochs=EPOCHS
    )
    assert fits["plain"].nan_at == (0, 0) and fits["plain"].epochs == 1
    assert fits["attention"].nan_at is None and fits["attention"].epochs == 2
    for fused, clean in zip(
        group.networks["attention"].get_weights(), together[0]["attention"], strict=True
    ):
        np.testing.assert_allclose(fused, clean, rtol=1e-4, atol=1e-5)
    test_loss, _ = _fused.evaluate_group(group, data, BATCH)["attention"]
    assert math.isfinite(test_loss)


def test_a_run_freezes_the_heap_while_it_runs_and_unfreezes_it_after():
    import gc

    from attn_search.runner import _frozen_heap

    before = gc.get_freeze_count()
    with _frozen_heap():
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == before

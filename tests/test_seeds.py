"""Seeding a fit (`runner._seeds.set_seed`): the seeds of `keras.utils.set_random_seed`, without
clearing TensorFlow's kernel cache (which would make every reused traced function be
optimized again)."""

from __future__ import annotations

import random

import numpy as np
import pytest


def _seeded_state(seed_with, seed: int):
    """What a fit's seeding decides: Python's and NumPy's draws, a model's initial weights
    (Keras' seeds) with a dropout mask (its seed generator), and a seeded tf.data shuffle."""
    import keras
    import tensorflow as tf

    seed_with(seed)
    draws = (random.random(), float(np.random.rand()))
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dropout(0.5)])
    weights = [w.copy() for w in model.get_weights()]
    mask = keras.ops.convert_to_numpy(model(np.ones((3, 5), "float32"), training=True))
    order = list(tf.data.Dataset.range(20).shuffle(20, seed=3).as_numpy_iterator())
    return draws, weights, mask, order


@pytest.mark.parametrize("seed", [1, 2024])
def test_set_seed_seeds_what_keras_set_random_seed_seeds(seed):
    import keras

    from attn_search.runner._seeds import set_seed

    ours = _seeded_state(set_seed, seed)
    keras.backend.clear_session(free_memory=False)
    theirs = _seeded_state(keras.utils.set_random_seed, seed)
    assert ours[0] == theirs[0]
    for a, b in zip(ours[1], theirs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours[2], theirs[2])
    assert ours[3] == theirs[3]
    keras.backend.clear_session(free_memory=False)
    other = _seeded_state(set_seed, seed + 1)
    assert other[3] != ours[3] and not np.array_equal(other[1][0], ours[1][0])


def _stateful_draws(seed_with):
    """Two draws of one stateful TensorFlow random kernel, re-seeded in between."""
    import tensorflow as tf

    seed_with(5)
    first = float(tf.random.uniform([], seed=1))
    seed_with(5)
    second = float(tf.random.uniform([], seed=1))
    return first, second


def test_set_seed_keeps_the_kernel_cache_and_keras_clears_it():
    """The kernel cache is what holds a stateful kernel's counter: Keras' seeding clears it
    (the same draw again), ours keeps it (the next draw), and with it every instantiated
    traced function."""
    import keras
    from tensorflow.python import pywrap_tfe

    from attn_search.runner._seeds import set_seed

    clear = pywrap_tfe.TFE_ContextClearCaches
    first, second = _stateful_draws(keras.utils.set_random_seed)
    assert first == second
    first, second = _stateful_draws(set_seed)
    assert first != second
    assert pywrap_tfe.TFE_ContextClearCaches is clear  # put back


def test_the_reference_path_clears_the_cache_as_keras_does():
    from attn_search.runner import _reference
    from attn_search.runner._seeds import set_seed

    _reference.use(True)
    try:
        first, second = _stateful_draws(set_seed)
    finally:
        _reference.use(False)
    assert first == second

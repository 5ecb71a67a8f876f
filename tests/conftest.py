"""Shared test settings: quiet TensorFlow, fixed seeds, a clean Keras session per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded_keras_session():
    """Every test starts from the same seeds and an empty Keras graph state."""
    import keras

    keras.utils.set_random_seed(1234)
    yield
    # free_memory=False: skips a gc.collect() that costs about half a second per test.
    keras.backend.clear_session(free_memory=False)

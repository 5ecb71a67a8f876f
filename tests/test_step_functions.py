"""One traced function per step (`attn_search.runner._step_functions`): the same training and
evaluation as Keras' own nested functions, traced once, and left out where it does not apply."""

from __future__ import annotations

import numpy as np
import pytest


def _data(n=96, batch=16, unknown_size=False):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((n, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=3).batch(batch)
    if unknown_size:  # the end of the data is only found by running out of it
        ds = ds.filter(lambda a, b: True)
    return ds


def _model(seed=5, **compile_kw):
    import keras

    from attn_search.runner._seeds import set_seed

    keras.backend.clear_session()
    set_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **compile_kw,
    )
    return model


def _fit(direct, unknown_size=False, **compile_kw):
    from attn_search.runner import _step_functions
    from attn_search.runner._seeds import set_seed

    model = _model(**compile_kw)
    used = _step_functions.use_direct_steps(model) if direct else False
    set_seed(7)
    history = model.fit(
        _data(unknown_size=unknown_size),
        validation_data=_data(48, unknown_size=unknown_size),
        epochs=3,
        verbose=0,
        shuffle=False,
    )
    test = model.evaluate(_data(48, unknown_size=unknown_size), verbose=0, return_dict=True)
    return model, used, history.history, test


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # the unknown size's end
@pytest.mark.parametrize("unknown_size", [False, True])
def test_direct_steps_train_and_evaluate_as_keras_does(unknown_size):
    keras_model, _, keras_history, keras_test = _fit(False, unknown_size)
    model, used, history, test = _fit(True, unknown_size)
    assert used
    assert getattr(model.train_function, "attn_search_direct", False)
    for ours, theirs in zip(model.get_weights(), keras_model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert history.keys() == keras_history.keys()
    for key in history:
        np.testing.assert_allclose(history[key], keras_history[key], rtol=1e-5, atol=1e-6)
    assert test == pytest.approx(keras_test, rel=1e-5, abs=1e-6)


def test_a_step_is_one_function_traced_once_and_kept():
    import tensorflow as tf

    from attn_search.runner import _step_functions
    from attn_search.runner.training import prepare_for_fit

    model = _model()
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)
    prepare_for_fit(model, _data())  # as the runner does: the optimizer is built first
    function = model.train_function
    assert getattr(function, "attn_search_direct", False)
    for _ in range(2):
        model.fit(_data(), epochs=2, verbose=0, shuffle=False)
    assert len(traces) == 1
    assert _step_functions.use_direct_steps(model)  # again: the same function is kept
    assert model.train_function is function
    logs = function(iter(_data()))
    assert set(logs) == {"loss", "accuracy"}
    assert all(isinstance(v, tf.Tensor) for v in logs.values())  # no Optional to unwrap


def test_jit_compiled_steps_train_on_cpu():
    model, used, history, test = _fit(True, jit_compile=True)
    assert used and model.jit_compile
    assert np.isfinite(history["loss"]).all() and np.isfinite(test["loss"])


@pytest.mark.parametrize("what", ["steps_per_execution", "run_eagerly", "reference"])
def test_keras_functions_are_kept_where_direct_steps_do_not_apply(what, monkeypatch):
    from attn_search.runner import _reference, _step_functions

    compile_kw = {"steps_per_execution": 2} if what == "steps_per_execution" else {}
    if what == "run_eagerly":
        compile_kw = {"run_eagerly": True}
    if what == "reference":
        monkeypatch.setattr(_reference, "KERAS_STEP_FUNCTIONS", True)
    model = _model(**compile_kw)
    assert not _step_functions.use_direct_steps(model)
    assert model.train_function is None  # Keras makes its own at `fit`
    history = model.fit(_data(), epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"]).all()
    assert not getattr(model.train_function, "attn_search_direct", False)

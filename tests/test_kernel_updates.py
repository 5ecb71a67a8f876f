"""The optimizer's update in TensorFlow's fused training kernels (`runner._kernel_updates`):
the same weights and optimizer state as Keras' own update, only where that is exact."""

from __future__ import annotations

import numpy as np
import pytest


def _model(optimizer):
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _trained(make_optimizer, kernels: bool):
    """Weights and optimizer variables after 3 epochs of 4 batches."""
    from attn_search.runner._kernel_updates import use_kernels

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 2)).astype("float32")
    y = rng.integers(0, 3, 32).astype("int32")
    model = _model(make_optimizer())
    if kernels:
        assert use_kernels(model) is True
        assert use_kernels(model) is True  # idempotent
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return model


OPTIMIZERS = {
    "adam": lambda k: k.optimizers.Adam(learning_rate=0.01),
    "adamw": lambda k: k.optimizers.AdamW(learning_rate=0.01, weight_decay=0.05),
    "sgd momentum": lambda k: k.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    "sgd": lambda k: k.optimizers.SGD(learning_rate=0.05),
    "adam clipnorm": lambda k: k.optimizers.Adam(learning_rate=0.01, clipnorm=0.1),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_kernels_give_the_weights_and_state_of_keras_update(name):
    import keras

    def make():
        return OPTIMIZERS[name](keras)

    fast, slow = _trained(make, True), _trained(make, False)
    for a, b in zip(fast.weights, slow.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert len(fast.optimizer.variables) == len(slow.optimizer.variables)
    for a, b in zip(fast.optimizer.variables, slow.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(fast.optimizer.iterations) == 12
    # The weights moved: the comparison is of trained models, not of two initial ones.
    initial = _model(make()).weights[0].numpy()
    assert np.abs(fast.weights[0].numpy() - initial).max() > 1e-3
    configs = [{**m.optimizer.get_config(), "name": None} for m in (fast, slow)]
    assert configs[0] == configs[1]


@pytest.mark.parametrize(
    "make",
    [
        lambda k: k.optimizers.Adam(amsgrad=True),
        lambda k: k.optimizers.SGD(momentum=0.9, nesterov=True),
        lambda k: k.optimizers.RMSprop(),
        lambda k: k.optimizers.Nadam(),
    ],
    ids=["amsgrad", "nesterov", "rmsprop", "nadam"],
)
def test_optimizers_without_an_exact_kernel_keep_keras_update(make):
    import keras

    from attn_search.runner._kernel_updates import use_kernels

    model = _model(make(keras))
    assert use_kernels(model) is False
    assert "_distributed_tf_update_step" not in vars(model.optimizer)


def test_the_reference_switch_keeps_keras_update_and_the_saved_model_is_unchanged(tmp_path):
    import keras

    from attn_search.runner import _reference
    from attn_search.runner._kernel_updates import use_kernels

    _reference.use(True)
    try:
        assert use_kernels(_model(keras.optimizers.Adam())) is False
    finally:
        _reference.use(False)
    model = _trained(lambda: keras.optimizers.Adam(learning_rate=0.01), True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert "_distributed_tf_update_step" not in vars(loaded.optimizer)
    x = np.zeros((2, 6, 6, 2), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

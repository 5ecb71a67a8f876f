"""Accelerator options of a run: --mixed-precision and --jit-compile, on CPU."""

import keras
import numpy as np
import pytest

from attn_search import AttentionCNN, RunConfig, run_search
from attn_search.cli import main
from attn_search.errors import ConfigError
from attn_search.layers import attention_layers
from attn_search.runner._compute import apply_jit, compute_options


def test_config_and_flags_check_the_options(capsys):
    RunConfig(mixed_precision="bfloat16", jit_compile=True).validate()
    with pytest.raises(ConfigError) as info:
        RunConfig(mixed_precision="fp16").validate()
    assert str(info.value) == (
        "`mixed_precision` must be 'float16', 'bfloat16' or None (float32). "
        "Received: mixed_precision='fp16'"
    )
    with pytest.raises(ConfigError) as info:
        RunConfig(jit_compile="yes").validate()
    assert str(info.value) == "`jit_compile` must be True or False. Received: jit_compile='yes'"
    assert main(["run", "--mixed-precision", "half"]) == 2
    assert capsys.readouterr().err == (
        "attn-search: error: --mixed-precision must be one of float16, bfloat16. "
        "Received: --mixed-precision='half'\n"
    )


def test_mixed_bfloat16_model_trains_with_float32_softmax_and_weights():
    space = {
        "attention": {"placements": 1, "num_heads": 2, "activation": "linear", "gamma": 0.5},
        "backbone": {"blocks": 1, "filters": 8, "dropout": 0.0},
        "training": {"batch_size": 16, "epochs": 1},
    }
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    y = np.arange(32) % 10
    with compute_options("bfloat16"):
        hypermodel = AttentionCNN(space, (8, 8, 1), 10)
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        model = hypermodel.build(hp)
        apply_jit(model)  # no --jit-compile: Keras' choice, no XLA on a CPU
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert model.jit_compile is False
    assert keras.config.dtype_policy().name == "float32"  # restored
    (layer,) = attention_layers(model)
    assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    assert layer.gamma.dtype == "float32"
    assert model.get_layer("classifier").compute_dtype == "float32"
    assert np.isfinite(history.history["loss"]).all()
    out = model(x[:4])
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.sum(out, -1)), 1, rtol=1e-5)


def test_run_with_mixed_float16_and_xla_gives_finite_results(tmp_path, monkeypatch):
    seen = []
    fit = keras.Model.fit

    def spy(model, *args, **kwargs):
        layers = attention_layers(model)
        seen.append(
            (
                model.jit_compile,
                layers[0].compute_dtype if layers else None,
                model.dtype_policy.name,
            )
        )
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    result = run_search(
        dataset="digits", limit=100, trials=1, max_epochs=1, finalists=0, quiet=True,
        mixed_precision="float16", jit_compile=True, out=str(tmp_path / "run"),
    )  # fmt: skip
    assert seen and all(jit and policy == "mixed_float16" for jit, _, policy in seen)
    # (the one trial is a baseline; the attention layer's dtypes: the test above)
    assert keras.config.dtype_policy().name == "float32"
    accuracy = result.leaderboard["best_val_accuracy"].astype(float)
    assert len(accuracy) == 1 and np.isfinite(accuracy).all()
    assert (result.leaderboard["status"] == "complete").all()


def _grappler_off() -> bool:
    import tensorflow as tf

    return tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)


def test_graph_optimizer_is_off_during_a_run_on_cpu_and_restored(tmp_path, monkeypatch):
    seen = []
    fit = keras.Model.fit

    def spy(model, *args, **kwargs):
        seen.append(_grappler_off())
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    assert not _grappler_off()
    run_search(
        dataset="digits", limit=100, trials=1, max_epochs=1, finalists=0, quiet=True,
        out=str(tmp_path / "run"),
    )  # fmt: skip
    assert seen == [True]
    assert not _grappler_off()


@pytest.mark.parametrize("why", ["gpu", "reference", "already off"])
def test_graph_optimizer_is_left_alone_with_a_gpu_or_the_old_way(why, monkeypatch):
    import tensorflow as tf

    from attn_search.runner import _reference
    from attn_search.runner._compute import graph_optimizer_off_on_cpu

    if why == "gpu":
        gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
        monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu])
    elif why == "reference":
        monkeypatch.setattr(_reference, "GRAPPLER", True)
    else:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        with graph_optimizer_off_on_cpu() as switched:
            assert switched == (why == "already off")
            assert _grappler_off() == (why == "already off")
        assert _grappler_off() == (why == "already off")  # as it was before
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})

"""attn_search.export: every format gives the run's predictions; bad input gets a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pandas as pd
import pytest

from attn_search.errors import ConfigError, RunDirError
from attn_search.export import export_model, find_best_model, load_best_model


def _tiny_model():
    import keras

    from attn_search import SelfAttentionConv2D

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = SelfAttentionConv2D(num_heads=2, gamma=0.5)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small run folder: best_model.keras (with the attention layer) and leaderboard.csv."""
    import keras

    keras.utils.set_random_seed(7)
    path = tmp_path_factory.mktemp("run")
    model = _tiny_model()
    model.save(path / "best_model.keras")
    pd.DataFrame(
        {"trial": [0, 1], "family": ["attention", "plain"], "val_accuracy": [0.9, 0.8]}
    ).to_csv(path / "leaderboard.csv", index=False)
    return path


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).random((5, 8, 8, 1)).astype("float32")


@pytest.fixture(scope="module")
def expected(run_dir, batch):
    return load_best_model(run_dir).predict(batch, verbose=0)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_keras_export_is_the_best_model(run_dir, batch, expected, tmp_path):
    import keras

    to = tmp_path / "sub" / "model.keras"
    path = export_model(run_dir, "keras", to)
    assert path == to
    assert to.read_bytes() == (run_dir / "best_model.keras").read_bytes()
    model = keras.models.load_model(to, safe_mode=True, compile=False)
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, rtol=1e-6, atol=1e-6)
    assert _leftovers(to.parent) == []


def test_savedmodel_loads_without_attn_search(run_dir, batch, expected, tmp_path):
    to = tmp_path / "saved"
    to.mkdir()
    (to / "junk.txt").write_text("old export")
    with pytest.raises(ConfigError) as info:
        export_model(run_dir, "savedmodel", to)
    assert str(info.value) == (
        "`to` already exists; choose another path or pass overwrite=True (--overwrite) to "
        f"replace it. Received: to='{to}'"
    )
    path = export_model(run_dir, "SavedModel", to, overwrite=True)
    assert path == to
    assert (to / "saved_model.pb").is_file()
    assert not (to / "junk.txt").exists()
    assert _leftovers(tmp_path) == []

    np.save(tmp_path / "x.npy", batch)
    # A fresh interpreter in which attn_search cannot be imported at all.
    script = textwrap.dedent(
        f"""
        import sys, json
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "attn_search":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({str(to)!r})
        y = loaded.serve(tf.constant(np.load({str(tmp_path / "x.npy")!r}))).numpy()
        assert not [m for m in sys.modules if m.split(".")[0] == "attn_search"]
        print(json.dumps(y.tolist()))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.array(json.loads(proc.stdout.strip().splitlines()[-1]), dtype="float32")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_tflite_gives_the_same_predictions(run_dir, batch, expected, tmp_path):
    import warnings

    import tensorflow as tf

    to = tmp_path / "model.tflite"
    assert export_model(run_dir, "tflite", to) == to
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(to))
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, 8, 8, 1]
    interpreter.resize_tensor_input(detail["index"], batch.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], batch)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert _leftovers(tmp_path) == []


def test_accepts_a_run_result_and_defaults_the_destination(run_dir):
    result = types.SimpleNamespace(run_dir=run_dir)
    path = export_model(result, "keras", overwrite=True)
    assert path == run_dir / "export" / "best_model.keras"
    assert path.read_bytes() == (run_dir / "best_model.keras").read_bytes()


def test_failed_export_leaves_nothing_behind(run_dir, tmp_path, monkeypatch):
    import attn_search.export as export

    def broken(model, path):
        path.mkdir()
        (path / "half-written").write_text("x")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(export, "_export_savedmodel", broken)
    with pytest.raises(RuntimeError, match="^conversion failed$"):
        export_model(run_dir, "savedmodel", tmp_path / "saved")
    assert list(tmp_path.iterdir()) == []


# Each case: what the folder holds (None: it does not exist; a file name: `run_dir` is that
# file), the call, and the whole message ({path}: the `run_dir` passed).
_RUN_DIR_CASES = {
    "missing": (None, "export", "`run_dir` does not exist. Received: run_dir='{path}'"),
    "not a run": (
        {"notes.txt": "hello"},
        "find",
        "`run_dir` is not an attn-search run folder (it has no run.json, config.yaml, "
        "leaderboard.csv or best_model.keras). Received: run_dir='{path}'",
    ),
    "no best model": (
        {"run.json": "{}"},
        "export",
        "`run_dir` holds no best model yet (best_model.keras is missing: no trial has "
        "completed). Received: run_dir='{path}'",
    ),
    "a file": (
        "leaderboard.csv",
        "export",
        "`run_dir` must be a run folder, not a file. Received: run_dir='{path}'",
    ),
}


@pytest.mark.parametrize("case", list(_RUN_DIR_CASES))
def test_run_dir_errors(case, tmp_path):
    holds, call, message = _RUN_DIR_CASES[case]
    path = tmp_path / "run"
    if isinstance(holds, str):
        path = tmp_path / holds
        path.write_text("a,b\n")
    elif holds is not None:
        path.mkdir()
        for name, text in holds.items():
            (path / name).write_text(text)
    with pytest.raises(RunDirError) as info:
        if call == "find":
            find_best_model(path)
        else:
            export_model(path, "keras", tmp_path / "m.keras")
    assert str(info.value) == message.format(path=path)
    assert not (tmp_path / "m.keras").exists()


def test_run_dir_must_be_a_path_or_a_run_result():
    with pytest.raises(RunDirError) as info:
        find_best_model(42)
    assert str(info.value) == (
        "`run_dir` must be a path to a run folder or a RunResult. Received: run_dir=42"
    )


def test_unknown_format(run_dir, tmp_path):
    with pytest.raises(ConfigError) as info:
        export_model(run_dir, "onnx", tmp_path / "m.onnx")
    assert str(info.value) == (
        "`format` must be one of 'keras', 'savedmodel' or 'tflite'. Received: format='onnx'"
    )


def test_keras_format_needs_keras_suffix(run_dir, tmp_path):
    to = tmp_path / "model.h5"
    with pytest.raises(ConfigError) as info:
        export_model(run_dir, "keras", to)
    assert str(info.value) == (
        "`to` must end in '.keras' for format='keras' (Keras loads .keras files only). "
        f"Received: to='{to}'"
    )
    assert not to.exists()


def test_refuses_to_overwrite_the_best_model_itself(run_dir):
    to = run_dir / "best_model.keras"
    with pytest.raises(ConfigError) as info:
        export_model(run_dir, "keras", to, overwrite=True)
    assert str(info.value) == (
        f"`to` is the run's own best model; choose another path. Received: to='{to}'"
    )


def test_augmentation_layers_leave_exports_as_at_inference(tmp_path):
    """A model trained with augmentation (random flips and shifts) exports its inference pass:
    the SavedModel and TFLite give Keras' predictions, with no random ops in their graphs."""
    import warnings

    import keras
    import keras_tuner
    import tensorflow as tf

    from attn_search import AttentionCNN

    keras.utils.set_random_seed(3)
    space = {"training": {"augment": "both"}, "attention": {"placements": 1}}
    model = AttentionCNN(space, (8, 8, 3), 3).build(keras_tuner.HyperParameters())
    model.save(tmp_path / "best_model.keras")
    x = np.random.default_rng(1).random((5, 8, 8, 3)).astype("float32")
    want = model.predict(x, verbose=0)
    saved = export_model(tmp_path, "savedmodel", tmp_path / "saved")
    loaded = tf.saved_model.load(str(saved))
    np.testing.assert_allclose(loaded.serve(x).numpy(), want, rtol=1e-5, atol=1e-6)
    path = export_model(tmp_path, "tflite", tmp_path / "model.tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

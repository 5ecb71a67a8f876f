"""`attn_search.inference` (`explain`, `predict`) and their commands, on a run's saved model."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attn_search.cli import main
from attn_search.errors import ConfigError, DatasetError, RunDirError
from attn_search.inference import explain, find_images, predict
from attn_search.runfolder import RunFolder

CLASSES = ["cat", "dog", "bird"]
SIZE = (10, 12)  # the model's input (height, width); the images are other sizes
HEADS = {"attn_a": 2, "attn_b": 1}  # attention layers and their heads


def _attention_model(seed: int = 0):
    import keras

    from attn_search.layers import SelfAttentionConv2D

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = SelfAttentionConv2D(num_heads=2, kv_pool=2, gamma=0.5, name="attn_a")(x)  # 10x12, 5x6
    x = keras.layers.MaxPooling2D()(x)
    x = SelfAttentionConv2D(num_heads=1, gamma=0.5, name="attn_b")(x)  # 5x6
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    """A run folder written through `RunFolder`: its config (class names) and best model."""
    path = tmp_path_factory.mktemp("run")
    folder = RunFolder(path)
    folder.write_config(
        {"dataset": {"name": "pets", "class_names": CLASSES, "input_shape": [*SIZE, 3]}}
    )
    folder.save_best_model(_attention_model())
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> pathlib.Path:
    """Generated images of several sizes and modes; a sub-folder; files to be skipped."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "more").mkdir()
    (root / ".hidden").mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (7, 9), np.uint8), "L").save(root / "b_grey.png")
    Image.fromarray(rng.integers(0, 256, (10, 12, 4), np.uint8), "RGBA").save(root / "c.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), np.uint8)).save(root / "more" / "d.jpg")
    Image.fromarray(rng.integers(0, 256, (5, 5, 3), np.uint8)).save(root / ".hidden" / "e.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _expected_files(root: pathlib.Path) -> list[pathlib.Path]:
    return [root / "a.png", root / "b_grey.png", root / "c.png", root / "more" / "d.jpg"]


def _by_hand(files: list[pathlib.Path]) -> np.ndarray:
    """The model's input, prepared here without attn_search: RGB, bilinear resize, / 255."""
    arrays = []
    for f in files:
        with Image.open(f) as image:
            image = image.convert("RGB").resize((SIZE[1], SIZE[0]), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(image, np.float32) / 255.0)
    return np.stack(arrays)


def _load(path: pathlib.Path):
    import keras

    import attn_search  # noqa: F401 - registers the layer

    return keras.models.load_model(path, compile=False)


# --------------------------------------------------------------------------- predict
def test_find_images_searches_folders_in_order_and_skips_hidden_and_other_files(images):
    assert find_images(images) == _expected_files(images)
    # Files are kept as given (any suffix: Pillow decides), folders expanded in place.
    given = [images / "notes.txt", images / "more"]
    assert find_images(given) == [images / "notes.txt", images / "more" / "d.jpg"]
    assert find_images(str(images / "a.png")) == [images / "a.png"]


def test_predict_matches_model_predict_on_the_same_arrays(run, images):
    table = predict(run, images)
    files = _expected_files(images)
    expected = _load(RunFolder(run).best_model_path).predict(_by_hand(files), verbose=0)

    assert list(table.columns) == [
        "file",
        "predicted_class",
        "predicted_index",
        "probability",
        "prob_cat",
        "prob_dog",
        "prob_bird",
    ]
    assert table["file"].tolist() == [str(f) for f in files]
    np.testing.assert_allclose(table[["prob_cat", "prob_dog", "prob_bird"]], expected, atol=1e-6)
    assert table["predicted_index"].tolist() == expected.argmax(axis=1).tolist()
    assert table["predicted_class"].tolist() == [CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(table["probability"], expected.max(axis=1), atol=1e-6)
    # The images differ, so a constant answer (e.g. images read as zeros) would show here.
    assert np.ptp(expected[:, 0]) > 1e-4


def test_predict_on_an_exported_model_names_classes_by_index(run, images, tmp_path):
    from attn_search.export import export_model

    exported = export_model(run, "keras", tmp_path / "model.keras")
    table = predict(exported, [images / "a.png", images / "c.png"], batch_size=1)
    assert list(table.columns[-3:]) == ["prob_0", "prob_1", "prob_2"]
    assert set(table["predicted_class"]) <= {"0", "1", "2"}
    by_run = predict(run, [images / "a.png", images / "c.png"])
    np.testing.assert_allclose(
        table[["prob_0", "prob_1", "prob_2"]].to_numpy(),
        by_run[["prob_cat", "prob_dog", "prob_bird"]].to_numpy(),
        atol=1e-6,
    )


def test_predict_writes_the_csv_atomically(run, images, tmp_path):
    out = tmp_path / "new" / "predictions.csv"
    table = predict(run, images, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.csv"]  # no temp file
    pd.testing.assert_frame_equal(pd.read_csv(out), table)
    out.write_text("old")
    predict(run, [images / "a.png"], out)  # replaced
    assert len(pd.read_csv(out)) == 1


def test_predict_progress_bar_only_when_asked_or_on_a_terminal(run, images, capsys):
    predict(run, images, progress=True)
    err = capsys.readouterr().err
    assert err.endswith("\rpredict 4/4 [" + "#" * 30 + "]\n")
    assert err.startswith("\rpredict 0/4 [" + "." * 30 + "]")
    predict(run, images)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- explain
def test_explain_writes_one_png_per_image_layer_and_head(run, images, tmp_path):
    files = [images / "a.png", images / "more" / "d.jpg"]
    paths = explain(run, files, tmp_path / "maps")
    names = [
        f"{stem}_{layer}_head{h}.png"
        for stem in ("a", "d")
        for layer, heads in HEADS.items()
        for h in range(1, heads + 1)
    ]
    assert paths == [tmp_path / "maps" / name for name in names]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(names)
    for path in paths:
        with Image.open(path) as image:
            image.load()
            assert image.format == "PNG" and image.width > 400 and image.height > 200


def test_explain_titles_name_the_predicted_class_and_the_maps_are_the_layers(
    run, images, tmp_path, monkeypatch
):
    import attn_search._inference_plots as plots

    calls = []
    monkeypatch.setattr(plots, "attention_figure", lambda image, scores, **kw: calls.append(kw))
    explain(run, [images / "b_grey.png"], tmp_path)
    row = predict(run, [images / "b_grey.png"]).iloc[0]
    title = f"b_grey.png: predicted {row.predicted_class!r} (p={row.probability:.2f})"
    assert [c["title"] for c in calls] == [
        f"{title}\nlayer attn_a, head 1 of 2",
        f"{title}\nlayer attn_a, head 2 of 2",
        f"{title}\nlayer attn_b, head 1 of 1",
    ]
    assert [(c["grid"], c["kv_pool"]) for c in calls] == [((10, 12), 2)] * 2 + [((5, 6), 1)]


def test_explain_maps_are_the_layers_scores(run, images, tmp_path, monkeypatch):
    """The scores drawn are the layer's own, on the image prepared as `predict` prepares it."""
    import keras

    import attn_search._inference_plots as plots

    drawn = []
    monkeypatch.setattr(
        plots, "attention_figure", lambda image, scores, **kw: drawn.append((image, scores))
    )
    explain(run, [images / "a.png"], tmp_path)
    model = _load(RunFolder(run).best_model_path)
    x = _by_hand([images / "a.png"])
    layer = model.get_layer("attn_a")
    _, scores = layer(keras.Model(model.input, layer.input)(x), return_attention_scores=True)
    np.testing.assert_allclose(drawn[0][0], x[0], atol=1e-6)
    np.testing.assert_allclose(drawn[1][1], keras.ops.convert_to_numpy(scores)[0, 1], atol=1e-6)
    np.testing.assert_allclose(drawn[1][1].sum(axis=1), 1.0, atol=1e-5)  # rows are softmaxes


def test_explain_default_folder_is_beside_the_model(run, images, tmp_path):
    paths = explain(run, [images / "c.png"], queries=1)
    assert {p.parent for p in paths} == {run / "explain"}
    copy = tmp_path / "m.keras"
    copy.write_bytes(RunFolder(run).best_model_path.read_bytes())
    assert {p.parent for p in explain(copy, [images / "c.png"])} == {tmp_path / "explain"}


# --------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def bad(tmp_path_factory, run):
    """Paths for the error cases: a plain model, a broken image, a folder of text..."""
    import keras

    root = tmp_path_factory.mktemp("bad")
    keras.Sequential([keras.Input((*SIZE, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]).save(
        root / "plain.keras"
    )
    keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)]).save(root / "vector.keras")
    (root / "broken.keras").write_bytes(b"not a zip file")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    (root / "model.h5").write_bytes(b"")
    (root / "texts").mkdir()
    (root / "texts" / "a.txt").write_text("a")
    (root / "empty").mkdir()
    (root / "fresh_run").mkdir()
    RunFolder(root / "fresh_run").write_config({"dataset": {"name": "pets"}})
    return root


_RULE_MODEL = "`model_or_run_dir` must be a .keras model file or a run folder. Received: "
_RULE_IMAGES = "`images` must be image files (PNG, JPEG, BMP or GIF) or folders of them"
# Each case: the function, its arguments ({run}, {bad}, {images} filled in), the error, message.
_ERRORS = {
    "model missing": (
        predict,
        ("{bad}/nope.keras", "{images}"),
        ConfigError,
        _RULE_MODEL + "'{bad}/nope.keras', which does not exist",
    ),
    "model not .keras": (
        explain,
        ("{bad}/model.h5", "{images}"),
        ConfigError,
        _RULE_MODEL + "'{bad}/model.h5', which is not a .keras file (export other formats "
        "from the .keras file, not the other way round)",
    ),
    "folder not a run": (
        predict,
        ("{bad}/empty", "{images}"),
        RunDirError,
        _RULE_MODEL + "'{bad}/empty', a folder that holds no attn-search run",
    ),
    "run without best model": (
        explain,
        ("{bad}/fresh_run", "{images}"),
        RunDirError,
        _RULE_MODEL + "'{bad}/fresh_run', a run without a best model yet (no trial has "
        "completed); wait for one, or give a .keras file",
    ),
    "not an image classifier": (
        predict,
        ("{bad}/vector.keras", "{images}"),
        ConfigError,
        "`model_or_run_dir` must hold an image classifier: input (B, H, W, 1 or 3) of a known "
        "size, output (B, classes). Received: '{bad}/vector.keras', with input (None, 5) and "
        "output (None, 3)",
    ),
    "no attention layer": (
        explain,
        ("{bad}/plain.keras", "{images}"),
        ConfigError,
        "`model_or_run_dir` holds a model without attention layers (SelfAttentionConv2D), so "
        "it has no attention to draw (a run whose best model is a baseline has none); give a "
        "model with attention. Received: model_or_run_dir='{bad}/plain.keras'",
    ),
    "image missing": (
        predict,
        ("{run}", ["{images}/a.png", "{images}/zzz.png"]),
        DatasetError,
        _RULE_IMAGES + ". Received: '{images}/zzz.png', which does not exist",
    ),
    "image unreadable": (
        explain,
        ("{run}", ["{images}/a.png", "{bad}/broken.png"], "{bad}/maps"),
        DatasetError,
        _RULE_IMAGES + "; convert or leave out the others. Received: '{bad}/broken.png', "
        "which cannot be read as an image",
    ),
    "no images": (
        predict,
        ("{run}", ["{bad}/texts", "{bad}/empty"]),
        DatasetError,
        _RULE_IMAGES + ". Received: images=['{bad}/texts', '{bad}/empty'], which hold no "
        "image files",
    ),
    "predict out is a folder": (
        predict,
        ("{run}", "{images}", "{bad}"),
        ConfigError,
        "`out` must be a file to write the predictions to (e.g. predictions.csv), not a "
        "folder. Received: out='{bad}'",
    ),
    "explain out is a file": (
        explain,
        ("{run}", "{images}", "{bad}/model.h5"),
        ConfigError,
        "`out` must be a folder, not a file. Received: out='{bad}/model.h5'",
    ),
}


def _fill(value, where):
    if isinstance(value, list):
        return [v.format(**where) for v in value]
    return value.format(**where)


@pytest.mark.parametrize("case", list(_ERRORS))
def test_errors_name_the_argument_and_echo_the_value(case, run, images, bad):
    function, args, error, message = _ERRORS[case]
    where = {"run": run, "bad": bad, "images": images}
    before = sorted(bad.rglob("*"))
    with pytest.raises(error) as info:
        function(*(_fill(a, where) for a in args))
    assert str(info.value) == message.format(**where)
    assert sorted(bad.rglob("*")) == before  # nothing written


def test_a_model_keras_cannot_load_is_one_clear_error(bad, images):
    import keras

    with pytest.raises(Exception) as keras_error:
        keras.models.load_model(bad / "broken.keras", safe_mode=True, compile=False)
    reason = " ".join(str(keras_error.value).split())[:200]
    with pytest.raises(ConfigError) as info:
        predict(bad / "broken.keras", images)
    assert str(info.value) == (
        f"{_RULE_MODEL}'{bad}/broken.keras', which Keras cannot load "
        f"({type(keras_error.value).__name__}: {reason})"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r, i: predict(r, i, batch_size=0), "`batch_size` must be a positive integer. "),
        (lambda r, i: explain(r, i, queries=True), "`queries` must be a positive integer. "),
    ],
)
def test_bad_options(call, message, run, images):
    with pytest.raises(ConfigError) as info:
        call(run, images)
    received = "Received: batch_size=0" if "batch" in message else "Received: queries=True"
    assert str(info.value) == message + received


# --------------------------------------------------------------------------- the commands
def test_predict_command_prints_a_table_or_writes_the_csv(run, images, tmp_path, capsys):
    assert main(["predict", str(run), str(images / "a.png"), str(images / "more")]) == 0
    captured = capsys.readouterr()
    table = predict(run, [images / "a.png", images / "more"])
    lines = captured.out.splitlines()
    assert lines[0].split() == ["file", "predicted_class", "probability"]
    assert [line.split() for line in lines[1:]] == [
        [row.file, row.predicted_class, f"{row.probability:.3f}"] for row in table.itertuples()
    ]
    assert captured.err == ""

    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(images), "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().out == f"Predictions for 4 image(s) written to {out}\n"
    assert len(pd.read_csv(out)) == 4


def test_explain_command(run, images, tmp_path, capsys):
    argv = ["explain", str(run), "--image", str(images / "a.png"), "--out", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"Wrote 3 attention map(s) to {tmp_path}\n"
    assert main([*argv, "--quiet", "--queries", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / f"a_{name}.png") for name in ("attn_a_head1", "attn_a_head2", "attn_b_head1")
    ]


def test_command_errors_are_one_line_and_exit_2(run, bad, images, capsys):
    assert main(["explain", str(bad / "plain.keras"), "--image", str(images)]) == 2
    assert capsys.readouterr().err == (
        "attn-search: error: `model_or_run_dir` holds a model without attention layers "
        "(SelfAttentionConv2D), so it has no attention to draw (a run whose best model is a "
        f"baseline has none); give a model with attention. Received: model_or_run_dir="
        f"'{bad}/plain.keras'\n"
    )
    assert main(["predict", str(run), str(bad / "texts")]) == 2
    assert capsys.readouterr().err == (
        f"attn-search: error: {_RULE_IMAGES}. Received: images=['{bad}/texts'], which hold no "
        "image files\n"
    )


def _env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def test_help_and_usage_errors_do_not_import_tensorflow():
    script = (
        "import contextlib, io, json, sys\n"
        "sys.argv[0] = 'attn-search'  # as the console script starts (see attn_search/__init__)\n"
        "from attn_search.cli import main\n"
        "codes = []\n"
        "for argv in [['explain', '--help'], ['predict', '--help'], ['predict', 'm'],\n"
        "             ['explain', 'm'], ['explain', 'm', '--image', 'x', '--queries', '0']]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        codes.append(main(argv))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps([codes, heavy]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[[0, 0, 2, 2, 2], []]"


def test_usage_errors(capsys):
    assert main(["explain", "m", "--image", "x", "--queries", "0"]) == 2
    assert capsys.readouterr().err == (
        "attn-search: error: --queries must be a positive integer. Received: --queries=0\n"
    )
    assert main(["predict", "m"]) == 2
    assert capsys.readouterr().err == (
        "attn-search: error: the following arguments are required: IMAGES\n"
    )
    assert main(["explain", "m"]) == 2
    assert capsys.readouterr().err == (
        "attn-search: error: the following arguments are required: --image\n"
    )


def test_predict_in_a_subprocess(run, images, tmp_path):
    """The console script end to end; piped, so no progress bar on stderr."""
    script = pathlib.Path(sys.executable).parent / "attn-search"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "attn_search"]
    out = tmp_path / "predictions.csv"
    proc = subprocess.run(
        [*command, "predict", str(run), str(images), "--out", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"Predictions for 4 image(s) written to {out}\n",
        "",
    )
    written = pd.read_csv(out)
    assert written["file"].tolist() == [str(f) for f in _expected_files(images)]
    assert set(written["predicted_class"]) <= set(CLASSES)

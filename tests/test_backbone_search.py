"""Backbones in the search: `--backbone`, the space's `backbone.model`, `BackboneHyperModel`.

One real run (a module fixture) searches the example builder on a small 32x32 generated set;
the other tests build models without training them, or check errors before anything is built.
"""

import os
import pathlib

import keras
import keras_tuner
import numpy as np
import pytest

from attn_search import ConfigError, MemoryBudgetError, RunConfig, SearchSpaceError, run_search
from attn_search._backbone_build import build_backbone, check_input_size
from attn_search._backbone_hypermodel import BackboneHyperModel, make_hypermodel
from attn_search._backbone_spec import APPLICATIONS, parse_backbone
from attn_search.cli import main
from attn_search.hypermodels import AttentionCNN
from attn_search.spaces import load_space

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "small_resnet.py") + ":build"
MOBILENET = {"backbone": {"model": "mobilenet_v2", "options": {"alpha": 0.35}}}
NAMES = ", ".join(APPLICATIONS)
FORMS = (
    f"'cnn', a keras.applications name ({NAMES}), 'path/to/file.py:function' or "
    "'package.module:function'"
)


# -- the run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """3 search fits: the plain backbone, one attention trial, and its matched twin (the
    baselines' share of 0.67 gives trial 2 to the twin), 2 epochs; then the finalist and its
    twins trained together for one seed."""
    out = tmp_path_factory.mktemp("backbone") / "run"
    space = {
        "attention": {"num_heads": 1},
        "baselines": {"share": 0.67},
        "training": {"batch_size": 16},
    }
    return run_search(
        RunConfig(
            dataset="lookup:size=32,n=64",
            backbone=EXAMPLE,
            space=space,
            trials=3,
            max_epochs=2,
            pruner="none",  # two epochs: the median pruner would stop a twin after one
            finalists=1,
            repeats=1,
            cv=0,  # one fit group on the held-out split, not 5 folds
            out=str(out),
            quiet=True,
        )
    )


def test_the_leaderboard_names_each_point_and_its_resolution_twins_included(run):
    board = run.leaderboard.sort_values("trial_id")
    points = {"stage1_out (32x32)", "stage2_out (16x16)", "stage3_out (8x8)"}
    assert list(board["status"]) == ["complete"] * 3
    assert list(board["family"]) == ["plain", "attention", "matched"]
    plain, attention, matched = board["placement"]
    assert plain == "none" and attention in points and matched == attention
    rows = run.comparison[run.comparison["section"] == "placement"]
    assert sorted(rows["placement"]) == sorted(board["placement"])
    finalists = run.comparison[run.comparison["section"] == "finalist"]
    assert list(finalists["family"]) == ["attention", "plain", "matched"]
    assert list(finalists["placement"]) == [attention, "none", attention]


def test_the_finalist_and_its_twins_train_together(run):
    import json

    runs = json.loads((run.run_dir / "finalists.json").read_text())["runs"]
    assert [(r["family"], r["error"]) for r in runs] == [
        ("attention", ""),
        ("plain", ""),
        ("matched", ""),
    ]
    assert all(r["trained_with"] == ["attention", "plain", "matched"] for r in runs)


def test_the_best_model_reloads_and_exports(run, tmp_path):
    from attn_search.export import export_model, load_best_model

    model = load_best_model(run.run_dir)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    path = export_model(run.run_dir, format="keras", to=tmp_path / "copy.keras")
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, atol=1e-6)


# -- the hypermodel ----------------------------------------------------------------------------


def test_mobilenet_points_and_an_attention_model():
    hm = BackboneHyperModel(MOBILENET, input_shape=(32, 32, 3), num_classes=4)
    assert [(p["name"], p["shape"][:2]) for p in hm.points] == [
        ("block_1_expand_relu", (16, 16)),
        ("block_3_expand_relu", (8, 8)),
        ("block_6_expand_relu", (4, 4)),
        ("block_13_expand_relu", (2, 2)),
    ]
    assert hm.placements == [p["name"] for p in reversed(hm.points)]  # deepest, cheapest first
    hp = keras_tuner.HyperParameters()
    hp.values = {"attention/placement": "block_3_expand_relu"}
    model = hm.build(hp)
    assert hm.describe(hp, model)["placements"] == ["block_3_expand_relu (8x8)"]
    assert model.get_layer("attention_after_block_3_expand_relu").output.shape == (None, 8, 8, 48)


def test_twins_reload_and_match_the_attention_parameters(tmp_path):
    hm = BackboneHyperModel({}, (32, 32, 3), 3, backbone=EXAMPLE)
    hp = keras_tuner.HyperParameters()
    hp.values = {"attention/placement": "stage2_out", "attention/0/num_heads": 2}
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    params = {}
    for family in ("attention", "matched", "plain"):
        twin = hm.with_family(family)
        model = twin.build(hp)
        described = twin.describe(hp, model)
        params[family] = described["params"]
        assert described["placements"] == ([] if family == "plain" else ["stage2_out (16x16)"])
        path = tmp_path / f"{family}.keras"
        model.save(path)
        again = keras.models.load_model(path)
        np.testing.assert_allclose(
            again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
        )
    added, matched = params["attention"] - params["plain"], params["matched"] - params["plain"]
    assert abs(matched - added) <= 0.1 * added


def test_augmentation_wraps_every_family_alike_and_is_identity_at_inference(tmp_path):
    """`training.augment` (set by `--space auto` for photos) reaches backbone models too."""
    hm = BackboneHyperModel({"training": {"augment": "both"}}, (32, 32, 3), 3, backbone=EXAMPLE)
    hp = keras_tuner.HyperParameters()
    hp.values = {"attention/placement": "stage2_out"}
    x = np.random.default_rng(2).random((8, 32, 32, 3), dtype=np.float32)
    for family in ("attention", "matched", "plain"):
        model = hm.with_family(family).build(hp)
        assert [layer.name for layer in model.layers[1:3]] == [
            "augment_flip",
            "augment_translate",
        ], family
        network = model.layers[-1]
        assert model.name == network.name[: -len("_net")] and model.name.endswith(family)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(x, training=False)),
            keras.ops.convert_to_numpy(network(x, training=False)),
            atol=1e-6,
        )
        augmented = keras.ops.convert_to_numpy(model.layers[2](model.layers[1](x, training=True)))
        assert not np.allclose(augmented, x)
        described = hm.with_family(family).describe(hp, model)
        assert described["placements"] == ([] if family == "plain" else ["stage2_out (16x16)"])
    model.save(tmp_path / "plain.keras")
    again = keras.models.load_model(tmp_path / "plain.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_two_points_at_once_with_their_own_options():
    hm = BackboneHyperModel({"attention": {"max_layers": 2}}, (32, 32, 3), 3, backbone=EXAMPLE)
    assert hm.placements == [
        "stage3_out", "stage2_out", "stage1_out",
        "stage2_out+stage3_out", "stage1_out+stage3_out", "stage1_out+stage2_out",
    ]  # fmt: skip
    hp = keras_tuner.HyperParameters()
    hp.values = {"attention/placement": "stage2_out+stage3_out", "attention/1/num_heads": 2}
    model = hm.build(hp)
    assert [layer.num_heads for layer in model.layers if layer.name.startswith("attention_")] == [
        1,
        2,
    ]
    described = hm.describe(hp, model)
    assert described["placements"] == ["stage2_out (16x16)", "stage3_out (8x8)"]
    assert described["n_attention"] == 2


def test_the_memory_guard_pools_a_high_resolution_point_or_says_why():
    hp = keras_tuner.HyperParameters()
    hp.values = {"attention/placement": "stage1_out", "train/batch_size": 32}
    from attn_search._memory_guard import layer_memory_bytes

    need = {p: layer_memory_bytes(32, 32, 32, 1, p) / 2**20 for p in (1, 2, 4, 8)}
    budget = need[1] - 0.5  # kv_pool 1 does not fit
    hm = BackboneHyperModel({}, (32, 32, 3), 3, backbone=EXAMPLE, memory_budget_mb=budget)
    model = hm.build(hp)
    expected = min(p for p in need if need[p] <= budget)  # the smallest pool that fits
    assert hm.describe(hp, model)["kv_pools"] == [expected]
    tiny = BackboneHyperModel({}, (32, 32, 3), 3, backbone=EXAMPLE, memory_budget_mb=1)
    with pytest.raises(MemoryBudgetError) as info:
        tiny.build(hp)
    assert str(info.value) == (
        "The attention maps would need about 4.0 MB in a training step (attention_after_"
        "stage1_out: batch 32 x 1 head x 1024 queries x 16 keys (kv_pool=8); x 4 bytes x 2 for "
        "forward and backward), over the memory budget of 1.0 MB. Lower train/batch_size, "
        "allow a larger attention.kv_pool, place attention deeper, or raise memory_budget_mb."
    )


def test_the_cnn_backbone_is_todays_attention_cnn():
    space = load_space("default")
    assert type(make_hypermodel(space, (8, 8, 1), 10)) is AttentionCNN
    assert type(make_hypermodel(space, (8, 8, 1), 10, backbone="CNN")) is AttentionCNN
    assert load_space("default").to_dict() == load_space(space.to_dict()).to_dict()
    assert "model" not in space.to_dict()["backbone"]  # nothing changes for existing spaces


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "resnet5",
            f"`backbone` is not a known backbone. Did you mean 'resnet50'? It must be {FORMS}. "
            "Received: backbone='resnet5'",
        ),
        (
            "missing/builder.py:build",
            "`backbone` names a builder file that does not exist: missing/builder.py. Give the "
            "path of a Python file, relative to the current folder or absolute. "
            "Received: backbone='missing/builder.py:build'",
        ),
        (
            "my-models:build",
            "`backbone` must be 'path/to/file.py:function' or 'package.module:function'; "
            "'my-models' is neither a .py file nor a module name. "
            "Received: backbone='my-models:build'",
        ),
        (
            "models.py:",
            "`backbone` must end with ':function', the name of a Python function. "
            "Received: backbone='models.py:'",
        ),
    ],
)
def test_a_bad_backbone_is_refused_before_anything_runs(text, message, capsys):
    with pytest.raises(ConfigError) as info:
        RunConfig(backbone=text).validate()
    assert str(info.value) == message
    assert main(["run", "--backbone", text]) == 2
    assert capsys.readouterr().err == f"attn-search: error: {message}\n"


def _builder_file(tmp_path, body: str) -> str:
    path = tmp_path / "builders.py"
    path.write_text("import keras\n\n" + body)
    return f"{path}:build"


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "def make(input_shape, num_classes):\n    return None\n",
            "`backbone` names function 'build', which {file} does not define. Its functions: "
            "make. Received: backbone='{text}'",
        ),
        (
            "def build(input_shape, num_classes):\n    return 'a model'\n",
            "`backbone` {text} must return a Keras model (keras.Model or keras.Sequential). "
            "Received: str from build((32, 32, 3), 4)",
        ),
        (
            "def build(input_shape, num_classes):\n"
            "    inputs = keras.Input(input_shape)\n"
            "    x = keras.layers.GlobalAveragePooling2D()(inputs)\n"
            "    return keras.Model(inputs, keras.layers.Dense(10)(x))\n",
            "`backbone` {text} must return a Keras model whose output is (batch, 4) class "
            "probabilities, one per class. Received: a model with output shape (None, 10) "
            "from build((32, 32, 3), 4)",
        ),
    ],
)
def test_a_builder_that_does_not_give_a_model_is_refused(tmp_path, body, message):
    text = _builder_file(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        build_backbone({"model": text}, (32, 32, 3), 4)
    assert str(info.value) == message.format(text=text, file=text.rpartition(":")[0])


def test_a_module_that_cannot_be_imported_is_named():
    with pytest.raises(ConfigError) as info:
        build_backbone({"model": "no_such_package.models:build"}, (32, 32, 3), 4)
    assert str(info.value) == (
        "`backbone` names module 'no_such_package.models', which cannot be imported: No module "
        "named 'no_such_package'. Received: backbone='no_such_package.models:build'"
    )


def test_images_smaller_than_the_model_minimum_are_refused_up_front():
    with pytest.raises(ConfigError) as info:
        check_input_size(parse_backbone("ResNet50"), (28, 28, 1))
    assert str(info.value) == (
        "`backbone` resnet50 needs images of at least 32x32 pixels; the dataset's are 28x28. "
        "Resize them with `image_size` (--image-size 32) or choose a smaller backbone. "
        "Received: backbone='ResNet50'"
    )


def test_imagenet_weights_are_read_from_keras_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    settings = {"model": "mobilenet_v2", "weights": "imagenet", "options": {"alpha": 0.35}}
    with pytest.raises(ConfigError) as info:
        build_backbone(settings, (32, 32, 3), 4)
    folder = os.path.join(str(tmp_path), "models")
    assert str(info.value) == (
        "`backbone.weights` is 'imagenet', but Keras' cache has no "
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5 in {folder}. "
        "attn-search never downloads: copy that file there (from a machine where "
        "keras.applications.MobileNetV2(weights='imagenet', include_top=False) downloaded it), "
        "or use weights: null. Received: backbone='mobilenet_v2', weights='imagenet'"
    )


def test_points_the_backbone_does_not_have_are_refused():
    space = {"backbone": {"points": ["stage2_out", "stage9_out"]}}
    with pytest.raises(ConfigError) as info:
        BackboneHyperModel(space, (32, 32, 3), 3, backbone=EXAMPLE)
    assert str(info.value) == (
        "`backbone.points` names 'stage9_out', which is not a layer of small_resnet with one 4D "
        "feature map. Its stage ends are: stage1_out, stage2_out, stage3_out (attention_points("
        "model, all_points=True) lists every valid layer). "
        "Received: points=['stage2_out', 'stage9_out']"
    )


@pytest.mark.parametrize(
    "backbone, message",
    [
        (
            {"model": "vgg"},
            f"backbone.model: is not a known backbone. Did you mean 'vgg16'? It must be {FORMS}. "
            "Received: backbone.model='vgg'",
        ),
        (
            {"weights": "imagenet"},
            "backbone.weights: applies to keras.applications backbones only (a builder loads "
            "its own weights). Received: 'imagenet' with model 'cnn'.",
        ),
        (
            {"model": "resnet50", "points": "conv3_block4_out"},
            "backbone.points: must be null (the model's stage ends) or a list of distinct layer "
            "names. Received: 'conv3_block4_out'.",
        ),
        (
            {"model": "resnet50", "options": ["alpha"]},
            "backbone.options: must be a mapping of arguments. Received: ['alpha'].",
        ),
    ],
)
def test_a_bad_backbone_section_names_the_key(backbone, message):
    with pytest.raises(SearchSpaceError) as info:
        load_space({"backbone": backbone})
    assert str(info.value) == f"Invalid search space <dict>: {message}"

"""AttentionCNN: placements, plain and matched twins, the memory guard, KerasTuner's tuners."""

import keras
import keras_tuner as kt
import numpy as np
import pytest

from attn_search.errors import ConfigError, MemoryBudgetError, TrialFailedError
from attn_search.hypermodels import (
    AttentionCNN,
    TunerMemoryBudgetError,
    _attention_params,
    attention_memory_bytes,
    default_memory_budget_mb,
    matched_block_design,
)
from attn_search.layers import SelfAttentionConv2D
from attn_search.spaces import list_spaces, load_space

SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]
SPACES = [s["name"] for s in list_spaces()]


def _hp(**values) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def _attention_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SelfAttentionConv2D)]


def _matched_params(model, prefix):
    return sum(layer.count_params() for layer in model.layers if layer.name.startswith(prefix))


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    # Sizes divisible by every batch size of the default space: a smaller last batch would
    # make TensorFlow trace the training step twice, the main cost of these tiny trials.
    return (x[:256], y[:256]), (x[1500:1628], y[1500:1628])


# -- building: every shipped space, input shape and placement ------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("space_name", SPACES)
def test_every_placement_attention_plain_and_matched(space_name, shape):
    hm = AttentionCNN.from_space(space_name, input_shape=shape, num_classes=10)
    space = hm.space
    blocks = space.backbone["blocks"].highest()
    name = "attention/placement" if space.max_layers == 1 else "attention/0/placement"
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    for placement in space.placements:
        values = {"backbone/blocks": blocks, name: placement}
        if space.max_layers > 1:
            values["attention/num_layers"] = 1
        hp = _hp(**values)
        model = hm.build(hp)
        assert hp.values[name] == placement
        assert hp.values["backbone/blocks"] == blocks

        # The attention layer sits where hp.values says, with readable names around it.
        (layer,) = _attention_layers(model)
        expected = "attention_at_input" if placement == 0 else f"attention_after_block{placement}"
        assert layer.name == expected
        names = [lay.name for lay in model.layers]
        before, after = names[names.index(expected) - 1], names[names.index(expected) + 1]
        assert before == "image" if placement == 0 else before.startswith(f"block{placement}_")
        assert after.startswith(f"block{placement + 1}_") or after == "head_pool"
        assert layer.get_config()["num_heads"] == hp.values["attention/0/num_heads"]
        assert layer.get_config()["filters"] == (
            hp.values["attention/0/filters"] if placement == 0 else None
        )
        if placement != 0:
            assert "attention/0/filters" not in hp.values
        described = hm.describe(hp, model)
        assert described["family"] == "attention"
        assert described["placements"] == [placement]
        assert described["n_attention"] == 1
        assert described["params"] == model.count_params()
        assert described["gammas"] == pytest.approx([hp.values["attention/0/gamma"]])

        plain = hm.with_family("plain").build(hp)
        assert not _attention_layers(plain)
        assert not [lay for lay in plain.layers if lay.name.startswith("matched")]
        assert hm.with_family("plain").describe(hp, plain)["placements"] == []

        matched = hm.with_family("matched").build(hp)
        assert not _attention_layers(matched)
        prefix = "matched_at_input" if placement == 0 else f"matched_after_block{placement}"
        block = _matched_params(matched, prefix)
        assert abs(block - layer.count_params()) <= 0.10 * layer.count_params()
        assert abs(matched.count_params() - model.count_params()) <= 0.10 * model.count_params()
        assert hm.with_family("matched").describe(hp, matched)["placements"] == [placement]
        # The backbones are the same: only the attention (or matched) layers differ (at
        # placement 0, attention's `filters` also sets block 1's input channels; not in plain).
        assert matched.count_params() - block == model.count_params() - layer.count_params()
        if placement > 0:
            assert model.count_params() - layer.count_params() == plain.count_params()

        for m in (model, plain, matched):
            probs = keras.ops.convert_to_numpy(m(x, training=False))
            assert probs.shape == (2, 10)
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_two_attention_layers_at_the_same_depth_are_stacked_and_named():
    hm = AttentionCNN("cifar", (32, 32, 3), 10)
    hp = _hp(**{
        "backbone/filters": 32,
        "attention/num_layers": 2,
        "attention/0/placement": 1,
        "attention/1/placement": 1,
    })  # fmt: skip
    model = hm.build(hp)
    assert [layer.name for layer in _attention_layers(model)] == [
        "attention_after_block1",
        "attention_after_block1_2",
    ]
    assert hm.describe(hp, model)["placements"] == [1, 1]
    matched = hm.with_family("matched").build(hp)
    names = [layer.name for layer in matched.layers]
    assert "matched_after_block1_conv1" in names and "matched_after_block1_2_conv1" in names


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 8, 16, 24, 32, 64, 128, 256])
def test_matched_block_is_within_ten_percent_of_the_attention_layer(channels):
    for heads in (1, 2, 4):
        for filters in (None, 8, 32):
            target = _attention_params(channels, filters, heads)
            design = matched_block_design(channels, filters or channels, target)
            assert abs(design["params"] - target) <= 0.10 * target, (channels, heads, filters)


def test_matched_block_prefers_a_3x3_convolution():
    assert matched_block_design(16, 16, 613) == {
        "kernel_size": 3,
        "use_bias": False,
        "width": 4,
        "params": 656,
    }


def test_hyperparameter_names_are_stable_and_conditional():
    hm = AttentionCNN("default", (8, 8, 1), 10)
    hp = _hp(**{"attention/placement": 1})
    hm.build(hp)
    assert sorted(hp.values) == [
        "attention/0/activation",
        "attention/0/gamma",
        "attention/0/kv_pool",
        "attention/0/num_heads",
        "attention/placement",
        "backbone/blocks",
        "backbone/convs_per_block",
        "backbone/dropout",
        "backbone/filters",
        "backbone/growth",
        "backbone/kernel_size",
        "backbone/normalization",
        "backbone/pooling",
        "head/dense",
        "head/dropout",
        "head/pooling",
        "train/batch_size",
        "train/epochs",
        "train/learning_rate",
        "train/optimizer",
    ]
    plain_hp = kt.HyperParameters()
    hm.with_family("plain").build(plain_hp)
    assert not [name for name in plain_hp.values if name.startswith("attention/")]
    matched_hp = kt.HyperParameters()
    hm.with_family("matched").build(matched_hp)
    assert sorted(n for n in matched_hp.values if n.startswith("attention/")) == [
        "attention/0/filters",
        "attention/0/num_heads",
        "attention/placement",
    ]
    auto_hp = _hp(family="plain")
    model = hm.with_family("auto").build(auto_hp)
    assert model.name == "default_plain"
    assert hm.with_family("auto").describe(auto_hp, model)["family"] == "plain"


class _DefineByRun:
    """The least an engine must answer: hp.Int/Float/Choice/Boolean/Fixed, nothing else."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def _ask(self, kind, name, default):
        self.calls.append((kind, name))
        return self.answers.get(name, default)

    def Int(self, name, min_value, max_value, step=None, sampling="linear", **kw):
        return self._ask("Int", name, min_value)

    def Float(self, name, min_value, max_value, step=None, sampling="linear", **kw):
        return self._ask("Float", name, min_value)

    def Choice(self, name, values, **kw):
        return self._ask("Choice", name, values[-1])

    def Boolean(self, name, default=False, **kw):
        return self._ask("Boolean", name, default)

    def Fixed(self, name, value, **kw):
        return self._ask("Fixed", name, value)


def test_build_and_fit_only_ask_the_hp_methods_an_optuna_adapter_answers():
    hm = AttentionCNN("mnist", (28, 28, 1), 10, family="auto")
    hp = _DefineByRun({"family": "attention", "attention/placement": 0})
    model = hm.build(hp)
    assert _attention_layers(model)[0].name == "attention_at_input"
    asked = dict((name, kind) for kind, name in hp.calls)
    assert asked["family"] == "Choice"
    assert asked["train/learning_rate"] == "Float"
    assert asked["attention/0/filters"] == "Choice"
    assert asked["backbone/kernel_size"] == "Fixed"
    hm.fit(hp, _RecordingModel(), np.zeros((2, 28, 28, 1), "float32"))
    assert hp.calls[-2:] == [("Fixed", "train/epochs"), ("Choice", "train/batch_size")]
    assert hm.describe(hp, model)["family"] == "attention"


def test_model_is_compiled_with_the_sampled_optimizer():
    hm = AttentionCNN("mnist", (28, 28, 1), 10)
    model = hm.build(_hp(**{"train/optimizer": "adamw", "train/learning_rate": 0.002}))
    assert type(model.optimizer).__name__ == "AdamW"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.002)
    assert model.loss == "sparse_categorical_crossentropy"


# -- fit and describe ----------------------------------------------------------------------


class _RecordingModel:
    def fit(self, x, y=None, **kwargs):
        self.kwargs = kwargs
        return "history"


def test_fit_takes_batch_size_and_epochs_from_hp_and_adds_early_stopping():
    hm = AttentionCNN("default", (8, 8, 1), 10)
    hp = _hp(**{"train/batch_size": 64, "train/epochs": 5})
    model = _RecordingModel()
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int32")
    assert hm.fit(hp, model, x, y, validation_data=(x, y)) == "history"
    assert (model.kwargs["batch_size"], model.kwargs["epochs"]) == (64, 5)
    (early,) = model.kwargs["callbacks"]
    assert (early.monitor, early.patience, early.restore_best_weights) == ("val_loss", 2, True)

    # What the caller (e.g. Hyperband) passes wins; no validation data -> the training loss.
    hm.fit(hp, model, x, y, epochs=2, batch_size=8)
    assert (model.kwargs["batch_size"], model.kwargs["epochs"]) == (8, 2)
    assert model.kwargs["callbacks"][0].monitor == "loss"

    # A tf.data-like input comes batched: no batch_size.
    hm.fit(hp, model, iter([]))
    assert "batch_size" not in model.kwargs


def test_fit_trains_and_describe_reads_learned_gammas(digits):
    (x, y), val = digits
    space = load_space({"training": {"epochs": 2, "batch_size": 128}})
    hm = AttentionCNN(space, (8, 8, 1), 10)
    hp = _hp(**{"attention/placement": 1, "attention/0/gamma": 0.1})
    model = hm.build(hp)
    assert hm.describe(hp, model)["gammas"] == pytest.approx([0.1])
    history = hm.fit(hp, model, x, y, validation_data=val, verbose=0)
    assert history.params["epochs"] == 2 and history.params["steps"] == 2
    (gamma,) = hm.describe(hp, model)["gammas"]
    assert gamma != pytest.approx(0.1, abs=1e-7)


# -- memory guard --------------------------------------------------------------------------


def test_memory_estimate_formula():
    # batch x heads x queries x keys x 4 bytes x 2 (forward and backward)
    assert attention_memory_bytes(64, 28, 28, 2, 1) == 64 * 2 * 784 * 784 * 4 * 2
    assert attention_memory_bytes(64, 28, 28, 2, 2) == 64 * 2 * 784 * 196 * 4 * 2
    assert attention_memory_bytes(8, 7, 7, 1, 2) == 8 * 49 * 16 * 4 * 2
    assert attention_memory_bytes(8, 7, 7, 1, 2, bytes_per_value=2) == 8 * 49 * 16 * 2 * 2


def test_over_budget_is_a_failed_trial_with_a_clear_reason():
    hm = AttentionCNN("default", (8, 8, 1), 10, memory_budget_mb=0.5)
    hp = _hp(**{"attention/placement": 0, "attention/0/num_heads": 2, "train/batch_size": 64})
    with pytest.raises(MemoryBudgetError) as info:
        hm.build(hp)
    assert str(info.value) == (
        "The attention maps would need about 4.0 MB in a training step (attention_at_input: "
        "batch 64 x 2 heads x 64 queries x 64 keys (kv_pool=1); x 4 bytes x 2 for forward and "
        "backward), over the memory budget of 0.5 MB. Lower train/batch_size, "
        "allow a larger attention.kv_pool, place attention deeper, or raise memory_budget_mb."
    )
    assert isinstance(info.value, TunerMemoryBudgetError)
    assert isinstance(info.value, kt.errors.FailedTrialError)
    assert isinstance(info.value, TrialFailedError)
    # The baselines have no attention maps: their twins still build.
    hm.with_family("plain").build(hp)
    hm.with_family("matched").build(hp)


def test_over_budget_moves_to_a_larger_kv_pool_when_the_space_allows():
    space = load_space({"attention": {"kv_pool": [1, 2, 4]}})
    hm = AttentionCNN(space, (8, 8, 1), 10, memory_budget_mb=2.0)
    hp = _hp(**{"attention/placement": 0, "attention/0/num_heads": 2, "train/batch_size": 64})
    model = hm.build(hp)
    assert hp.values["attention/0/kv_pool"] == 1
    (layer,) = _attention_layers(model)
    assert layer.get_config()["kv_pool"] == 2  # 1 MB fits; kv_pool=1 needs 4 MB
    described = hm.describe(hp, model)
    assert described["kv_pools"] == [2]
    assert described["attention_memory_mb"] == pytest.approx(1.0)

    no_auto = load_space({"attention": {"kv_pool": [1, 2, 4], "auto_kv_pool": False}})
    with pytest.raises(MemoryBudgetError):
        AttentionCNN(no_auto, (8, 8, 1), 10, memory_budget_mb=2.0).build(hp)


def test_default_budget_is_a_quarter_of_physical_memory(monkeypatch):
    import os

    monkeypatch.delenv("ATTN_SEARCH_MEMORY_BUDGET_MB", raising=False)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert default_memory_budget_mb() == pytest.approx(total / 4 / 2**20)
    assert AttentionCNN("default", (8, 8, 1), 10).budget_mb == default_memory_budget_mb()
    monkeypatch.setenv("ATTN_SEARCH_MEMORY_BUDGET_MB", "123")
    assert default_memory_budget_mb() == 123.0
    monkeypatch.setenv("ATTN_SEARCH_MEMORY_BUDGET_MB", "lots")
    with pytest.raises(ConfigError) as info:
        default_memory_budget_mb()
    assert str(info.value) == (
        "`ATTN_SEARCH_MEMORY_BUDGET_MB` must be a positive number of megabytes. "
        "Received: ATTN_SEARCH_MEMORY_BUDGET_MB='lots'"
    )


def test_keras_tuner_records_an_over_budget_trial_as_failed(digits, tmp_path):
    (x, y), val = digits
    space = load_space({
        "attention": {"placements": 0, "num_heads": 2, "filters": 8, "activation": "linear",
                      "gamma": 0.0},
        "backbone": {"blocks": 2, "filters": 8, "dropout": 0.0},
        "training": {"batch_size": [8, 256], "epochs": 1},
    })  # fmt: skip
    budget = attention_memory_bytes(8, 8, 8, 2) / 2**20 * 1.01  # batch 8 fits, 256 does not
    hm = AttentionCNN(space, (8, 8, 1), 10, memory_budget_mb=budget)
    tuner = kt.GridSearch(
        hm, objective="val_accuracy", max_trials=2, directory=tmp_path, project_name="grid"
    )
    tuner.search(x, y, validation_data=val, verbose=0)
    trials = list(tuner.oracle.trials.values())
    by_batch = {t.hyperparameters.values["train/batch_size"]: t for t in trials}
    assert by_batch[8].status == "COMPLETED"
    assert by_batch[256].status == "FAILED"
    assert by_batch[256].message.splitlines()[-1] == (
        "attn_search.hypermodels.TunerMemoryBudgetError: The attention maps would need about "
        "16.0 MB in a training step (attention_at_input: batch 256 x 2 heads x 64 queries x 64 "
        "keys (kv_pool=1); x 4 bytes x 2 for forward and backward), over the memory budget of "
        "0.5 MB. Lower train/batch_size, allow a larger attention.kv_pool, place "
        "attention deeper, or raise memory_budget_mb."
    )


# -- KerasTuner's own tuners ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tuner_cls, kwargs, family",
    [
        (kt.RandomSearch, {"max_trials": 2}, "attention"),
        (kt.BayesianOptimization, {"max_trials": 2, "num_initial_points": 1}, "auto"),
        (kt.Hyperband, {"max_epochs": 1, "factor": 2, "hyperband_iterations": 2}, "attention"),
        (kt.GridSearch, {"max_trials": 2}, "attention"),
    ],
    ids=["random", "bayesian", "hyperband", "grid"],
)
# get_best_models reloads weights only; KerasTuner's checkpoint also holds optimizer slots.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_keras_tuner_two_trial_search_on_digits(tuner_cls, kwargs, family, digits, tmp_path):
    (x, y), val = digits
    hypermodel = AttentionCNN.from_space(
        "default", input_shape=(8, 8, 1), num_classes=10, family=family
    )
    tuner = tuner_cls(
        hypermodel,
        objective="val_accuracy",
        seed=3,
        directory=tmp_path,
        project_name=tuner_cls.__name__,
        **kwargs,
    )
    tuner.search(x, y, validation_data=val, epochs=1, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2
    assert [t.status for t in trials] == ["COMPLETED", "COMPLETED"]
    for trial in trials:
        values = trial.hyperparameters.values
        assert values.get("family", "attention") in ("attention", "plain", "matched")
        has_attention = values.get("family", "attention") != "plain"
        assert ("attention/placement" in values) == has_attention
        assert 0.0 <= trial.score <= 1.0
    if family == "auto":
        space = {hp.name: hp for hp in tuner.oracle.get_space().space}
        assert space["family"].values == ["attention", "plain", "matched"]
    if tuner_cls is kt.RandomSearch:
        (best,) = tuner.get_best_models(1)
        assert _attention_layers(best)
        assert best.predict(val[0][:3], verbose=0).shape == (3, 10)


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"input_shape": (8, 8)},
            "`input_shape` must be (height, width, channels), three positive integers. "
            "Received: input_shape=(8, 8)",
        ),
        (
            {"num_classes": 1},
            "`num_classes` must be an integer >= 2. Received: num_classes=1",
        ),
        (
            {"family": "dense"},
            "`family` must be 'attention', 'plain', 'matched' or 'auto'. Received: family='dense'",
        ),
        (
            {"memory_budget_mb": 0},
            "`memory_budget_mb` must be a positive number of megabytes or None. Received: "
            "memory_budget_mb=0",
        ),
    ],
)
def test_invalid_arguments(kwargs, message):
    args = {"input_shape": (8, 8, 1), "num_classes": 10, **kwargs}
    with pytest.raises(ConfigError) as info:
        AttentionCNN("default", args.pop("input_shape"), args.pop("num_classes"), **args)
    assert str(info.value) == message


def test_from_space_and_with_family_keep_everything_else():
    hm = AttentionCNN.from_space("mnist", (28, 28, 1), 10, memory_budget_mb=300)
    twin = hm.with_family("matched")
    assert (twin.space, twin.input_shape, twin.num_classes) == (hm.space, (28, 28, 1), 10)
    assert (twin.family, twin.memory_budget_mb, hm.family) == ("matched", 300.0, "attention")
    assert hm.name == "AttentionCNN_mnist"
    # NumPy integers (e.g. `y.max() + 1`) are integers too.
    hm = AttentionCNN("default", tuple(np.array([8, 8, 1])), np.int64(10))
    assert (hm.input_shape, hm.num_classes) == ((8, 8, 1), 10)
    assert type(hm.num_classes) is int


# -- augmentation ---------------------------------------------------------------------------
@pytest.mark.parametrize("augment", ["flip", "translate", "both"])
def test_augmentation_is_the_same_for_every_family_and_identity_at_inference(augment):
    space = {"training": {"augment": augment, "batch_size": 8}, "attention": {"placements": 1}}
    names = {"flip": ["augment_flip"], "translate": ["augment_translate"]}
    want = names.get(augment, ["augment_flip", "augment_translate"])
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    for family in ("attention", "plain", "matched"):
        hp = kt.HyperParameters()
        model = AttentionCNN(space, (8, 8, 1), 3, family=family).build(hp)
        assert [layer.name for layer in model.layers[1 : 1 + len(want)]] == want, family
        assert hp.values["train/augment"] == augment
        first = model.layers[len(want)]
        probe = keras.Model(model.inputs, first.output)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(probe(x, training=False)), x)
        assert not np.allclose(keras.ops.convert_to_numpy(probe(np.tile(x, (8, 1, 1, 1)),
                                                                training=True)),
                               np.tile(x, (8, 1, 1, 1)))  # fmt: skip


def test_no_augmentation_leaves_the_space_and_the_model_as_they_were():
    assert load_space({"training": {"augment": "none"}}) == load_space({})
    assert "augment" not in load_space("default").to_dict()["training"]
    hp = kt.HyperParameters()
    model = AttentionCNN("default", (8, 8, 1), 10).build(hp)
    assert not any(layer.name.startswith("augment") for layer in model.layers)
    assert "train/augment" not in hp.values

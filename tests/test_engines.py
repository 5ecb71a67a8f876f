"""Engines: the resolver, the Optuna define-by-run adapter, and one contract run over both engines.

The contract tests drive each engine the way the runner does (ask, build the hypermodel from the
trial's hp, tell a record), without training, so they are fast.
"""

from __future__ import annotations

import pytest

from attn_search.engines import (
    ENGINE_ALIASES,
    ENGINES,
    EngineOption,
    KerasTunerEngine,
    OptunaEngine,
    OptunaHyperParameters,
    TrialPlan,
    engine_class,
    engine_options,
    get_engine,
    options_for,
)
from attn_search.errors import ConfigError

# ------------------------------------------------------------------------------ resolver


def test_get_engine_resolves_names_and_instances():
    assert get_engine(None).name == "optuna"
    assert get_engine("optuna").name == "optuna"
    assert get_engine("keras-tuner").name == "keras-tuner"
    assert get_engine("Keras_Tuner", tuner="grid").tuner_name == "grid"
    engine = OptunaEngine(pruner="none")
    assert get_engine(engine) is engine
    assert ENGINES == ("optuna", "keras-tuner")


def test_get_engine_unknown_name():
    with pytest.raises(ConfigError) as info:
        get_engine("hyperopt")
    assert str(info.value) == (
        "`engine` must be one of 'optuna', 'keras-tuner' or an Engine instance. "
        "Received: engine='hyperopt'"
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: KerasTunerEngine(tuner="evolution"),
            "`tuner` must be one of 'random', 'bayesian', 'hyperband', 'grid'. "
            "Received: tuner='evolution'",
        ),
        (
            lambda: OptunaEngine(sampler="anneal"),
            "`sampler` must be one of 'tpe', 'random', 'cmaes', 'qmc', 'gp'. "
            "Received: sampler='anneal'",
        ),
        (
            lambda: OptunaEngine(pruner="patient"),
            "`pruner` must be one of 'median', 'hyperband', 'successive-halving', 'none'. "
            "Received: pruner='patient'",
        ),
        (
            lambda: OptunaEngine(storage="study.db"),
            "`storage` must be an Optuna storage URL such as 'sqlite:///study.db' or "
            "'postgresql://user:pass@host/db'. Received: storage='study.db'",
        ),
        (
            lambda: OptunaEngine(study="  "),
            "`study` must be a non-empty string. Received: study='  '",
        ),
        (
            lambda: OptunaEngine(sampler=None),
            "`sampler` must be one of 'tpe', 'random', 'cmaes', 'qmc', 'gp'. "
            "Received: sampler=None",
        ),
        (
            lambda: KerasTunerEngine(tuner=object),
            "`tuner` must be one of 'random', 'bayesian', 'hyperband', 'grid'. "
            "Received: tuner=<class 'object'>",
        ),
        (
            lambda: get_engine("keras-tuner", sampler="tpe"),
            "Engine 'keras-tuner' has no option 'sampler' (its options: 'tuner'). "
            "Received: sampler='tpe'",
        ),
        (
            lambda: get_engine("optuna", tuner="grid", seed=3),
            "Engine 'optuna' has no options 'tuner', 'seed' (its options: 'sampler', 'pruner', "
            "'storage', 'study'). Received: tuner='grid', seed=3",
        ),
        (
            lambda: engine_class(3),
            "`engine` must be one of 'optuna', 'keras-tuner' or an Engine instance. "
            "Received: engine=3",
        ),
    ],
)
def test_engine_options_are_checked(make, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == message


_SAMPLER = object()  # stands for an optuna.samplers.BaseSampler instance


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("tuner", " GridSearch", "grid"),
        ("tuner", "BAYESIAN", "bayesian"),
        ("pruner", "SHA", "successive-halving"),
        ("pruner", "successive_halving", "successive-halving"),
        ("pruner", "None", "none"),
        ("sampler", _SAMPLER, _SAMPLER),  # a library object, as is
        ("storage", None, None),
        ("storage", "sqlite:///x.db", "sqlite:///x.db"),
        ("study", "my-study", "my-study"),
        ("study", None, None),
    ],
)
def test_engine_option_check_normalizes(name, value, expected):
    assert engine_options()[name].check(value) == expected


def test_engine_option_declarations():
    options = engine_options()
    assert list(options) == ["sampler", "pruner", "storage", "study", "tuner"]
    assert [o.name for o in OptunaEngine.options] == ["sampler", "pruner", "storage", "study"]
    assert [o.name for o in KerasTunerEngine.options] == ["tuner"]
    assert options["tuner"].choices == ("random", "bayesian", "hyperband", "grid")
    assert (options["tuner"].default, options["sampler"].default) == ("random", "tpe")
    assert all(isinstance(o.help, str) and o.help and "\n" not in o.help for o in options.values())
    free = EngineOption("out", rule="a folder", validate=lambda v: v == "ok")
    assert free.check("ok") == "ok"
    with pytest.raises(ConfigError) as info:
        free.check("no")
    assert str(info.value) == "`out` must be a folder. Received: out='no'"


def test_engine_class_and_aliases():
    assert engine_class(None) is OptunaEngine
    assert engine_class(" Optuna ") is OptunaEngine
    for alias in ("keras-tuner", "KERAS-TUNER", *ENGINE_ALIASES):
        assert engine_class(alias) is KerasTunerEngine
    assert ENGINE_ALIASES == {"keras_tuner": "keras-tuner", "kerastuner": "keras-tuner"}


def test_options_for_picks_the_engines_own_options():
    config = {
        "engine": "optuna",
        "tuner": "grid",
        "sampler": "random",
        "pruner": "none",
        "storage": None,
        "study": None,
        "trials": 3,
    }
    optuna_options = options_for("optuna", config)
    assert optuna_options == {"sampler": "random", "pruner": "none", "storage": None, "study": None}
    assert options_for("kerastuner", config) == {"tuner": "grid"}
    assert options_for(None, {"sampler": "qmc"}) == {"sampler": "qmc"}
    assert options_for(OptunaEngine(), config) == {}  # an instance is configured already
    assert get_engine("keras-tuner", **options_for("keras-tuner", config)).tuner_name == "grid"
    engine = get_engine("optuna", **optuna_options)
    assert (engine.sampler_name, engine.pruner_name, engine.study_name) == (
        "random",
        "none",
        "attn-search",
    )


def test_importing_engines_loads_no_framework():
    import subprocess
    import sys

    # The console script's name keeps `import attn_search` from registering the layer.
    code = (
        "import sys; sys.argv[0] = 'attn-search'; import attn_search.engines; "
        "print(sorted(m for m in ('optuna', 'keras_tuner', 'keras', 'tensorflow') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ adapter


def _trial(seed=0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return study, study.ask()


def test_adapter_answers_every_kind_with_suggest():
    import optuna.distributions as d

    study, trial = _trial()
    hp = OptunaHyperParameters(trial)
    n = hp.Int("units", 8, 64, step=8)
    lr = hp.Float("lr", 1e-4, 1e-1, sampling="log")
    drop = hp.Float("drop", 0.0, 0.5, step=0.1)
    act = hp.Choice("act", ["relu", "tanh"])
    flag = hp.Boolean("flag")
    fixed = hp.Fixed("epochs", 3)
    filters = hp.Int("filters", 8, 64, step=2, sampling="log")  # KerasTuner: multiplicative
    assert n in range(8, 65, 8) and 1e-4 <= lr <= 1e-1 and act in ("relu", "tanh")
    assert flag in (False, True) and fixed == 3 and filters in (8, 16, 32, 64)
    dists = trial.distributions
    assert dists["units"] == d.IntDistribution(8, 64, step=8)
    assert dists["lr"] == d.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["drop"] == d.FloatDistribution(0.0, 0.5, step=0.1)
    assert dists["act"] == d.CategoricalDistribution(["relu", "tanh"])
    assert dists["filters"] == d.CategoricalDistribution([8, 16, 32, 64])
    assert "epochs" not in dists  # a Fixed value is answered, not sampled
    assert hp.values == {
        "units": n,
        "lr": lr,
        "drop": drop,
        "act": act,
        "flag": flag,
        "epochs": 3,
        "filters": filters,
    }
    # Asking again answers the same value without a new suggestion.
    assert hp.Int("units", 8, 64, step=8) == n and hp["units"] == n and hp.get("act") == act


def test_adapter_conditions_defaults_and_fixed():
    study, trial = _trial()
    hp = OptunaHyperParameters(trial, fixed={"kind": "b"})
    assert hp.Choice("kind", ["a", "b"]) == "b"
    assert hp.Int("a_only", 1, 3, parent_name="kind", parent_values=["a"]) is None
    with hp.conditional_scope("kind", "b"):
        assert hp.Int("b_only", 1, 3) in (1, 2, 3)
    with hp.conditional_scope("kind", ["a"]):
        assert hp.Float("a_rate", 0.1, 0.2) is None
    assert set(trial.distributions) == {"b_only"}  # "kind" was fixed, inactive ones unasked
    assert set(hp.values) == {"kind", "b_only"}

    defaults = OptunaHyperParameters(None, use_defaults=True)
    assert defaults.Int("n", 2, 9) == 2
    assert defaults.Float("x", 0.5, 1.0, default=0.75) == 0.75
    assert defaults.Choice("c", ["x", "y"]) == "x"
    assert defaults.Boolean("b") is False
    with pytest.raises(KeyError):
        defaults.get("missing")


def test_adapter_builds_the_attention_hypermodel():
    from attn_search.hypermodels import AttentionCNN

    study, trial = _trial(seed=3)
    hm = AttentionCNN("default", (8, 8, 1), 10)
    hp = OptunaHyperParameters(trial)
    model = hm.build(hp)
    assert model.output_shape == (None, 10)
    assert "attention/placement" in hp.values and "train/learning_rate" in hp.values
    assert set(trial.params) <= set(hp.values)
    desc = hm.describe(hp, model)
    assert desc["family"] == "attention" and desc["placements"] == [
        hp.values["attention/placement"]
    ]


# ------------------------------------------------------------------------------ contract


def _record(trial, hp_values, status, acc):
    return {
        "status": status,
        "family": trial.plan.family,
        "hp": hp_values,
        "best_val_accuracy": acc,
        "best_val_loss": None if acc is None else 1.0 - acc,
        "epochs": 2,
        "error": "boom" if status == "failed" else "",
    }


# Where the engines differ, stated once: Optuna re-runs an interrupted trial under a new number
# (the interrupted one stays, failed, and says so); KerasTuner retries it under its own id.
# Both stop at the budget: Optuna's storage numbers the trials, and one past it is surplus.
_DIFFERS = {
    "keras-tuner": {"rerun_number": 3, "n_records": 4, "ask_after_budget": None},
    "optuna": {"rerun_number": 4, "n_records": 5, "ask_after_budget": None},
}


@pytest.mark.parametrize("name", ["keras-tuner", "optuna"])
def test_engine_contract_ask_tell_records_reopen_interrupt(name, tmp_path):
    from attn_search.hypermodels import AttentionCNN

    expect = _DIFFERS[name]
    hm = AttentionCNN("default", (8, 8, 1), 10)
    twins = {"attention": hm, "plain": hm.with_family("plain")}

    def open_engine():
        engine = get_engine(name)
        engine.open(tmp_path, hypermodel=hm, trials=4, seed=0, max_epochs=2)
        return engine

    engine = open_engine()
    plans = [TrialPlan("plain", use_defaults=True), TrialPlan("attention"), TrialPlan("attention")]
    outcomes = [("complete", 0.5), ("failed", None), ("complete", 0.75)]
    told = []
    for plan, (status, acc) in zip(plans, outcomes, strict=True):
        trial = engine.ask()
        assert trial.plan is None  # a fresh trial: the runner decides its plan
        hp = trial.make_hp(plan)
        assert trial.plan == plan
        twins[plan.family].build(hp)
        values = trial.hp_values(hp)
        if plan.use_defaults:  # the plain backbone: every value its default
            assert values["backbone/blocks"] == 2 and values["train/learning_rate"] == 0.001
            assert not any(k.startswith("attention/") for k in values)
        else:
            assert "attention/placement" in values
        engine.tell(trial, _record(trial, values, status, acc))
        told.append((trial.number, status, values))
    assert engine.n_counted() == 3
    records = engine.records()
    assert [(r["trial_id"], r["status"], r["hp"]) for r in records] == told
    assert {r["engine"] for r in records} == {name}

    # A fourth trial is interrupted (Ctrl-C): recorded, not counted, re-run after reopening.
    trial = engine.ask()
    hp = trial.make_hp(TrialPlan("attention"))
    hm.build(hp)
    interrupted_values = trial.hp_values(hp)
    assert engine.n_counted() == 4  # running here
    engine.interrupt(trial, "interrupted by the user (KeyboardInterrupt)")
    assert engine.n_counted() == 3
    engine.close()

    engine = open_engine()
    assert [(r["trial_id"], r["status"], r.get("hp")) for r in engine.records()][:3] == told
    assert engine.n_counted() == 3
    rerun = engine.ask()
    assert rerun is not None and rerun.plan == TrialPlan("attention")  # stored by session 1
    assert engine.n_counted() == 4
    hp = rerun.make_hp(rerun.plan)
    hm.build(hp)
    assert rerun.hp_values(hp) == interrupted_values
    engine.tell(rerun, _record(rerun, interrupted_values, "complete", 0.9))
    assert engine.n_counted() == 4
    final = engine.records()
    counted = [r for r in final if not r.get("interrupted")]
    assert [r["trial_id"] for r in counted] == [0, 1, 2, rerun.number]
    assert counted[-1]["best_val_accuracy"] == 0.9
    assert rerun.number == expect["rerun_number"] and len(final) == expect["n_records"]
    if name == "optuna":
        assert final[3]["status"] == "failed" and final[3]["error"] == (
            "interrupted by the user (KeyboardInterrupt); re-run as trial 4"
        )
    after = engine.ask()
    assert (after if after is None else "a trial") == expect["ask_after_budget"]
    assert len(engine.records()) == expect["n_records"] and engine.n_counted() == 4
    engine.close()


@pytest.mark.parametrize("max_epochs, warmup", [(None, 0), (6, 0), (15, 1), (46, 5)])
def test_median_pruner_waits_an_eighth_of_the_epochs(max_epochs, warmup):
    """Long schedules are not pruned on their first epochs (digits' 6 epochs keep epoch 1)."""
    from attn_search.engines._optuna_make import make_pruner

    pruner = make_pruner("median", 20, max_epochs)
    assert pruner._n_warmup_steps == warmup and pruner._n_startup_trials == 5

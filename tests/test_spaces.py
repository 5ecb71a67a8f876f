"""Search spaces: shipped files, the YAML format, and one test per kind of invalid space."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from attn_search.errors import SearchSpaceError
from attn_search.spaces import Param, SearchSpace, list_spaces, load_space

SHIPPED = ["cifar", "control", "default", "mnist"]


def _write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- shipped spaces ------------------------------------------------------------------------


def test_list_spaces_names_paths_and_descriptions():
    spaces = list_spaces()
    assert [s["name"] for s in spaces] == SHIPPED
    for s in spaces:
        assert s["path"].endswith(f"{s['name']}.yaml") and os.path.isfile(s["path"])
        assert s["description"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_by_name_and_round_trips_through_yaml(name):
    space = load_space(name)
    assert space.name == name
    assert space.families == ("attention", "plain", "matched")
    assert space.baseline_share == 0.25
    assert max(space.placements) <= space.backbone["blocks"].lowest()
    again = load_space(yaml.safe_load(yaml.safe_dump(space.to_dict())))
    assert again == space
    assert again.source == "<dict>"


def test_default_space_contents():
    space = load_space("default")
    assert space.placements == (0, 1, 2)
    assert space.max_layers == 1
    assert space.attention["num_heads"] == Param("choice", "int", values=(1, 2))
    assert space.training["learning_rate"] == Param(
        "range", "float", min=0.001, max=0.01, sampling="log"
    )
    assert space.training["epochs"] == Param("fixed", "int", value=6)
    assert space.early_stopping == {"monitor": "val_loss", "patience": 2, "min_delta": 0.0}


def test_missing_keys_take_default_yaml_values():
    empty = load_space({})
    default = load_space("default")
    assert dataclasses.replace(empty, name="default", description=default.description) == default
    assert empty.name == "custom"


def test_load_space_by_path_and_passthrough(tmp_path):
    path = _write(
        tmp_path,
        """
        backbone: {blocks: 3}
        attention: {placements: 3, kv_pool: {min: 1, max: 4, step: 2, sampling: log}}
        baselines: {include: [matched]}
        training: {learning_rate: 1e-3, early_stopping: false}
        """,
        name="mine.yaml",
    )
    space = load_space(path)
    assert isinstance(space, SearchSpace)
    assert (space.name, space.source) == ("mine", str(path))
    assert space.placements == (3,)
    assert space.attention["kv_pool"].candidates() == (1, 2, 4)
    assert space.families == ("attention", "matched")
    # YAML 1.1 reads 1e-3 (no dot) as a string; a number is meant.
    assert space.training["learning_rate"] == Param("fixed", "float", value=0.001)
    assert space.early_stopping is None
    assert load_space(space) is space


def test_no_baselines_means_no_share():
    space = load_space({"baselines": {"include": []}})
    assert space.families == ("attention",)
    assert space.baseline_share == 0.0


def test_spaces_module_does_not_import_tensorflow(tmp_path):
    # Started as the `attn-search` script, the package skips the layer; spaces must stay light.
    script = tmp_path / "attn-search"
    script.write_text(
        "import sys\nfrom attn_search.spaces import list_spaces, load_space\n"
        "load_space('cifar'); list_spaces()\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_tuner') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


# -- invalid spaces: the whole message -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Yaml:
    """A space given as the text of a YAML file (written to tmp_path, then loaded by path)."""

    text: str


# (what is passed to load_space, the exact message; "{path}" stands for the YAML file's path)
INVALID = {
    "unknown name suggests the closest": (
        "defualt",
        "Unknown search space 'defualt'. Did you mean 'default'? "
        "Shipped spaces: cifar, control, default, mnist; or give the path of a YAML file.",
    ),
    "missing file": (
        "no/such/space.yaml",
        "Search space file not found: no/such/space.yaml",
    ),
    "wrong argument type": (
        3,
        "`space` must be a shipped space name, a YAML path, a dict or a SearchSpace. "
        "Received: space=3",
    ),
    "invalid yaml syntax": (
        _Yaml("attention:\n  num_heads: [1, 2\n"),
        "Invalid search space {path}: not valid YAML at line 3, column 1: "
        "expected ',' or ']', but got '<stream end>'.",
    ),
    "yaml is read with the safe loader": (
        _Yaml("name: !!python/object/apply:os.getcwd []\n"),
        "Invalid search space {path}: not valid YAML at line 1, column 7: could not determine "
        "a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.getcwd'.",
    ),
    "top level must be a mapping": (
        _Yaml("- backbone\n- attention\n"),
        "Invalid search space {path}: the top level must be a mapping of sections (name, "
        "description, backbone, head, attention, baselines, training). Received: a list.",
    ),
    "unknown key names the closest known one": (
        _Yaml("attention:\n  num_head: [1, 2]\n"),
        "Invalid search space {path}: attention.num_head: unknown key. Did you mean 'num_heads'?",
    ),
    "unknown section names the closest known one": (
        _Yaml("atention:\n  num_heads: 1\n"),
        "Invalid search space {path}: atention: unknown key. Did you mean 'attention'?",
    ),
    "unknown key without a close one lists the known keys": (
        _Yaml("head:\n  softmax: true\n"),
        "Invalid search space {path}: head.softmax: unknown key. "
        "Known keys: dense, dropout, pooling.",
    ),
    "unknown key in a range": (
        _Yaml("backbone:\n  blocks: {min: 2, mx: 3}\n"),
        "Invalid search space {path}: backbone.blocks.mx: unknown key. Did you mean 'max'?",
    ),
    "wrong type in a choice names the index": (
        _Yaml("attention:\n  num_heads: [1, 2, four]\n"),
        "Invalid search space {path}: attention.num_heads[2]: must be an integer >= 1. "
        "Received: 'four'.",
    ),
    "bool is not an integer": (
        _Yaml("training:\n  epochs: true\n"),
        "Invalid search space {path}: training.epochs: must be an integer >= 1. Received: True.",
    ),
    "value out of its range": (
        _Yaml("backbone:\n  dropout: [0.0, 1.0]\n"),
        "Invalid search space {path}: backbone.dropout[1]: must be a number in [0, 1). "
        "Received: 1.0.",
    ),
    "unknown option": (
        _Yaml("backbone:\n  normalization: group\n"),
        "Invalid search space {path}: backbone.normalization: must be one of 'none', "
        "'batch', 'layer'. Received: 'group'.",
    ),
    "empty choice": (
        _Yaml("training:\n  batch_size: []\n"),
        "Invalid search space {path}: training.batch_size: empty choice; give at least one value.",
    ),
    "duplicate choice": (
        _Yaml("attention:\n  kv_pool: [1, 2, 2]\n"),
        "Invalid search space {path}: attention.kv_pool[2]: duplicate value 2.",
    ),
    "min greater than max": (
        _Yaml("backbone:\n  blocks: {min: 4, max: 2}\n"),
        "Invalid search space {path}: backbone.blocks: min must be <= max. Received: min=4, max=2.",
    ),
    "range needs min and max": (
        _Yaml("backbone:\n  filters: {min: 8}\n"),
        "Invalid search space {path}: backbone.filters: a range needs both min and max. "
        "Received: {'min': 8}.",
    ),
    "log scale needs positive min": (
        _Yaml("training:\n  learning_rate: {min: 0.0, max: 0.1, sampling: log}\n"),
        "Invalid search space {path}: training.learning_rate: log sampling needs min > 0. "
        "Received: min=0.",
    ),
    "unknown sampling": (
        _Yaml("training:\n  learning_rate: {min: 0.001, max: 0.1, sampling: exp}\n"),
        "Invalid search space {path}: training.learning_rate.sampling: must be one of "
        "'linear', 'log', 'reverse_log'. Received: 'exp'.",
    ),
    "range for a string value": (
        _Yaml("training:\n  optimizer: {min: 1, max: 2}\n"),
        "Invalid search space {path}: training.optimizer: must be one of 'adam', 'adamw', "
        "'sgd', 'rmsprop', 'nadam' (a value or a list of values); a {min, max} range is only "
        "for tunable numbers. Received: {'min': 1, 'max': 2}.",
    ),
    "fixed-only value given a choice": (
        _Yaml("attention:\n  max_layers: [1, 2]\n"),
        "Invalid search space {path}: attention.max_layers: must be an integer in [1, 4], "
        "a single value. Received: [1, 2].",
    ),
    "placement deeper than the blocks": (
        _Yaml("backbone:\n  blocks: [2, 3]\nattention:\n  placements: [0, 1, 3]\n"),
        "Invalid search space {path}: attention.placements[2]: placement 3 is deeper than the "
        "number of conv blocks (backbone.blocks can be as low as 2); use a placement in 0..2.",
    ),
    "section must be a mapping": (
        _Yaml("backbone: [1, 2]\n"),
        "Invalid search space {path}: backbone: must be a mapping of keys to values. "
        "Received: a list.",
    ),
    "unknown baseline": (
        _Yaml("baselines:\n  include: [plain, dense]\n"),
        "Invalid search space {path}: baselines.include[1]: must be 'plain' or 'matched'. "
        "Received: 'dense'.",
    ),
    "share without baselines": (
        _Yaml("baselines:\n  include: []\n  share: 0.5\n"),
        "Invalid search space {path}: baselines.share: must be 0 when baselines.include is "
        "empty. Received: 0.5.",
    ),
    "early stopping patience": (
        _Yaml("training:\n  early_stopping: {patience: -1}\n"),
        "Invalid search space {path}: training.early_stopping.patience: must be an integer "
        ">= 0. Received: -1.",
    ),
    "dict source is named dict": (
        {"attention": {"num_heads": 0}},
        "Invalid search space <dict>: attention.num_heads: must be an integer >= 1. Received: 0.",
    ),
}


@pytest.mark.parametrize(("space", "expected"), INVALID.values(), ids=INVALID.keys())
def test_invalid_space_raises_the_whole_message(tmp_path, space, expected):
    path = None
    if isinstance(space, _Yaml):
        space = path = str(_write(tmp_path, space.text))
    with pytest.raises(SearchSpaceError) as info:
        load_space(space)
    assert str(info.value) == expected.replace("{path}", str(path))

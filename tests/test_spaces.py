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

SHIPPED = ["cifar", "default", "mnist"]


def _write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path, text: str) -> tuple[str, str]:
    path = _write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(str(path))
    return str(info.value), str(path)


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


def test_unknown_name_suggests_the_closest():
    with pytest.raises(SearchSpaceError) as info:
        load_space("defualt")
    assert str(info.value) == (
        "Unknown search space 'defualt'. Did you mean 'default'? "
        "Shipped spaces: cifar, default, mnist; or give the path of a YAML file."
    )


def test_missing_file():
    with pytest.raises(SearchSpaceError) as info:
        load_space("no/such/space.yaml")
    assert str(info.value) == "Search space file not found: no/such/space.yaml"


def test_wrong_argument_type():
    with pytest.raises(SearchSpaceError) as info:
        load_space(3)
    assert str(info.value) == (
        "`space` must be a shipped space name, a YAML path, a dict or a SearchSpace. "
        "Received: space=3"
    )


def test_invalid_yaml_syntax(tmp_path):
    message, path = _error(tmp_path, "attention:\n  num_heads: [1, 2\n")
    assert message == (
        f"Invalid search space {path}: not valid YAML at line 3, column 1: "
        "expected ',' or ']', but got '<stream end>'."
    )


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    message, path = _error(tmp_path, "name: !!python/object/apply:os.getcwd []\n")
    assert message == (
        f"Invalid search space {path}: not valid YAML at line 1, column 7: could not determine "
        "a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.getcwd'."
    )


def test_top_level_must_be_a_mapping(tmp_path):
    message, path = _error(tmp_path, "- backbone\n- attention\n")
    assert message == (
        f"Invalid search space {path}: the top level must be a mapping of sections (name, "
        "description, backbone, head, attention, baselines, training). Received: a list."
    )


def test_unknown_key_names_the_closest_known_one(tmp_path):
    message, path = _error(tmp_path, "attention:\n  num_head: [1, 2]\n")
    assert message == (
        f"Invalid search space {path}: attention.num_head: unknown key. Did you mean 'num_heads'?"
    )


def test_unknown_section_names_the_closest_known_one(tmp_path):
    message, path = _error(tmp_path, "atention:\n  num_heads: 1\n")
    assert message == (
        f"Invalid search space {path}: atention: unknown key. Did you mean 'attention'?"
    )


def test_unknown_key_without_a_close_one_lists_the_known_keys(tmp_path):
    message, path = _error(tmp_path, "head:\n  softmax: true\n")
    assert message == (
        f"Invalid search space {path}: head.softmax: unknown key. "
        "Known keys: dense, dropout, pooling."
    )


def test_unknown_key_in_a_range(tmp_path):
    message, path = _error(tmp_path, "backbone:\n  blocks: {min: 2, mx: 3}\n")
    assert message == (
        f"Invalid search space {path}: backbone.blocks.mx: unknown key. Did you mean 'max'?"
    )


def test_wrong_type_in_a_choice_names_the_index(tmp_path):
    message, path = _error(tmp_path, "attention:\n  num_heads: [1, 2, four]\n")
    assert message == (
        f"Invalid search space {path}: attention.num_heads[2]: must be an integer >= 1. "
        "Received: 'four'."
    )


def test_bool_is_not_an_integer(tmp_path):
    message, path = _error(tmp_path, "training:\n  epochs: true\n")
    assert message == (
        f"Invalid search space {path}: training.epochs: must be an integer >= 1. Received: True."
    )


def test_value_out_of_its_range(tmp_path):
    message, path = _error(tmp_path, "backbone:\n  dropout: [0.0, 1.0]\n")
    assert message == (
        f"Invalid search space {path}: backbone.dropout[1]: must be a number in [0, 1). "
        "Received: 1.0."
    )


def test_unknown_option(tmp_path):
    message, path = _error(tmp_path, "backbone:\n  normalization: group\n")
    assert message == (
        f"Invalid search space {path}: backbone.normalization: must be one of 'none', "
        "'batch', 'layer'. Received: 'group'."
    )


def test_empty_choice(tmp_path):
    message, path = _error(tmp_path, "training:\n  batch_size: []\n")
    assert message == (
        f"Invalid search space {path}: training.batch_size: empty choice; "
        "give at least one value."
    )


def test_duplicate_choice(tmp_path):
    message, path = _error(tmp_path, "attention:\n  kv_pool: [1, 2, 2]\n")
    assert message == f"Invalid search space {path}: attention.kv_pool[2]: duplicate value 2."


def test_min_greater_than_max(tmp_path):
    message, path = _error(tmp_path, "backbone:\n  blocks: {min: 4, max: 2}\n")
    assert message == (
        f"Invalid search space {path}: backbone.blocks: min must be <= max. "
        "Received: min=4, max=2."
    )


def test_range_needs_min_and_max(tmp_path):
    message, path = _error(tmp_path, "backbone:\n  filters: {min: 8}\n")
    assert message == (
        f"Invalid search space {path}: backbone.filters: a range needs both min and max. "
        "Received: {'min': 8}."
    )


def test_log_scale_needs_positive_min(tmp_path):
    message, path = _error(
        tmp_path, "training:\n  learning_rate: {min: 0.0, max: 0.1, sampling: log}\n"
    )
    assert message == (
        f"Invalid search space {path}: training.learning_rate: log sampling needs min > 0. "
        "Received: min=0."
    )


def test_unknown_sampling(tmp_path):
    message, path = _error(
        tmp_path, "training:\n  learning_rate: {min: 0.001, max: 0.1, sampling: exp}\n"
    )
    assert message == (
        f"Invalid search space {path}: training.learning_rate.sampling: must be one of "
        "'linear', 'log', 'reverse_log'. Received: 'exp'."
    )


def test_range_for_a_string_value(tmp_path):
    message, path = _error(tmp_path, "training:\n  optimizer: {min: 1, max: 2}\n")
    assert message == (
        f"Invalid search space {path}: training.optimizer: must be one of 'adam', 'adamw', "
        "'sgd', 'rmsprop', 'nadam' (a value or a list of values); a {min, max} range is only "
        "for tunable numbers. Received: {'min': 1, 'max': 2}."
    )


def test_fixed_only_value_given_a_choice(tmp_path):
    message, path = _error(tmp_path, "attention:\n  max_layers: [1, 2]\n")
    assert message == (
        f"Invalid search space {path}: attention.max_layers: must be an integer in [1, 4], "
        "a single value. Received: [1, 2]."
    )


def test_placement_deeper_than_the_blocks(tmp_path):
    message, path = _error(
        tmp_path, "backbone:\n  blocks: [2, 3]\nattention:\n  placements: [0, 1, 3]\n"
    )
    assert message == (
        f"Invalid search space {path}: attention.placements[2]: placement 3 is deeper than the "
        "number of conv blocks (backbone.blocks can be as low as 2); use a placement in 0..2."
    )


def test_section_must_be_a_mapping(tmp_path):
    message, path = _error(tmp_path, "backbone: [1, 2]\n")
    assert message == (
        f"Invalid search space {path}: backbone: must be a mapping of keys to values. "
        "Received: a list."
    )


def test_unknown_baseline(tmp_path):
    message, path = _error(tmp_path, "baselines:\n  include: [plain, dense]\n")
    assert message == (
        f"Invalid search space {path}: baselines.include[1]: must be 'plain' or 'matched'. "
        "Received: 'dense'."
    )


def test_share_without_baselines(tmp_path):
    message, path = _error(tmp_path, "baselines:\n  include: []\n  share: 0.5\n")
    assert message == (
        f"Invalid search space {path}: baselines.share: must be 0 when baselines.include is "
        "empty. Received: 0.5."
    )


def test_early_stopping_patience(tmp_path):
    message, path = _error(tmp_path, "training:\n  early_stopping: {patience: -1}\n")
    assert message == (
        f"Invalid search space {path}: training.early_stopping.patience: must be an integer "
        ">= 0. Received: -1."
    )


def test_dict_source_is_named_dict():
    with pytest.raises(SearchSpaceError) as info:
        load_space({"attention": {"num_heads": 0}})
    assert str(info.value) == (
        "Invalid search space <dict>: attention.num_heads: must be an integer >= 1. Received: 0."
    )

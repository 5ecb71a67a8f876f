"""`--space auto`: the space resolved from the dataset, checked on the resolved spaces alone
(no training): depth, placements and memory, epochs and batch sizes, augmentation, the YAML
round trip, and the run and CLI wiring."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from attn_search._cnn_plan import feature_shapes
from attn_search.cli import main
from attn_search.hypermodels import attention_memory_bytes
from attn_search.space_auto import TARGET_STEPS, resolve_space, resolved_yaml, space_summary
from attn_search.spaces import load_space

_BUDGET_MB = 2048.0  # the budget the cases below are resolved for (not the machine's)
SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3), (64, 64, 3)]
SIZES = [300, 30_000]


def _info(shape, n, classes=10, name="mine"):
    train = int(n * 0.7)
    sizes = {"train": train, "val": (n - train) // 2, "test": n - train - (n - train) // 2}
    return SimpleNamespace(
        name=name, source=f"folder:/data/{name}", input_shape=shape, num_classes=classes,
        sizes=sizes,
    )  # fmt: skip


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("shape", SHAPES)
def test_auto_space_fits_the_input_and_the_number_of_examples(shape, n):
    info = _info(shape, n)
    space = resolve_space(info, memory_budget_mb=_BUDGET_MB)
    assert space.name == "auto"
    # Depth: the deepest block's map is about 4x4 (4 to 7 pixels on its smaller side).
    for blocks in space.backbone["blocks"].candidates():
        bb = {"blocks": blocks, "filters": 16, "growth": 2.0}
        last = feature_shapes(bb, shape, space.backbone["min_resolution"].value)[blocks]
        assert 4 <= min(last[:2]) <= 7, (blocks, last)
    # Placements: every one is within the backbone, and affordable with the kv_pools allowed.
    bb = {"blocks": space.backbone["blocks"].lowest(), "filters": 16, "growth": 2.0}
    maps = feature_shapes(bb, shape, 4)
    batch = space.training["batch_size"].highest()
    pools = space.attention["kv_pool"].candidates()
    assert space.attention["auto_kv_pool"].value is True
    for p in space.placements:
        h, w, _ = maps[p]
        assert any(
            attention_memory_bytes(batch, h, w, 2, pool) <= _BUDGET_MB * 1024**2
            and h * w * math.ceil(h / pool) * math.ceil(w / pool) <= 1024**2
            for pool in pools
        ), (p, h, w)
    # Epochs: enough optimizer steps at the largest batch (within 6..50), patience a fifth.
    epochs = space.training["epochs"].value
    steps = epochs * info.sizes["train"] / batch
    assert 6 <= epochs <= 50
    assert steps >= TARGET_STEPS or epochs == 50
    assert space.early_stopping["patience"] == max(2, round(epochs / 5))
    # Photos are augmented (flips and shifts), glyphs are not (a mirrored glyph is another).
    augment = space.training.get("augment")
    assert (augment.value if augment is not None else "none") == (
        "both" if shape[2] == 3 else "none"
    )
    assert space_summary(space) == space.description
    assert space.description.startswith(f"auto for {shape[0]}x{shape[1]}x{shape[2]} ")


def test_auto_spaces_differ_where_the_data_do():
    small, large = (
        resolve_space(_info((32, 32, 3), n), memory_budget_mb=_BUDGET_MB) for n in SIZES
    )
    assert small.training["epochs"].value == 50 and large.training["epochs"].value == 6
    assert small.training["batch_size"].candidates() == (16, 32)
    assert large.training["batch_size"].candidates() == (64, 128)
    tiny, big = (resolve_space(_info(s, 300), memory_budget_mb=_BUDGET_MB) for s in SHAPES[::3])
    assert tiny.backbone["blocks"].candidates() == (2, 3) and tiny.placements == (0, 1, 2)
    assert big.backbone["blocks"].value == 4
    # 64x64: attention at the input needs keys pooled 4x (4096 x 256 positions).
    assert big.placements == (0, 1, 2, 3, 4)
    assert big.attention["kv_pool"].candidates() == (1, 2, 4)


def test_a_small_memory_budget_leaves_out_the_large_placements():
    space = resolve_space(_info((64, 64, 3), 30_000), memory_budget_mb=100)
    assert space.placements == (2, 3, 4)
    assert space.attention["kv_pool"].candidates() == (1, 2)


def test_builtin_digits_keeps_the_default_space():
    info = _info((8, 8, 1), 1797, name="digits")
    info.source = "sklearn.datasets.load_digits"
    space = resolve_space(info)
    assert space == load_space("default")
    assert space_summary(space).startswith("auto -> the shipped 'default' space: ")


def test_resolved_yaml_round_trips_through_space_file(tmp_path):
    space = resolve_space(_info((32, 32, 3), 300), memory_budget_mb=_BUDGET_MB)
    path = tmp_path / "mine.yaml"
    path.write_text(resolved_yaml(space, "data/mine"))
    assert load_space(str(path)) == space
    assert path.read_text().splitlines()[0] == "# --space auto, resolved for data/mine."


def test_spaces_resolve_command_prints_the_yaml(capsys):
    assert main(["spaces", "--resolve", "digits"]) == 0
    out = capsys.readouterr().out
    assert out == resolved_yaml(load_space("default"), "digits")


def test_run_config_defaults_to_auto_and_checks_it_without_loading_a_space():
    from attn_search.runner import RunConfig

    config = RunConfig()
    assert config.space == "auto"
    config.check()

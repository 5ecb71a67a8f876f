"""`--space auto`: a search space resolved from the dataset it will search.

`resolve_space(info)` reads what a `DatasetInfo` says (image size and channels, training
examples, classes) and returns a `SearchSpace` made for that data, by these rules:

- **Backbone depth**: enough conv blocks that the feature map shrinks to about 4x4 (each block
  halves it while its smaller side stays >= 4): 8x8 -> 1 halving, 28x28 -> 2, 32x32 -> 3,
  64x64 -> 4. With 2 halvings or fewer, 2 or 3 blocks are searched (as the default space does).
- **Attention placements**: every resolution from the input down whose attention maps fit the
  memory budget (the largest batch, the most heads), with `kv_pool` 1, 2 or 4, and whose map
  (query x key positions) is at most that of a 32x32 map unpooled (larger ones would dominate
  every trial's time on a CPU). The `kv_pool` choices are those some placement needs, so the
  memory guard can pool the large maps (`auto_kv_pool`).
- **Epochs and early stopping**: enough epochs that a trial takes about `TARGET_STEPS`
  optimizer steps at the largest batch size (at least 6, at most 50), early-stopping patience
  a fifth of them (at least 2): a few hundred images get 50 epochs, 30,000 get 6.
- **Batch size**: 16 or 32 below 1,000 training examples, 32 or 64 below 10,000, else 64 or 128.
- **Augmentation**: colour images are taken for photos (random flips and shifts: `both`);
  grey ones for glyphs, whose mirror image is another glyph (none).

The built-in `digits` resolves to the shipped `default` space, made for it (a whole search in
a couple of minutes). Importing this module imports no TensorFlow (resolving does: the memory
estimate is the guard's).
"""

from __future__ import annotations

import math
import os
from typing import Any

from attn_search.spaces import SearchSpace, load_space

__all__ = [
    "AUTO",
    "CV_FOLDS",
    "CV_THRESHOLD",
    "TARGET_STEPS",
    "is_auto",
    "resolve_cv",
    "resolve_space",
    "resolved_yaml",
    "space_summary",
]

#: The space name that asks for a space resolved from the dataset.
AUTO = "auto"
#: Optimizer steps a trial should get (at its largest batch size) to converge.
TARGET_STEPS = 400
_MIN_EPOCHS, _MAX_EPOCHS = 6, 50
_MAX_MAP = (32 * 32) ** 2  # query x key positions of one map
_MIN_RESOLUTION = 4
_POOLS = (1, 2, 4)
_MAX_HEADS = 2


#: Below this many examples, `cv=None` (automatic) compares the finalists by cross-validation:
#: the held-out test split (15%) then holds fewer than 150 images, so one image moves a test
#: accuracy by more than 0.67 points, and the differences a verdict must resolve (1 to 3 points)
#: are a few images, which seeds cannot average away (they all see the same test images).
CV_THRESHOLD = 1000
#: Folds of the automatic cross-validation.
CV_FOLDS = 5


def resolve_cv(cv: int | None, info: Any, repeats: int) -> tuple[int, int]:
    """`(k, repetitions)` of the finalists' cross-validation; `(0, 0)` for a held-out split.

    Args:
        cv: `RunConfig.cv`: `None` (automatic: `CV_FOLDS` folds below `CV_THRESHOLD`
            examples, except for the built-in `digits`, which keeps its quick held-out run),
            0 (held out) or the folds.
        info: The dataset's `DatasetInfo`.
        repeats: `RunConfig.repeats`: the fits per family; with k folds they are
            `ceil(repeats / k)` repetitions of the k folds (every image tested once in each).
    """
    if cv is None:
        n = sum(dict(info.sizes).values())
        small = n < CV_THRESHOLD and not info.streaming and not _is_builtin_digits(info)
        cv = CV_FOLDS if small else 0
    if not cv:
        return 0, 0
    return int(cv), max(1, math.ceil(repeats / int(cv)))


def is_auto(space: Any) -> bool:
    """Whether `space` asks for `--space auto`."""
    return isinstance(space, str) and space.strip().lower() == AUTO


def _halvings(height: int, width: int) -> tuple[int, list[tuple[int, int]]]:
    """How many 2x poolings the backbone applies, and the map size at each placement."""
    sizes = [(height, width)]
    while min(sizes[-1]) // 2 >= _MIN_RESOLUTION:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return len(sizes) - 1, sizes


def _pool_needed(h: int, w: int, batch: int, budget_mb: float) -> int | None:
    """The smallest kv_pool whose attention maps at (h, w) fit the budget, or None."""
    from attn_search._memory_guard import attention_memory_bytes

    for pool in _POOLS:
        if h * w * math.ceil(h / pool) * math.ceil(w / pool) > _MAX_MAP:
            continue
        if attention_memory_bytes(batch, h, w, _MAX_HEADS, pool) <= budget_mb * 1024**2:
            return pool
    return None


def _batch_sizes(n_train: int) -> list[int]:
    if n_train < 1000:
        return [16, 32]
    if n_train < 10000:
        return [32, 64]
    return [64, 128]


def _epochs(n_train: int, batch: int) -> int:
    steps_per_epoch = max(1.0, n_train / batch)
    return int(min(_MAX_EPOCHS, max(_MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch))))


def _is_builtin_digits(info: Any) -> bool:
    return info.name == "digits" and str(info.source).startswith("sklearn")


def resolve_space(
    dataset: Any,
    *,
    memory_budget_mb: float | None = None,
    image_size: tuple[int, int] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> SearchSpace:
    """The search space `--space auto` gives a dataset (the module docstring has the rules).

    Args:
        dataset: A dataset name, folder or .npz path (loaded with `load_dataset`), a
            `Dataset`, or its `DatasetInfo` (`input_shape`, `num_classes`, `sizes`: the
            `"train"` count drives epochs and batch sizes, `name`, `source`).
        memory_budget_mb: The attention maps' budget in MB. Defaults to `None`: the
            hypermodel's default (a quarter of physical memory).
        image_size: `load_dataset`'s `image_size`, for a name or path. Defaults to `None`.
        limit: `load_dataset`'s `limit`, for a name or path. Defaults to `None`.
        seed: `load_dataset`'s `seed` (the split), for a name or path. Defaults to 0.

    Returns:
        A validated `SearchSpace` named `"auto"` (or the shipped `default` for the built-in
        `digits`), whose `description` is the one-line summary a run prints.

    Example:

    >>> from types import SimpleNamespace
    >>> info = SimpleNamespace(name="pets", source="folder:pets", input_shape=(32, 32, 3),
    ...                        num_classes=5, sizes={"train": 210, "val": 45, "test": 45})
    >>> space = resolve_space(info, memory_budget_mb=1024)
    >>> space.placements, space.training["augment"].value
    ((0, 1, 2, 3), 'both')
    """
    info = _info(dataset, image_size=image_size, limit=limit, seed=seed)
    if _is_builtin_digits(info):
        return load_space("default")
    from attn_search._memory_guard import default_memory_budget_mb

    budget = float(memory_budget_mb or default_memory_budget_mb())
    height, width, channels = (int(d) for d in info.input_shape)
    n_train = int(dict(info.sizes).get("train", 0) or 0)
    halvings, sizes = _halvings(height, width)
    blocks: Any = [2, 3] if halvings <= 2 else halvings
    min_blocks = 2 if halvings <= 2 else halvings
    sizes += [sizes[-1]] * (min_blocks + 1 - len(sizes))  # blocks past the last halving
    batches = _batch_sizes(n_train)
    placements, pools = [], set()
    for k, (h, w) in enumerate(sizes[: min_blocks + 1]):
        pool = _pool_needed(h, w, max(batches), budget)
        if pool is not None:
            placements.append(k)
            pools.add(pool)
    if not placements:
        placements = [len(sizes) - 1]  # the smallest map; the guard explains if it cannot fit
    kv_pool: Any = 1 if max(pools, default=1) == 1 else [p for p in _POOLS if p <= max(pools)]
    epochs = _epochs(n_train, max(batches))
    photo = channels >= 3
    raw = {
        "name": AUTO,
        "backbone": {"blocks": blocks},
        "attention": {"placements": placements, "kv_pool": kv_pool},
        "training": {
            "batch_size": batches,
            "epochs": epochs,
            "early_stopping": {"monitor": "val_loss", "patience": max(2, round(epochs / 5))},
            "augment": "both" if photo else "none",
        },
    }
    space = load_space(raw)
    summary = _summary(space, (height, width, channels), n_train, int(info.num_classes), photo)
    return load_space({**space.to_dict(), "description": summary})


def _info(dataset: Any, **load: Any) -> Any:
    if isinstance(dataset, (str, os.PathLike)):
        from attn_search.datasets import load_dataset

        dataset = load_dataset(dataset, **load)
    return getattr(dataset, "info", dataset)


def resolved_yaml(space: SearchSpace, dataset: Any) -> str:
    """`space` as YAML to edit and pass back with `--space FILE`, with a header comment."""
    import yaml

    name = os.fspath(dataset) if isinstance(dataset, (str, os.PathLike)) else "the dataset"
    header = (
        f"# --space auto, resolved for {name}.\n"
        f"# {space_summary(space)}\n"
        "# Edit it and pass the file back: attn-search run --space FILE ...\n"
    )
    return header + yaml.safe_dump(space.to_dict(), sort_keys=False, width=100)


def _values(param: Any) -> str:
    plain = param.to_plain()
    return "/".join(map(str, plain)) if isinstance(plain, list) else str(plain)


def _summary(space: SearchSpace, shape, n_train: int, classes: int, photo: bool) -> str:
    kind = "colour images (photos)" if photo else "grey images (glyphs)"
    augment = space.training.get("augment")
    early = space.early_stopping or {}
    return (
        f"auto for {shape[0]}x{shape[1]}x{shape[2]} {kind}, {n_train} training examples, "
        f"{classes} classes: {_values(space.backbone['blocks'])} conv blocks, attention at "
        f"{_values(space.attention['placements'])} (kv_pool {_values(space.attention['kv_pool'])})"
        f", {_values(space.training['epochs'])} epochs (early stopping after "
        f"{early.get('patience')}), batch {_values(space.training['batch_size'])}, augment "
        f"{augment.value if augment is not None else 'none'}"
    )


def space_summary(space: SearchSpace) -> str:
    """The one line a `--space auto` run prints: what the space was resolved to."""
    if space.name == AUTO:
        return space.description
    return f"auto -> the shipped {space.name!r} space: {space.description}"

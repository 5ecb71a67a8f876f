"""One model's plan: KerasTuner hyperparameters sampled from a search space, as plain data.

`sample_plan(hp, space, family)` registers every hyperparameter of `AttentionCNN` and returns
`{"family", "backbone", "head", "layers", "train"}`; the layers are named from the plan, and a
built model's layer names give the placements back.
"""

from __future__ import annotations

import math
import re

from attn_search.spaces import Param, SearchSpace

_LAYER_NAME = re.compile(r"^(attention|matched)_(at_input|after_block(\d+))(_\d+)?$")


def sample(hp, name: str, param: Param):
    """Registers one space value as a KerasTuner hyperparameter and returns its value."""
    if param.kind == "fixed":
        return param.value if param.value is None else hp.Fixed(name, param.value)
    if param.kind == "choice":
        if param.dtype == "bool":
            return hp.Boolean(name, default=param.values[0])
        return hp.Choice(name, list(param.values))
    if param.dtype == "int":
        return hp.Int(name, param.min, param.max, step=param.step, sampling=param.sampling)
    return hp.Float(name, param.min, param.max, step=param.step, sampling=param.sampling)


def sample_plan(hp, space: SearchSpace, family: str) -> dict:
    """Samples every hyperparameter; returns the plain description of one model."""
    if family == "auto":
        family = (
            hp.Choice("family", list(space.families))
            if len(space.families) > 1
            else hp.Fixed("family", space.families[0])
        )
    bb = {k: sample(hp, f"backbone/{k}", p) for k, p in space.backbone.items()
          if k != "min_resolution"}  # fmt: skip
    head = {k: sample(hp, f"head/{k}", p) for k, p in space.head.items()}
    layers = []
    if family in ("attention", "matched"):
        att = space.attention
        max_layers = space.max_layers
        n = hp.Int("attention/num_layers", 1, max_layers) if max_layers > 1 else 1
        for i in range(n):
            pname = "attention/placement" if max_layers == 1 else f"attention/{i}/placement"
            spec = {"placement": sample(hp, pname, att["placements"])}
            spec["num_heads"] = sample(hp, f"attention/{i}/num_heads", att["num_heads"])
            spec["filters"] = None
            if spec["placement"] == 0:
                spec["filters"] = sample(hp, f"attention/{i}/filters", att["filters"])
            if family == "attention":
                for key in ("activation", "gamma", "kv_pool"):
                    spec[key] = sample(hp, f"attention/{i}/{key}", att[key])
            layers.append(spec)
    train = {k: sample(hp, f"train/{k}", p) for k, p in space.training.items()}
    return {"family": family, "backbone": bb, "head": head, "layers": layers, "train": train}


def block_filters(bb: dict, k: int) -> int:
    """The filters of conv block k (from 1): `filters * growth**(k-1)`."""
    return max(1, int(round(bb["filters"] * bb["growth"] ** (k - 1))))


def feature_shapes(
    bb: dict, input_shape: tuple[int, int, int], min_res: int
) -> dict[int, tuple[int, int, int]]:
    """Feature-map shape (H, W, C) at each placement (0 = the input)."""
    height, width, channels = input_shape
    shapes = {0: (height, width, channels)}
    for k in range(1, bb["blocks"] + 1):
        channels = block_filters(bb, k)
        if min(height, width) // 2 >= min_res:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        shapes[k] = (height, width, channels)
    return shapes


def layer_name(family: str, placement: int, layers: list, index: int) -> str:
    """The name of the plan's `index`-th attention (or matched) layer."""
    prefix = "attention" if family == "attention" else "matched"
    base = f"{prefix}_at_input" if placement == 0 else f"{prefix}_after_block{placement}"
    if isinstance(placement, str):  # a backbone's point: the name of the layer it follows
        base = f"{prefix}_after_{placement}"
    same = [i for i, s in enumerate(layers) if s["placement"] == placement]
    rank = same.index(index)
    return base if rank == 0 else f"{base}_{rank + 1}"


def placement_of(name: str) -> int:
    """The placement of an attention or matched layer, from its name."""
    match = _LAYER_NAME.match(name)
    return 0 if match.group(3) is None else int(match.group(3))

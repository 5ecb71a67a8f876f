"""`BackboneHyperModel`: attention searched inside a `keras.applications` model or your own.

The hypermodel of a search whose space (or `--backbone`) names a backbone other than `cnn`. It
builds the backbone once to find its attention points (`attention_points`: the end of each
resolution stage), then per trial samples which one or two points get a `SelfAttentionConv2D`
and the layer's options, and rebuilds the backbone (fresh weights, or ImageNet's) with them.
The plain twin is the backbone as it is; the matched twin puts a plain convolutional residual
block of about the attention layer's parameter count at the same points.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping

import keras

from attn_search._backbone_build import build_backbone
from attn_search._cnn_blocks import augmentation, matched_block
from attn_search._cnn_plan import sample
from attn_search._memory_guard import attention_memory_bytes, fit_to_budget, itemsize
from attn_search.backbones import attention_points, insert_layers_after
from attn_search.errors import ConfigError
from attn_search.formatting import point_label
from attn_search.hypermodels import AttentionCNN, TunerMemoryBudgetError
from attn_search.spaces import SearchSpace, load_space

__all__ = ["BackboneHyperModel", "make_hypermodel"]

_ATTENTION, _MATCHED = "attention_after_", "matched_after_"
# Pools the memory guard may also use at a backbone's high-resolution points (auto_kv_pool).
_GUARD_POOLS = (2, 4, 8)


def _candidate_points(base: keras.Model, wanted) -> list[dict]:
    """The points attention may follow: the given names, or the stage ends wider than 1x1."""
    every = attention_points(base, all_points=True)
    if wanted is None:
        points = [p for p in attention_points(base) if p["shape"][0] * p["shape"][1] > 1]
        return points or attention_points(base)
    by_name = {p["name"]: p for p in every}
    for name in wanted:
        if name not in by_name:
            ends = ", ".join(p["name"] for p in attention_points(base))
            raise ConfigError(
                f"`backbone.points` names {name!r}, which is not a layer of {base.name} with one "
                f"4D feature map. Its stage ends are: {ends} (attention_points(model, "
                f"all_points=True) lists every valid layer). Received: points={list(wanted)!r}"
            )
    return [by_name[name] for name in wanted]


def _renamed(model: keras.Model, name: str) -> keras.Model:
    """The same graph (the same layers) as a Functional model named `name`, one input and one
    output tensor (not lists of one), as `AttentionCNN`'s models have."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    return keras.Model(inputs, outputs, name=name)


def _augmented(model: keras.Model, augment: str) -> keras.Model:
    """`model` behind `training.augment`'s layers (as `AttentionCNN`: active in training
    only), as one model of the same name holding the network as its last layer."""
    if augment in (None, "none"):
        return model
    inputs = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    outputs = model(augmentation(inputs, augment))
    model.name = model.name + "_net"
    return keras.Model(inputs, outputs, name=model.name[: -len("_net")])


def _network(model: keras.Model) -> keras.Model:
    """The network inside an `_augmented` model (the model itself when not augmented)."""
    last = model.layers[-1]
    augmented = any(layer.name.startswith("augment_") for layer in model.layers)
    return last if augmented and isinstance(last, keras.Model) else model


_FOUND: dict[str, tuple[list[dict], dict[str, int]]] = {}


def _discover(settings: dict, input_shape, num_classes: int):
    """The backbone's candidate points, and each one's position among the model's layers;
    built once per backbone, shape and classes (a hypermodel's twins share them)."""
    key = json.dumps([settings, input_shape, num_classes], sort_keys=True, default=list)
    if key not in _FOUND:
        keras.backend.clear_session()  # layer names as in every trial (each starts afresh)
        base = build_backbone(settings, input_shape, num_classes)
        points = _candidate_points(base, settings["points"])
        # A builder's unnamed layers are numbered by Keras' session (`conv2d_3`): a point is
        # found again in a later build by its position among the model's layers.
        index = {layer.name: i for i, layer in enumerate(base.layers)}
        _FOUND[key] = (points, {p["name"]: index[p["name"]] for p in points})
    return _FOUND[key]


class BackboneHyperModel(AttentionCNN):
    """Attention inside another network, searched: where (one or two points) and how.

    `build(hp)` samples, under these names: `family` (only with `family="auto"`);
    `attention/placement` (attention and matched: one point, or two joined by `+`, among the
    backbone's points, listed deepest first); per point i, `attention/{i}/num_heads`, and for
    the "attention" family `attention/{i}/activation`, `attention/{i}/gamma` and
    `attention/{i}/kv_pool`; then `train/optimizer`, `train/learning_rate`,
    `train/batch_size`, `train/epochs`. The space's `backbone.blocks`, ... and `head` keys are
    not used (they shape the small CNN only). `attention.max_layers` caps the points per model
    at 2.

    Attention layers are named `attention_after_<point>`, matched blocks
    `matched_after_<point>`; leaderboards name the point and its resolution.

    Args:
        space: A `SearchSpace`, a shipped space's name, a YAML path or a dict.
        input_shape: `(height, width, channels)` of the images.
        num_classes: Number of classes (>= 2).
        family: `"attention"`, `"plain"`, `"matched"` or `"auto"`. Defaults to `"attention"`.
        memory_budget_mb: Budget for the attention maps of one training step, in MB.
            Defaults to `None` (a quarter of physical memory).
        name: Name of the hypermodel. Defaults to `"Backbone_<model>"`.
        backbone: The backbone, overriding the space's `backbone.model`. Defaults to `None`.

    Raises:
        ConfigError: For an invalid argument, images smaller than the backbone's minimum,
            ImageNet weights missing from Keras' cache, a builder that fails, or
            `backbone.points` naming a layer the backbone lacks.

    Example:
    >>> import keras_tuner
    >>> from attn_search._backbone_hypermodel import BackboneHyperModel
    >>> hm = BackboneHyperModel({"backbone": {"model": "mobilenet_v2",
    ...     "options": {"alpha": 0.35}}}, input_shape=(32, 32, 3), num_classes=4)
    >>> hm.build(keras_tuner.HyperParameters()).output_shape
    (None, 4)
    """

    def __init__(
        self,
        space: SearchSpace | str | os.PathLike | Mapping,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        family: str = "attention",
        memory_budget_mb: float | None = None,
        name: str | None = None,
        backbone: str | None = None,
    ):
        space = load_space(space)
        settings = dict(space.network)
        if backbone is not None:
            settings["model"] = backbone
        label = settings["model"].rpartition(":")[2] or settings["model"]
        super().__init__(
            space,
            input_shape,
            num_classes,
            family=family,
            memory_budget_mb=memory_budget_mb,
            name=name or f"Backbone_{label}",
        )
        self.backbone = backbone
        self.settings = settings
        self.points, self._index = _discover(settings, self.input_shape, self.num_classes)
        deepest_first = [p["name"] for p in reversed(self.points)]
        most = min(2, self.space.max_layers, len(deepest_first))
        self.placements = [
            "+".join(sorted(c, key=[p["name"] for p in self.points].index))
            for n in range(1, most + 1)
            for c in itertools.combinations(deepest_first, n)
        ]

    def with_family(self, family: str) -> BackboneHyperModel:
        """The same hypermodel (backbone, points, budget) for another family: its twins."""
        if family not in ("attention", "plain", "matched", "auto"):
            raise ConfigError(
                "`family` must be 'attention', 'plain', 'matched' or 'auto'. "
                f"Received: family={family!r}"
            )
        return type(self)(
            self.space,
            self.input_shape,
            self.num_classes,
            family=family,
            memory_budget_mb=self.memory_budget_mb,
            name=self.name,
            backbone=self.backbone,
        )

    def _plan(self, hp) -> dict:
        family = self.family
        if family == "auto":
            families = list(self.space.families)
            family = hp.Choice("family", families) if len(families) > 1 else families[0]
        layers = []
        if family in ("attention", "matched"):
            att = self.space.attention
            if len(self.placements) > 1:
                chosen = hp.Choice("attention/placement", self.placements)
            else:
                chosen = hp.Fixed("attention/placement", self.placements[0])
            for i, point in enumerate(chosen.split("+")):
                spec = {"placement": point, "filters": None}
                spec["num_heads"] = sample(hp, f"attention/{i}/num_heads", att["num_heads"])
                if family == "attention":
                    for key in ("activation", "gamma", "kv_pool"):
                        spec[key] = sample(hp, f"attention/{i}/{key}", att[key])
                layers.append(spec)
        train = {k: sample(hp, f"train/{k}", p) for k, p in self.space.training.items()}
        return {"family": family, "layers": layers, "train": train}

    def _guard(self, plan: dict) -> None:
        """The memory guard at the chosen points: a larger kv_pool, or the reason it fails."""
        if plan["family"] != "attention":
            return
        att = self.space.attention
        allowed = None
        if att["auto_kv_pool"].value:
            allowed = tuple(sorted({*att["kv_pool"].candidates(), *_GUARD_POOLS}))
        shapes = {p["name"]: p["shape"] for p in self.points}
        batch = plan["train"]["batch_size"]
        problem = fit_to_budget(plan["layers"], shapes, batch, self.budget_mb, allowed)
        if problem is not None:
            raise TunerMemoryBudgetError(problem)

    def _build_model(self, plan: dict) -> keras.Model:
        from attn_search.layers import SelfAttentionConv2D

        base = build_backbone(self.settings, self.input_shape, self.num_classes)
        name = f"{base.name}_{plan['family']}"  # twins trained together need distinct names
        if plan["family"] == "plain" or not plan["layers"]:
            return _augmented(_renamed(base, name), plan["train"].get("augment", "none"))
        shapes = {p["name"]: p["shape"] for p in self.points}
        inserted = {}
        for spec in plan["layers"]:
            point = spec["placement"]
            here = base.layers[self._index[point]].name  # the point's name in this build
            if plan["family"] == "attention":
                inserted[here] = SelfAttentionConv2D(
                    num_heads=spec["num_heads"],
                    activation=spec["activation"],
                    gamma=spec["gamma"],
                    kv_pool=spec["kv_pool"],
                    name=_ATTENTION + point,
                )
            else:  # a residual block, wrapped as one layer so that it can follow the point
                inputs = keras.Input(shape=shapes[point])
                block = matched_block(inputs, spec, _MATCHED + point)
                inserted[here] = keras.Model(inputs, block, name=_MATCHED + point)
        model = _renamed(insert_layers_after(base, inserted), name)
        return _augmented(model, plan["train"].get("augment", "none"))

    def describe(self, hp, model: keras.Model) -> dict:
        """What a built model holds, for leaderboards (as `AttentionCNN.describe`).

        `placements` are labels such as `"conv3_block4_out (8x8)"`: the point and its
        resolution.
        """
        from attn_search.layers import SelfAttentionConv2D

        values = getattr(hp, "values", {}) or {}
        batch = values.get("train/batch_size") or self.space.training["batch_size"].lowest()
        shapes = {p["name"]: p["shape"] for p in self.points}
        out = {"placements": [], "gammas": [], "kv_pools": [], "memory": 0, "kinds": set()}
        for layer in _network(model).layers:
            for prefix, kind in ((_ATTENTION, "attention"), (_MATCHED, "matched")):
                point = layer.name[len(prefix) :] if layer.name.startswith(prefix) else None
                if point not in shapes:
                    continue
                out["kinds"].add(kind)
                out["placements"].append(point_label(point, shapes[point]))
                if isinstance(layer, SelfAttentionConv2D):
                    config = layer.get_config()
                    out["gammas"].append(float(keras.ops.convert_to_numpy(layer.gamma)))
                    out["kv_pools"].append(int(config["kv_pool"]))
                    height, width = shapes[point][:2]
                    out["memory"] += attention_memory_bytes(
                        batch, height, width, config["num_heads"], config["kv_pool"], itemsize()
                    )
        family = self.family
        if family == "auto":
            family = values.get("family") or (out["kinds"].pop() if out["kinds"] else "plain")
        return {
            "family": family,
            "placements": out["placements"],
            "n_attention": len(out["gammas"]),
            "params": int(model.count_params()),
            "gammas": out["gammas"],
            "kv_pools": out["kv_pools"],
            "attention_memory_mb": out["memory"] / 1024**2,
        }


def make_hypermodel(
    space: SearchSpace,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    backbone: str | None = None,
    memory_budget_mb: float | None = None,
) -> AttentionCNN:
    """The search's attention hypermodel: `AttentionCNN` for the `cnn` backbone, else a
    `BackboneHyperModel` (the `backbone` argument overrides the space's `backbone.model`)."""
    model = backbone if backbone is not None else space.network["model"]
    kwargs = {"family": "attention", "memory_budget_mb": memory_budget_mb}
    if model.strip().lower() == "cnn":
        return AttentionCNN(space, input_shape, num_classes, **kwargs)
    return BackboneHyperModel(space, input_shape, num_classes, backbone=backbone, **kwargs)

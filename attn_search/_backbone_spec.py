"""What a backbone is, as text: `cnn`, a `keras.applications` name, or a user builder.

`parse_backbone(text)` reads `--backbone` (or a space's `backbone.model`), `check_settings`
validates a space's `backbone.model / weights / options / points` keys, and `weights_file`
names the file Keras' cache must hold for `weights: imagenet`. No TensorFlow, no Keras: the
command line checks a backbone instantly; `attn_search._backbone_build` builds it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from typing import Any

from attn_search.errors import ConfigError

__all__ = ["APPLICATIONS", "Backbone", "check_settings", "parse_backbone", "weights_file"]


@dataclasses.dataclass(frozen=True)
class Application:
    """One `keras.applications` model: its class, its smallest input side, its weights file
    without the top (`{alpha}` and `{rows}` filled in for MobileNetV2)."""

    cls: str
    min_size: int
    notop: str


_TF = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: The `keras.applications` models a backbone may name (checked against Keras 3.x sources).
APPLICATIONS: dict[str, Application] = {
    "resnet50": Application("ResNet50", 32, "resnet50" + _TF),
    "resnet101": Application("ResNet101", 32, "resnet101" + _TF),
    "resnet152": Application("ResNet152", 32, "resnet152" + _TF),
    "resnet50_v2": Application("ResNet50V2", 32, "resnet50v2" + _TF),
    "mobilenet_v2": Application(
        "MobileNetV2",
        32,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
    ),
    "efficientnet_b0": Application("EfficientNetB0", 32, "efficientnetb0_notop.h5"),
    "efficientnet_b1": Application("EfficientNetB1", 32, "efficientnetb1_notop.h5"),
    "efficientnet_b2": Application("EfficientNetB2", 32, "efficientnetb2_notop.h5"),
    "efficientnet_v2_b0": Application("EfficientNetV2B0", 32, "efficientnetv2-b0_notop.h5"),
    "convnext_tiny": Application("ConvNeXtTiny", 32, "convnext_tiny_notop.h5"),
    "convnext_small": Application("ConvNeXtSmall", 32, "convnext_small_notop.h5"),
    "densenet121": Application("DenseNet121", 32, "densenet121" + _TF),
    "densenet169": Application("DenseNet169", 32, "densenet169" + _TF),
    "vgg16": Application("VGG16", 32, "vgg16" + _TF),
    "xception": Application("Xception", 71, "xception" + _TF),
    "inception_v3": Application("InceptionV3", 75, "inception_v3" + _TF),
}
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FORMS = (
    "'cnn', a keras.applications name (" + ", ".join(APPLICATIONS) + "), "
    "'path/to/file.py:function' or 'package.module:function'"
)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A parsed backbone.

    Attributes:
        kind: `"cnn"`, `"application"` or `"builder"`.
        text: What the user wrote.
        name: The application's name (`"resnet50"`), the builder's file or module.
        function: The builder's function name (builders only).
    """

    kind: str
    text: str
    name: str
    function: str | None = None

    @property
    def is_file(self) -> bool:
        return self.kind == "builder" and self.name.endswith(".py")


def parse_backbone(text: Any, where: str = "backbone") -> Backbone:
    """Reads a backbone's text; checks its form, and that a builder's file exists.

    Args:
        text: `"cnn"`, a `keras.applications` name (case and `-` ignored: `MobileNet-V2`
            is `mobilenet_v2`), `"path/to/file.py:function"` or `"package.module:function"`.
        where: The argument's name in messages. Defaults to `"backbone"`.

    Raises:
        ConfigError: Naming the argument, echoing the value and listing the accepted forms.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"`{where}` must be {_FORMS}. Received: {where}={text!r}")
    raw = text.strip()
    key = raw.lower().replace("-", "_")
    if key == "cnn":
        return Backbone("cnn", raw, "cnn")
    if key in APPLICATIONS:
        return Backbone("application", raw, key)
    target, sep, function = raw.rpartition(":")
    if not sep or not target:
        close = difflib.get_close_matches(key, ["cnn", *APPLICATIONS], n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"`{where}` is not a known backbone. {hint}It must be {_FORMS}. "
            f"Received: {where}={text!r}"
        )
    if not function.isidentifier():
        raise ConfigError(
            f"`{where}` must end with ':function', the name of a Python function. "
            f"Received: {where}={text!r}"
        )
    if target.endswith(".py"):
        if not os.path.isfile(target):
            raise ConfigError(
                f"`{where}` names a builder file that does not exist: {target}. Give the path "
                f"of a Python file, relative to the current folder or absolute. "
                f"Received: {where}={text!r}"
            )
    elif not _MODULE.match(target):
        raise ConfigError(
            f"`{where}` must be 'path/to/file.py:function' or 'package.module:function'; "
            f"{target!r} is neither a .py file nor a module name. Received: {where}={text!r}"
        )
    return Backbone("builder", raw, target, function)


def keras_models_dir() -> str:
    """Where Keras caches downloaded weights: `$KERAS_HOME/models`, else `~/.keras/models`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def weights_file(name: str, input_shape: tuple[int, int, int], options: dict) -> str:
    """The file name of the application's ImageNet weights without the top."""
    template = APPLICATIONS[name].notop
    if name != "mobilenet_v2":
        return template
    height, width = input_shape[:2]
    rows = height if height == width and height in (96, 128, 160, 192, 224) else 224
    return template.format(alpha=float(options.get("alpha", 1.0)), rows=rows)


_SETTINGS = ("model", "weights", "options", "points")


def check_settings(check: Any, given: dict) -> dict:
    """Validates a space's backbone keys beyond the small CNN's; returns them with defaults.

    Args:
        check: The space's `Checker` (its `fail` raises a `SearchSpaceError`).
        given: The raw `backbone:` mapping.

    Returns:
        `{"model", "weights", "options", "points"}`: the backbone text (`"cnn"` by default),
        `None` / `"imagenet"` / a weights file path, constructor options (a dict) and the
        candidate points (`None` = the model's stage ends, else a tuple of layer names).
    """
    model = given.get("model", "cnn")
    try:
        parsed = parse_backbone(model, "backbone.model")
    except ConfigError as e:
        check.fail("backbone.model", str(e).split("`backbone.model` ", 1)[-1])
    weights = given.get("weights")
    if weights is not None and not isinstance(weights, str):
        check.fail(
            "backbone.weights",
            f"must be null, 'imagenet' or the path of a weights file. Received: {weights!r}.",
        )
    if weights is not None and parsed.kind != "application":
        check.fail(
            "backbone.weights",
            "applies to keras.applications backbones only (a builder loads its own weights). "
            f"Received: {weights!r} with model {model!r}.",
        )
    options = given.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        check.fail("backbone.options", f"must be a mapping of arguments. Received: {options!r}.")
    points = given.get("points")
    if points is not None:
        if (
            not isinstance(points, list)
            or not points
            or not all(isinstance(p, str) and p for p in points)
            or len(set(points)) != len(points)
        ):
            check.fail(
                "backbone.points",
                "must be null (the model's stage ends) or a list of distinct layer names. "
                f"Received: {points!r}.",
            )
        points = tuple(points)
    return {"model": model, "weights": weights, "options": dict(options), "points": points}


def default_settings() -> dict:
    """The settings of a space without backbone keys: today's small CNN."""
    return {"model": "cnn", "weights": None, "options": {}, "points": None}


def check_field(name: str, value: Any, optional: bool) -> None:
    """`RunConfig`'s check of its `backbone` field (`None`: the space's backbone)."""
    if value is None and optional:
        return
    parse_backbone(value, name)

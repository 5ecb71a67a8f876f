"""Building a backbone: a `keras.applications` model with a classifier, or the user's builder.

`build_backbone(settings, input_shape, num_classes)` returns an uncompiled Keras model that maps
the dataset's images to softmax probabilities. It never downloads: ImageNet weights are read
from Keras' cache only (see `attn_search._backbone_spec.weights_file`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any

import keras

from attn_search._backbone_spec import (
    APPLICATIONS,
    Backbone,
    keras_models_dir,
    parse_backbone,
    weights_file,
)
from attn_search.errors import ConfigError

__all__ = ["build_backbone", "check_input_size", "load_builder"]


def check_input_size(backbone: Backbone, input_shape: tuple[int, int, int]) -> None:
    """Refuses, before anything is built, images smaller than the application's minimum.

    Raises:
        ConfigError: Naming the backbone, the images' size and the minimum.
    """
    if backbone.kind != "application":
        return
    minimum = APPLICATIONS[backbone.name].min_size
    height, width = input_shape[:2]
    if min(height, width) < minimum:
        raise ConfigError(
            f"`backbone` {backbone.name} needs images of at least {minimum}x{minimum} pixels; "
            f"the dataset's are {height}x{width}. Resize them with `image_size` "
            f"(--image-size {minimum}) or choose a smaller backbone. "
            f"Received: backbone={backbone.text!r}"
        )


def _weights_path(backbone: Backbone, weights: str, input_shape, options) -> str:
    if weights != "imagenet":
        if not os.path.isfile(weights):
            raise ConfigError(
                "`backbone.weights` must be null, 'imagenet' or the path of a weights file that "
                f"exists. Received: weights={weights!r}"
            )
        return weights
    name = weights_file(backbone.name, input_shape, options)
    folder = keras_models_dir()
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise ConfigError(
            f"`backbone.weights` is 'imagenet', but Keras' cache has no {name} in {folder}. "
            "attn-search never downloads: copy that file there (from a machine where "
            f"keras.applications.{APPLICATIONS[backbone.name].cls}(weights='imagenet', "
            "include_top=False) downloaded it), or use weights: null. "
            f"Received: backbone={backbone.text!r}, weights='imagenet'"
        )
    return path


def _application(backbone, input_shape, num_classes, weights, options) -> keras.Model:
    check_input_size(backbone, input_shape)
    path = None if weights is None else _weights_path(backbone, weights, input_shape, options)
    constructor = getattr(keras.applications, APPLICATIONS[backbone.name].cls)
    try:
        base = constructor(
            include_top=False, weights=None, input_shape=tuple(input_shape), **options
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"`backbone.options` do not fit keras.applications."
            f"{APPLICATIONS[backbone.name].cls}: {e} Received: options={options!r}"
        ) from None
    if path is not None:
        base.load_weights(path)  # what keras.applications does after its download
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(base.inputs, outputs, name=base.name)


def load_builder(backbone: Backbone):
    """The user's builder function, imported from its file or module.

    Raises:
        ConfigError: The file or module cannot be imported, or has no such function.
    """
    try:
        if backbone.is_file:
            path = os.path.abspath(backbone.name)
            module_name = f"_attn_search_builder_{abs(hash(path))}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # so that the module's classes pickle and save
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(backbone.name)
    except ImportError as e:
        raise ConfigError(
            f"`backbone` names module {backbone.name!r}, which cannot be imported: {e}. "
            f"Received: backbone={backbone.text!r}"
        ) from None
    function = getattr(module, backbone.function, None)
    if not callable(function):
        found = sorted(
            n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )  # fmt: skip
        raise ConfigError(
            f"`backbone` names function {backbone.function!r}, which {backbone.name} does not "
            f"define. Its functions: {', '.join(found) or '(none)'}. "
            f"Received: backbone={backbone.text!r}"
        )
    return function


def _from_builder(backbone, input_shape, num_classes, options) -> keras.Model:
    function = load_builder(backbone)
    model = function(tuple(input_shape), num_classes, **options)
    what = f"`backbone` {backbone.text} must return a Keras model"
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"{what} (keras.Model or keras.Sequential). Received: {type(model).__name__} from "
            f"{backbone.function}{(tuple(input_shape), num_classes)}"
        )
    shape = tuple(model.output_shape) if model.outputs else None
    if shape != (None, num_classes):
        raise ConfigError(
            f"{what} whose output is (batch, {num_classes}) class probabilities, one per class. "
            f"Received: a model with output shape {shape} from "
            f"{backbone.function}{(tuple(input_shape), num_classes)}"
        )
    return model


def build_backbone(
    settings: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int
) -> keras.Model:
    """The backbone of `settings` (a space's `network`), for these images and classes.

    Args:
        settings: `{"model", "weights", "options", "points"}` (see
            `attn_search._backbone_spec.check_settings`); `model` is an application's name or
            a builder (not `"cnn"`).
        input_shape: `(height, width, channels)` of the images.
        num_classes: Number of classes.

    Returns:
        An uncompiled model from images to softmax probabilities: an application without its
        top plus global average pooling and a `Dense` softmax layer named `classifier`, or the
        builder's model as returned.

    Raises:
        ConfigError: Images smaller than the application's minimum, ImageNet weights not in
            Keras' cache, a builder that cannot be imported, has no such function, or returns
            something other than a Keras model with `num_classes` outputs.
    """
    backbone = parse_backbone(settings["model"])
    options = dict(settings.get("options") or {})
    if backbone.kind == "application":
        return _application(backbone, input_shape, num_classes, settings.get("weights"), options)
    return _from_builder(backbone, input_shape, num_classes, options)

"""A user backbone for `attn-search run --backbone examples/small_resnet.py:build`.

attn-search calls `build(input_shape, num_classes)` and searches where self-attention goes in
the model it returns: after the end of each resolution stage (`stage1_out`, `stage2_out`,
`stage3_out`). Any function with this signature that returns a Functional or Sequential Keras
model with `num_classes` softmax outputs works; naming the layers makes the leaderboard's
`placement` column readable.
"""

import keras


def residual_block(x, filters: int, stride: int, name: str):
    """Two 3x3 convolutions with batch normalization, and a shortcut."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(x)
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def build(input_shape, num_classes, width: int = 16):
    """A three-stage ResNet: `width`, `2 * width`, `4 * width` filters, halving the map twice."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = residual_block(x, width, 1, "stage1")
    x = residual_block(x, 2 * width, 2, "stage2")
    x = residual_block(x, 4 * width, 2, "stage3")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="small_resnet")

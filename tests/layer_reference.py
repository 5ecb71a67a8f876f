"""A NumPy implementation of SelfAttentionConv2D's documented formula, for agreement tests.

Importable by tests and by backend subprocess scripts (it uses NumPy only, plus the layer's
weights read through `keras.ops.convert_to_numpy`).
"""

import math

import numpy as np


def conv1x1(x, conv):
    kernel, bias = (np.asarray(w) for w in _weights(conv))
    return x @ kernel[0, 0] + bias  # (B, H, W, out)


def _weights(conv):
    import keras

    return [keras.ops.convert_to_numpy(w) for w in (conv.kernel, conv.bias)]


def max_pool_same(x, p):
    """Max-pooling with "same" padding, as TensorFlow defines it (extra padding after)."""
    if p == 1:
        return x
    b, h, w, c = x.shape
    out_h, out_w = math.ceil(h / p), math.ceil(w / p)
    pad_h, pad_w = out_h * p - h, out_w * p - w
    padded = np.full((b, h + pad_h, w + pad_w, c), -np.inf, dtype=x.dtype)
    top, left = pad_h // 2, pad_w // 2
    padded[:, top : top + h, left : left + w] = x
    return padded.reshape(b, out_h, p, out_w, p, c).max(axis=(2, 4))


def reference_forward(layer, x, activation=lambda t: t):
    """Returns (outputs, scores, features) computed with NumPy from `layer`'s weights."""
    import keras

    x = np.asarray(x, dtype=np.float64)
    heads, dk, dv = layer.num_heads, layer._key_dim, layer._value_dim
    b, h, w, _ = x.shape
    q = conv1x1(x, layer.query_conv).reshape(b, h * w, heads, dk)
    k = max_pool_same(conv1x1(x, layer.key_conv), layer.kv_pool)
    v = max_pool_same(conv1x1(x, layer.value_conv), layer.kv_pool)
    k = k.reshape(b, -1, heads, dk)
    v = v.reshape(b, -1, heads, dv)
    logits = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(dk)
    logits -= logits.max(axis=-1, keepdims=True)
    scores = np.exp(logits)
    scores /= scores.sum(axis=-1, keepdims=True)  # (B, heads, HW, S)
    context = np.einsum("bhts,bshd->bthd", scores, v).reshape(b, h, w, heads * dv)
    gamma = float(keras.ops.convert_to_numpy(layer.gamma))
    branch = activation(conv1x1(context, layer.output_conv))
    shortcut = x if layer.shortcut_conv is None else conv1x1(x, layer.shortcut_conv)
    return shortcut + gamma * branch, scores, gamma * context

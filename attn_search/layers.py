"""The self-attention layer: SAGAN-style attention made of 1x1 convolutions, for Keras 3.

Written with `keras.ops` and Keras layers only, so it runs on the TensorFlow, JAX and PyTorch
backends.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

from attn_search._attention_ops import attend, scores_shape

__all__ = ["SelfAttentionConv2D", "SelfAttention_Conv2D", "attention_layers"]

_SCORE_MODES = {False: None, None: None, True: "scores", "scores": "scores", "features": "features"}


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _score_mode(requested) -> str | None:
    """`return_attention_scores` -> None, "scores" or "features"; raises for anything else."""
    if not isinstance(requested, (bool, str)) or requested not in _SCORE_MODES:
        raise ValueError(
            "`return_attention_scores` must be False, True, 'scores' or 'features'. "
            f"Received: return_attention_scores={requested!r}"
        )
    return _SCORE_MODES[requested]


def _check_arguments(filters, num_heads, key_dim, value_dim, gamma, kv_pool, scores, fused,
                     query_block=None):  # fmt: skip
    """Raises ValueError, naming the argument, for a constructor argument out of its range."""
    for arg, value, optional in (
        ("filters", filters, True),
        ("num_heads", num_heads, False),
        ("key_dim", key_dim, True),
        ("value_dim", value_dim, True),
    ):
        if not ((optional and value is None) or _is_positive_int(value)):
            allowed = "a positive integer or None" if optional else "a positive integer"
            raise ValueError(f"`{arg}` must be {allowed}. Received: {arg}={value!r}")
    if not _is_positive_int(kv_pool):
        raise ValueError(
            "`kv_pool` must be a positive integer (1 = no pooling of keys and values). "
            f"Received: kv_pool={kv_pool!r}"
        )
    if (
        not isinstance(gamma, numbers.Real)
        or isinstance(gamma, bool)
        or not math.isfinite(float(gamma))
    ):
        raise ValueError(f"`gamma` must be a finite number. Received: gamma={gamma!r}")
    _score_mode(scores)
    if fused not in (None, True, False):
        raise ValueError(
            "`use_fused_attention` must be True, False or None (automatic). "
            f"Received: use_fused_attention={fused!r}"
        )
    if not (query_block is None or _is_positive_int(query_block)):
        raise ValueError(
            "`query_block` must be a positive integer (query positions per block) or None "
            f"(automatic). Received: query_block={query_block!r}"
        )


def _activation(activation):
    try:
        return keras.activations.get(activation)
    except (ValueError, TypeError):
        raise ValueError(
            "`activation` must be the name of a Keras activation (e.g. 'relu', 'tanh') or "
            f"a callable. Received: activation={activation!r}"
        ) from None


def _input_channels(input_shape) -> int:
    """The number of channels of a 4D input shape; raises for any other shape."""
    if len(input_shape) != 4:
        raise ValueError(
            "SelfAttentionConv2D expects a 4D input (batch, height, width, channels). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    if input_shape[-1] is None:
        raise ValueError(
            "SelfAttentionConv2D needs the number of input channels (the last axis) to be "
            f"known. Received: input_shape={tuple(input_shape)}"
        )
    return int(input_shape[-1])


def _conv1x1(layer: keras.layers.Layer, units: int, name: str, input_shape):
    """A built 1x1 convolution with `layer`'s kernel initializer, regularizer and dtype."""
    conv = keras.layers.Conv2D(
        units,
        kernel_size=1,
        kernel_initializer=layer.kernel_initializer,
        kernel_regularizer=layer.kernel_regularizer,
        dtype=layer.dtype_policy,
        name=name,
    )
    conv.build(input_shape)
    return conv


def _extra_output_shape(mode: str, input_shape, num_heads: int, value_dim, kv_pool: int):
    """The shape of what the layer returns beside its outputs: features or scores."""
    batch, height, width, channels = input_shape
    if mode == "features":
        _, dv = _head_dims(int(channels), num_heads, None, value_dim)
        return (batch, height, width, num_heads * dv)
    return scores_shape(batch, height, width, num_heads, kv_pool)


def _head_dims(channels: int, num_heads: int, key_dim, value_dim) -> tuple[int, int]:
    """Each head's key and value widths: the given ones, else SAGAN's C/8 and C, split."""
    return (
        key_dim or max(1, channels // (8 * num_heads)),
        value_dim or max(1, channels // num_heads),
    )


@keras.saving.register_keras_serializable(package="attn_search")
class SelfAttentionConv2D(keras.layers.Layer):
    """Self-attention over the spatial positions of a feature map (SAGAN, arXiv 1805.08318).

    Query, key and value are 1x1 convolutions of the input. Each of `num_heads` heads attends
    from every position to every (optionally pooled) position with its own slice of the
    projections, and a 1x1 output convolution mixes the heads' results into `filters` channels:

    ```
    Q = W_q(x)                    # (B, H*W, heads, key_dim)
    K = pool(W_k(x))              # (B, H_k*W_k, heads, key_dim)
    V = pool(W_v(x))              # (B, H_k*W_k, heads, value_dim)
    A_h = softmax(Q_h K_h^T / sqrt(key_dim))      # over the keys, one map per head
    context = concat_h(A_h V_h)   # (B, H, W, heads * value_dim)
    y = shortcut(x) + gamma * act(W_o(context))
    ```

    `gamma` is a trainable scalar, so it alone sets the attention branch's influence and
    `gamma=0` gives exactly `shortcut(x)`. `shortcut` is the identity when the output has as
    many channels as the input, otherwise a learned 1x1 convolution (C -> filters): that is what
    lets the layer change the channel count, e.g. as the first layer of a model.

    `pool` is max-pooling of keys and values by `kv_pool` in both spatial directions (as in the
    official SAGAN and BigGAN code), which divides attention memory and time by `kv_pool**2`.
    Maps whose sides are not multiples of `kv_pool` are padded ("same" pooling), so
    `H_k = ceil(H / kv_pool)`; a map smaller than `kv_pool` pools to a single key.

    Args:
        filters: Number of output channels. Defaults to `None`: as many as the input, so the
            output shape equals the input shape.
        num_heads: Number of attention heads. Internal only: it never changes the output
            shape. Defaults to 1.
        key_dim: Width of each head's query and key. Defaults to `max(1, C // (8 * num_heads))`
            for C input channels (SAGAN's C/8).
        value_dim: Width of each head's value. Defaults to `max(1, C // num_heads)`.
        activation: Activation applied to the attention branch after the output convolution:
            a Keras activation name or a callable. Defaults to `None` (linear).
        gamma: Initial value of the learned scale of the attention branch. Defaults to 0.01.
        kv_pool: Spatial pooling factor for keys and values. Defaults to 1 (no pooling).
        return_attention_scores: What the layer also returns, unless the call says otherwise:
            `False` (just the outputs), `True` or `"scores"` (the attention maps), or
            `"features"` (the attended features scaled by gamma, `gamma * context`, before the
            output convolution: what the Keras 2 reference layer returned). Defaults to `False`.
        use_fused_attention: Whether to compute attention with
            `keras.ops.dot_product_attention`. Defaults to `None`: on the JAX and PyTorch
            backends, which have fused kernels, when no scores are requested, the compute dtype
            is float32 and `key_dim == value_dim`; on TensorFlow the explicit matmul path,
            which measured faster there (see `benchmarks/bench_layer.py`).
        query_block: Query positions attended at a time on the default path (no scores,
            not fused), the backward pass recomputing each block's part of the attention
            matrix: memory grows with the block, not the map. Defaults to `None`: automatic
            (about 8 MiB of the matrix per block; README, "Large maps"); `>= H*W`: no blocks.
        kernel_initializer: Initializer of the 1x1 convolutions' kernels.
            Defaults to `"glorot_uniform"`.
        kernel_regularizer: Regularizer of the 1x1 convolutions' kernels. Defaults to `None`.
        **kwargs: Base layer keyword arguments, such as `name`, `dtype` and `trainable`.

    Call arguments:
        inputs: A 4D tensor `(B, H, W, C)`, channels last. B, H and W may be unknown.
        return_attention_scores: Overrides the constructor's setting for this call.

    Returns:
        `outputs` of shape `(B, H, W, filters)`; with scores, `(outputs, scores)` where
        `scores` has shape `(B, num_heads, H*W, H_k*W_k)` and each row sums to 1 (the convention
        of `keras.layers.MultiHeadAttention`); with `"features"`, `(outputs, features)` where
        `features` has shape `(B, H, W, num_heads * value_dim)`.

    Raises:
        ValueError: For an argument out of its range, or an input that is not 4D with a known
            number of channels.

    Example:

    >>> import numpy as np, keras
    >>> from attn_search import SelfAttentionConv2D
    >>> x = np.random.rand(2, 28, 28, 1).astype("float32")
    >>> layer = SelfAttentionConv2D(filters=8, num_heads=2, kv_pool=2)
    >>> y, scores = layer(x, return_attention_scores=True)
    >>> tuple(y.shape), tuple(scores.shape)
    ((2, 28, 28, 8), (2, 2, 784, 196))
    """

    def __init__(
        self,
        filters: int | None = None,
        num_heads: int = 1,
        key_dim: int | None = None,
        value_dim: int | None = None,
        activation=None,
        gamma: float = 0.01,
        kv_pool: int = 1,
        return_attention_scores: bool | str = False,
        use_fused_attention: bool | None = None,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        query_block: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_arguments(filters, num_heads, key_dim, value_dim, gamma, kv_pool,
                         return_attention_scores, use_fused_attention, query_block)  # fmt: skip
        self.activation = _activation(activation)
        self.filters = None if filters is None else int(filters)
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.value_dim = None if value_dim is None else int(value_dim)
        self.gamma_init = float(gamma)
        self.kv_pool = int(kv_pool)
        self.return_attention_scores = return_attention_scores
        self.use_fused_attention = use_fused_attention
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.query_block = None if query_block is None else int(query_block)

    # -- construction ------------------------------------------------------------------------

    def build(self, input_shape):
        channels = _input_channels(input_shape)
        heads = self.num_heads
        self._channels = channels
        self._out_channels = self.filters or channels
        self._key_dim, self._value_dim = _head_dims(channels, heads, self.key_dim, self.value_dim)
        self.query_conv = _conv1x1(self, heads * self._key_dim, "query", input_shape)
        self.key_conv = _conv1x1(self, heads * self._key_dim, "key", input_shape)
        self.value_conv = _conv1x1(self, heads * self._value_dim, "value", input_shape)
        context_shape = tuple(input_shape[:-1]) + (heads * self._value_dim,)
        self.output_conv = _conv1x1(self, self._out_channels, "output", context_shape)
        self.shortcut_conv = None
        if self._out_channels != channels:
            self.shortcut_conv = _conv1x1(self, self._out_channels, "shortcut", input_shape)
        self.kv_pooling = None
        if self.kv_pool > 1:
            self.kv_pooling = keras.layers.MaxPooling2D(
                pool_size=self.kv_pool, padding="same", dtype=self.dtype_policy, name="kv_pool"
            )
        initial = keras.initializers.Constant(self.gamma_init)
        self.gamma = self.add_weight(name="gamma", shape=(), initializer=initial, trainable=True)
        self.built = True

    # -- forward -----------------------------------------------------------------------------

    def _mode(self, return_attention_scores):
        requested = return_attention_scores
        return _score_mode(self.return_attention_scores if requested is None else requested)

    def call(self, inputs, return_attention_scores=None):
        mode = self._mode(return_attention_scores)
        heads, dv = self.num_heads, self._value_dim
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]

        query = self.query_conv(inputs)  # (B, H, W, heads*dk)
        key = self.key_conv(inputs)  # (B, H, W, heads*dk)
        value = self.value_conv(inputs)  # (B, H, W, heads*dv)
        if self.kv_pooling is not None:
            key = self.kv_pooling(key)  # (B, Hk, Wk, heads*dk)
            value = self.kv_pooling(value)  # (B, Hk, Wk, heads*dv)
        context, scores = attend(
            query,
            key,
            value,
            heads,
            fused=self.use_fused_attention,
            scores=mode == "scores",
            compute_dtype=self.compute_dtype,
            query_block=self.query_block,
        )  # context: (B, HW, heads, dv)
        context = ops.reshape(context, (batch, height, width, heads * dv))  # (B, H, W, heads*dv)
        gamma = ops.cast(self.gamma, context.dtype)
        branch = self.activation(self.output_conv(context))  # (B, H, W, filters)
        shortcut = inputs if self.shortcut_conv is None else self.shortcut_conv(inputs)
        outputs = shortcut + gamma * branch
        if mode == "scores":
            return outputs, scores
        if mode == "features":
            return outputs, gamma * context
        return outputs

    # -- shapes and config -------------------------------------------------------------------

    def compute_output_shape(self, input_shape):
        _input_channels(input_shape)
        return tuple(input_shape[:-1]) + (self.filters or int(input_shape[-1]),)

    def compute_output_spec(self, inputs, return_attention_scores=None):
        mode = self._mode(return_attention_scores)
        shape = tuple(inputs.shape)
        outputs = keras.KerasTensor(self.compute_output_shape(shape), dtype=self.compute_dtype)
        if mode is None:
            return outputs
        extra = _extra_output_shape(mode, shape, self.num_heads, self.value_dim, self.kv_pool)
        return outputs, keras.KerasTensor(extra, dtype=self.compute_dtype)

    def get_config(self):
        base = super().get_config()
        own = {
            "filters": self.filters,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "activation": keras.activations.serialize(self.activation),
            "gamma": self.gamma_init,
            "kv_pool": self.kv_pool,
            "return_attention_scores": self.return_attention_scores,
            "use_fused_attention": self.use_fused_attention,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "query_block": self.query_block,
        }
        return {**base, **own}


@keras.saving.register_keras_serializable(package="attn_search")
class SelfAttention_Conv2D(SelfAttentionConv2D):  # noqa: N801 (the reference layer's name)
    """`SelfAttentionConv2D` under the Keras 2 reference layer's name and signature.

    `SelfAttention_Conv2D(filters=None, num_heads=None, gamma=0.01, activation='linear',
    return_attention_scores=False, trainable=True)` runs the reference notebook's code with only
    its import line changed. Unlike the reference, `num_heads` means real attention heads
    (`None` = 1), gamma is a tracked trainable weight, the layer saves and reloads, and the
    residual path works for any `filters`.

    Example:

    >>> import keras
    >>> from attn_search import SelfAttention_Conv2D
    >>> model = keras.Sequential([keras.Input((28, 28, 1)), SelfAttention_Conv2D(filters=8)])
    >>> model.output_shape
    (None, 28, 28, 8)
    """

    def __init__(
        self,
        filters=None,
        num_heads=None,
        gamma=0.01,
        activation="linear",
        return_attention_scores=False,
        trainable=True,
        **kwargs,
    ):
        super().__init__(
            filters=filters,
            num_heads=1 if num_heads is None else num_heads,
            gamma=gamma,
            activation=activation,
            return_attention_scores=return_attention_scores,
            trainable=trainable,
            **kwargs,
        )


def attention_layers(model: keras.Model) -> list[SelfAttentionConv2D]:
    """The `SelfAttentionConv2D` layers of `model`, nested models included, in order."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, SelfAttentionConv2D):
            found.append(layer)
        found.extend(attention_layers(layer))
    return found

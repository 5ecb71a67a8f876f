"""The self-attention layer: SAGAN-style attention made of 1x1 convolutions, for Keras 3.

Written with `keras.ops` and Keras layers only, so it runs on the TensorFlow, JAX and PyTorch
backends.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

__all__ = ["SelfAttentionConv2D", "SelfAttention_Conv2D"]

_SCORE_MODES = {False: None, None: None, True: "scores", "scores": "scores", "features": "features"}


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _with_ones(x):
    """Appends a channel of ones: `[x, 1] @ ...` then also yields the row sums, in one matmul."""
    return ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)


# Up to this many columns (key_dim * (value_dim + 1)), the backward pass regroups its sums so
# that it never writes a (T, S) matrix; beyond it, that costs more arithmetic than it saves.
_FACTORED_GRAD_MAX_COLUMNS = 16


@ops.custom_gradient
def _softmax_attention(q, k, v):
    """`softmax(q k^T) v` over the last two axes, with a hand-written gradient.

    Shapes: q (..., T, d), k (..., S, d), v (..., S, dv) -> (..., T, dv), all float32.

    Autodiff of `matmul(softmax(matmul(q, k^T)), v)` makes about a dozen passes over the
    (T, S) attention matrix in the backward pass. This version makes fewer: the softmax
    normaliser comes out of the value matmul (`e @ [v, 1]`), the softmax gradient's row sums
    come from the small (T, dv) tensors (`sum(dA * A) = sum(dctx * ctx)`), and every matmul
    transposes only the small operand. With one key channel, the row maxima needed for a
    stable exp come from k's extremes without a pass over the matrix. Measured in
    benchmarks/bench_layer.py.
    """
    if q.shape[-1] == 1:
        # max_j q_i k_j = q_i * (max k if q_i >= 0 else min k), exactly.
        k_max = ops.max(k, axis=-2, keepdims=True)  # (..., 1, 1)
        k_min = ops.min(k, axis=-2, keepdims=True)
        row_max = ops.where(q >= 0, q * k_max, q * k_min)  # (..., T, 1)
        # exp(q k^T - row_max) as a single matmul: [q, -row_max] @ [k, 1]^T
        e = ops.exp(
            ops.matmul(ops.concatenate([q, -row_max], -1), ops.swapaxes(_with_ones(k), -1, -2))
        )  # (..., T, S)
    else:
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., T, S)
        e = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True)))
    v1 = _with_ones(v)  # (..., S, dv + 1)
    weighted = ops.matmul(e, v1)  # (..., T, dv + 1)
    denominator = weighted[..., -1:]  # (..., T, 1)
    context = weighted[..., :-1] / denominator  # (..., T, dv)

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        d_numerator = upstream / denominator  # (..., T, dv)
        d_denominator = -ops.sum(upstream * context, axis=-1, keepdims=True) / denominator
        d_weighted = ops.concatenate([d_numerator, d_denominator], -1)  # (..., T, dv + 1)
        d_key, d_val = q.shape[-1], v1.shape[-1]
        if d_key * d_val <= _FACTORED_GRAD_MAX_COLUMNS:
            # dL_ij = e_ij * (d_weighted_i . v1_j) is never materialised: both reductions of
            # dL are regrouped into one matmul each with e, so the backward pass reads the
            # (T, S) matrix twice and writes nothing of that size.
            #   d_q_i[a] = sum_c d_weighted_ic * (e @ (k[a] * v1[c]))_i
            #   d_k_j[a] = sum_c v1_jc * (e^T @ (q[a] * d_weighted[c]))_j,  d_v = e^T @ d_num
            k_v1 = ops.reshape(
                ops.expand_dims(k, -1) * ops.expand_dims(v1, -2),
                (*ops.shape(k)[:-1], d_key * d_val),
            )  # (..., S, d*(dv+1))
            e_kv = ops.matmul(e, k_v1)  # (..., T, d*(dv+1))
            e_kv = ops.reshape(
                e_kv, (*ops.shape(e_kv)[:-1], d_key, d_val)
            )
            d_q = ops.sum(e_kv * ops.expand_dims(d_weighted, -2), axis=-1)  # (..., T, d)
            q_dw = ops.reshape(
                ops.expand_dims(q, -1) * ops.expand_dims(d_weighted, -2),
                (*ops.shape(q)[:-1], d_key * d_val),
            )  # (..., T, d*(dv+1))
            small = ops.concatenate([q_dw, d_numerator], -1)  # (..., T, d*(dv+1) + dv)
            reduced = ops.swapaxes(ops.matmul(ops.swapaxes(small, -1, -2), e), -1, -2)
            # reduced: (..., S, d*(dv+1) + dv)
            e_q = ops.reshape(
                reduced[..., : d_key * d_val],
                (*ops.shape(reduced)[:-1], d_key, d_val),
            )
            d_k = ops.sum(e_q * ops.expand_dims(v1, -2), axis=-1)  # (..., S, d)
            d_v = reduced[..., d_key * d_val :]  # (..., S, dv)
            return d_q, d_k, d_v
        # dE = [d_num, d_den] @ [v, 1]^T, then through exp: dL = dE * e  (..., T, S)
        d_logits = ops.matmul(d_weighted, ops.swapaxes(v1, -1, -2)) * e
        d_q = ops.matmul(d_logits, k)  # (..., T, d)
        # d_logits^T @ q and e^T @ d_num, computed as (small^T @ big)^T
        d_k = ops.swapaxes(ops.matmul(ops.swapaxes(q, -1, -2), d_logits), -1, -2)
        d_v = ops.swapaxes(ops.matmul(ops.swapaxes(d_numerator, -1, -2), e), -1, -2)
        return d_q, d_k, d_v

    return context, grad


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
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        if not isinstance(return_attention_scores, (bool, str)) or (
            return_attention_scores not in _SCORE_MODES
        ):
            raise ValueError(
                "`return_attention_scores` must be False, True, 'scores' or 'features'. "
                f"Received: return_attention_scores={return_attention_scores!r}"
            )
        if use_fused_attention not in (None, True, False):
            raise ValueError(
                "`use_fused_attention` must be True, False or None (automatic). "
                f"Received: use_fused_attention={use_fused_attention!r}"
            )
        try:
            self.activation = keras.activations.get(activation)
        except (ValueError, TypeError):
            raise ValueError(
                "`activation` must be the name of a Keras activation (e.g. 'relu', 'tanh') or "
                f"a callable. Received: activation={activation!r}"
            ) from None
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

    # -- construction ------------------------------------------------------------------------

    def _check_input_shape(self, input_shape) -> int:
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

    def build(self, input_shape):
        channels = self._check_input_shape(input_shape)
        heads = self.num_heads
        self._channels = channels
        self._out_channels = self.filters or channels
        self._key_dim = self.key_dim or max(1, channels // (8 * heads))
        self._value_dim = self.value_dim or max(1, channels // heads)

        def conv(units, name):
            return keras.layers.Conv2D(
                units,
                kernel_size=1,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name=name,
            )

        self.query_conv = conv(heads * self._key_dim, "query")
        self.key_conv = conv(heads * self._key_dim, "key")
        self.value_conv = conv(heads * self._value_dim, "value")
        self.output_conv = conv(self._out_channels, "output")
        self.query_conv.build(input_shape)
        self.key_conv.build(input_shape)
        self.value_conv.build(input_shape)
        self.output_conv.build(tuple(input_shape[:-1]) + (heads * self._value_dim,))
        if self._out_channels != channels:
            self.shortcut_conv = conv(self._out_channels, "shortcut")
            self.shortcut_conv.build(input_shape)
        else:
            self.shortcut_conv = None
        if self.kv_pool > 1:
            self.kv_pooling = keras.layers.MaxPooling2D(
                pool_size=self.kv_pool, padding="same", dtype=self.dtype_policy, name="kv_pool"
            )
        else:
            self.kv_pooling = None
        self.gamma = self.add_weight(
            name="gamma",
            shape=(),
            initializer=keras.initializers.Constant(self.gamma_init),
            trainable=True,
        )
        self.built = True

    # -- forward -----------------------------------------------------------------------------

    def _mode(self, return_attention_scores):
        requested = (
            self.return_attention_scores
            if return_attention_scores is None
            else return_attention_scores
        )
        if not isinstance(requested, (bool, str)) or requested not in _SCORE_MODES:
            raise ValueError(
                "`return_attention_scores` must be False, True, 'scores' or 'features'. "
                f"Received: return_attention_scores={requested!r}"
            )
        return _SCORE_MODES[requested]

    def _fused(self, mode) -> bool:
        if mode == "scores" or self._key_dim != self._value_dim:
            return False
        if self.compute_dtype != "float32":
            return False  # keep the softmax in float32 under mixed precision
        if self.use_fused_attention is not None:
            return self.use_fused_attention
        return keras.backend.backend() in ("jax", "torch")

    def call(self, inputs, return_attention_scores=None):
        mode = self._mode(return_attention_scores)
        heads, dk, dv = self.num_heads, self._key_dim, self._value_dim
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]

        query = self.query_conv(inputs)  # (B, H, W, heads*dk)
        key = self.key_conv(inputs)  # (B, H, W, heads*dk)
        value = self.value_conv(inputs)  # (B, H, W, heads*dv)
        if self.kv_pooling is not None:
            key = self.kv_pooling(key)  # (B, Hk, Wk, heads*dk)
            value = self.kv_pooling(value)  # (B, Hk, Wk, heads*dv)
        scale = 1.0 / math.sqrt(dk)

        scores = None
        if self._fused(mode):
            context = ops.dot_product_attention(
                ops.reshape(query, (batch, -1, heads, dk)),  # (B, HW, heads, dk)
                ops.reshape(key, (batch, -1, heads, dk)),  # (B, S, heads, dk)
                ops.reshape(value, (batch, -1, heads, dv)),  # (B, S, heads, dv)
                scale=scale,
            )  # (B, HW, heads, dv)
        else:
            if heads == 1:
                # One head: no transposes at all.
                q = ops.reshape(query, (batch, -1, dk))  # (B, HW, dk)
                k = ops.reshape(key, (batch, -1, dk))  # (B, S, dk)
                v = ops.reshape(value, (batch, -1, dv))  # (B, S, dv)
            else:
                q = ops.transpose(ops.reshape(query, (batch, -1, heads, dk)), (0, 2, 1, 3))
                k = ops.transpose(ops.reshape(key, (batch, -1, heads, dk)), (0, 2, 1, 3))
                v = ops.transpose(ops.reshape(value, (batch, -1, heads, dv)), (0, 2, 1, 3))
                # q: (B, heads, HW, dk), k: (B, heads, S, dk), v: (B, heads, S, dv)
            # The softmax runs in float32, also under mixed precision.
            q = ops.cast(q, "float32") * scale
            k = ops.cast(k, "float32")
            v32 = ops.cast(v, "float32")
            if mode == "scores":
                logits = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., HW, S)
                weights = ops.softmax(logits, axis=-1)
                context = ops.matmul(weights, v32)  # (..., HW, dv)
                scores = ops.cast(weights, self.compute_dtype)
                if heads == 1:
                    scores = ops.expand_dims(scores, 1)  # (B, 1, HW, S)
            else:
                context = _softmax_attention(q, k, v32)  # (..., HW, dv)
            context = ops.cast(context, v.dtype)
            if heads > 1:
                context = ops.transpose(context, (0, 2, 1, 3))  # (B, HW, heads, dv)

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
        self._check_input_shape(input_shape)
        return tuple(input_shape[:-1]) + (self.filters or int(input_shape[-1]),)

    def compute_output_spec(self, inputs, return_attention_scores=None):
        mode = self._mode(return_attention_scores)
        shape = tuple(inputs.shape)
        outputs = keras.KerasTensor(self.compute_output_shape(shape), dtype=self.compute_dtype)
        if mode is None:
            return outputs
        batch, height, width, channels = shape
        heads = self.num_heads
        if mode == "features":
            dv = self.value_dim or max(1, int(channels) // heads)
            return outputs, keras.KerasTensor(
                (batch, height, width, heads * dv), dtype=self.compute_dtype
            )
        pool = self.kv_pool
        queries = None if height is None or width is None else height * width
        keys = (
            None
            if height is None or width is None
            else math.ceil(height / pool) * math.ceil(width / pool)
        )
        return outputs, keras.KerasTensor((batch, heads, queries, keys), dtype=self.compute_dtype)

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

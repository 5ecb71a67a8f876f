"""The optimizer's update of each variable in one TensorFlow training kernel.

Keras' optimizers (3.15, TensorFlow backend) build their update from `keras.ops`: Adam's update
of one variable is about twenty small operations (casts, powers, the moments, the step), each a
node TensorFlow traces, optimizes and then runs at every step, and each variable goes through the
distribution machinery on its own. For the small networks a search trains, that is about half
of the time spent tracing a training step, and a good part of each step. TensorFlow's fused
training kernels (`ResourceApplyAdam`, `ResourceApplyKerasMomentum`, ...) do the same update in
one operation per variable, with the same formula:

- Adam (and AdamW, whose weight decay Keras applies before the update, unchanged):
  `m += (g - m)(1 - beta_1)`, `v += (g^2 - v)(1 - beta_2)`,
  `w -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)`;
- SGD with momentum (not Nesterov): `a = momentum a - lr g`, `w += a`; without momentum
  `w -= lr g`.

`use_kernels(model)` swaps them in for one compiled model's optimizer when they are exactly
equivalent: a float32 Adam/AdamW without `amsgrad`, or an SGD without Nesterov, on TensorFlow,
outside any distribution strategy. Anything else (other optimizers, mixed precision's
loss-scale wrapper, another backend) keeps Keras' own update. Only the optimizer instance
changes; its config, its variables and the saved model are as before. Tested against Keras'
update in `tests/test_kernel_updates.py`; `_reference.KERAS_UPDATES` switches it off for the
benchmark of the old way.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["use_kernels"]


def use_kernels(model: Any) -> bool:
    """Makes `model`'s optimizer update its variables with TensorFlow's fused kernels.

    Returns whether it did (see the module's docstring for when it does). Idempotent.
    """
    from attn_search.runner import _reference

    optimizer = getattr(model, "optimizer", None)
    if _reference.KERAS_UPDATES or optimizer is None or keras.backend.backend() != "tensorflow":
        return False
    if getattr(optimizer, "_attn_search_kernels", False):
        return True
    update = _kernel_update(optimizer)
    if update is None:
        return False
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return False
    optimizer._distributed_tf_update_step = update  # what Keras' `_backend_update_step` calls
    optimizer._attn_search_kernels = True
    return True


def _kernel_update(optimizer: Any):
    """The replacement of `optimizer._distributed_tf_update_step`, or `None` when not exact."""
    kind = type(optimizer)
    if kind in (keras.optimizers.Adam, keras.optimizers.AdamW) and not optimizer.amsgrad:
        return _adam(optimizer)
    if kind is keras.optimizers.SGD and not optimizer.nesterov:
        return _sgd(optimizer)
    return None


def _float32(grads_and_vars) -> bool:
    """Dense float32 gradients of float32 variables only (else Keras' own update)."""
    import tensorflow as tf

    return all(
        v.dtype == "float32" and not isinstance(g, tf.IndexedSlices) for g, v in grads_and_vars
    )


def _guarded(optimizer: Any, apply):
    """`optimizer._distributed_tf_update_step` replaced by `apply(grads_and_vars, lr)` where
    every gradient and variable is dense float32, Keras' own update elsewhere."""
    keras_update = optimizer._distributed_tf_update_step

    def update(distribution, grads_and_vars, learning_rate):
        import tensorflow as tf

        grads_and_vars = list(grads_and_vars)
        if not _float32(grads_and_vars):
            return keras_update(distribution, grads_and_vars, learning_rate)
        return apply(grads_and_vars, tf.cast(learning_rate, tf.float32))

    return update


def _adam(optimizer: Any):
    import tensorflow as tf

    def apply(grads_and_vars, lr):
        step = tf.cast(optimizer.iterations + 1, tf.float32)
        beta_1 = tf.constant(optimizer.beta_1, tf.float32)
        beta_2 = tf.constant(optimizer.beta_2, tf.float32)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        epsilon = tf.constant(optimizer.epsilon, tf.float32)
        for grad, var in grads_and_vars:
            index = optimizer._get_variable_index(var)
            m, v = optimizer._momentums[index].value, optimizer._velocities[index].value
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=lr,
                beta1=beta_1,
                beta2=beta_2,
                epsilon=epsilon,
                grad=tf.cast(grad, tf.float32),
                use_locking=False,
                use_nesterov=False,
            )

    return _guarded(optimizer, apply)


def _sgd(optimizer: Any):
    import tensorflow as tf

    def apply(grads_and_vars, lr):
        momentum = tf.constant(optimizer.momentum, tf.float32)
        for grad, var in grads_and_vars:
            grad = tf.cast(grad, tf.float32)
            if not optimizer.momentum:
                tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr, delta=grad)
                continue
            accumulator = optimizer.momentums[optimizer._get_variable_index(var)].value
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=var.handle,
                accum=accumulator.handle,
                lr=lr,
                grad=grad,
                momentum=momentum,
                use_locking=False,
                use_nesterov=False,
            )

    return _guarded(optimizer, apply)

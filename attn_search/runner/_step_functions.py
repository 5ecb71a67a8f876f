"""Training and evaluation steps traced as one function each, returning their logs directly.

Keras (3.15, TensorFlow backend) wraps each step in two `tf.function`s: an outer one that takes
the batch from the iterator and wraps the step's logs in a `tf.experimental.Optional` (so that
`steps_per_execution` > 1 can loop), and an inner one for the step itself, called from the outer
graph. With one step per execution, every step then pays for two eager operations on the
Optional (`has_value`, `get_value`) and a nested function call, and every fit traces two
functions instead of one. For the small networks of a search that is about a tenth of each
training step, and a tenth of its tracing (measured on digits: 4.37 against 4.94 ms a step, and
5.2 against 6.1 s of first calls over a search's ten trials).

`use_direct_steps(model)` gives a compiled model one `tf.function` per step instead: it takes
the next batch from the iterator and returns the step's logs. The step is Keras' own
(`train_step`, `test_step`: the same loss, optimizer update and metrics); the end of the data
is TensorFlow's `OutOfRangeError`, which Keras' fit and evaluate loops already turn into the end
of the epoch. With `jit_compile`, the step is compiled by XLA in a function of its own (the
iterator cannot be), as Keras does. A model under a distribution strategy, with more than one
step per execution, or run eagerly keeps Keras' functions. `_reference.KERAS_STEP_FUNCTIONS`
switches this off for the benchmark of the old way.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["use_direct_steps"]


def use_direct_steps(model: Any) -> bool:
    """Gives `model` direct training and evaluation functions (see the module's docstring).

    Returns whether it did. Idempotent: a model that has them keeps them (and what they traced).
    """
    from attn_search.runner import _reference

    if getattr(getattr(model, "train_function", None), "attn_search_direct", False):
        return True
    if (
        _reference.KERAS_STEP_FUNCTIONS
        or keras.backend.backend() != "tensorflow"
        or getattr(model, "run_eagerly", False)
        or getattr(model, "steps_per_execution", 1) != 1
    ):
        return False
    import tensorflow as tf

    if tf.distribute.has_strategy() or model.distribute_strategy is not (
        tf.distribute.get_strategy()
    ):
        return False
    jit = bool(getattr(model, "jit_compile", False))
    model.train_function = _direct(model.train_step, jit)
    model.test_function = _direct(model.test_step, jit)
    return True


def _direct(step: Any, jit: bool) -> Any:
    """One traced function: the next batch of an iterator through `step`, its logs returned."""
    import tensorflow as tf

    if jit:
        step = tf.function(step, reduce_retracing=True, jit_compile=True)

    @tf.autograph.experimental.do_not_convert
    def one_step(iterator):
        return step(iterator.get_next())

    function = tf.function(one_step, reduce_retracing=True)
    function.attn_search_direct = True
    return function

"""Accelerator options of a run: Keras mixed precision and XLA compilation, and TensorFlow's
graph optimizer off on machines without a GPU.

`compute_options` holds them for the models built and trained inside it; every fit the runner
makes calls `apply_jit(model)` before training (through `training.prepare_for_fit`), and the
runner calls `clear_session` here rather than Keras' own, which resets the dtype policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

__all__ = ["apply_jit", "clear_session", "compute_options", "graph_optimizer_off_on_cpu"]

_STATE: dict[str, Any] = {"jit_compile": False, "policy": None}


@contextlib.contextmanager
def compute_options(
    mixed_precision: str | None = None, jit_compile: bool = False
) -> Iterator[None]:
    """Mixed precision and XLA for the models built and trained inside; restored on exit.

    Args:
        mixed_precision: `"float16"` or `"bfloat16"`: Keras' global dtype policy becomes
            `mixed_<dtype>`, so models built inside compute in that dtype and keep float32
            weights. The classifier's softmax and the attention layer's softmax still run in
            float32, and Keras scales the loss of a float16 model (`LossScaleOptimizer`).
            `None` leaves the policy as it is.
        jit_compile: Whether `apply_jit` turns on XLA compilation of the training step
            (`model.jit_compile = True`); otherwise Keras decides (on TensorFlow: only with a
            GPU).
    """
    policy, previous = keras.config.dtype_policy(), dict(_STATE)
    _STATE["policy"] = None if mixed_precision is None else f"mixed_{mixed_precision}"
    _STATE["jit_compile"] = bool(jit_compile)
    if _STATE["policy"] is not None:
        keras.config.set_dtype_policy(_STATE["policy"])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        _STATE.update(previous)


def clear_session() -> None:
    """`keras.backend.clear_session()`, keeping the dtype policy of `compute_options`.

    Keras' `clear_session` resets the global dtype policy to float32.
    """
    keras.backend.clear_session()
    if _STATE["policy"] is not None:
        keras.config.set_dtype_policy(_STATE["policy"])


def apply_jit(model: Any) -> None:
    """Turns on XLA compilation of `model`'s training step when `compute_options` asked for it.

    Call it before the model's first `fit`: Keras keeps the training function it made first.
    """
    if _STATE["jit_compile"] and not model.jit_compile:
        model.jit_compile = True


@contextlib.contextmanager
def graph_optimizer_off_on_cpu() -> Iterator[bool]:
    """Switches TensorFlow's graph optimizer (grappler) off inside, on a machine without a GPU;
    yields whether it did.

    On CPU it made no training step of the search's networks faster (attention CNNs on 32x32x3
    images, batch 64: 28.3 ms a step without it against 29.2 ms with it at 16 filters, 131.8
    against 130.9 ms at 64 filters; the digits trials alike), while it runs on the first call of
    every traced function and, in tf.data, on the map functions of every new iterator (1.0 ms
    to start one without it, 3.0 ms with it): 4% of the default job. With a GPU it stays on (its
    layout and fusion passes are for GPUs). tf.data takes the setting when TensorFlow starts:
    a run in a process where TensorFlow already ran ops changes only the traced functions, and
    what tf.data took stays for the rest of that process. `_reference.GRAPPLER` keeps it on.
    """
    import tensorflow as tf

    from attn_search.runner import _reference

    if _reference.GRAPPLER or tf.config.list_physical_devices("GPU"):
        yield False
        return
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield True
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})

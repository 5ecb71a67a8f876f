"""Accelerator options of a run: Keras mixed precision and XLA compilation.

`compute_options` holds them for the models built and trained inside it; every fit the runner
makes calls `apply_jit(model)` before training (through `training.prepare_for_fit`), and the
runner calls `clear_session` here rather than Keras' own, which resets the dtype policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

__all__ = ["apply_jit", "clear_session", "compute_options"]

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

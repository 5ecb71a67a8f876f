"""Fitting one model: the epoch callback, the fit itself, and a small result object.

This module imports Keras; the runner imports it only when a run starts.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from attn_search.engines.base import EngineTrial
from attn_search.runner._compute import apply_jit
from attn_search.runner._fit_progress import FitProgressCallback
from attn_search.runner._interrupt import raise_pending
from attn_search.runner._kernel_updates import use_kernels
from attn_search.runner._step_functions import use_direct_steps
from attn_search.runner.progress import Progress

__all__ = [
    "EpochCallback",
    "FitResult",
    "build_for_fit",
    "copy_variables",
    "fit",
    "optimizer_config",
    "prepare_for_fit",
    "reinitialize",
    "reset_optimizer",
    "train_batches",
]


class EpochCallback(keras.callbacks.Callback):
    """Reports validation accuracy per epoch to the engine (pruning); stops on a NaN loss.

    Args:
        trial: The engine's trial to report to, or `None` (finalist fits: no pruning).

    Attributes:
        epochs: Epochs finished.
        pruned: Whether the engine asked to stop the trial.
        nan_at: `(epoch, batch)` (from 0) where the loss first was not finite, or `None`.
    """

    def __init__(self, trial: EngineTrial | None = None):
        super().__init__()
        self.trial = trial
        self.epochs = 0
        self.epoch = 0
        self.pruned = False
        self.nan_at: tuple[int, int] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        raise_pending()  # a Ctrl-C that came where Python would have ignored it
        # TerminateOnNaN, remembering where it happened.
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_at = (self.epoch, batch)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1
        if self.nan_at is not None or self.trial is None:
            return
        acc = (logs or {}).get("val_accuracy")
        if acc is not None and self.trial.report(epoch, float(acc)):
            self.pruned = True
            self.model.stop_training = True


@dataclasses.dataclass
class FitResult:
    """What one fit produced.

    Attributes:
        history: Keras' history (metric name -> one value per epoch).
        epochs: Epochs trained.
        pruned: Whether the engine stopped it early.
        nan_at: `(epoch, batch)` of a non-finite loss, or `None`.
        seconds: Wall time of `fit`.
    """

    history: dict[str, list[float]]
    epochs: int
    pruned: bool
    nan_at: tuple[int, int] | None
    seconds: float

    def best(self, metric: str, mode: str = "max") -> float | None:
        """The best finite value of `metric` over the epochs, or `None`."""
        values = np.asarray(self.history.get(metric, []), dtype=float)
        if not np.isfinite(values).any():
            return None
        return float(np.nanmax(values) if mode == "max" else np.nanmin(values))


def fit(
    hypermodel: Any,
    hp: Any,
    model: Any,
    data: Any,
    *,
    seed: int,
    epochs: int,
    trial: EngineTrial | None = None,
    verbose: int = 0,
    progress: Progress | None = None,
) -> FitResult:
    """Trains `model` (built by `hypermodel` from `hp`) on `data`'s train split.

    The train split is reshuffled each epoch with `seed`; validation runs after every epoch.
    `progress` (unless Keras prints its own, `verbose` > 0) hears of every batch.
    """
    batch = int(hp.values.get("train/batch_size") or 32) if hasattr(hp, "values") else 32
    callback = EpochCallback(trial)
    train = train_batches(data, batch, seed)
    callbacks: list[Any] = [callback]
    if progress is not None and not verbose:
        callbacks.append(FitProgressCallback(progress, epochs, steps_per_epoch(data, batch)))
    prepare_for_fit(model, train)
    t0 = time.monotonic()
    history = hypermodel.fit(
        hp,
        model,
        train,
        validation_data=data.val(batch),
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # Dataset.train shuffles, seeded
        verbose=verbose,
    )
    history = dict(history.history)
    return FitResult(
        history=history,
        epochs=callback.epochs or len(history.get("loss", [])),
        pruned=callback.pruned,
        nan_at=callback.nan_at,
        seconds=time.monotonic() - t0,
    )


def train_batches(data: Any, batch: int, seed: int) -> Any:
    """The train split as `fit` feeds it: reshuffled each epoch with `seed`, full batches."""
    train = data.train(batch, shuffle=True, seed=seed)
    n_train = int(data.info.sizes.get("train", 0))
    if n_train >= 2 * batch and n_train % batch:
        # Full batches only (the split is reshuffled each epoch, so a different remainder
        # sits out each time): a smaller last batch would make TensorFlow trace the training
        # step twice, which costs more than the training itself on small data.
        train = train.take(n_train // batch)
    return train


def steps_per_epoch(data: Any, batch: int) -> int | None:
    """Training batches per epoch as `train_batches` gives them, or `None` when unknown."""
    n_train = int(data.info.sizes.get("train", 0))
    steps = n_train // batch if n_train >= 2 * batch else math.ceil(n_train / batch)
    return steps or None


def prepare_for_fit(model: Any, dataset: Any) -> None:
    """What every fit the runner makes does to its compiled model before `fit`: XLA when
    `--jit-compile` asked for it, TensorFlow's fused optimizer kernels where exact, the
    optimizer's and metrics' variables created before the step is traced, and one traced
    function per step (`use_direct_steps`)."""
    apply_jit(model)
    use_kernels(model)
    build_for_fit(model, dataset)
    use_direct_steps(model)


def build_for_fit(model: Any, dataset: Any) -> None:
    """Creates a compiled model's optimizer and metric variables before `fit` traces its step.

    Keras (3.15, TensorFlow backend, no distribution strategy) leaves them to the first trace
    of the training step, and a `tf.function` that creates variables while tracing is traced a
    second time without: the costliest part of a small model's fit, done twice. Built here
    from one batch of zeros shaped like `dataset`'s (inference mode: no state moves), the step
    is traced once. A model whose optimizer is built already (a reused one) is left alone.
    """
    from attn_search.runner import _reference

    optimizer = getattr(model, "optimizer", None)
    if _reference.TRACE_IN_FIT or optimizer is None or optimizer.built:
        return
    x_spec, y_spec = dataset.element_spec[:2]

    def zeros(spec):
        return keras.ops.zeros((1, *spec.shape[1:]), dtype=spec.dtype.name)

    x = keras.tree.map_structure(zeros, x_spec)
    y = keras.tree.map_structure(zeros, y_spec)
    y_pred = model(x, training=False)
    model.compute_loss(x, y, y_pred, training=False)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    optimizer.build(model.trainable_variables)
    model.reset_metrics()
    # What a new build of this optimizer starts from (`reset_optimizer` puts it back).
    _INITIAL_OPTIMIZER_STATES[optimizer] = [
        keras.ops.convert_to_numpy(v.value) for v in optimizer.variables
    ]


# Optimizer -> its variables' values right after `build_for_fit` built it.
_INITIAL_OPTIMIZER_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def reset_optimizer(model: Any, config: Mapping[str, Any]) -> bool:
    """Puts `model`'s optimizer back to the state it was built with (zero moments, step 0,
    its learning rate), as a new optimizer with `config` starts; `False` (nothing changed) when
    its built state was not recorded (`build_for_fit`) or `config` is not its own."""
    optimizer = getattr(model, "optimizer", None)
    initial = _INITIAL_OPTIMIZER_STATES.get(optimizer) if optimizer is not None else None
    if initial is None or optimizer_config(optimizer) != dict(config):
        return False
    return copy_variables(optimizer.variables, initial)


def optimizer_config(optimizer: Any) -> dict[str, Any]:
    """An optimizer's configuration without its name (two equal ones update alike)."""
    return {k: v for k, v in optimizer.get_config().items() if k != "name"}


def reinitialize(model: Any, fresh: Any) -> Any:
    """Gives `model` the weights and optimizer state of `fresh`, a new build of the same config.

    A repeat with another seed is then training from scratch, while the model's traced training
    and evaluation functions are reused: tracing them costs more than training small models.
    The optimizer goes back to the state it was built with (`reset_optimizer`), or, when that
    was not recorded, takes that of `fresh`'s optimizer, built for it. Returns `fresh` itself
    when the two do not line up (nothing is reused then).
    """
    try:
        optimizer = getattr(model, "optimizer", None)
        new_optimizer = getattr(fresh, "optimizer", None)
        if optimizer is None or new_optimizer is None or type(optimizer) is not type(new_optimizer):
            return fresh
        # `variables`, not `weights`: dropout's seed-generator states restart from the seed too.
        if not copy_variables(model.variables, fresh.variables):
            return fresh
        if reset_optimizer(model, optimizer_config(new_optimizer)):
            return model
        if not getattr(new_optimizer, "built", False):
            new_optimizer.build(fresh.trainable_variables)
        if not copy_variables(optimizer.variables, new_optimizer.variables):
            return fresh
        return model
    except (ValueError, TypeError, AttributeError):  # zip(strict=True): a ValueError
        return fresh


def copy_variables(targets: Sequence[Any], sources: Sequence[Any]) -> bool:
    """Assigns each source's value (a variable or an array) to its target variable; `False`
    (nothing assigned) when the lists differ in length or in any shape."""
    targets, sources = list(targets), list(sources)
    if len(targets) != len(sources) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(targets, sources, strict=True)
    ):
        return False
    for target, source in zip(targets, sources, strict=True):
        target.assign(source)
    return True

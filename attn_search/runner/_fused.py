"""A finalist's networks for one seed, trained and tested as one Keras model.

The attention model and its plain and matched twins are independent networks, each built with
its own initial weights from the seed exactly as a fit of it alone would be. They become the
outputs of one model whose loss is the sum of theirs: each network's gradient is its own loss's
gradient, all see the same batches (which tightens the pairing), and one training step, one
validation pass and one traced function serve them all. Adam and the other optimizers update
each variable from its own gradient and state, so the update is the one a fit alone makes.

Early stopping stays per network: each network has its own copy of the space's
`EarlyStopping` (the one `AttentionCNN.fit` adds to a fit alone), fed that network's own
validation loss, and restores that network's best weights at the end. A network whose patience
ran out is still computed until every network has stopped (its later updates are thrown away
by the restore), so its result is what a fit alone gives. A network whose loss turns non-finite
is recorded as failed; the others train on (their gradients do not depend on it).

This module imports Keras; the runner imports it only when the finalist stage starts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from attn_search.runner._fit_progress import FitProgressCallback
from attn_search.runner._interrupt import raise_pending
from attn_search.runner._seeds import set_seed
from attn_search.runner.training import (
    copy_variables,
    optimizer_config,
    prepare_for_fit,
    reset_optimizer,
    steps_per_epoch,
    train_batches,
)

__all__ = ["GroupFit", "GroupModel", "build_group", "evaluate_group", "fit_group", "renew_group"]


@dataclasses.dataclass
class GroupModel:
    """The networks of one fit group and the model that trains them together.

    Attributes:
        model: The compiled multi-output model (one output per family, named by it).
        networks: Family -> its network (a layer of `model`, sharing its variables).
    """

    model: Any
    networks: dict[str, Any]


@dataclasses.dataclass
class GroupFit:
    """What one network's part of a group fit produced (the fields a `FitResult` has).

    Attributes:
        history: This network's metrics (`loss`, `accuracy`, `val_loss`, ...), one value per
            epoch it trained before it stopped.
        epochs: Epochs it trained (its early stopping counts, as alone).
        nan_at: `(epoch, batch)` of its first non-finite loss, or `None`.
        seconds: Wall time of the whole group's fit (shared by its networks).
    """

    history: dict[str, list[float]]
    epochs: int
    nan_at: tuple[int, int] | None
    seconds: float

    def best(self, metric: str) -> float | None:
        """The highest finite value of `metric` over the epochs, or `None`."""
        values = [v for v in self.history.get(metric, []) if math.isfinite(v)]
        return max(values) if values else None


def build_group(hypermodels: Mapping[str, Any], hp: Any, seed: int) -> GroupModel:
    """Builds each family's network from `hp` with its own weights from `seed`, and joins them.

    Each network is built right after `set_seed(seed)` (`keras.utils.set_random_seed`, keeping
    TensorFlow's compiled functions), as a fit alone builds it, so its initial weights (and
    dropout's seeds) are the same.

    Args:
        hypermodels: Family -> its `AttentionCNN`, in the order of the outputs.
        hp: The finalist's hyperparameters (the same for every family: twins copy them).
        seed: The group's seed.

    Raises:
        ValueError: When the networks' optimizers differ (then they cannot share one).
    """
    networks = _networks(hypermodels, hp, seed)
    first = next(iter(networks.values()))
    inputs = keras.Input(shape=first.input_shape[1:], name="image")
    model = keras.Model(inputs, {f: n(inputs) for f, n in networks.items()}, name="fit_group")
    optimizer = first.optimizer
    model.compile(
        optimizer=type(optimizer).from_config(optimizer.get_config()),
        loss={f: n.loss for f, n in networks.items()},
        metrics={f: ["accuracy"] for f in networks},
    )
    return GroupModel(model, networks)


def renew_group(group: GroupModel, hypermodels: Mapping[str, Any], hp: Any, seed: int) -> bool:
    """Restarts a fitted group from `seed`, keeping its traced functions: each network gets the
    weights a new build with `seed` has (`build_group`), and the optimizer its built state.

    Returns:
        `False` when that cannot be done exactly (other families, shapes or optimizer): then
        the group may have changed and must not be used; build a new one.
    """
    if list(group.networks) != list(hypermodels):
        return False
    networks = _networks(hypermodels, hp, seed)
    for family, network in networks.items():
        if not copy_variables(group.networks[family].variables, network.variables):
            return False
    config = optimizer_config(next(iter(networks.values())).optimizer)
    return reset_optimizer(group.model, config)


def _networks(hypermodels: Mapping[str, Any], hp: Any, seed: int) -> dict[str, Any]:
    networks = {}
    for family, hypermodel in hypermodels.items():
        set_seed(seed)
        networks[family] = hypermodel.build(hp)
    configs = [optimizer_config(n.optimizer) for n in networks.values()]
    if any(c != configs[0] for c in configs):
        raise ValueError(
            f"The networks' optimizers differ, so they cannot train together: {configs}"
        )
    return networks


def fit_group(
    group: GroupModel,
    data: Any,
    *,
    early_stopping: Any,
    batch: int,
    seed: int,
    epochs: int,
    verbose: int = 0,
    progress: Any = None,
) -> dict[str, GroupFit]:
    """Trains the group's networks together on `data`'s train split; returns each one's fit.

    Args:
        group: The networks (`build_group`).
        data: The `Dataset`.
        early_stopping: A function of a family returning a new `EarlyStopping` for its network
            (or `None`: no early stopping), as a fit of it alone would have.
        batch: The batch size.
        seed: The seed of the train split's shuffling (the same batches as a fit alone).
        epochs: The most epochs to train.
        verbose: Keras' verbosity.
        progress: A `Progress` observer to hear of every batch (unless Keras prints its own,
            `verbose` > 0), or `None`.
    """
    families = list(group.networks)
    fan_out = _fan_out(families)
    callback = _PerNetwork(group.networks, early_stopping)
    callbacks: list[Any] = [callback]
    if progress is not None and not verbose:
        callbacks.append(FitProgressCallback(progress, epochs, steps_per_epoch(data, batch)))
    train = train_batches(data, batch, seed).map(fan_out)
    prepare_for_fit(group.model, train)
    t0 = time.monotonic()
    history = group.model.fit(
        train,
        validation_data=data.val(batch).map(fan_out),
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # Dataset.train shuffles, seeded
        verbose=verbose,
    ).history
    seconds = time.monotonic() - t0
    return {
        f: GroupFit(
            history=_own(history, f, callback.epochs[f]),
            epochs=callback.epochs[f],
            nan_at=callback.nan_at.get(f),
            seconds=seconds,
        )
        for f in families
    }


def evaluate_group(group: GroupModel, data: Any, batch: int) -> dict[str, tuple[float, float]]:
    """Each network's `(test_loss, test_accuracy)` on `data`'s test split, in one pass."""
    families = list(group.networks)
    logs = group.model.evaluate(
        data.test(batch).map(_fan_out(families)), verbose=0, return_dict=True
    )
    return {f: (float(logs[f"{f}_loss"]), float(logs[f"{f}_accuracy"])) for f in families}


def _fan_out(families: Sequence[str]):
    """Gives each output the batch's labels."""

    def fan_out(x, y):
        return x, {f: y for f in families}

    return fan_out


def _own(logs: Mapping[str, Any], family: str, epochs: int | None = None) -> dict[str, Any]:
    """One network's entries of the group's logs, under the names a fit alone gives them."""
    own = {}
    for key, value in logs.items():
        for prefix, renamed in ((f"{family}_", ""), (f"val_{family}_", "val_")):
            if key.startswith(prefix):
                own[renamed + key[len(prefix) :]] = value
    if epochs is not None:
        own = {k: [float(v) for v in values[:epochs]] for k, values in own.items()}
    return own


class _PerNetwork(keras.callbacks.Callback):
    """Early stopping and the NaN check for each network of a group, as a fit alone has them.

    Stops the group's fit when every network has stopped (early, or on a non-finite loss).
    """

    def __init__(self, networks: Mapping[str, Any], early_stopping: Any):
        super().__init__()
        self.networks = dict(networks)
        self.stoppers = {f: early_stopping(f) for f in self.networks}
        self.epochs = {f: 0 for f in self.networks}
        self.nan_at: dict[str, tuple[int, int]] = {}
        self.stopped: set[str] = set()
        self.epoch = 0

    def on_train_begin(self, logs=None):
        for family, stopper in self.stoppers.items():
            if stopper is not None:
                stopper.set_model(self.networks[family])
                self.networks[family].stop_training = False
                stopper.on_train_begin()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        raise_pending()  # a Ctrl-C that came where Python would have ignored it
        logs = logs or {}
        for family in self.networks:
            loss = logs.get(f"{family}_loss")
            if family in self.stopped or loss is None or math.isfinite(float(loss)):
                continue
            # TerminateOnNaN for this network alone: as alone, the epoch counts as trained.
            self.nan_at[family] = (self.epoch, batch)
            self.epochs[family] = self.epoch + 1
            self.stopped.add(family)
        self._stop_when_all_stopped()

    def on_epoch_end(self, epoch, logs=None):
        for family, stopper in self.stoppers.items():
            if family in self.stopped:
                continue
            self.epochs[family] = epoch + 1
            if stopper is not None:
                stopper.on_epoch_end(epoch, _own(logs or {}, family))
                if self.networks[family].stop_training:
                    self.stopped.add(family)
        self._stop_when_all_stopped()

    def on_train_end(self, logs=None):
        for stopper in self.stoppers.values():
            if stopper is not None:
                stopper.on_train_end()  # restores that network's best weights

    def _stop_when_all_stopped(self):
        if len(self.stopped) == len(self.networks):
            self.model.stop_training = True

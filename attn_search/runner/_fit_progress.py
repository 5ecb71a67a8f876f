"""The Keras callback that tells a `Progress` observer where a fit is, batch by batch.

This module imports Keras; `training` imports it only when a run starts.
"""

from __future__ import annotations

import time

import keras

from attn_search.runner.progress import Progress

__all__ = ["FitProgressCallback"]


class FitProgressCallback(keras.callbacks.Callback):
    """Calls `progress.fit_progress(epoch, epochs, batch, batches, seconds)` after each batch.

    Epochs and batches count from 1; `seconds` is the time since the epoch began. What to show,
    and how often, is the observer's business.

    Args:
        progress: The observer.
        epochs: The epochs the fit may train.
        batches: Training batches per epoch, or `None` when unknown.
    """

    def __init__(self, progress: Progress, epochs: int, batches: int | None):
        super().__init__()
        self.progress = progress
        self.epochs = epochs
        self.batches = batches
        self.epoch = 0
        self.start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        seconds = time.monotonic() - self.start
        self.progress.fit_progress(self.epoch, self.epochs, batch + 1, self.batches, seconds)

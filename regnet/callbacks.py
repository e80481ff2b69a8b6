"""Callbacks: the hooks ``fit`` calls, the per-epoch ``History``, learning-rate scheduling and
``ModelCheckpoint`` (atomic saves every N epochs / on improvement)."""

import math
import os
from typing import Any

from . import checkpoint
from .errors import ConfigError


class Callback:
    """Hooks called by ``fit``; ``self.model`` is set before ``on_train_begin``.

    A callback whose ``on_batch_end`` only reads the model, or only sets optimizer
    hyperparameters, may say so with ``changes_weights = False``: the divergence guard then need
    not checkpoint the weights after every batch (see ``divergence``).
    """

    model: Any = None  # the Model being trained
    changes_weights = True

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...


class History:
    """Per-epoch logs of one ``fit`` call: ``history.history["loss"]`` etc., like Keras."""

    def __init__(self):
        self.epoch = []
        self.history = {}

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"History(epochs={self.epoch}, keys={sorted(self.history)})"


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at each epoch start from ``schedule(epoch, lr)``."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = float(self.schedule(epoch, self.model.optimizer.learning_rate))


class ModelCheckpoint(Callback):
    """Save the model with ``regnet.save`` (atomically) at the end of every ``every``-th epoch.

    ``path`` may hold ``{epoch}`` and log keys, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.h5"``.
    With ``save_best_only`` a save happens only when ``monitor`` (a key of the epoch logs, such
    as ``"val_loss"``) improves on the best value so far (``mode`` ``"min"`` or ``"max"``); the
    best value is taken from the model's history when training resumes. A file being written is
    never visible under ``path`` before it is complete, so an interrupted save leaves the
    previous checkpoint intact; ``fit(..., resume_from=path)`` continues from it.
    """

    def __init__(self, path, every=1, monitor=None, mode="min", save_best_only=False, metadata=None):
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"path must be a file path, got {type(path).__name__}", field="path")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"every must be a positive integer (epochs), got {every!r}", field="every")
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}", field="mode")
        if monitor is not None and not isinstance(monitor, str):
            raise ConfigError(f"monitor must be a log key such as 'val_loss', got {monitor!r}", field="monitor")
        if save_best_only and monitor is None:
            raise ConfigError("save_best_only needs a monitor (e.g. monitor='val_loss')", field="monitor")
        self.path = os.fspath(path)
        self.every = every
        self.monitor = monitor
        self.mode = mode
        self.save_best_only = bool(save_best_only)
        self.metadata = dict(metadata or {})
        self.best = None
        self.saved = []  # paths written, in order

    def on_train_begin(self, logs=None):
        self.best = None
        if self.monitor is not None:
            for entry in self.model.history:
                value = entry.get(self.monitor)
                if isinstance(value, (int, float)) and self._better(value):
                    self.best = float(value)

    def _better(self, value):
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if epoch % self.every:
            return
        if self.monitor is not None:
            if self.monitor not in logs:
                raise ConfigError(
                    f"ModelCheckpoint monitors '{self.monitor}', which the epoch logs do not hold "
                    f"(they hold {', '.join(sorted(logs)) or 'nothing'}; val_* keys need validation_data)",
                    field="monitor",
                )
            value = float(logs[self.monitor])
            improved = self._better(value)
            if improved:
                self.best = value
            if self.save_best_only and not improved:
                return
        self._save(epoch, logs)

    def _save(self, epoch, logs):
        try:
            path = self.path.format(epoch=epoch, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"checkpoint path {self.path!r} cannot be filled from the epoch logs: {exc}", field="path"
            ) from None
        meta = {**self.metadata, "checkpoint": {"epoch": epoch, "monitor": self.monitor, "best": self.best}}
        checkpoint.save(self.model, path, metadata=meta)
        self.saved.append(path)

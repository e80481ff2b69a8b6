"""Callbacks: the hooks ``fit`` calls, and the ones regnet provides.

``ModelCheckpoint`` (atomic saves every N epochs or on improvement), ``EarlyStopping``,
``ReduceLROnPlateau``, ``LearningRateScheduler`` (per epoch; per-step schedules are an optimizer's
``learning_rate``, see ``regnet.schedules``), ``CSVLogger``, ``TerminateOnNaN`` and
``LambdaCallback``. ``History`` (``regnet.history``) is what ``fit`` returns.

The state of a callback that matters for resuming (a best value, a wait counter, best weights)
is its ``state_dict()``: ``regnet.save`` stores it with the model (``/callbacks`` in the file)
and ``fit(resume_from=path)`` gives it back through ``load_state_dict`` after ``on_train_begin``.
"""

import csv
import json
import math
import numbers
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import atomic, checkpoint, io
from ..errors import ConfigError, FileFormatError
from ..history import History, plain_logs
from ..text import show

__all__ = [
    "Callback",
    "History",
    "plain_logs",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "CSVLogger",
    "TerminateOnNaN",
    "LambdaCallback",
]


class Callback:
    """Hooks called by ``fit``; ``self.model`` is set before ``on_train_begin``.

    ``on_train_begin()``, ``on_epoch_begin(epoch)``, ``on_batch_end(batch, logs)`` (running means
    of the epoch so far), ``on_epoch_end(epoch, logs)`` (the epoch's logs, ``val_*`` included;
    setting ``self.model.stop_training = True`` ends training after this epoch) and
    ``on_train_end()``. Epochs count from 1 and go on across ``fit`` calls (``model.epoch``).

    Declarations (class attributes):

    * ``changes_weights``: a callback whose ``on_batch_end`` only reads the model, or only sets
      optimizer hyperparameters, says False: the divergence guard then need not checkpoint the
      weights after every batch (see ``divergence``);
    * ``saves_model``: True for a callback that saves the model at the end of an epoch
      (``ModelCheckpoint``): ``fit`` runs its ``on_epoch_end`` after every other callback's, so
      the file holds their state at the end of that epoch;
    * ``state_key``: the name its state is saved under (default: the class name, numbered from the
      second callback of a class);
    * ``chief_only``: in data-parallel training (``regnet.distributed``) every process runs the
      callbacks, on the same logs, so that they decide alike; a callback that only writes files
      or prints says True and runs on rank 0 alone.

    Resumable state: ``state_dict()`` returns JSON data (plus, under ``"weights"``, an optional
    ``{"layer/tensor": array}`` snapshot of the model's weights) or ``None`` (nothing to save);
    ``load_state_dict(state)`` takes it back.
    """

    model: Any = None  # the Model being trained
    changes_weights = True
    chief_only = False
    saves_model = False
    state_key: str | None = None

    def on_train_begin(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_end(self, logs=None): ...

    def state_dict(self) -> dict | None:
        """What resuming needs of this callback (``None``: nothing)."""
        return None

    def load_state_dict(self, state: dict) -> None:
        """Take back a ``state_dict()``."""


def monitored(logs: dict | None, monitor: str, who: str) -> float:
    """The value of ``monitor`` in the epoch ``logs``, or a ``ConfigError`` saying what is there."""
    logs = logs or {}
    if monitor not in logs:
        raise ConfigError(
            f"{who} monitors '{monitor}', which the epoch logs do not hold (they hold "
            f"{', '.join(sorted(logs)) or 'nothing'}; val_* keys need validation data)",
            field="monitor",
        )
    value = logs[monitor]
    if not isinstance(value, numbers.Real):
        raise ConfigError(f"{who} monitors '{monitor}', which is not a single number", field="monitor")
    return float(value)


#: words of log keys that improve upwards (``mode="auto"``)
_MAX_WORDS = ("acc", "auc", "f1", "precision", "recall")


def _mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {show(mode)}", field="mode")
    if mode != "auto":
        return mode
    return "max" if any(w in monitor for w in _MAX_WORDS) else "min"


def _check(value: Any, ok: bool, field: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{field} must be {what}, got {show(value)}", field=field)


def _count(value: Any, field: str) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0
    _check(value, ok, field, ">= 0")
    return int(value)


def _number(value: Any, field: str, low: float = 0.0) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= float(value) < math.inf
    _check(value, ok, field, f"a finite number >= {low}")
    return float(value)


class _Plateau(Callback):
    """Watching a monitored log value for improvement (shared by EarlyStopping and
    ReduceLROnPlateau)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        _check(monitor, isinstance(monitor, str) and bool(monitor), "monitor", "a log key such as 'val_loss'")
        self.monitor = monitor
        self.mode = _mode(mode, monitor)
        self.min_delta = _number(min_delta, "min_delta")
        self.best: float | None = None
        self.wait = 0

    def improved(self, value: float) -> bool:
        """True when ``value`` beats the best by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _same_watch(self, state: dict) -> bool:
        if state.get("monitor") == self.monitor and state.get("mode") == self.mode:
            return True
        warnings.warn(
            f"{type(self).__name__}: the saved state watched {show(state.get('monitor'))} ({show(state.get('mode'))}), "
            f"this one watches '{self.monitor}' ({self.mode}); starting afresh",
            RuntimeWarning,
            stacklevel=3,
        )
        return False


class EarlyStopping(_Plateau):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves when the value beats the best so far by more than ``min_delta`` (lower for
    ``mode="min"``, higher for ``"max"``; ``"auto"`` picks ``"max"`` for accuracy, AUC, F1,
    precision and recall keys). After ``patience`` epochs in a row without improvement training
    stops (``patience=0``: at the first). ``baseline``: the value to beat from the start. Epochs
    up to ``start_from_epoch`` (of ``model.epoch``) are not watched.

    With ``restore_best_weights`` the weights of the best epoch are copied when it ends and put
    back when training ends (whether it stopped early or ran all its epochs), so the model ends
    at its best epoch; its ``epoch`` counter and history still count every epoch trained.

    Its state (best value and epoch, wait counter, the epoch it stopped, the best weights) is
    saved with checkpoints; a run resumed from a checkpoint taken after it stopped stops again
    at once, so re-running an interrupted command ends where the uninterrupted one did.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
        baseline: float | None = None,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = _count(patience, "patience")
        _check(restore_best_weights, isinstance(restore_best_weights, bool), "restore_best_weights", "True or False")
        self.restore_best_weights = restore_best_weights
        self.baseline = None if baseline is None else _number(baseline, "baseline", -math.inf)
        self.start_from_epoch = _count(start_from_epoch, "start_from_epoch")
        self._reset()

    def _reset(self) -> None:
        self.best, self.wait = self.baseline, 0
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.best_weights: dict | None = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        value = monitored(logs, self.monitor, "EarlyStopping")
        if epoch <= self.start_from_epoch:
            return
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self._snapshot()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _snapshot(self) -> None:
        weights = self.model.state_dict()
        if self.best_weights is None:
            self.best_weights = {k: v.copy() for k, v in weights.items()}
        else:
            for k, v in weights.items():
                np.copyto(self.best_weights[k], v)

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None and self.best_epoch != self.model.epoch:
            self.model.load_state_dict(self.best_weights)

    def state_dict(self):
        state: dict[str, Any] = {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }
        if self.restore_best_weights and self.best_weights is not None:
            state["weights"] = self.best_weights
        return state

    def load_state_dict(self, state):
        if not self._same_watch(state):
            return
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.wait, self.stopped_epoch = int(state.get("wait", 0)), state.get("stopped_epoch")
        weights = state.get("weights")
        self.best_weights = None if weights is None else {k: np.array(v) for k, v in weights.items()}
        if self.stopped_epoch is not None and self.model is not None:
            self.model.stop_training = True  # it had stopped: no further epoch


class ReduceLROnPlateau(_Plateau):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved (by more than
    ``min_delta``) for ``patience`` epochs in a row; the ``cooldown`` epochs after a reduction do
    not count; never below ``min_lr``. Needs a numeric learning rate (not a schedule). Its state (best,
    wait, cooldown and the learning rate it set) is saved with checkpoints."""

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        verbose: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        ok = isinstance(factor, numbers.Real) and not isinstance(factor, bool) and 0 < factor < 1
        _check(factor, ok, "factor", "a number in (0, 1)")
        self.factor = float(factor)
        self.patience = _count(patience, "patience")
        self.cooldown = _count(cooldown, "cooldown")
        self.min_lr = _number(min_lr, "min_lr")
        self.verbose = _count(verbose, "verbose")
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        if getattr(self.model.optimizer, "schedule", None) is not None:
            raise ConfigError(
                "ReduceLROnPlateau sets the learning rate, but the optimizer's learning rate follows a schedule; "
                "give the optimizer a number as learning_rate",
                field="callbacks",
            )
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        value = monitored(logs, self.monitor, "ReduceLROnPlateau")
        improved = self.improved(value)
        if improved:
            self.best, self.wait = value, 0
        if self.cooldown_counter > 0:  # the `cooldown` epochs right after a reduction do not count
            self.cooldown_counter -= 1
            self.wait = 0
            return
        if improved:
            return
        self.wait += 1
        if self.wait >= self.patience:
            opt = self.model.optimizer
            old = float(opt.learning_rate)
            if old > self.min_lr:
                opt.learning_rate = max(old * self.factor, self.min_lr)
                if self.verbose:
                    print(f"epoch {epoch}: ReduceLROnPlateau sets the learning rate to {opt.learning_rate:.4g}")
            self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self):
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
            "learning_rate": float(self.model.optimizer.learning_rate),
        }

    def load_state_dict(self, state):
        if not self._same_watch(state):
            return
        self.best, self.wait = state.get("best"), int(state.get("wait", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        if isinstance(state.get("learning_rate"), numbers.Real):
            self.model.optimizer.learning_rate = float(state["learning_rate"])


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at each epoch start from ``schedule(epoch, lr)``
    (per-step schedules are the optimizer's ``learning_rate``: see ``regnet.schedules``).
    ``schedule`` must return a finite number >= 0. The learning rate it set is saved with
    checkpoints, so a resumed run continues from it (``lr`` is the one of the epoch before)."""

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        _check(schedule, callable(schedule), "schedule", "a function (epoch, lr) -> lr")
        self.schedule = schedule

    def on_train_begin(self, logs=None):
        if getattr(self.model.optimizer, "schedule", None) is not None:
            raise ConfigError(
                "LearningRateScheduler sets the learning rate, but the optimizer's learning rate follows a "
                "schedule already",
                field="callbacks",
            )

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, self.model.optimizer.learning_rate)
        ok = isinstance(lr, numbers.Real) and not isinstance(lr, bool) and 0 <= float(lr) < math.inf
        if not ok:
            raise ConfigError(
                f"LearningRateScheduler: schedule({epoch}, lr) must return a finite number >= 0, got {show(lr)}",
                field="schedule",
            )
        self.model.optimizer.learning_rate = float(lr)

    def state_dict(self):
        return {"learning_rate": float(self.model.optimizer.learning_rate)}

    def load_state_dict(self, state):
        lr = state.get("learning_rate")
        if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
            self.model.optimizer.learning_rate = float(lr)


class CSVLogger(Callback):
    """Write one CSV row per epoch (``epoch`` and every log key, sorted) to ``path``, flushed
    each epoch. ``append=True`` adds to an existing file (use it when resuming) and keeps its
    columns; otherwise the file is started afresh. Per-class values are written as JSON lists.
    In data-parallel training only rank 0 writes."""

    chief_only = True

    def __init__(self, path: "str | os.PathLike[str]", separator: str = ",", append: bool = False) -> None:
        _check(path, isinstance(path, (str, os.PathLike)), "path", "a file path")
        _check(separator, isinstance(separator, str) and len(separator) == 1, "separator", "one character")
        self.path, self.separator, self.append = os.fspath(path), separator, bool(append)
        self._file: Any = None
        self._writer: Any = None
        self.columns: list[str] | None = None

    def on_train_begin(self, logs=None):
        self.columns = None
        _check_outputs(self)
        model_file = False
        try:
            if os.path.isfile(self.path):  # a FIFO is not opened here: it would block
                with open(self.path, "rb") as fh:
                    model_file = fh.read(len(io.HDF5_SIGNATURE)) == io.HDF5_SIGNATURE
        except (OSError, ValueError):
            pass
        if model_file:
            raise ConfigError(
                f"CSVLogger would write over {show(self.path)}, an HDF5 file (a model?); it is left untouched: "
                "give the log another path",
                field="path",
            )
        if self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh, delimiter=self.separator), None)
            self.columns = header or None
        try:
            self._file = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"CSVLogger cannot write {self.path}: {exc.strerror or exc}", field="path") from None
        self._writer = csv.writer(self._file, delimiter=self.separator)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **(logs or {})}
        if self.columns is None:
            self.columns = ["epoch", *sorted(k for k in row if k != "epoch")]
            self._writer.writerow(self.columns)
        cell = lambda v: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
        self._writer.writerow([cell(row.get(k)) for k in self.columns])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


class TerminateOnNaN(Callback):
    """Stop training (with a warning) after an epoch whose logs hold a NaN or infinite number,
    such as a ``val_loss`` that overflowed.

    A non-finite *training* loss never gets this far: the divergence guard refuses the step, puts
    the model back as it was before it and raises ``TrainingDivergedError`` (which a caller may
    catch to stop gracefully), so this callback watches what the guard does not: the epoch logs.
    """

    def on_epoch_end(self, epoch, logs=None):
        bad = [k for k, v in (logs or {}).items() if isinstance(v, numbers.Real) and not math.isfinite(v)]
        if bad:
            warnings.warn(f"epoch {epoch}: {', '.join(bad)} not finite; training stops", RuntimeWarning, stacklevel=2)
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from functions: ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
    ``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)`` (each
    optional). Declare ``changes_weights=False`` when ``on_batch_end`` leaves the weights alone."""

    def __init__(
        self,
        on_train_begin: Callable | None = None,
        on_epoch_begin: Callable | None = None,
        on_batch_end: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_end: Callable | None = None,
        *,
        changes_weights: bool = True,
    ) -> None:
        hooks = {
            "on_train_begin": on_train_begin,
            "on_epoch_begin": on_epoch_begin,
            "on_batch_end": on_batch_end,
            "on_epoch_end": on_epoch_end,
            "on_train_end": on_train_end,
        }
        for name, fn in hooks.items():
            _check(fn, fn is None or callable(fn), name, "a function or None")
        self.hooks = hooks
        self.changes_weights = bool(changes_weights) and on_batch_end is not None

    def on_train_begin(self, logs=None):
        if self.hooks["on_train_begin"]:
            self.hooks["on_train_begin"](logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self.hooks["on_epoch_begin"]:
            self.hooks["on_epoch_begin"](epoch, logs)

    def on_batch_end(self, batch, logs=None):
        if self.hooks["on_batch_end"]:
            self.hooks["on_batch_end"](batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.hooks["on_epoch_end"]:
            self.hooks["on_epoch_end"](epoch, logs)

    def on_train_end(self, logs=None):
        if self.hooks["on_train_end"]:
            self.hooks["on_train_end"](logs)


def _check_outputs(callback: Any) -> None:
    """Refuse two of the fit's callbacks that write one file (a CSV log over a checkpoint, two
    logs in one file): each would destroy what the other writes. Paths with ``{...}`` fields are
    compared as written."""
    others = getattr(getattr(callback, "model", None), "training_callbacks", ()) or ()
    mine = os.path.realpath(callback.path)
    for other in others:
        if other is callback or not isinstance(other, (CSVLogger, ModelCheckpoint)):
            continue
        if isinstance(callback, ModelCheckpoint) and isinstance(other, ModelCheckpoint):
            continue  # both save the model: the later save wins, nothing is destroyed
        if os.path.realpath(other.path) == mine or atomic.same_file(callback.path, other.path):
            raise ConfigError(
                f"{type(callback).__name__} and {type(other).__name__} both write {show(callback.path)}; each "
                "would destroy what the other writes: give them different paths",
                field="path",
            )


class ModelCheckpoint(Callback):
    """Save the model with ``regnet.save`` (atomically) at the end of every ``every``-th epoch.

    ``path`` may hold ``{epoch}`` and log keys, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.h5"``.
    With ``save_best_only`` a save happens only when ``monitor`` (a key of the epoch logs, such
    as ``"val_loss"``, a single number) improves on the best value so far (``mode`` ``"min"``,
    ``"max"`` or ``"auto"``: ``"max"`` for accuracy, AUC, F1, precision and recall keys, as for
    ``EarlyStopping``); the best value is taken from the model's history when training resumes. A file being written is
    never visible under ``path`` before it is complete, so an interrupted save leaves the
    previous checkpoint intact; ``fit(..., resume_from=path)`` continues from it. It runs after
    the other callbacks at the end of an epoch, so the file holds their state too. In
    data-parallel training only rank 0 saves.
    """

    saves_model = True
    chief_only = True

    def __init__(self, path, every=1, monitor=None, mode="auto", save_best_only=False, metadata=None):
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"path must be a file path, got {type(path).__name__}", field="path")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"every must be a positive integer (epochs), got {every!r}", field="every")
        if monitor is not None and not isinstance(monitor, str):
            raise ConfigError(f"monitor must be a log key such as 'val_loss', got {monitor!r}", field="monitor")
        mode = _mode(mode, monitor or "")
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
        _check_outputs(self)
        if "{" not in self.path:
            try:
                io.check_model_target(self.path)
            except FileFormatError as exc:
                raise ConfigError(f"ModelCheckpoint: {exc}", field="path") from None
        if self.monitor is not None:
            for entry in self.model.history:
                value = entry.get(self.monitor)
                if isinstance(value, numbers.Real) and not isinstance(value, bool) and self._better(value):
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
            value = monitored(logs, self.monitor, "ModelCheckpoint")
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

    def state_dict(self):
        return {"monitor": self.monitor, "mode": self.mode, "best": self.best}

    def load_state_dict(self, state):
        if state.get("monitor") == self.monitor and state.get("mode") == self.mode:
            self.best = state.get("best")

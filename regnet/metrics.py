"""Metrics computed on model outputs (after the output activation): ``metric(pred, target)``."""

import attrs
import numpy as np

from .errors import ConfigError, DataError
from .fields import show


@attrs.define
class Accuracy:
    """Fraction of correct predictions: argmax for several outputs, ``> threshold`` for one."""

    name: str = "accuracy"
    threshold: float = 0.5

    def __call__(self, pred, target):
        if pred.ndim >= 2 and pred.shape[-1] > 1:
            guess = pred.argmax(axis=-1)
            truth = target if target.ndim == 1 else target.argmax(axis=-1)
        else:
            guess = pred.reshape(pred.shape[0], -1)[:, 0] > self.threshold
            truth = target.reshape(target.shape[0], -1)[:, 0] > 0.5
        return float(np.mean(guess == truth))


def _dense_target(pred, target):
    """``target`` shaped like ``pred``: integer class labels become one-hot rows."""
    if target.ndim == 1 and pred.ndim == 2 and pred.shape[1] > 1:
        rows = np.zeros(pred.shape, dtype=pred.dtype)
        rows[np.arange(len(target)), target.astype(np.intp)] = 1
        return rows
    if target.size != pred.size:
        raise DataError(f"targets of shape {list(target.shape)} do not match outputs of shape {list(pred.shape)}")
    return target.reshape(pred.shape)


@attrs.define
class MeanAbsoluteError:
    name: str = "mae"

    def __call__(self, pred, target):
        return float(np.mean(np.abs(pred - _dense_target(pred, target))))


@attrs.define
class MeanSquaredError:
    name: str = "mse"

    def __call__(self, pred, target):
        return float(np.mean((pred - _dense_target(pred, target)) ** 2))


_METRICS = {
    "accuracy": Accuracy, "acc": Accuracy,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
}


def get(spec):
    if callable(spec) and not isinstance(spec, str):
        if not hasattr(spec, "name"):
            raise ConfigError("a metric object needs a 'name' attribute", field="metrics")
        return spec
    if not isinstance(spec, str) or spec not in _METRICS:
        raise ConfigError(f"unknown metric {show(spec)}; known: {', '.join(sorted(_METRICS))}", field="metrics")
    return _METRICS[spec]()

"""Metrics computed on model outputs (after the output activation): ``metric(pred, target)``."""

import attrs
import numpy as np

from .errors import ConfigError


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


@attrs.define
class MeanAbsoluteError:
    name: str = "mae"

    def __call__(self, pred, target):
        return float(np.mean(np.abs(pred - target.reshape(pred.shape))))


@attrs.define
class MeanSquaredError:
    name: str = "mse"

    def __call__(self, pred, target):
        return float(np.mean((pred - target.reshape(pred.shape)) ** 2))


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
    if spec not in _METRICS:
        raise ConfigError(f"unknown metric {spec!r}; known: {', '.join(sorted(_METRICS))}", field="metrics")
    return _METRICS[spec]()

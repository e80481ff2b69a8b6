"""Metrics computed on model outputs (after the output activation): ``metric(pred, target)``,
and the classification report (accuracy, per-class figures, confusion matrix) of predictions."""

import attrs
import numpy as np

from .errors import ConfigError, DataError
from .text import show


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
    "accuracy": Accuracy,
    "acc": Accuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(spec):
    if callable(spec) and not isinstance(spec, str):
        if not hasattr(spec, "name"):
            raise ConfigError("a metric object needs a 'name' attribute", field="metrics")
        return spec
    if not isinstance(spec, str) or spec not in _METRICS:
        raise ConfigError(f"unknown metric {show(spec)}; known: {', '.join(sorted(_METRICS))}", field="metrics")
    return _METRICS[spec]()


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Class indices from model outputs: the argmax of several outputs, ``> 0.5`` of one."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(axis=1)
    return (outputs.reshape(len(outputs), -1)[:, 0] > 0.5).astype(np.int64)


def class_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels from integer labels or one-hot rows."""
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` counts: rows are true classes, columns predicted classes."""
    truth, pred = class_labels(y_true), np.asarray(y_pred).astype(np.int64)
    k = int(max(pred.max(initial=0), truth.max(initial=0)) + 1)
    k = max(k, num_classes or 0)
    return np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> dict:
    """``{"accuracy", "n", "correct", "confusion", "per_class": [{"class", "support", "correct",
    "accuracy"}]}`` for integer predictions ``y_pred`` against labels or one-hot rows ``y_true``."""
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    n, correct = int(confusion.sum()), int(np.trace(confusion))
    support = confusion.sum(axis=1)
    per_class = [
        {
            "class": k,
            "support": int(support[k]),
            "correct": int(confusion[k, k]),
            "accuracy": float(confusion[k, k] / support[k]) if support[k] else None,
        }
        for k in range(len(confusion))
    ]
    return {
        "accuracy": correct / n if n else 0.0,
        "n": n,
        "correct": correct,
        "confusion": confusion,
        "per_class": per_class,
    }


def format_report(report: dict, label: str) -> str:
    """A classification report (with an optional ``loss``) as the text ``regnet evaluate`` prints."""
    c = report["confusion"]
    lines = [f"data: {label} ({report['n']} samples)"]
    if "loss" in report:
        lines.append(f"loss: {report['loss']:.4f}")
    lines += [f"accuracy: {report['accuracy']:.4f} ({report['correct']}/{report['n']})", "per-class accuracy:"]
    for row in report["per_class"]:
        acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "  n/a "
        lines.append(f"  {row['class']:>3}: {acc} ({row['correct']}/{row['support']})")
    width = max(4, len(str(int(c.max(initial=0)))) + 1)
    lines.append("confusion matrix (rows: true class, columns: predicted class):")
    lines.append("     " + "".join(f"{j:>{width}}" for j in range(len(c))))
    for k, row in enumerate(c):
        lines.append(f"  {k:>3}" + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)

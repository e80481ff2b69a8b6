"""Balanced accuracy: the mean of the per-class recalls, for data whose classes are unbalanced."""

import numpy as np

from regnet import fields
from regnet.errors import ConfigError
from regnet.metrics import Metric, metric


@metric("balanced_accuracy", register=False)  # the entry point registers it
class BalancedAccuracy(Metric):
    """The mean over the classes that occur among the targets of the fraction of each class
    predicted right (argmax of several outputs, ``> threshold`` of one). Its statistic is the
    confusion matrix: a sum over samples, so batches and processes add up."""

    threshold: float = fields.number(0.5)

    def check(self, output_shape):
        if len(output_shape) != 1:
            raise ConfigError(f"metric '{self.name}' needs class outputs of shape (N, K) or (N, 1)")

    def statistics(self, pred, target, weight):
        n = len(pred)
        if pred.shape[1] > 1:
            k, guess = pred.shape[1], pred.argmax(axis=1)
            truth = target.astype(np.intp) if target.ndim == 1 else target.reshape(n, -1).argmax(axis=1)
        else:
            k, guess = 2, (pred[:, 0] > self.threshold).astype(np.intp)
            truth = (target.reshape(n, -1)[:, 0] > 0.5).astype(np.intp)
        counts = np.bincount(truth * k + guess, weights=weight, minlength=k * k)
        return {"confusion": counts.astype(np.float64).reshape(k, k)}

    def compute(self, totals):
        c = totals["confusion"]
        support = c.sum(axis=1)
        present = support > 0
        if not present.any():
            return float("nan")
        return float(np.mean(np.diag(c)[present] / support[present]))

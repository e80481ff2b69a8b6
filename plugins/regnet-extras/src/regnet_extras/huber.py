"""Huber loss: quadratic for small errors, linear for large ones (robust regression)."""

import numpy as np

from regnet import fields
from regnet.errors import DataError
from regnet.losses import Loss, loss


@loss("huber", register=False)  # the entry point registers it
class Huber(Loss):
    """Mean over every element of ``d**2 / 2`` if ``|d| <= delta`` else ``delta * (|d| - delta / 2)``,
    with ``d = pred - target``; the gradient is ``clip(d, -delta, delta) / size``."""

    delta: float = fields.number(1.0, min=0.0, min_open=True)

    def check_target(self, target, pred_shape):
        if target.size != int(np.prod(pred_shape)):
            raise DataError(f"targets of shape {list(target.shape)} do not match outputs {['N', *pred_shape[1:]]}")

    def value_and_grad(self, pred, target):
        d = pred - target.reshape(pred.shape).astype(pred.dtype, copy=False)
        delta = np.asarray(self.delta, pred.dtype)
        a = np.abs(d)
        loss = np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
        grad = np.clip(d, -delta, delta) / np.asarray(d.size, pred.dtype)
        return float(loss.mean()), grad

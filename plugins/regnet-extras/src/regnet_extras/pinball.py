"""The pinball (quantile) loss: regression to a quantile of the target instead of its mean."""

import numpy as np

from regnet import fields
from regnet.errors import DataError
from regnet.losses import Loss, loss


@loss("pinball", register=False)  # the entry point registers it
class Pinball(Loss):
    """Mean over every element of ``max(q * d, (q - 1) * d)`` with ``d = target - pred``: a
    prediction below the target costs ``q`` per unit, one above it ``1 - q``, so the minimiser
    is the ``q``-quantile (``q = 0.5``: half the mean absolute error, the median)."""

    quantile: float = fields.number(0.5, min=0.0, max=1.0, doc="the quantile q the prediction estimates")

    test_pred_shape = (4, 5)

    def check_target(self, target, pred_shape):
        if target.size != int(np.prod(pred_shape)):
            raise DataError(f"targets of shape {list(target.shape)} do not match outputs {['N', *pred_shape[1:]]}")

    def _losses(self, pred, target):
        d = target.reshape(pred.shape).astype(pred.dtype, copy=False) - pred
        q = np.asarray(self.quantile, pred.dtype)
        return d, np.maximum(q * d, (q - 1) * d)

    def value_and_grad(self, pred, target):
        d, losses = self._losses(pred, target)
        q = np.asarray(self.quantile, pred.dtype)
        grad = np.where(d > 0, -q, 1 - q).astype(pred.dtype, copy=False) / np.asarray(d.size, pred.dtype)
        return float(losses.mean()), grad

    def per_sample(self, pred, target):
        """Each sample's loss (for sample and class weights), vectorised."""
        return self._losses(pred, target)[1].reshape(len(pred), -1).mean(axis=1)

"""Losses: ``value_and_grad(pred, target) -> (mean loss, dL/dpred)``; cross-entropies are fused.

``pred`` is the model output; with ``from_logits=True`` it is the pre-activation. When a model
ends in softmax (or sigmoid) and the loss is the matching cross-entropy on probabilities, the
model hands the loss its logits instead (see ``fused_with``), which is exact and stable.
"""

from typing import Any, ClassVar

import attrs
import numpy as np

from . import fields, registry
from .activations import log_softmax, sigmoid, softmax
from .errors import DataError


class Loss:
    """Base class of losses.

    ``value_and_grad(pred, target) -> (loss, dL/dpred)``: ``pred`` is the model output for a
    batch (float32, batch axis first); ``loss`` is a Python float, the **mean** over the batch
    (and over elements, for element-wise losses); the gradient has ``pred``'s shape and dtype and
    is the gradient of that mean (so it carries the ``1/N``). ``value`` may be overridden when the
    loss alone is cheaper than both.

    ``check_target(target, pred_shape)`` runs once per ``fit``/``evaluate`` call, before any work:
    it returns nothing and raises ``DataError`` saying what targets it expects when ``target``
    (already a numeric array with one row per sample) does not fit outputs of ``pred_shape``
    (batch axis included).

    Fusion: a loss that can absorb the output activation sets ``fuses`` to that activation's
    registered name (``"softmax"``) and has a ``from_logits`` field; when a model ends in that
    activation, ``compile`` trains with ``fused_with(...)`` (the same loss on logits: exact,
    stable and cheaper). Declare one with ``@loss("name")``.
    """

    #: the output activation this loss absorbs when it works on logits (None: none)
    fuses: ClassVar[str | None] = None
    from_logits: bool = False

    def value_and_grad(self, pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def value(self, pred: np.ndarray, target: np.ndarray) -> float:
        return self.value_and_grad(pred, target)[0]

    def check_target(self, target: np.ndarray, pred_shape: tuple[int, ...]) -> None:
        """Raise ``DataError`` if ``target`` does not fit predictions of ``pred_shape``."""

    def get_config(self) -> dict[str, Any]:
        return registry.get_config(self)

    def fused_with(self, activation_name: str | None) -> "Loss | None":
        """A logits version of this loss if it absorbs ``activation_name``, else None."""
        if self.fuses is not None and activation_name == self.fuses and not self.from_logits:
            return attrs.evolve(self, from_logits=True)  # type: ignore[misc]
        return None


registry.losses.bind(Loss)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def loss(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@loss("name", aliases=(...))``: make the class an attrs loss and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.losses, name, aliases=aliases, register=register)


def get(spec: Any) -> Loss:
    return registry.losses.create(spec)


def _check_same_shape(target, pred_shape):
    """Targets must have the outputs' shape, up to axes of length 1 (``(N,)`` fits ``(N, 1)``)."""
    squeeze = lambda shape: [d for d in shape[1:] if d != 1]
    if squeeze(target.shape) != squeeze(pred_shape):
        raise DataError(f"targets of shape {list(target.shape)} do not match outputs of shape {['N', *pred_shape[1:]]}")


def _labels(target, k):
    """Integer class labels from integer labels or one-hot/probability rows."""
    if target.ndim == 1:
        return target.astype(np.intp, copy=False), None
    return None, target


@loss(
    "categorical_crossentropy",
    aliases=(
        "CategoricalCrossentropy",
        "sparse_categorical_crossentropy",
        "cross_entropy",
        "SparseCategoricalCrossentropy",
        "CrossEntropyLoss",
    ),
)
class CategoricalCrossentropy(Loss):
    """Cross-entropy over the last axis; targets are integer labels ``(N,)`` or rows ``(N, K)``."""

    from_logits: bool = fields.boolean(False)
    fuses = "softmax"
    EPS = 1e-7

    def check_target(self, target, pred_shape):
        k = pred_shape[-1]
        out = ["N", *pred_shape[1:]]
        if target.ndim == 1 and len(pred_shape) == 2:
            if not np.issubdtype(target.dtype, np.integer) and not np.all(np.mod(target, 1) == 0):
                bad = int(np.argmax(np.mod(target, 1) != 0))
                raise DataError(f"integer class labels expected, found {target[bad]} at index {bad}")
            lo, hi = target.min(initial=0), target.max(initial=0)
            if lo < 0 or hi >= k:
                raise DataError(f"labels must be in [0, {k - 1}] for {k} outputs, found values in [{lo}, {hi}]")
        elif target.shape[1:] != tuple(pred_shape[1:]):
            labels = "integer labels (N,) or " if len(pred_shape) == 2 else ""
            raise DataError(
                f"targets of shape {list(target.shape)} do not match outputs of shape {out}; "
                f"give {labels}one-hot rows of shape {out}"
            )
        elif target.size and (target.min() < 0 or target.max() > 1):
            raise DataError(
                f"one-hot or probability targets must lie in [0, 1], found values in [{target.min()}, {target.max()}]"
            )

    def value_and_grad(self, pred, target):
        n, k = pred.shape[0], pred.shape[-1]
        idx, rows = _labels(target, k)
        if self.from_logits:
            logp = log_softmax(pred)
            p = np.exp(logp)
            if idx is not None:
                loss = -logp[np.arange(n), idx].mean()
                grad = p
                grad[np.arange(n), idx] -= 1
            else:
                rows = rows.astype(pred.dtype, copy=False)
                loss = -(rows * logp).sum(axis=-1).mean()
                grad = p * rows.sum(axis=-1, keepdims=True) - rows
            return float(loss), grad / n
        p = np.clip(pred, self.EPS, 1 - self.EPS)
        if idx is not None:
            rows = np.zeros_like(pred)
            rows[np.arange(n), idx] = 1
        rows = rows.astype(pred.dtype, copy=False)
        loss = -(rows * np.log(p)).sum(axis=-1).mean()
        grad = -(rows / p) * ((pred > self.EPS) & (pred < 1 - self.EPS))
        return float(loss), (grad / n).astype(pred.dtype, copy=False)

    def value(self, pred, target):
        if self.from_logits and target.ndim == 1:
            logp = log_softmax(pred)
            return float(-logp[np.arange(pred.shape[0]), target.astype(np.intp)].mean())
        return self.value_and_grad(pred, target)[0]


@loss("binary_crossentropy", aliases=("BinaryCrossentropy", "BCEWithLogitsLoss", "bce"))
class BinaryCrossentropy(Loss):
    """Element-wise binary cross-entropy; targets in [0, 1] of the output's shape (or ``(N,)``)."""

    from_logits: bool = fields.boolean(False)
    fuses = "sigmoid"
    EPS = 1e-7

    def check_target(self, target, pred_shape):
        _check_same_shape(target, pred_shape)
        if target.size and (target.min() < 0 or target.max() > 1):
            raise DataError(f"binary targets must lie in [0, 1], found values in [{target.min()}, {target.max()}]")

    def value_and_grad(self, pred, target):
        t = target.reshape(pred.shape).astype(pred.dtype, copy=False)
        if self.from_logits:
            # log(1 + exp(-|z|)) + max(z, 0) - z t : finite for any z
            loss = np.maximum(pred, 0) - pred * t + np.log1p(np.exp(-np.abs(pred)))
            grad = sigmoid(pred) - t
        else:
            p = np.clip(pred, self.EPS, 1 - self.EPS)
            loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
            grad = ((p - t) / (p * (1 - p))) * ((pred > self.EPS) & (pred < 1 - self.EPS))
        return float(loss.mean()), (grad / pred.size).astype(pred.dtype, copy=False)


@loss("mean_squared_error", aliases=("mse", "MeanSquaredError", "MSELoss"))
class MeanSquaredError(Loss):
    """Mean over every element of ``(pred - target)**2``."""

    def check_target(self, target, pred_shape):
        _check_same_shape(target, pred_shape)

    def value_and_grad(self, pred, target):
        d = pred - target.reshape(pred.shape).astype(pred.dtype, copy=False)
        return float(np.mean(d * d)), (2.0 / d.size) * d


def probabilities(logits, activation_name):
    """Apply the fused activation to logits (for metrics and predict)."""
    return softmax(logits) if activation_name == "softmax" else sigmoid(logits)

"""Losses: ``value_and_grad(pred, target) -> (mean loss, dL/dpred)``; cross-entropies are fused.

``pred`` is the model output; with ``from_logits=True`` it is the pre-activation. When a model
ends in softmax (or sigmoid) and the loss is the matching cross-entropy on probabilities, the
model hands the loss its logits instead (see ``fused_with``), which is exact and stable.
"""

import math
from typing import Any, ClassVar

import attrs
import numpy as np

from . import fields, registry
from .activations import log_softmax, sigmoid, softmax
from .errors import ConfigError, DataError
from .text import shape as shape_text


class Loss:
    """Base class of losses.

    ``value_and_grad(pred, target) -> (loss, dL/dpred)``: ``pred`` is the model output for a
    batch (float32, batch axis first); ``loss`` is a Python float, the **mean** over the batch
    (and over elements, for element-wise losses); the gradient has ``pred``'s shape and dtype and
    is the gradient of that mean (so it carries the ``1/N``). ``value`` may be overridden when the
    loss alone is cheaper than both.

    ``per_sample(pred, target) -> (N,)`` gives each sample's loss (the mean over its outputs;
    their mean is ``value``). Per-sample weights (``fit``'s ``sample_weight`` and
    ``class_weight``) use it through ``weighted_value_and_grad``; the base class computes it one
    sample at a time, so a loss that may be weighted should override it with a vectorised one.

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

    def per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Each sample's loss, shape ``(N,)`` (the base class calls ``value`` once per sample)."""
        return np.array([self.value(pred[i : i + 1], target[i : i + 1]) for i in range(len(pred))], np.float32)

    def weighted_value_and_grad(
        self, pred: np.ndarray, target: np.ndarray, weight: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """``(sum_i w_i loss_i / N, gradient)`` with per-sample weights ``w`` ``(N,)``: the gradient
        of sample ``i``'s output is ``w_i`` times the unweighted one."""
        _, grad = self.value_and_grad(pred, target)
        scale = np.asarray(weight, grad.dtype).reshape((-1,) + (1,) * (grad.ndim - 1))
        return self.weighted_value(pred, target, weight), grad * scale

    def weighted_value(self, pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
        """``sum_i w_i loss_i / N``."""
        return float(np.mean(np.asarray(weight, np.float64) * self.per_sample(pred, target)))

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
        raise DataError(
            f"targets of shape {shape_text(target.shape, False)} do not match outputs of shape "
            f"{shape_text(pred_shape[1:])}"
        )


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

    from_logits: bool = fields.boolean(False, doc="true when the predictions are logits (no softmax/sigmoid applied)")
    fuses = "softmax"
    EPS = 1e-7

    def check_target(self, target, pred_shape):
        k = pred_shape[-1]
        out = shape_text(pred_shape[1:])
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
                f"targets of shape {shape_text(target.shape, False)} do not match outputs of shape {out}; "
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

    def per_sample(self, pred, target):
        n = pred.shape[0]
        idx, rows = _labels(target, pred.shape[-1])
        logp = log_softmax(pred) if self.from_logits else np.log(np.clip(pred, self.EPS, 1 - self.EPS))
        if idx is not None:
            return -logp[np.arange(n), idx]
        return -(rows.astype(pred.dtype, copy=False) * logp).sum(axis=-1).reshape(n, -1).mean(axis=1)


@loss("binary_crossentropy", aliases=("BinaryCrossentropy", "BCEWithLogitsLoss", "bce"))
class BinaryCrossentropy(Loss):
    """Element-wise binary cross-entropy; targets in [0, 1] of the output's shape (or ``(N,)``)."""

    from_logits: bool = fields.boolean(False, doc="true when the predictions are logits (no softmax/sigmoid applied)")
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

    def per_sample(self, pred, target):
        t = target.reshape(pred.shape).astype(pred.dtype, copy=False)
        if self.from_logits:
            loss = np.maximum(pred, 0) - pred * t + np.log1p(np.exp(-np.abs(pred)))
        else:
            p = np.clip(pred, self.EPS, 1 - self.EPS)
            loss = -(t * np.log(p) + (1 - t) * np.log(1 - p))
        return loss.reshape(len(pred), -1).mean(axis=1)


@loss("mean_squared_error", aliases=("mse", "MeanSquaredError", "MSELoss"))
class MeanSquaredError(Loss):
    """Mean over every element of ``(pred - target)**2``."""

    def check_target(self, target, pred_shape):
        _check_same_shape(target, pred_shape)

    def value_and_grad(self, pred, target):
        d = pred - target.reshape(pred.shape).astype(pred.dtype, copy=False)
        return float(np.mean(d * d)), (2.0 / d.size) * d

    def per_sample(self, pred, target):
        d = pred - target.reshape(pred.shape).astype(pred.dtype, copy=False)
        return (d * d).reshape(len(pred), -1).mean(axis=1)


class _ElementWise(Loss):
    """A loss that is the mean over every element of ``f(pred, target)``: subclasses give
    ``elements(pred, target) -> (f, df/dpred)`` on targets already shaped like ``pred``."""

    def check_target(self, target, pred_shape):
        _check_same_shape(target, pred_shape)

    def elements(self, pred: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _target(self, pred, target):
        return target.reshape(pred.shape).astype(pred.dtype, copy=False)

    def value_and_grad(self, pred, target):
        f, df = self.elements(pred, self._target(pred, target))
        return float(np.mean(f, dtype=np.float64)), (df / np.asarray(max(df.size, 1), pred.dtype)).astype(
            pred.dtype, copy=False
        )

    def per_sample(self, pred, target):
        f, _ = self.elements(pred, self._target(pred, target))
        return f.reshape(len(pred), -1).mean(axis=1)


@loss("mean_absolute_error", aliases=("mae", "MeanAbsoluteError", "L1Loss"))
class MeanAbsoluteError(_ElementWise):
    """Mean over every element of ``|pred - target|`` (the gradient at 0 is 0)."""

    def elements(self, pred, t):
        d = pred - t
        return np.abs(d), np.sign(d)


@loss("huber", aliases=("huber_loss", "HuberLoss"))
class Huber(_ElementWise):
    """Mean over every element of ``d**2 / 2`` where ``|d| <= delta``, else ``delta * (|d| -
    delta / 2)``, with ``d = pred - target`` (Keras's ``Huber``, PyTorch's ``HuberLoss``)."""

    delta: float = fields.number(1.0, min=0.0, min_open=True, doc="where the loss turns from quadratic to linear")

    def elements(self, pred, t):
        d = pred - t
        delta = np.asarray(self.delta, pred.dtype)
        a = np.abs(d)
        f = np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
        return f, np.clip(d, -delta, delta)


@loss("log_cosh", aliases=("logcosh", "LogCosh"))
class LogCosh(_ElementWise):
    """Mean over every element of ``log(cosh(pred - target))``, computed as ``|d| + log1p(exp(-2|d|))
    - log 2`` (no overflow); the gradient is ``tanh(d)``."""

    def elements(self, pred, t):
        d = pred - t
        a = np.abs(d)
        f = a + np.log1p(np.exp(-2 * a)) - np.asarray(math.log(2), pred.dtype)
        return f, np.tanh(d)


def _hinge_targets(t):
    """Keras's hinge targets: 0/1 labels become -1/1 (when every target is 0 or 1)."""
    if t.size and np.all((t == 0) | (t == 1)):
        return 2 * t - 1
    return t


@loss("hinge", aliases=("Hinge",))
class Hinge(_ElementWise):
    """Mean over every element of ``max(1 - target * pred, 0)``, targets -1 or 1 (0/1 labels are
    read as -1/1 when every target is 0 or 1, as in Keras)."""

    def elements(self, pred, t):
        t = _hinge_targets(t)
        margin = 1 - t * pred
        return np.maximum(margin, 0), np.where(margin > 0, -t, np.zeros((), pred.dtype))


@loss("squared_hinge", aliases=("SquaredHinge",))
class SquaredHinge(_ElementWise):
    """Mean over every element of ``max(1 - target * pred, 0)**2`` (targets as for ``hinge``)."""

    def elements(self, pred, t):
        t = _hinge_targets(t)
        m = np.maximum(1 - t * pred, 0)
        return m * m, -2 * t * m


@loss("poisson", aliases=("Poisson",))
class Poisson(_ElementWise):
    """Mean over every element of ``pred - target * log(pred + 1e-7)`` (Keras's ``Poisson``; the
    predictions are rates, targets counts >= 0). A negative prediction is read as 0 (its loss is
    ``pred - target * log(1e-7)`` and its gradient 1), where Keras's would be NaN."""

    EPS = 1e-7

    def check_target(self, target, pred_shape):
        _check_same_shape(target, pred_shape)
        if target.size and target.min() < 0:
            raise DataError(f"Poisson targets are counts >= 0, found values down to {target.min()}")

    def elements(self, pred, t):
        rate = np.maximum(pred, 0) + np.asarray(self.EPS, pred.dtype)
        return pred - t * np.log(rate), 1 - np.where(pred > 0, t / rate, np.zeros((), pred.dtype))


class _OverAxis(Loss):
    """A loss that sums (or reduces) over one axis of each output and averages the rest: ``rows``
    gives ``(per-row loss with the axis reduced, gradient)``."""

    def check_target(self, target, pred_shape):
        _check_same_shape(target, pred_shape)
        if len(pred_shape) < 2:
            raise DataError(f"{registry.registered_name(self)} needs outputs with an axis besides the batch axis")

    def rows(self, pred, t):
        raise NotImplementedError

    def value_and_grad(self, pred, target):
        f, df = self.rows(pred, target.reshape(pred.shape).astype(pred.dtype, copy=False))
        return float(np.mean(f, dtype=np.float64)), (df / np.asarray(max(f.size, 1), pred.dtype)).astype(
            pred.dtype, copy=False
        )

    def per_sample(self, pred, target):
        f, _ = self.rows(pred, target.reshape(pred.shape).astype(pred.dtype, copy=False))
        return f.reshape(len(pred), -1).mean(axis=1)


@loss("kl_divergence", aliases=("kld", "KLDivergence", "kullback_leibler_divergence"))
class KLDivergence(_OverAxis):
    """``sum(target * log(target / pred))`` over the last axis, averaged over the batch (and any
    other axes), with ``target`` and ``pred`` clipped to ``[1e-7, 1]`` as in Keras: probability
    rows in, ``pred`` typically a softmax output."""

    EPS = 1e-7

    def check_target(self, target, pred_shape):
        super().check_target(target, pred_shape)
        if target.size and (target.min() < 0 or target.max() > 1):
            raise DataError(
                f"KL divergence targets are probabilities in [0, 1], found [{target.min()}, {target.max()}]"
            )

    def rows(self, pred, t):
        eps = np.asarray(self.EPS, pred.dtype)
        tc, pc = np.clip(t, eps, 1), np.clip(pred, eps, 1)
        f = (tc * np.log(tc / pc)).sum(axis=-1)
        inside = (pred > eps) & (pred < 1)
        return f, np.where(inside, -tc / pc, np.zeros((), pred.dtype))


def _axis(_, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (0 is the batch axis), got {value!r}", field=attribute.name
        )


@loss("cosine_similarity", aliases=("CosineSimilarity",))
class CosineSimilarity(_OverAxis):
    """``-cos(pred, target)`` along ``axis`` (both L2-normalised, norms at least 1e-6 as in
    Keras's ``l2_normalize``), averaged over the batch and the other axes: -1 when they point the
    same way, 0 when orthogonal."""

    axis: int = fields.field(-1, doc="the axis the vectors lie along", accepts="a non-zero integer", validator=_axis)
    #: Keras normalises by ``sqrt(max(sum(x**2), 1e-12))``
    MIN_SQUARE = 1e-12

    def check_target(self, target, pred_shape):
        super().check_target(target, pred_shape)
        rank = len(pred_shape)
        if not -rank <= self.axis < rank:
            raise DataError(f"axis {self.axis} does not fit outputs of rank {rank} (batch axis included)")

    def rows(self, pred, t):
        ax, floor = self.axis, np.asarray(self.MIN_SQUARE, pred.dtype)
        sq = (pred * pred).sum(axis=ax, keepdims=True)
        n = np.sqrt(np.maximum(sq, floor))
        tn = t / np.sqrt(np.maximum((t * t).sum(axis=ax, keepdims=True), floor))
        u = pred / n
        cos = (tn * u).sum(axis=ax, keepdims=True)
        grad = np.where(sq > floor, -(tn - cos * u) / n, -tn / n)
        return -np.squeeze(cos, axis=ax), grad


def probabilities(logits, activation_name):
    """Apply the fused activation to logits (for metrics and predict)."""
    return softmax(logits) if activation_name == "softmax" else sigmoid(logits)

"""Element-wise (and softmax) activations: ``y = f(x)`` and ``dL/dx = backward(dL/dy, x, y)``."""

import math

import attrs
import numpy as np

from . import fields
from .registry import activations, get_config, register_activation


class Activation:
    """Base class. ``forward(x) -> y``; ``backward(grad, x, y) -> grad * f'(x)``."""

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad, x, y):
        raise NotImplementedError

    __call__ = lambda self, x: self.forward(x)  # noqa: E731

    def get_config(self):
        return get_config(self)


def get(spec):
    """An activation instance from a name, a ``{"type": ...}`` dict, ``None`` or an instance."""
    if spec is None:
        return Linear()
    return activations.create(spec)


def _f32(v, dtype):
    return np.asarray(v, dtype=dtype)


@register_activation(name="linear", aliases=("identity", "none"))
@attrs.define
class Linear(Activation):
    def forward(self, x):
        return x

    def backward(self, grad, x, y):
        return grad


@register_activation(name="relu")
@attrs.define
class ReLU(Activation):
    def forward(self, x):
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, grad, x, y):
        return grad * (x > 0)


@register_activation(name="leaky_relu")
@attrs.define
class LeakyReLU(Activation):
    alpha: float = fields.number(0.01, min=0)

    def forward(self, x):
        return np.where(x > 0, x, x * _f32(self.alpha, x.dtype))

    def backward(self, grad, x, y):
        return np.where(x > 0, grad, grad * _f32(self.alpha, grad.dtype))


@register_activation(name="elu")
@attrs.define
class ELU(Activation):
    alpha: float = fields.number(1.0, min=0)

    def forward(self, x):
        a = _f32(self.alpha, x.dtype)
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))

    def backward(self, grad, x, y):
        a = _f32(self.alpha, x.dtype)
        return np.where(x > 0, grad, grad * (y + a))


@register_activation(name="selu")
@attrs.define
class SELU(Activation):
    ALPHA = 1.6732632423543772
    SCALE = 1.0507009873554805

    def forward(self, x):
        s, a = _f32(self.SCALE, x.dtype), _f32(self.ALPHA, x.dtype)
        return s * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))

    def backward(self, grad, x, y):
        s, a = _f32(self.SCALE, x.dtype), _f32(self.ALPHA, x.dtype)
        return grad * np.where(x > 0, s, y + s * a)


@register_activation(name="tanh")
@attrs.define
class Tanh(Activation):
    def forward(self, x):
        return np.tanh(x)

    def backward(self, grad, x, y):
        return grad * (1 - y * y)


def sigmoid(x):
    """Numerically stable logistic function (no overflow for large |x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@register_activation(name="sigmoid")
@attrs.define
class Sigmoid(Activation):
    def forward(self, x):
        return sigmoid(x)

    def backward(self, grad, x, y):
        return grad * y * (1 - y)


def log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


@register_activation(name="softmax")
@attrs.define
class Softmax(Activation):
    axis: int = fields.integer(-1, min=None)

    def forward(self, x):
        return softmax(x, self.axis)

    def backward(self, grad, x, y):
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


@register_activation(name="gelu")
@attrs.define
class GELU(Activation):
    """Gaussian error linear unit, tanh approximation (as in BERT/GPT-2 and Keras approximate)."""

    C = math.sqrt(2 / math.pi)

    def forward(self, x):
        c = _f32(self.C, x.dtype)
        return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))

    def backward(self, grad, x, y):
        c = _f32(self.C, x.dtype)
        t = np.tanh(c * (x + 0.044715 * x**3))
        dt = (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
        return grad * (0.5 * (1 + t) + 0.5 * x * dt)

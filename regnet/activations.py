"""Element-wise (and softmax) activations: ``y = f(x)`` and ``dL/dx = backward(dL/dy, x, y)``."""

import math
from typing import Any

import attrs
import numpy as np

from . import fields, registry
from .ops import parallel


class Activation:
    """Base class of activations.

    ``forward(x) -> y`` works on a whole batch of any shape and keeps its dtype (float32 in,
    float32 out). ``backward(grad, x, y) -> dL/dx`` receives the incoming gradient ``dL/dy``, the
    input ``x`` and the output ``y = forward(x)`` (use whichever is cheaper: ``tanh`` uses ``y``).
    Neither may modify its arguments in place. Configuration fields (e.g. ``alpha``) are attrs
    fields; a softmax-like activation over an axis declares an ``axis`` field, which layers check
    against their output rank. Declare one with ``@activation("name")``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def get_config(self) -> dict[str, Any]:
        return registry.get_config(self)


registry.activations.bind(Activation)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def activation(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@activation("name", aliases=(...))``: make the class an attrs activation and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.activations, name, aliases=aliases, register=register)


def get(spec: Any) -> Activation:
    """An activation instance from a name, a ``{"type": ...}`` dict, ``None`` or an instance."""
    if spec is None:
        return Linear()
    return registry.activations.create(spec)


def _f32(v, dtype):
    return np.asarray(v, dtype=dtype)


@activation("linear", aliases=("identity", "none"))
class Linear(Activation):
    def forward(self, x):
        return x

    def backward(self, grad, x, y):
        return grad


@activation("relu")
class ReLU(Activation):
    def forward(self, x):
        return np.maximum(x, 0, dtype=x.dtype)

    def backward(self, grad, x, y):
        out = np.empty_like(grad)
        parallel.for_blocks(_relu_gradient, grad, x, out, per_thread=RELU_ELEMENTS_PER_THREAD)
        return out


#: the ReLU gradient goes to several threads from this many elements per thread (below, starting
#: the threads costs more than they save: measured on (64, 64, 11, 11) and (64, 16, 32, 32))
RELU_ELEMENTS_PER_THREAD = 1 << 19


def _relu_gradient(grad, x, out):
    """``out = grad * (x > 0)``: the comparison written straight into the float output (0 or 1)
    and multiplied in place, two plain float passes where ``grad * (x > 0)`` multiplies a float
    array by a boolean one (a mixed-type loop, about 1.6x slower)."""
    np.greater(x, 0, out=out)
    out *= grad


@activation("leaky_relu")
class LeakyReLU(Activation):
    alpha: float = fields.number(0.01, min=0)

    def forward(self, x):
        return np.where(x > 0, x, x * _f32(self.alpha, x.dtype))

    def backward(self, grad, x, y):
        return np.where(x > 0, grad, grad * _f32(self.alpha, grad.dtype))


@activation("elu")
class ELU(Activation):
    alpha: float = fields.number(1.0, min=0)

    def forward(self, x):
        a = _f32(self.alpha, x.dtype)
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))

    def backward(self, grad, x, y):
        a = _f32(self.alpha, x.dtype)
        return np.where(x > 0, grad, grad * (y + a))


@activation("selu")
class SELU(Activation):
    ALPHA = 1.6732632423543772
    SCALE = 1.0507009873554805

    def forward(self, x):
        s, a = _f32(self.SCALE, x.dtype), _f32(self.ALPHA, x.dtype)
        return s * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))

    def backward(self, grad, x, y):
        s, a = _f32(self.SCALE, x.dtype), _f32(self.ALPHA, x.dtype)
        return grad * np.where(x > 0, s, y + s * a)


@activation("tanh")
class Tanh(Activation):
    def forward(self, x):
        return np.tanh(x)

    def backward(self, grad, x, y):
        return grad * (1 - y * y)


def sigmoid(x):
    """Numerically stable logistic function (no overflow for large |x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@activation("sigmoid")
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


@activation("softmax")
class Softmax(Activation):
    axis: int = fields.integer(-1, min=None)

    def forward(self, x):
        return softmax(x, self.axis)

    def backward(self, grad, x, y):
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


@activation("gelu")
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

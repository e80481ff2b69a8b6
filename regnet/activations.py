"""Element-wise (and softmax) activations: ``y = f(x)`` and ``dL/dx = backward(dL/dy, x, y)``."""

import math
from typing import Any

import attrs
import numpy as np

from . import accel, fields, registry
from .errors import ConfigError
from .ops import layout, parallel, special


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


def _compiled(x):
    """Whether ``x`` goes through the compiled kernels (regnet.accel's ``elementwise``): float32
    arrays of at least one dimension, where the accelerator is active."""
    return x.dtype == np.float32 and x.ndim > 0 and accel.active()


def _run(kernel, x, grad=None):
    """``kernel(x, out)`` (or ``kernel(grad, x, out)``) on flat views; ``out`` is a new array
    stored in ``x``'s memory order (C, Fortran or CHWN; other strides are copied to C order
    first), ``grad`` copied to that order where it is stored otherwise."""
    if not (x.flags.c_contiguous or x.flags.f_contiguous or layout.is_chwn(x)):
        x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    run = accel.kernels("elementwise").run
    if grad is None:
        run(kernel, x.size, x.ravel(order="K"), out.ravel(order="K"))
        return out
    if grad.strides != x.strides or grad.dtype != x.dtype:
        grad, copy = np.empty_like(x), grad
        grad[...] = copy
    run(kernel, x.size, grad.ravel(order="K"), x.ravel(order="K"), out.ravel(order="K"))
    return out


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
    alpha: float = fields.number(0.01, min=0, doc="the slope for negative inputs")

    def forward(self, x):
        return np.where(x > 0, x, x * _f32(self.alpha, x.dtype))

    def backward(self, grad, x, y):
        return np.where(x > 0, grad, grad * _f32(self.alpha, grad.dtype))


@activation("elu")
class ELU(Activation):
    alpha: float = fields.number(1.0, min=0, doc="the value approached for large negative inputs (-alpha)")

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


def _logistic(x):
    """The logistic function for gates (silu): float32 as ``(1 + tanh(x / 2)) / 2`` in a few
    single-precision passes (its tail below 1e-7 rounds to 0, which ``x * s`` makes harmless);
    the stable ``sigmoid`` otherwise."""
    if x.dtype != np.float32:
        return sigmoid(x)
    s = np.multiply(x, np.float32(0.5))
    np.tanh(s, out=s)
    s *= np.float32(0.5)
    s += np.float32(0.5)
    return s


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
    axis: int = fields.integer(-1, min=None, doc="the axis the probabilities sum to 1 over (axis 0 is the batch)")

    def forward(self, x):
        return softmax(x, self.axis)

    def backward(self, grad, x, y):
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


def _approximate(value: Any) -> Any:
    """PyTorch's spelling of GELU's form (``"tanh"``, ``"none"``) as Keras's boolean."""
    return {"tanh": True, "none": False}.get(value, value) if isinstance(value, str) else value


def _check_approximate(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(
            f"expected true or false (or 'tanh' or 'none'), got {fields.show(value)}", field=attribute.name
        )


@activation("gelu")
class GELU(Activation):
    """Gaussian error linear unit ``x * Phi(x)``: exact (``erf``, the default, as in Keras and
    PyTorch) or, with ``approximate``, the tanh approximation of BERT/GPT-2.

    Model specs of version 1 (written before ``approximate`` existed) meant the tanh form by
    ``"gelu"``; ``regnet.spec`` reads them so (see docs/format.md).

    >>> x = np.array([-1.0, 0.0, 1.0], np.float32)
    >>> GELU().forward(x).round(5), GELU(approximate=True).forward(x).round(5)
    (array([-0.15866,  0.     ,  0.84134], dtype=float32), array([-0.15881,  0.     ,  0.84119], dtype=float32))
    """

    C = math.sqrt(2 / math.pi)
    #: ``1 / sqrt(2 pi)``, the standard normal density at 0
    PDF0 = 1 / math.sqrt(2 * math.pi)

    approximate: bool = fields.field(
        False,
        doc="the tanh approximation instead of the exact erf form (PyTorch's 'tanh' and 'none' accepted)",
        accepts="true or false ('tanh' or 'none')",
        validator=_check_approximate,
        converter=_approximate,
    )

    def forward(self, x):
        if _compiled(x):
            kernels = accel.kernels("elementwise")
            return _run(kernels.gelu_tanh_forward if self.approximate else kernels.gelu_forward, x)
        if not self.approximate:
            return x * special.normal_cdf(x)
        c = _f32(self.C, x.dtype)
        return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x**3)))

    def backward(self, grad, x, y):
        if _compiled(x):
            kernels = accel.kernels("elementwise")
            return _run(kernels.gelu_tanh_backward if self.approximate else kernels.gelu_backward, x, grad)
        if not self.approximate:
            pdf = np.exp(-0.5 * x * x) * _f32(self.PDF0, x.dtype)
            return grad * (special.normal_cdf(x) + x * pdf)
        c = _f32(self.C, x.dtype)
        t = np.tanh(c * (x + 0.044715 * x**3))
        dt = (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
        return grad * (0.5 * (1 + t) + 0.5 * x * dt)


@activation("relu6")
class ReLU6(Activation):
    """``min(max(x, 0), 6)``.

    >>> ReLU6().forward(np.array([-1.0, 3.0, 7.0], np.float32))
    array([0., 3., 6.], dtype=float32)
    """

    def forward(self, x):
        return np.clip(x, 0, 6).astype(x.dtype, copy=False)

    def backward(self, grad, x, y):
        return np.where((x > 0) & (x < 6), grad, np.zeros((), grad.dtype))


@activation("silu", aliases=("swish",))
class SiLU(Activation):
    """``x * sigmoid(x)`` (Keras's ``swish`` is the same function).

    >>> SiLU().forward(np.array([-1.0, 0.0, 2.0], np.float32)).round(4)
    array([-0.2689,  0.    ,  1.7616], dtype=float32)
    """

    def forward(self, x):
        if _compiled(x):
            return _run(accel.kernels("elementwise").silu_forward, x)
        return x * _logistic(x)

    def backward(self, grad, x, y):
        if _compiled(x):
            return _run(accel.kernels("elementwise").silu_backward, x, grad)
        s = _logistic(x)
        return grad * (s * (1 + x * (1 - s)))


@activation("hard_sigmoid", aliases=("hardsigmoid",))
class HardSigmoid(Activation):
    """``relu6(x + 3) / 6``: 0 below -3, 1 above 3, linear between (Keras 3, PyTorch).

    >>> HardSigmoid().forward(np.array([-4.0, 0.0, 1.5], np.float32))
    array([0.  , 0.5 , 0.75], dtype=float32)
    """

    def forward(self, x):
        return np.clip(x * _f32(1 / 6, x.dtype) + _f32(0.5, x.dtype), 0, 1).astype(x.dtype, copy=False)

    def backward(self, grad, x, y):
        return np.where((x > -3) & (x < 3), grad * _f32(1 / 6, grad.dtype), np.zeros((), grad.dtype))


@activation("hard_swish", aliases=("hard_silu", "hardswish"))
class HardSwish(Activation):
    """``x * hard_sigmoid(x)``.

    >>> HardSwish().forward(np.array([-4.0, 1.0, 4.0], np.float32)).round(4)
    array([-0.    ,  0.6667,  4.    ], dtype=float32)
    """

    def forward(self, x):
        return x * np.clip(x * _f32(1 / 6, x.dtype) + _f32(0.5, x.dtype), 0, 1).astype(x.dtype, copy=False)

    def backward(self, grad, x, y):
        inner = x * _f32(1 / 3, x.dtype) + _f32(0.5, x.dtype)  # d/dx x (x + 3) / 6
        return grad * np.where(x <= -3, 0, np.where(x >= 3, 1, inner)).astype(grad.dtype, copy=False)


def softplus(x):
    """``log(1 + exp(x))`` without overflow."""
    return np.logaddexp(np.zeros((), x.dtype), x)


@activation("mish")
class Mish(Activation):
    """``x * tanh(softplus(x))``.

    >>> Mish().forward(np.array([-1.0, 0.0, 2.0], np.float32)).round(4)
    array([-0.3034,  0.    ,  1.944 ], dtype=float32)
    """

    def forward(self, x):
        if _compiled(x):
            return _run(accel.kernels("elementwise").mish_forward, x)
        return x * np.tanh(softplus(x))

    def backward(self, grad, x, y):
        if _compiled(x):
            return _run(accel.kernels("elementwise").mish_backward, x, grad)
        t = np.tanh(softplus(x))
        return grad * (t + x * (1 - t * t) * sigmoid(x))


@activation("softplus")
class Softplus(Activation):
    """``log(1 + exp(x))``.

    >>> Softplus().forward(np.array([-1.0, 0.0, 30.0], np.float32)).round(4)
    array([ 0.3133,  0.6931, 30.    ], dtype=float32)
    """

    def forward(self, x):
        return softplus(x)

    def backward(self, grad, x, y):
        return grad * sigmoid(x)


@activation("softsign")
class Softsign(Activation):
    """``x / (1 + |x|)``.

    >>> Softsign().forward(np.array([-3.0, 0.0, 1.0], np.float32))
    array([-0.75,  0.  ,  0.5 ], dtype=float32)
    """

    def forward(self, x):
        return x / (1 + np.abs(x))

    def backward(self, grad, x, y):
        d = 1 + np.abs(x)
        return grad / (d * d)


@activation("exponential", aliases=("exp",))
class Exponential(Activation):
    """``exp(x)``.

    >>> Exponential().forward(np.array([0.0, 1.0], np.float32)).round(4)
    array([1.    , 2.7183], dtype=float32)
    """

    test_input_range = (-2.5, 2.0)

    def forward(self, x):
        return np.exp(x)

    def backward(self, grad, x, y):
        return grad * y


@activation("log_softmax", aliases=("logsoftmax",))
class LogSoftmax(Activation):
    """``x - log(sum(exp(x)))`` over ``axis`` (the log of softmax, computed stably).

    >>> LogSoftmax().forward(np.array([[0.0, 0.0]], np.float32))
    array([[-0.6931472, -0.6931472]], dtype=float32)
    """

    axis: int = fields.integer(-1, min=None, doc="the axis the probabilities are normalised over")

    def forward(self, x):
        return log_softmax(x, self.axis)

    def backward(self, grad, x, y):
        return grad - np.exp(y) * grad.sum(axis=self.axis, keepdims=True)

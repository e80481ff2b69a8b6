"""Compiled element-wise activations: each forward pass and each backward pass (the incoming
gradient times the derivative, computed on the fly from the input) is one pass over flat float32
arrays, where NumPy needs several (GELU's exact form about 25, Mish about 10).

The loops must vectorise to be worth it (NumPy's own float32 ``exp`` and ``tanh`` are SIMD): a
call to the C library's ``expf`` would not, so the exponential is written out here in float32
arithmetic (``exp32``: Cody-Waite range reduction, a degree-7 polynomial, the power of two built in
the exponent bits), relative error about 2e-7; ``Phi`` uses the classic ``erfcc`` fit as
regnet.ops.special does (relative error 1.2e-7, in both tails). Inputs beyond the float32 range of
``exp`` are clamped (``exp32(-200)`` is the smallest normal float, about 1e-38, not 0), and NaN
inputs give NaN outputs. Call sites (regnet/activations.py) pass flat views: ``x`` and ``out``
(and ``grad``) stored in the same memory order, through ``run`` (on ``threads(x.size)`` threads).
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from .norm import run  # noqa: F401  (call sites run these kernels as the norm ones, on as many threads)

f32 = np.float32
_ONE, _HALF, _TWO, _ZERO = f32(1), f32(0.5), f32(2), f32(0)
_LOG2E = f32(1 / math.log(2))
_LN2_HI, _LN2_LO = f32(0.693359375), f32(-2.12194440e-4)  # ln 2 = hi + lo, hi exact in few bits
_EXP_MAX, _EXP_MIN = f32(88.0), f32(-87.3)  # the exponents stay within 2**-126 .. 2**127
_EXP_POLY = (f32(1.9875691500e-4), f32(1.3981999507e-3), f32(8.3334519073e-3), f32(4.1665795894e-2))
_EXP_P4, _EXP_P5 = f32(1.6666665459e-1), f32(5.0000001201e-1)
_HALF_SQRT_HALF = f32(0.5 / math.sqrt(2))
_PDF0 = f32(1 / math.sqrt(2 * math.pi))
_TANH_C = f32(math.sqrt(2 / math.pi))
_TANH_K = f32(0.044715)
_TANH_3K = f32(3 * 0.044715)
#: ``erfc(z) = t * exp(-z**2 + P(t))``, ``t = 1 / (1 + z/2)``: P's coefficients, constant term first
_ERFCC = tuple(
    f32(c)
    for c in (
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    )
)
_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9 = _ERFCC
_MISH_BIG = f32(20)  # tanh(softplus(x)) rounds to 1 beyond


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits``."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@numba.njit(cache=True, inline="always")
def exp32(v):
    """``exp(v)`` for float32 ``v`` in float32 arithmetic that vectorises (see the module doc)."""
    c = min(max(v, _EXP_MIN), _EXP_MAX)
    k = np.floor(c * _LOG2E + _HALF)
    r = c - k * _LN2_HI
    r = r - k * _LN2_LO
    p = ((_EXP_POLY[0] * r + _EXP_POLY[1]) * r + _EXP_POLY[2]) * r + _EXP_POLY[3]
    p = ((p * r + _EXP_P4) * r + _EXP_P5) * (r * r) + r + _ONE
    scale = _float_from_bits(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
    return v if v != v else p * scale


@numba.njit(cache=True, inline="always")
def _sigmoid(v):
    return _ONE / (_ONE + exp32(-v))


@numba.njit(cache=True, inline="always")
def _phi(v):
    """The standard normal distribution function, relatively accurate in both tails."""
    t = _ONE / (_ONE + abs(v) * _HALF_SQRT_HALF)  # 1 / (1 + z/2) with z = |v| / sqrt 2
    p = ((((_E9 * t + _E8) * t + _E7) * t + _E6) * t + _E5) * t + _E4
    p = ((((p * t + _E3) * t + _E2) * t + _E1) * t + _E0) - _HALF * v * v  # z**2 without rounding z
    tail = _HALF * t * exp32(p)  # Phi(-|v|)
    return tail if v < _ZERO else _ONE - tail


@numba.njit(cache=True, parallel=True)
def gelu_forward(x, out):
    """``out = x * Phi(x)``, the exact GELU."""
    for i in prange(x.size):
        v = x[i]
        out[i] = v * _phi(v)


@numba.njit(cache=True, parallel=True)
def gelu_backward(grad, x, out):
    """``out = grad * (Phi(x) + x * phi(x))``."""
    for i in prange(x.size):
        v = x[i]
        out[i] = grad[i] * (_phi(v) + v * _PDF0 * exp32(-_HALF * v * v))


@numba.njit(cache=True, parallel=True)
def gelu_tanh_forward(x, out):
    """``out = x / 2 * (1 + tanh(u))`` with ``u = c (x + k x**3)``, GELU's tanh approximation,
    computed as ``x * sigmoid(2 u)`` (the same function, without the cancellation of ``1 + tanh``
    in the negative tail)."""
    for i in prange(x.size):
        v = x[i]
        out[i] = v * _sigmoid(_TWO * _TANH_C * (v + _TANH_K * v * v * v))


@numba.njit(cache=True, parallel=True)
def gelu_tanh_backward(grad, x, out):
    """``out = grad * (s + 2 x s (1 - s) c (1 + 3 k x**2))`` with ``s = sigmoid(2 u)`` (``1 + tanh u
    = 2 s``, ``1 - tanh(u)**2 = 4 s (1 - s)``)."""
    for i in prange(x.size):
        v = x[i]
        s = _sigmoid(_TWO * _TANH_C * (v + _TANH_K * v * v * v))
        out[i] = grad[i] * (s + _TWO * v * s * (_ONE - s) * _TANH_C * (_ONE + _TANH_3K * v * v))


@numba.njit(cache=True, parallel=True)
def silu_forward(x, out):
    """``out = x * sigmoid(x)``."""
    for i in prange(x.size):
        v = x[i]
        out[i] = v * _sigmoid(v)


@numba.njit(cache=True, parallel=True)
def silu_backward(grad, x, out):
    """``out = grad * s (1 + x (1 - s))`` with ``s = sigmoid(x)``."""
    for i in prange(x.size):
        v = x[i]
        s = _sigmoid(v)
        out[i] = grad[i] * (s * (_ONE + v * (_ONE - s)))


@numba.njit(cache=True, inline="always")
def _tanh_softplus(v):
    """``tanh(log(1 + e**v))`` as ``n / (n + 2)`` with ``n = e**v (e**v + 2)``: one exponential."""
    e = exp32(min(v, _MISH_BIG))
    n = e * (e + _TWO)
    return _ONE if v > _MISH_BIG else n / (n + _TWO)


@numba.njit(cache=True, parallel=True)
def mish_forward(x, out):
    """``out = x * tanh(softplus(x))``."""
    for i in prange(x.size):
        v = x[i]
        out[i] = v * _tanh_softplus(v)


@numba.njit(cache=True, parallel=True)
def mish_backward(grad, x, out):
    """``out = grad * (t + x (1 - t**2) sigmoid(x))`` with ``t = tanh(softplus(x))``."""
    for i in prange(x.size):
        v = x[i]
        t = _tanh_softplus(v)
        out[i] = grad[i] * (t + v * (_ONE - t * t) * _sigmoid(v))

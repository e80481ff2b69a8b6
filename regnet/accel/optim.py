"""Fused optimizer updates: one compiled pass over each parameter instead of the ten or so NumPy
calls (each a full read and write of the arrays) of the reference rules in ``regnet.optimizers``.

Every rule takes the flat, C-contiguous float32 arrays of one parameter (``p``, ``g`` and its
state slots; ``regnet.optimizers`` checks that and falls back to NumPy otherwise), updates ``p``
and the slots in place, and takes its hyperparameters as float32 scalars that the caller has
already combined (bias corrections, ``1 - beta``...), in the reference's order of operations.
Parameters of ``PARALLEL_MIN`` elements or more are split into chunks of ``CHUNK`` elements over
numba's threads (``prange``); smaller ones run on the calling thread.

Each rule is a ``_<rule>_span(...)`` body over whole arrays that both drivers inline:
``_<rule>_parallel`` (on slices, one chunk per ``prange`` step) and ``_<rule>_serial`` (the whole
arrays). The body loops from 0 over the arrays it is given (slices, not offsets) and runs with
NumPy's error model, which lets LLVM compile it to SIMD instructions. ``fastmath`` stays off: NaN
and infinity propagate as in NumPy, and the results match the reference to float32 rounding (in
practice bit for bit, as the operations and their order are the same).
"""

import numba
import numpy as np
from numba import prange

from ..ops import parallel as _threads

#: elements per parallel chunk
CHUNK = 1 << 15
#: parameters from this many elements are split into chunks over numba's threads; smaller ones run
#: on the calling thread: a vectorised pass over a million float32 values takes about 0.2 ms, and
#: on a small machine shared with other work a parallel launch can wait milliseconds for a core
PARALLEL_MIN = 1 << 22

#: regnet's thread policy (REGNET_NUM_THREADS, the BLAS variables) also bounds numba's threads
numba.set_num_threads(max(1, min(_threads.threads(), numba.config.NUMBA_NUM_THREADS)))

# error_model="numpy": a division by zero gives inf or NaN as in NumPy (not ZeroDivisionError), and
# without that check per element the loops compile to SIMD instructions
_span = numba.njit(cache=True, inline="always", fastmath=False, error_model="numpy")
_serial = numba.njit(cache=True, fastmath=False, error_model="numpy")
_parallel = numba.njit(cache=True, parallel=True, fastmath=False, error_model="numpy")


def _run(serial, par, n, *args):
    if n < PARALLEL_MIN or numba.get_num_threads() == 1:
        serial(*args)
    else:
        par(*args)


# -- SGD ------------------------------------------------------------------------------------------
@_span
def _sgd_span(p, g, v, lr, momentum, nesterov, decay):
    for i in range(p.size):
        gi = g[i]
        if decay != 0:
            gi = gi + decay * p[i]
        if momentum != 0:
            vi = v[i] * momentum + gi
            v[i] = vi
            gi = gi + momentum * vi if nesterov else vi
        p[i] = p[i] - lr * gi


@_serial
def _sgd_serial(p, g, v, lr, momentum, nesterov, decay):
    _sgd_span(p, g, v, lr, momentum, nesterov, decay)


@_parallel
def _sgd_parallel(p, g, v, lr, momentum, nesterov, decay):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _sgd_span(p[lo:hi], g[lo:hi], v[lo:hi], lr, momentum, nesterov, decay)


def sgd(p, g, v, lr, momentum, nesterov, decay):
    """``g += decay*p``; with momentum ``v = momentum*v + g`` and the step ``v`` (or
    ``g + momentum*v``, nesterov); ``p -= lr*step``. ``v`` is unused (any float32 array) when
    ``momentum`` is 0."""
    _run(_sgd_serial, _sgd_parallel, p.size, p, g, v, lr, momentum, nesterov, decay)


# -- AdaGrad --------------------------------------------------------------------------------------
@_span
def _adagrad_span(p, g, acc, lr, eps):
    for i in range(p.size):
        gi = g[i]
        a = acc[i] + gi * gi
        acc[i] = a
        p[i] = p[i] - lr * gi / (np.sqrt(a) + eps)


@_serial
def _adagrad_serial(p, g, acc, lr, eps):
    _adagrad_span(p, g, acc, lr, eps)


@_parallel
def _adagrad_parallel(p, g, acc, lr, eps):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _adagrad_span(p[lo:hi], g[lo:hi], acc[lo:hi], lr, eps)


def adagrad(p, g, acc, lr, eps):
    """``acc += g*g``; ``p -= lr*g / (sqrt(acc) + eps)``."""
    _run(_adagrad_serial, _adagrad_parallel, p.size, p, g, acc, lr, eps)


# -- RMSprop --------------------------------------------------------------------------------------
@_span
def _rmsprop_span(p, g, ms, lr, rho, one_minus_rho, eps):
    for i in range(p.size):
        gi = g[i]
        s = ms[i] * rho + one_minus_rho * gi * gi
        ms[i] = s
        p[i] = p[i] - lr * gi / (np.sqrt(s) + eps)


@_serial
def _rmsprop_serial(p, g, ms, lr, rho, one_minus_rho, eps):
    _rmsprop_span(p, g, ms, lr, rho, one_minus_rho, eps)


@_parallel
def _rmsprop_parallel(p, g, ms, lr, rho, one_minus_rho, eps):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _rmsprop_span(p[lo:hi], g[lo:hi], ms[lo:hi], lr, rho, one_minus_rho, eps)


def rmsprop(p, g, ms, lr, rho, one_minus_rho, eps):
    """``ms = rho*ms + (1-rho)*g*g``; ``p -= lr*g / (sqrt(ms) + eps)``."""
    _run(_rmsprop_serial, _rmsprop_parallel, p.size, p, g, ms, lr, rho, one_minus_rho, eps)


# -- Adam / AdamW ---------------------------------------------------------------------------------
@_span
def _adam_span(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t):
    for i in range(p.size):
        gi = g[i]
        pi = p[i]
        if decay != 0:
            pi = pi - decay * pi
        mi = m[i] * b1 + gi * one_minus_b1
        vi = v[i] * b2 + gi * gi * one_minus_b2
        m[i] = mi
        v[i] = vi
        p[i] = pi - mi / (np.sqrt(vi / c2) + eps) * lr_t


@_serial
def _adam_serial(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t):
    _adam_span(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t)


@_parallel
def _adam_parallel(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _adam_span(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t)


def adam(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t):
    """``p -= decay*p`` (AdamW; 0 for Adam); ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g*g``;
    ``p -= m / (sqrt(v / c2) + eps) * lr_t`` with ``c2 = 1 - b2**t`` and ``lr_t = lr / (1 - b1**t)``."""
    _run(_adam_serial, _adam_parallel, p.size, p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, lr_t)


# -- Adamax ---------------------------------------------------------------------------------------
@_span
def _adamax_span(p, g, m, u, decay, b1, one_minus_b1, b2, eps, lr_t):
    for i in range(p.size):
        gi = g[i]
        if decay != 0:
            gi = gi + decay * p[i]
        mi = m[i] * b1 + gi * one_minus_b1
        a = u[i] * b2
        b = np.abs(gi) + eps
        ui = a if (a > b or a != a) else b  # np.maximum: a NaN on either side wins
        m[i] = mi
        u[i] = ui
        p[i] = p[i] - mi / ui * lr_t


@_serial
def _adamax_serial(p, g, m, u, decay, b1, one_minus_b1, b2, eps, lr_t):
    _adamax_span(p, g, m, u, decay, b1, one_minus_b1, b2, eps, lr_t)


@_parallel
def _adamax_parallel(p, g, m, u, decay, b1, one_minus_b1, b2, eps, lr_t):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _adamax_span(p[lo:hi], g[lo:hi], m[lo:hi], u[lo:hi], decay, b1, one_minus_b1, b2, eps, lr_t)


def adamax(p, g, m, u, decay, b1, one_minus_b1, b2, eps, lr_t):
    """``g += decay*p``; ``m = b1*m + (1-b1)*g``; ``u = max(b2*u, |g| + eps)``; ``p -= m / u * lr_t``."""
    _run(_adamax_serial, _adamax_parallel, p.size, p, g, m, u, decay, b1, one_minus_b1, b2, eps, lr_t)


# -- Nadam ----------------------------------------------------------------------------------------
@_span
def _nadam_span(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m):
    for i in range(p.size):
        gi = g[i]
        if decay != 0:
            gi = gi + decay * p[i]
        mi = m[i] * b1 + gi * one_minus_b1
        vi = v[i] * b2 + gi * gi * one_minus_b2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - (gi * a_g + mi * a_m) / (np.sqrt(vi / c2) + eps)


@_serial
def _nadam_serial(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m):
    _nadam_span(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m)


@_parallel
def _nadam_parallel(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _nadam_span(
            p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m
        )


def nadam(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m):
    """``g += decay*p``; Adam's moments; ``p -= (a_g*g + a_m*m) / (sqrt(v / c2) + eps)`` (the
    Nesterov weights ``a_g``, ``a_m`` come from the momentum schedule)."""
    args = (p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, c2, eps, a_g, a_m)
    _run(_nadam_serial, _nadam_parallel, p.size, *args)


# -- Adadelta -------------------------------------------------------------------------------------
@_span
def _adadelta_span(p, g, a, b, decay, rho, one_minus_rho, eps, lr):
    for i in range(p.size):
        gi = g[i]
        if decay != 0:
            gi = gi + decay * p[i]
        ai = a[i] * rho + gi * gi * one_minus_rho
        a[i] = ai
        delta = np.sqrt(b[i] + eps) / np.sqrt(ai + eps) * gi
        b[i] = b[i] * rho + delta * delta * one_minus_rho
        p[i] = p[i] - delta * lr


@_serial
def _adadelta_serial(p, g, a, b, decay, rho, one_minus_rho, eps, lr):
    _adadelta_span(p, g, a, b, decay, rho, one_minus_rho, eps, lr)


@_parallel
def _adadelta_parallel(p, g, a, b, decay, rho, one_minus_rho, eps, lr):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _adadelta_span(p[lo:hi], g[lo:hi], a[lo:hi], b[lo:hi], decay, rho, one_minus_rho, eps, lr)


def adadelta(p, g, a, b, decay, rho, one_minus_rho, eps, lr):
    """``g += decay*p``; ``a = rho*a + (1-rho)*g*g``; ``d = sqrt(b + eps) / sqrt(a + eps) * g``;
    ``b = rho*b + (1-rho)*d*d``; ``p -= d*lr``."""
    _run(_adadelta_serial, _adadelta_parallel, p.size, p, g, a, b, decay, rho, one_minus_rho, eps, lr)


# -- Lion -----------------------------------------------------------------------------------------
@_span
def _lion_span(p, g, m, decay, b1, one_minus_b1, b2, one_minus_b2, lr):
    for i in range(p.size):
        gi = g[i]
        mi = m[i]
        s = np.sign(mi * b1 + gi * one_minus_b1)
        if decay != 0:
            s = s + decay * p[i]
        p[i] = p[i] - s * lr
        m[i] = mi * b2 + gi * one_minus_b2


@_serial
def _lion_serial(p, g, m, decay, b1, one_minus_b1, b2, one_minus_b2, lr):
    _lion_span(p, g, m, decay, b1, one_minus_b1, b2, one_minus_b2, lr)


@_parallel
def _lion_parallel(p, g, m, decay, b1, one_minus_b1, b2, one_minus_b2, lr):
    for c in prange((p.size + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(p.size, (c + 1) * CHUNK)
        _lion_span(p[lo:hi], g[lo:hi], m[lo:hi], decay, b1, one_minus_b1, b2, one_minus_b2, lr)


def lion(p, g, m, decay, b1, one_minus_b1, b2, one_minus_b2, lr):
    """``p -= (sign(b1*m + (1-b1)*g) + decay*p) * lr``; ``m = b2*m + (1-b2)*g``."""
    _run(_lion_serial, _lion_parallel, p.size, p, g, m, decay, b1, one_minus_b1, b2, one_minus_b2, lr)

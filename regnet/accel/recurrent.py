"""Compiled kernels of the recurrent cells (SimpleRNN, LSTM, GRU): one step's element-wise gate
math, forward and backward, in one pass over the ``(N, units)`` batch.

The products stay with BLAS: the caller computes every step's input projection before the loop
and, per step, ``inner = h_prev @ recurrent_kernel`` (forward) or ``rec = d_inner[t + 1] @
recurrent_kernel.T`` (backward); a kernel here then does everything else of the step: the gate
activations, the new state, the mask (a masked step keeps the state), and backward the gradients
of the gate pre-activations and of the carried state. The NumPy reference is the cells' ``_step``
and ``_step_backward`` in ``regnet.layers.recurrent``.

Activations are passed as codes (0 ``linear``, 1 ``tanh``, 2 ``sigmoid``, 3 ``relu``); a derivative
is computed from the activation's output (``tanh``: ``1 - y^2``, ``sigmoid``: ``y (1 - y)``,
``relu``: ``y > 0``, ``linear``: 1).
``mask`` is ``(N, L)`` 0/1 or ``(0, 0)`` for none; ``seq`` (the output gradient of every step,
``(N, L, units)``) is ``(0, 0, 0)`` when the layer returns the last step only.

The kernels are serial: a step's element-wise work (``N * units`` values, a fraction of a
millisecond) is too small to pay for starting a parallel region at every step of the loop (with
two busy cores, a region that waits for its second thread to be scheduled took milliseconds).
"""

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _act(code, v, one):
    """The activation ``code`` of ``v``; ``one`` is 1 in the arrays' type (float32 stays float32)."""
    if code == 1:
        return np.tanh(v)
    if code == 2:  # the stable logistic function
        if v >= 0:
            return one / (one + np.exp(-v))
        e = np.exp(v)
        return e / (one + e)
    if code == 3:
        return v if v > 0 else one - one
    return v


@numba.njit(cache=True, inline="always")
def _slope(code, y, one):
    """The activation's derivative from its output ``y``."""
    if code == 1:
        return one - y * y
    if code == 2:
        return y * (one - y)
    if code == 3:
        return one if y > 0 else one - one
    return one


@numba.njit(cache=True, inline="always")
def _mask(mask, n, t, one):
    return mask[n, t] if mask.shape[0] else one


@numba.njit(cache=True, inline="always")
def _incoming(rec, carry, seq, n, t, j):
    """The gradient reaching step ``t``'s output state: through the next step, carried past
    masked steps, and from the step's own output."""
    d = rec[n, j] + carry[n, j]
    if seq.shape[0]:
        d += seq[n, t, j]
    return d


@numba.njit(cache=True)
def rnn_forward(proj, inner, h_prev, mask, t, act, h_cell, h_new):
    """SimpleRNN step ``t``: ``h_cell = act(proj + inner)`` (kept for backward) and the state
    ``h_new`` (``h_prev`` where the step is masked)."""
    n, u = h_prev.shape
    one = h_prev.dtype.type(1)
    for s in range(n):
        m = _mask(mask, s, t, one)
        for j in range(u):
            h = _act(act, proj[s, j] + inner[s, j], one)
            h_cell[s, j] = h
            h_new[s, j] = m * h + (one - m) * h_prev[s, j]


@numba.njit(cache=True)
def rnn_backward(rec, carry, seq, mask, t, act, h_cell, dz):
    """SimpleRNN step ``t`` backward: ``dz`` (the pre-activation gradient, input and recurrent
    products alike); ``carry`` becomes the part of ``d h_prev`` that skips the products."""
    n, u = carry.shape
    one = carry.dtype.type(1)
    for s in range(n):
        m = _mask(mask, s, t, one)
        for j in range(u):
            d = _incoming(rec, carry, seq, s, t, j)
            dz[s, j] = m * d * _slope(act, h_cell[s, j], one)
            carry[s, j] = (one - m) * d


@numba.njit(cache=True)
def lstm_forward(proj, inner, h_prev, c_prev, mask, t, gate, cell, acts, tc, h_new, c_new):
    """LSTM step ``t`` (gates ``i, f, c, o``): ``acts`` ``(N, 4 units)`` the activated gates and
    ``tc = cell(c)`` (kept for backward), the states ``h_new`` and ``c_new``."""
    n, u = h_prev.shape
    one = h_prev.dtype.type(1)
    for s in range(n):
        m = _mask(mask, s, t, one)
        for j in range(u):
            i = _act(gate, proj[s, j] + inner[s, j], one)
            f = _act(gate, proj[s, u + j] + inner[s, u + j], one)
            g = _act(cell, proj[s, 2 * u + j] + inner[s, 2 * u + j], one)
            o = _act(gate, proj[s, 3 * u + j] + inner[s, 3 * u + j], one)
            c = f * c_prev[s, j] + i * g
            tcv = _act(cell, c, one)
            acts[s, j], acts[s, u + j], acts[s, 2 * u + j], acts[s, 3 * u + j] = i, f, g, o
            tc[s, j] = tcv
            h_new[s, j] = m * (o * tcv) + (one - m) * h_prev[s, j]
            c_new[s, j] = m * c + (one - m) * c_prev[s, j]


@numba.njit(cache=True)
def lstm_backward(rec, carry, seq, dc, mask, t, gate, cell, acts, tc, c_prev, dz):
    """LSTM step ``t`` backward: ``dz`` ``(N, 4 units)``; ``carry`` and ``dc`` become the
    gradients of the previous ``h`` (less the recurrent product's part) and ``c``."""
    n, u = carry.shape
    one = carry.dtype.type(1)
    for s in range(n):
        m = _mask(mask, s, t, one)
        for j in range(u):
            dh = _incoming(rec, carry, seq, s, t, j)
            dcv = dc[s, j]
            i, f, g, o = acts[s, j], acts[s, u + j], acts[s, 2 * u + j], acts[s, 3 * u + j]
            tcv = tc[s, j]
            dh_in, dc_in = m * dh, m * dcv
            dc2 = dc_in + dh_in * o * _slope(cell, tcv, one)
            dz[s, j] = dc2 * g * _slope(gate, i, one)
            dz[s, u + j] = dc2 * c_prev[s, j] * _slope(gate, f, one)
            dz[s, 2 * u + j] = dc2 * i * _slope(cell, g, one)
            dz[s, 3 * u + j] = dh_in * tcv * _slope(gate, o, one)
            carry[s, j] = (one - m) * dh
            dc[s, j] = dc2 * f + (one - m) * dcv


@numba.njit(cache=True)
def gru_forward(proj, inner, rbias, h_prev, mask, t, gate, cell, acts, inner_h, h_new):
    """GRU step ``t`` (``reset_after``; gates ``z, r, h``): ``inner`` is ``h_prev @
    recurrent_kernel``, ``rbias`` the recurrent bias (``(0,)`` for none); ``acts`` ``(N, 3
    units)`` is ``z, r`` and the candidate, ``inner_h`` the candidate's recurrent part (both kept
    for backward), ``h_new`` the state."""
    n, u = h_prev.shape
    one = h_prev.dtype.type(1)
    has_bias = rbias.shape[0] > 0
    for s in range(n):
        m = _mask(mask, s, t, one)
        for j in range(u):
            a, b, ih = inner[s, j], inner[s, u + j], inner[s, 2 * u + j]
            if has_bias:
                a += rbias[j]
                b += rbias[u + j]
                ih += rbias[2 * u + j]
            z = _act(gate, proj[s, j] + a, one)
            r = _act(gate, proj[s, u + j] + b, one)
            hh = _act(cell, proj[s, 2 * u + j] + r * ih, one)
            hp = h_prev[s, j]
            acts[s, j], acts[s, u + j], acts[s, 2 * u + j] = z, r, hh
            inner_h[s, j] = ih
            h_new[s, j] = m * (z * hp + (one - z) * hh) + (one - m) * hp


@numba.njit(cache=True)
def gru_backward(rec, carry, seq, mask, t, gate, cell, acts, inner_h, h_prev, d_proj, d_inner):
    """GRU step ``t`` backward: the gradients of the input projection ``d_proj`` and of the
    recurrent product ``d_inner`` (they differ in the candidate block: ``* r``); ``carry``
    becomes the part of ``d h_prev`` that skips the recurrent product."""
    n, u = carry.shape
    one = carry.dtype.type(1)
    for s in range(n):
        m = _mask(mask, s, t, one)
        for j in range(u):
            d = _incoming(rec, carry, seq, s, t, j)
            dh = m * d
            z, r, hh = acts[s, j], acts[s, u + j], acts[s, 2 * u + j]
            d_pre = dh * (one - z) * _slope(cell, hh, one)
            dz = dh * (h_prev[s, j] - hh) * _slope(gate, z, one)
            dr = d_pre * inner_h[s, j] * _slope(gate, r, one)
            d_proj[s, j] = d_inner[s, j] = dz
            d_proj[s, u + j] = d_inner[s, u + j] = dr
            d_proj[s, 2 * u + j] = d_pre
            d_inner[s, 2 * u + j] = d_pre * r
            carry[s, j] = dh * z + (one - m) * d

"""Max and average pooling as single compiled passes: the window maxima with their argmax, the
window means, and the backward scatters.

The kernels see a batch stored batch-innermost (``regnet.ops.layout``'s CHWN, what the
convolutions hand on) as its C-contiguous ``(C, H, W, N)`` view: channels are independent planes
and the innermost loops run along the batch, where they compile to SIMD instructions.
``regnet.ops.pool`` sends only such batches here (a C-ordered batch would make those loops one
value wide, slower than NumPy's whole-array passes).

Padding is never materialised: a window is clipped to the input, which is what padding with
``-inf`` (max) or zeros (average) amounts to (every window holds at least one input element: the
layers refuse padding of more than half the window, and ``ceil_mode`` drops a window that would
start in the padding after the input).

The max pass keeps the first maximum of each window in row-major order (strict ``>``, as the
NumPy path), or the first NaN, whose maximum is then NaN; ``arg`` holds its flat index ``i*W + j``
in the plane. The backward passes add each output's gradient at that index, or over its window
(overlapping windows add up). ``fastmath`` stays off so that NaN compares as in NumPy.

Each kernel is a body over a block of planes (``_<kernel>``, inlined) and two drivers: the plain
one runs all planes on the calling thread, the ``_parallel`` one splits them over numba's threads
(``prange``) and is used from ``PARALLEL_MIN`` elements: on a small machine shared with other
work a parallel launch waits for a second core, which costs more than the pass itself.
"""

import numba
from numba import prange

from ..ops import parallel as _threads

#: input elements from which the channels are split over threads
PARALLEL_MIN = 1 << 23

numba.set_num_threads(max(1, min(_threads.threads(), numba.config.NUMBA_NUM_THREADS)))

_body = numba.njit(cache=True, inline="always", fastmath=False, error_model="numpy")
_serial = numba.njit(cache=True, fastmath=False, error_model="numpy")
_parallel = numba.njit(cache=True, parallel=True, fastmath=False, error_model="numpy")


def _blocks(planes):
    return max(1, min(planes, 4 * numba.get_num_threads()))


# -- max ------------------------------------------------------------------------------------------
@_body
def _max_forward(x, ph, pw, sh, sw, top, left, out, arg, with_arg):
    planes, h, w, nb = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for a in range(planes):
        for oh in range(ho):
            h0 = oh * sh - top
            hs, he = max(h0, 0), min(h0 + ph, h)
            for ow in range(wo):
                w0 = ow * sw - left
                ws, we = max(w0, 0), min(w0 + pw, w)
                for b in range(nb):
                    out[a, oh, ow, b] = x[a, hs, ws, b]
                    if with_arg:
                        arg[a, oh, ow, b] = hs * w + ws
                for i in range(hs, he):
                    for j in range(ws, we):
                        for b in range(nb):  # the batch, contiguous: SIMD
                            v = x[a, i, j, b]
                            best = out[a, oh, ow, b]
                            if v > best or (v != v and best == best):
                                out[a, oh, ow, b] = v
                                if with_arg:
                                    arg[a, oh, ow, b] = i * w + j


@_serial
def max_forward(x, ph, pw, sh, sw, top, left, out, arg, with_arg):
    """``out[a, oh, ow, b]`` = the maximum of the window at ``(oh*sh - top, ow*sw - left)`` of
    size ``(ph, pw)`` clipped to ``x``; ``arg`` its flat index (written when ``with_arg``; else
    ``arg`` may be any 4-D int32 array)."""
    _max_forward(x, ph, pw, sh, sw, top, left, out, arg, with_arg)


@_parallel
def max_forward_parallel(x, ph, pw, sh, sw, top, left, out, arg, with_arg, blocks):
    """``max_forward`` with the planes split into ``blocks`` over threads."""
    planes = x.shape[0]
    step = (planes + blocks - 1) // blocks
    for k in prange(blocks):
        lo, hi = min(planes, k * step), min(planes, (k + 1) * step)
        part = arg[lo:hi] if with_arg else arg
        _max_forward(x[lo:hi], ph, pw, sh, sw, top, left, out[lo:hi], part, with_arg)


@_body
def _max_backward(grad, arg, dx):
    planes, ho, wo, nb = grad.shape
    for a in range(planes):
        for oh in range(ho):
            for ow in range(wo):
                for b in range(nb):
                    dx[a, arg[a, oh, ow, b], b] += grad[a, oh, ow, b]


@_serial
def max_backward(grad, arg, dx):
    """``dx[a, arg[a, oh, ow, b], b] += grad[a, oh, ow, b]`` (``dx`` is ``(C, H*W, N)``, zeroed)."""
    _max_backward(grad, arg, dx)


@_parallel
def max_backward_parallel(grad, arg, dx, blocks):
    planes = grad.shape[0]
    step = (planes + blocks - 1) // blocks
    for k in prange(blocks):
        lo, hi = min(planes, k * step), min(planes, (k + 1) * step)
        _max_backward(grad[lo:hi], arg[lo:hi], dx[lo:hi])


# -- average --------------------------------------------------------------------------------------
@_body
def _avg_forward(x, ph, pw, sh, sw, top, left, inv_count, out):
    planes, h, w, nb = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for a in range(planes):
        for oh in range(ho):
            h0 = oh * sh - top
            hs, he = max(h0, 0), min(h0 + ph, h)
            for ow in range(wo):
                w0 = ow * sw - left
                ws, we = max(w0, 0), min(w0 + pw, w)
                scale = inv_count[oh, ow]
                for b in range(nb):
                    out[a, oh, ow, b] = 0
                for i in range(hs, he):
                    for j in range(ws, we):
                        for b in range(nb):
                            out[a, oh, ow, b] += x[a, i, j, b]
                for b in range(nb):
                    out[a, oh, ow, b] *= scale


@_serial
def avg_forward(x, ph, pw, sh, sw, top, left, inv_count, out):
    """``out[a, oh, ow, b]`` = the sum of the window clipped to ``x`` (padding adds zeros) times
    ``inv_count[oh, ow]`` (one over the positions that count)."""
    _avg_forward(x, ph, pw, sh, sw, top, left, inv_count, out)


@_parallel
def avg_forward_parallel(x, ph, pw, sh, sw, top, left, inv_count, out, blocks):
    planes = x.shape[0]
    step = (planes + blocks - 1) // blocks
    for k in prange(blocks):
        lo, hi = min(planes, k * step), min(planes, (k + 1) * step)
        _avg_forward(x[lo:hi], ph, pw, sh, sw, top, left, inv_count, out[lo:hi])


@_body
def _avg_backward(grad, ph, pw, sh, sw, top, left, inv_count, dx):
    planes, ho, wo, nb = grad.shape
    h, w = dx.shape[1], dx.shape[2]
    for a in range(planes):
        for oh in range(ho):
            h0 = oh * sh - top
            hs, he = max(h0, 0), min(h0 + ph, h)
            for ow in range(wo):
                w0 = ow * sw - left
                ws, we = max(w0, 0), min(w0 + pw, w)
                scale = inv_count[oh, ow]
                for i in range(hs, he):
                    for j in range(ws, we):
                        for b in range(nb):
                            dx[a, i, j, b] += grad[a, oh, ow, b] * scale


@_serial
def avg_backward(grad, ph, pw, sh, sw, top, left, inv_count, dx):
    """``dx`` (zeroed, ``(C, H, W, N)``) += each output's gradient times ``inv_count[oh, ow]`` over
    its window clipped to ``dx``."""
    _avg_backward(grad, ph, pw, sh, sw, top, left, inv_count, dx)


@_parallel
def avg_backward_parallel(grad, ph, pw, sh, sw, top, left, inv_count, dx, blocks):
    planes = grad.shape[0]
    step = (planes + blocks - 1) // blocks
    for k in prange(blocks):
        lo, hi = min(planes, k * step), min(planes, (k + 1) * step)
        _avg_backward(grad[lo:hi], ph, pw, sh, sw, top, left, inv_count, dx[lo:hi])


# -- the entry points the layers call: serial or parallel by size ------------------------------------
def max_pool(x, ph, pw, sh, sw, top, left, out, arg, with_arg):
    """``max_forward`` on the calling thread, or over threads from ``PARALLEL_MIN`` elements (and
    likewise the other three entry points)."""
    if x.size < PARALLEL_MIN:
        max_forward(x, ph, pw, sh, sw, top, left, out, arg, with_arg)
    else:
        max_forward_parallel(x, ph, pw, sh, sw, top, left, out, arg, with_arg, _blocks(x.shape[0]))


def max_pool_backward(grad, arg, dx):
    if dx.size < PARALLEL_MIN:
        max_backward(grad, arg, dx)
    else:
        max_backward_parallel(grad, arg, dx, _blocks(dx.shape[0]))


def avg_pool(x, ph, pw, sh, sw, top, left, inv_count, out):
    if x.size < PARALLEL_MIN:
        avg_forward(x, ph, pw, sh, sw, top, left, inv_count, out)
    else:
        avg_forward_parallel(x, ph, pw, sh, sw, top, left, inv_count, out, _blocks(x.shape[0]))


def avg_pool_backward(grad, ph, pw, sh, sw, top, left, inv_count, dx):
    if dx.size < PARALLEL_MIN:
        avg_backward(grad, ph, pw, sh, sw, top, left, inv_count, dx)
    else:
        avg_backward_parallel(grad, ph, pw, sh, sw, top, left, inv_count, dx, _blocks(dx.shape[0]))

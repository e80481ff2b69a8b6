"""Max pooling with its argmax, and the backward scatter, as single compiled passes.

The kernels see a batch as a 4-D array ``(A, H, W, B)`` whose planes ``a`` are independent and
whose innermost axis ``b`` is contiguous: a C-ordered NCHW batch is ``(N*C, H, W, 1)`` and one
stored batch-innermost (``regnet.ops.layout``'s CHWN) is ``(C, H, W, N)``, both views without a
copy. Planes run on numba's threads (``prange``). Padding is never materialised: a window is
clipped to the input, which is what padding with ``-inf`` amounts to (every window holds at least
one input element: the layers refuse padding of more than half the window, and ``ceil_mode``
drops a window that would start in the padding after the input).

The forward pass keeps the first maximum of each window in row-major order (strict ``>``, as the
NumPy path), or the first NaN, whose maximum is then NaN; ``arg`` holds its flat index ``i*W + j``
in the plane. The backward pass adds each output's gradient at that index (overlapping windows
add up). ``fastmath`` stays off so that NaN compares as in NumPy.
"""

import numba
from numba import prange

from ..ops import parallel as _threads

numba.set_num_threads(max(1, min(_threads.threads(), numba.config.NUMBA_NUM_THREADS)))


@numba.njit(cache=True, parallel=True, fastmath=False)
def max_forward(x, ph, pw, sh, sw, top, left, out, arg, with_arg):
    """``out[a, oh, ow, b]`` = the maximum of the window at ``(oh*sh - top, ow*sw - left)`` of
    size ``(ph, pw)`` clipped to ``x``; ``arg`` its flat index (written when ``with_arg``)."""
    planes, h, w, nb = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for a in prange(planes):
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
                        if i == hs and j == ws:
                            continue
                        for b in range(nb):
                            v = x[a, i, j, b]
                            best = out[a, oh, ow, b]
                            if v > best or (v != v and best == best):
                                out[a, oh, ow, b] = v
                                if with_arg:
                                    arg[a, oh, ow, b] = i * w + j


@numba.njit(cache=True, parallel=True, fastmath=False)
def max_backward(grad, arg, dx):
    """``dx[a, arg[a, oh, ow, b], b] += grad[a, oh, ow, b]`` (``dx`` is ``(A, H*W, B)``, zeroed)."""
    planes, ho, wo, nb = grad.shape
    for a in prange(planes):
        for oh in range(ho):
            for ow in range(wo):
                for b in range(nb):
                    dx[a, arg[a, oh, ow, b], b] += grad[a, oh, ow, b]


@numba.njit(cache=True, parallel=True, fastmath=False)
def avg_forward(x, ph, pw, sh, sw, top, left, inv_count, out):
    """``out[a, oh, ow, b]`` = the sum of the window clipped to ``x`` (padding adds zeros) times
    ``inv_count[oh, ow]`` (one over the positions that count)."""
    planes, h, w, nb = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for a in prange(planes):
        for oh in range(ho):
            h0 = oh * sh - top
            hs, he = max(h0, 0), min(h0 + ph, h)
            for ow in range(wo):
                w0 = ow * sw - left
                ws, we = max(w0, 0), min(w0 + pw, w)
                for b in range(nb):
                    out[a, oh, ow, b] = 0
                for i in range(hs, he):
                    for j in range(ws, we):
                        for b in range(nb):
                            out[a, oh, ow, b] += x[a, i, j, b]
                scale = inv_count[oh, ow]
                for b in range(nb):
                    out[a, oh, ow, b] *= scale


@numba.njit(cache=True, parallel=True, fastmath=False)
def avg_backward(grad, ph, pw, sh, sw, top, left, inv_count, dx):
    """``dx`` (zeroed, ``(A, H, W, B)``) += each output's gradient times ``inv_count[oh, ow]`` over
    its window clipped to ``dx``."""
    planes, ho, wo, nb = grad.shape
    h, w = dx.shape[1], dx.shape[2]
    for a in prange(planes):
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

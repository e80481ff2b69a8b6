"""Compiled convolution kernels: the depthwise convolution (one group per input channel,
``depth_multiplier`` filters each) forward, input gradient and kernel gradient, straight on NCHW
arrays: no padded copy, no im2col columns, no CHWN transposes.

Each kernel runs in parallel over (sample, input channel) pairs: a pair owns its output planes (or
its input-gradient plane), so no two threads write the same value, and pads its one input plane
into a small buffer of its own, so that the loops over kernel taps and output pixels run without
bounds tests (the inner loop over an output row is then a plain multiply-add that vectorises).

Shapes: ``x`` ``(N, C, H, W)``, ``kernel`` ``(C * mult, 1, kh, kw)`` (PyTorch's layout for
``groups=C``), output ``(N, C * mult, Ho, Wo)``; ``stride``, ``pads`` (top, left) and
``dilation`` are the layer's. The NumPy reference is ``regnet.ops.grouped.Engine``.
"""

import numba
import numpy as np

#: float reassociation only (NaN and infinity keep their meaning): the kernel gradient's sums
#: over an output plane vectorise
FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=FAST, inline="always")
def _axpy(dst, a, src):
    """``dst += a * src`` (1-D; contiguous operands vectorise)."""
    for k in range(dst.shape[0]):
        dst[k] += a * src[k]


@numba.njit(cache=True, fastmath=FAST, inline="always")
def _axpy3(dst, w, a, b, c):
    """``dst += w[0] * a + w[1] * b + w[2] * c`` (one pass over ``dst`` for three taps)."""
    w0, w1, w2 = w[0], w[1], w[2]
    for k in range(dst.shape[0]):
        dst[k] += w0 * a[k] + w1 * b[k] + w2 * c[k]


@numba.njit(cache=True, fastmath=FAST, inline="always")
def _dot(a, b):
    acc = a.dtype.type(0)
    for k in range(a.shape[0]):
        acc += a[k] * b[k]
    return acc


@numba.njit(cache=True, fastmath=FAST, inline="always")
def _dot3(g, a, b, c):
    """``(g . a, g . b, g . c)`` in one pass over ``g``."""
    zero = g.dtype.type(0)
    sa, sb, sc = zero, zero, zero
    for k in range(g.shape[0]):
        sa += g[k] * a[k]
        sb += g[k] * b[k]
        sc += g[k] * c[k]
    return sa, sb, sc


@numba.njit(cache=True)
def _pad_plane(plane, pt, pb, pl, pr):
    h, w = plane.shape
    buf = np.zeros((h + pt + pb, w + pl + pr), plane.dtype)
    buf[pt : pt + h, pl : pl + w] = plane
    return buf


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def depthwise_forward(x, kernel, bias, sh, sw, pt, pb, pl, pr, dh, dw, ho, wo):
    """``(N, C * mult, Ho, Wo)``: the depthwise convolution of ``x`` plus ``bias`` (``(F,)``, or
    ``(0,)`` for none); ``pt, pb, pl, pr``: the zeros above, below, left and right."""
    n, c, h, w = x.shape
    f, _, kh, kw = kernel.shape
    mult = f // c
    span = sw * (wo - 1) + 1  # the padded input columns one output row reads per tap
    out = np.empty((n, f, ho, wo), x.dtype)
    for p in numba.prange(n * c):
        s, ch = p // c, p % c
        buf = _pad_plane(x[s, ch], pt, pb, pl, pr)
        for m in range(mult):
            o = ch * mult + m
            b = bias[o] if bias.shape[0] else x.dtype.type(0)
            for oy in range(ho):
                yrow = out[s, o, oy]
                yrow[:] = b
                for i in range(kh):
                    iy = oy * sh + i * dh
                    if sw == 1 and kw == 3:  # the common 3-wide row: its three taps in one pass
                        _axpy3(
                            yrow, kernel[o, 0, i], buf[iy, 0:wo], buf[iy, dw : dw + wo], buf[iy, 2 * dw : 2 * dw + wo]
                        )
                        continue
                    for j in range(kw):
                        off = j * dw
                        if sw == 1:  # contiguous slices: the multiply-add vectorises
                            _axpy(yrow, kernel[o, 0, i, j], buf[iy, off : off + wo])
                        else:
                            _axpy(yrow, kernel[o, 0, i, j], buf[iy, off : off + span : sw])
    return out


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def _input_grad_unit_stride(grad, kernel, dx, pt, pl, dh, dw):
    """The input gradient of a stride-1 depthwise convolution as a gather: each input row is the
    correlation of the zero-margined output gradient with the flipped kernel, written once
    (``dx[y, x] = sum k[i, j] g[y + pt - i dh, x + pl - j dw]``)."""
    n, f, ho, wo = grad.shape
    _, c, h, w = dx.shape
    kh, kw = kernel.shape[2], kernel.shape[3]
    mult = f // c
    top, left = (kh - 1) * dh, (kw - 1) * dw  # the margins that keep every index in the buffer
    hb, wb = max(top + ho, h + pt + top), max(left + wo, w + pl + left)
    for p in numba.prange(n * c):
        s, ch = p // c, p % c
        d = dx[s, ch]
        d[:, :] = 0
        buf = np.zeros((hb, wb), grad.dtype)
        for m in range(mult):
            o = ch * mult + m
            buf[top : top + ho, left : left + wo] = grad[s, o]
            for y in range(h):
                drow = d[y]
                for i in range(kh):
                    row = y + pt + top - i * dh
                    c0 = pl + left
                    if kw == 3:
                        _axpy3(
                            drow,
                            kernel[o, 0, i, ::-1],
                            buf[row, c0 - 2 * dw : c0 - 2 * dw + w],
                            buf[row, c0 - dw : c0 - dw + w],
                            buf[row, c0 : c0 + w],
                        )
                        continue
                    for j in range(kw):
                        _axpy(drow, kernel[o, 0, i, j], buf[row, c0 - j * dw : c0 - j * dw + w])


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def depthwise_input_grad(grad, kernel, c, h, w, sh, sw, pt, pb, pl, pr, dh, dw):
    """``(N, C, H, W)``: the input gradient for the output gradient ``grad`` ``(N, F, Ho, Wo)``."""
    n, f, ho, wo = grad.shape
    _, _, kh, kw = kernel.shape
    mult = f // c
    span = sw * (wo - 1) + 1
    dx = np.empty((n, c, h, w), grad.dtype)
    if sh == 1 and sw == 1:
        _input_grad_unit_stride(grad, kernel, dx, pt, pl, dh, dw)
        return dx
    for p in numba.prange(n * c):
        s, ch = p // c, p % c
        buf = np.zeros((h + pt + pb, w + pl + pr), grad.dtype)
        for m in range(mult):
            o = ch * mult + m
            for oy in range(ho):
                grow = grad[s, o, oy]
                for i in range(kh):
                    iy = oy * sh + i * dh
                    for j in range(kw):
                        off = j * dw
                        if sw == 1:
                            _axpy(buf[iy, off : off + wo], kernel[o, 0, i, j], grow)
                        else:
                            _axpy(buf[iy, off : off + span : sw], kernel[o, 0, i, j], grow)
        dx[s, ch] = buf[pt : pt + h, pl : pl + w]
    return dx


@numba.njit(cache=True, parallel=True, fastmath=FAST)
def depthwise_kernel_grad(x, grad, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw):
    """``(kernel gradient (F, 1, kh, kw), bias gradient (F,))`` from the input ``x`` and the
    output gradient ``grad``: per-sample partial sums (threads over samples and channels), then
    one sum over the batch."""
    n, c, h, w = x.shape
    _, f, ho, wo = grad.shape
    mult = f // c
    span = sw * (wo - 1) + 1
    part = np.zeros((n, f, kh, kw), grad.dtype)
    bpart = np.empty((n, f), grad.dtype)
    for p in numba.prange(n * c):
        s, ch = p // c, p % c
        buf = _pad_plane(x[s, ch], pt, pb, pl, pr)
        for m in range(mult):
            o = ch * mult + m
            bpart[s, o] = grad[s, o].sum()
            for oy in range(ho):
                grow = grad[s, o, oy]
                for i in range(kh):
                    iy = oy * sh + i * dh
                    if sw == 1 and kw == 3:  # the three taps of a row in one pass
                        a, b, d = _dot3(grow, buf[iy, 0:wo], buf[iy, dw : dw + wo], buf[iy, 2 * dw : 2 * dw + wo])
                        part[s, o, i, 0] += a
                        part[s, o, i, 1] += b
                        part[s, o, i, 2] += d
                        continue
                    for j in range(kw):
                        off = j * dw
                        if sw == 1:
                            part[s, o, i, j] += _dot(grow, buf[iy, off : off + wo])
                        else:
                            part[s, o, i, j] += _dot(grow, buf[iy, off : off + span : sw])
    dk = np.zeros((f, 1, kh, kw), grad.dtype)
    db = np.zeros(f, grad.dtype)
    for s in range(n):
        dk[:, 0] += part[s]
        db += bpart[s]
    return dk, db

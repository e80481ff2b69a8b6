"""Max pooling over NCHW batches, separably: a max over window columns, then over window rows.

A 2-D window maximum is the maximum over its rows of the row maxima, so pooling is two passes of
1-D maxima over strided views (loops over window offsets only), each on whole-batch arrays. In
training each pass records the winning offset (``int8``); strict comparisons keep the first
maximum, so the gradient goes to the first maximal element of the window in row-major order.
Outputs and gradients keep the memory order of the input (see ``layout``). A NaN in a window
makes its maximum NaN (as ``np.maximum`` does).

With the accelerator on (``regnet.accel``), float32 and float64 batches stored batch-innermost go
to the compiled kernels of ``regnet.accel.pool`` instead (see ``compiled``): one pass that reads
each window once and records the flat index of its maximum (``Argmax``), and one scatter of the
gradient to those indices; every window geometry (strides, padding, ``ceil_mode``) is covered.
"""

import numpy as np

from .. import accel
from . import layout, parallel, windows


class Argmax:
    """What the compiled forward pass keeps for the backward pass: the flat index ``i*W + j`` of
    each window's maximum in its plane, as a ``(C, Ho, Wo, N)`` int32 array."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


#: the compiled kernels take batches of at least this many samples
MIN_BATCH = 4


def compiled(x):
    """Whether ``x`` goes to the compiled kernels: the accelerator is on and ``x`` is a float
    batch of ``MIN_BATCH`` samples or more stored batch-innermost (CHWN, what the convolutions
    hand on), where the kernels' inner loops run along the batch in SIMD registers. C-ordered
    batches take the NumPy path, whose whole-array passes beat window loops one value wide (about
    3x in CPU time on a (64, 32, 26, 26) batch)."""
    return (
        accel.active()
        and x.ndim == 4
        and x.shape[0] >= MIN_BATCH
        and x.size > 0
        and x.dtype in (np.float32, np.float64)
        and layout.is_chwn(x)
    )


def _fast_forward(x, pool, stride, pads, out_hw, training):
    c, n = x.shape[1], x.shape[0]
    out = np.empty((c, *out_hw, n), x.dtype)
    index = np.empty(out.shape if training else (1, 1, 1, 1), np.int32)
    top, _, left, _ = pads
    accel.kernels("pool").max_pool(layout.chwn(x), *pool, *stride, top, left, out, index, training)
    return layout.from_chwn(out), (Argmax(index) if training else None)


def _fast_backward(grad, arg, in_shape):
    n, c, h, w = in_shape
    dtype = grad.dtype if grad.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    dx = np.zeros((c, h * w, n), dtype)
    accel.kernels("pool").max_pool_backward(np.ascontiguousarray(layout.chwn(grad), dtype=dtype), arg.index, dx)
    return layout.from_chwn(dx.reshape(c, h, w, n))


def _views(a, axis, k, stride, count, length=None):
    """The ``k`` strided views of ``a`` along ``axis`` (2 or 3) seen by offsets ``0..k-1``."""
    out = []
    for o in range(k):
        index = [slice(None)] * 4
        index[axis] = slice(o, o + stride * (count - 1) + 1, stride)
        if length is not None:  # restrict the other spatial axis
            index[5 - axis] = slice(0, length)
        out.append(a[tuple(index)])
    return out


def _max(views, out, arg):
    """``out`` = element-wise maximum of ``views``; ``arg`` (or None) = index of the first maximum."""
    if len(views) == 1:
        np.copyto(out, views[0])
        if arg is not None:
            arg[...] = 0
        return
    if arg is not None:
        np.greater(views[1], views[0], out=arg)
    np.maximum(views[0], views[1], out=out)
    better = np.empty(out.shape, bool) if arg is not None and len(views) > 2 else None
    for k, v in enumerate(views[2:], start=2):
        if arg is not None:
            np.greater(v, out, out=better)
            np.copyto(arg, k, where=better)
        np.maximum(out, v, out=out)


def _route(grad, arg, views, overlap):
    """Adjoint of ``_max``: send ``grad`` to the view ``arg`` names (``views`` tile the target
    without overlap unless ``overlap``; an overlapping target must start at zero)."""
    if overlap:
        for k, v in enumerate(views):
            v += grad * (arg == k)
    elif len(views) == 1:
        np.copyto(views[0], grad)
    elif len(views) == 2:
        np.multiply(grad, arg, out=views[1])
        np.subtract(grad, views[1], out=views[0])
    else:
        hit = np.empty(arg.shape, bool)
        for k, v in enumerate(views):
            np.equal(arg, k, out=hit)
            np.multiply(grad, hit, out=v)


def max_forward(x, pool, stride, pads, out_hw, training):
    """``(out, arg)``: window maxima and, in training, the winning offsets ``(column, row)`` (an
    ``Argmax`` from the compiled kernel)."""
    if compiled(x):
        return _fast_forward(x, pool, stride, pads, out_hw, training)
    (ph, pw), (sh, sw), (ho, wo) = pool, stride, out_hw
    xp = windows.pad(x, pads, value=-np.inf)
    n, c = x.shape[:2]
    rows = sh * (ho - 1) + ph  # input rows some window reads
    m1 = layout.empty_like_layout(x, (n, c, rows, wo))
    out = layout.empty_like_layout(x, (n, c, ho, wo))
    a1 = layout.empty_like_layout(x, m1.shape, np.int8) if training else None
    a2 = layout.empty_like_layout(x, out.shape, np.int8) if training else None

    def run(xp, m1, out, a1, a2):  # on a slice of the channels
        _max(_views(xp, 3, pw, sw, wo, length=rows), m1, a1)
        _max(_views(m1, 2, ph, sh, ho), out, a2)

    parallel.for_channels(run, xp, m1, out, a1, a2)
    return out, ((a1, a2) if training else None)


def max_backward(grad, arg, in_shape, pool, stride, pads, out_hw):
    """The input gradient: each output's gradient goes to the element its ``arg`` names."""
    if isinstance(arg, Argmax):
        return _fast_backward(grad, arg, in_shape)
    (ph, pw), (sh, sw), (ho, wo) = pool, stride, out_hw
    a1, a2 = arg
    n, c, h, w = in_shape
    top, bottom, left, right = pads
    hp, wp = h + top + bottom, w + left + right
    rows = a1.shape[2]
    dm1 = layout.empty_like_layout(a1, a1.shape, grad.dtype)
    dx = layout.empty_like_layout(a1, (n, c, hp, wp), grad.dtype)

    def run(dx, dm1, grad, a1, a2):  # on a slice of the channels
        if sh != ph:  # rows overlap or leave gaps: start from zero
            dm1[...] = 0
        _route(grad, a2, _views(dm1, 2, ph, sh, ho), sh < ph)
        if sw != pw or rows != hp or sw * wo != wp:
            dx[...] = 0
        _route(dm1, a1, _views(dx, 3, pw, sw, wo, length=rows), sw < pw)

    parallel.for_channels(run, dx, dm1, grad, a1, a2)
    return windows.unpad(dx, pads)


def avg_forward(x, pool, stride, pads, out_hw, inv_count):
    """Window means by the compiled kernel (where ``compiled(x)``): window sums times
    ``inv_count`` (one over the positions that count in each window, shaped like the output's
    ``(Ho, Wo)``)."""
    c, n = x.shape[1], x.shape[0]
    out = np.empty((c, *out_hw, n), x.dtype)
    top, _, left, _ = pads
    inv = np.ascontiguousarray(inv_count.reshape(out_hw), dtype=x.dtype)
    accel.kernels("pool").avg_pool(layout.chwn(x), *pool, *stride, top, left, inv, out)
    return layout.from_chwn(out)


def avg_backward(grad, in_shape, pool, stride, pads, out_hw, inv_count):
    """The input gradient of ``avg_forward`` (where ``compiled(grad)``), stored CHWN."""
    n, c, h, w = in_shape
    dx = np.zeros((c, h, w, n), grad.dtype)
    top, _, left, _ = pads
    inv = np.ascontiguousarray(inv_count.reshape(out_hw), dtype=grad.dtype)
    accel.kernels("pool").avg_pool_backward(layout.chwn(grad), *pool, *stride, top, left, inv, dx)
    return layout.from_chwn(dx)

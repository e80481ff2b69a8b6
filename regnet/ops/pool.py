"""Max pooling over NCHW batches, separably: a max over window columns, then over window rows.

A 2-D window maximum is the maximum over its rows of the row maxima, so pooling is two passes of
1-D maxima over strided views (loops over window offsets only), each on whole-batch arrays. In
training each pass records the winning offset (``int8``); strict comparisons keep the first
maximum, so the gradient goes to the first maximal element of the window in row-major order.
Outputs and gradients keep the memory order of the input (see ``layout``). A NaN in a window
makes its maximum NaN (as ``np.maximum`` does).
"""

import numpy as np

from . import layout, parallel, windows


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
    """``(out, arg)``: window maxima and, in training, the winning offsets ``(column, row)``."""
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

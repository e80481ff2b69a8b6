"""Stride-1 convolution as a sum of shifted GEMMs: no column matrix at all.

The input is held padded and batch-innermost, one channel per row of a 2-D buffer: row ``c`` is
channel ``c``'s ``(Hp, Wp, N)`` values followed by ``(kw-1)*N`` zeros of slack. Computing the
output on the padded width (``Ho`` rows of ``Wp`` positions, ``L = Ho*Wp*N`` values per filter,
of which the last ``kw-1`` positions of each row are discarded), kernel offset ``(i, j)`` reads,
for every output position, the input ``(i*Wp + j)*N`` values further along the same row. So its
``(C, L)`` operand is a plain slice ``buf[:, off : off + L]`` of the buffer, and::

    out (F, L)  = sum over (i, j) of  kernel[:, :, i, j] (F, C)  @  buf[:, off_ij : off_ij + L]
    dK[:, :, i, j] = grad (F, L)  @  buf[:, off_ij : off_ij + L].T
    dbuf[:, off_ij : off_ij + L] += kernel[:, :, i, j].T (C, F)  @  grad (F, L)

with the output gradient ``grad`` zero at the discarded positions (so they add nothing). Each is a
BLAS call on strided views, the sums accumulated in place (``blas.gemm`` with ``beta`` 1). Where
im2col copies the input ``kh*kw`` times into columns and multiplies once, this reads it in place
``kh*kw`` times: much less memory traffic when channels are many enough for each product to be
efficient (``worthwhile``). The slack keeps every view inside its row, so no two output rows of
one product overlap.
"""

import numpy as np

from . import blas, conv, layout

#: channels (the inner dimension of each product) from which the shifted products beat im2col
MIN_CHANNELS = 8
#: most of the computed width that may be discarded (the padded width over the output width)
MAX_WIDTH_RATIO = 1.5
#: output values per filter (``Ho*Wp*N``) from which a batch is computed this way: each product
#: is one more call (tens of microseconds), which small batches do not win back
MIN_LENGTH = 8192


def worthwhile(geo, filters):
    """Whether ``geo`` (an ``ops.conv.Geometry``) with ``filters`` outputs is computed this way:
    stride 1, enough input and output channels (each is the inner dimension of one of the
    products), not too much discarded width, and BLAS that accumulates in place."""
    return (
        (geo.sh, geo.sw) == (1, 1)
        and min(geo.c, filters) >= MIN_CHANNELS
        and geo.wp <= MAX_WIDTH_RATIO * geo.wo
        and blas.available()
    )


def long_enough(geo, n):
    """Whether a batch of ``n`` is large enough for this method (see ``MIN_LENGTH``)."""
    return geo.ho * geo.wp * n >= MIN_LENGTH


def _sizes(geo, n):
    """``(plane, row, L)``: values of one padded channel, one buffer row (with slack), one output."""
    plane = geo.hp * geo.wp * n
    return plane, plane + (geo.kw - 1) * n, geo.ho * geo.wp * n


def _offsets(geo, n):
    return [(i, j, (i * geo.wp + j) * n) for i in range(geo.kh) for j in range(geo.kw)]


def _interior(buf, geo, n):
    """The ``(C, H, W, N)`` view of the unpadded input in the buffer ``buf``."""
    plane = _sizes(geo, n)[0]
    top, _, left, _ = geo.pads
    return buf[:, :plane].reshape(geo.c, geo.hp, geo.wp, n)[:, top : top + geo.h, left : left + geo.w]


def padded(x, geo, ws):
    """The NCHW batch ``x`` in the padded row buffer (its border and slack zero, written once)."""
    n = x.shape[0]
    buf = ws.get("shifted_input", (geo.c, _sizes(geo, n)[1]), x.dtype, init=lambda a: a.fill(0))
    _interior(buf, geo, n)[...] = layout.chwn(x)
    return buf


def taps(kernel):
    """``(F, C, kh, kw)`` -> the ``(kh, kw, F, C)`` per-offset matrices."""
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))


def forward(x, kernel, bias, geo, ws, training):
    """Convolve the NCHW batch ``x``; returns the output (NCHW, stored CHWN) and, in training,
    the padded input buffer that ``backward`` reads (``None`` in inference). The products are
    computed for a band of output rows at a time, in the buffer ``ops.conv`` shares between
    layers, so that memory does not grow with the batch beyond the input and output."""
    n = x.shape[0]
    dtype = np.result_type(x.dtype, kernel.dtype)
    buf = padded(x.astype(dtype, copy=False), geo, ws)
    w = taps(kernel.astype(dtype, copy=False))
    f, step = kernel.shape[0], geo.wp * n
    offsets = _offsets(geo, n)
    y = np.empty((f, geo.ho, geo.wo, n), dtype)
    b = None if bias is None else bias.astype(dtype, copy=False).reshape(f, 1, 1, 1)
    for r0, r1 in conv.bands(geo, f, n, dtype, width=geo.wp):
        part = conv.shared_buffer((f, (r1 - r0) * step), dtype)
        for t, (i, j, off) in enumerate(offsets):
            blas.gemm(w[i, j], buf[:, off + r0 * step : off + r1 * step], part, beta=1.0 if t else 0.0)
        rows = part.reshape(f, r1 - r0, geo.wp, n)[:, :, : geo.wo]
        if b is None:
            np.copyto(y[:, r0:r1], rows)
        else:
            np.add(rows, b, out=y[:, r0:r1])
    return layout.from_chwn(y), (buf if training else None)


def backward(grad, kernel, bias, geo, ws, need_input_grad=True, *, buf=None, columns=None):
    """Gradients ``(d_kernel, d_bias, d_x)`` for the output gradient ``grad`` (NCHW, any layout).
    The kernel gradient comes from the padded input buffer ``buf`` of ``forward`` (one product
    per kernel offset) or, when the forward pass kept them, from the im2col ``columns`` of
    ``ops.conv`` (one product); the input gradient needs neither. ``d_x`` is NCHW (a view of a
    CHWN buffer), or ``None`` when not needed."""
    n, f = grad.shape[0], grad.shape[1]
    dtype = np.result_type(grad.dtype, kernel.dtype)
    grad = grad.astype(dtype, copy=False)
    _, row, length = _sizes(geo, n)
    g = ws.get("shifted_grad", (f, geo.ho, geo.wp, n), dtype, init=lambda a: a.fill(0))
    g[:, :, : geo.wo] = layout.chwn(grad)  # the discarded positions stay zero
    g = g.reshape(f, length)
    offsets = _offsets(geo, n)
    if columns is not None:
        g2 = layout.contiguous_chwn(grad).reshape(f, -1)
        dk, db = conv.kernel_gradient(g2, columns, kernel.shape, bias is not None, geo)
    else:
        dk = np.empty((geo.kh, geo.kw, f, geo.c), dtype)
        for i, j, off in offsets:
            blas.gemm(g, buf[:, off : off + length].T, dk[i, j])
        dk = dk.transpose(2, 3, 0, 1)
        db = g.sum(axis=1) if bias is not None else None
    if not need_input_grad:
        return dk, db, None
    w = taps(kernel.astype(dtype, copy=False)).transpose(0, 1, 3, 2)  # (kh, kw, C, F) views
    dbuf = np.empty((geo.c, row), dtype)
    dbuf[:, length:] = 0  # offset (0, 0) writes [0, length); the others add within [0, row)
    for t, (i, j, off) in enumerate(offsets):
        blas.gemm(w[i, j], g, dbuf[:, off : off + length], beta=1.0 if t else 0.0)
    return dk, db, layout.from_chwn(_interior(dbuf, geo, n))

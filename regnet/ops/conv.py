"""2-D convolution as one GEMM over batch-innermost im2col columns (see ``layout``).

The input is first held as a padded CHWN array ``(C, Hp, Wp, N)`` (the input itself when it is
already stored so and needs no padding; otherwise a buffer whose zero border is written once).
Columns are ``(C*kh*kw [+1], Ho*Wo*N)``: row ``(c, i, j)`` holds, for every output pixel of every
sample, the input under kernel offset ``(i, j)`` of channel ``c``, so building it is one strided
copy per kernel offset whose inner runs are ``Wo*N`` values long (never a loop over samples or
pixels). The optional last row is all ones: the bias is one more kernel column, and its gradient
comes out of the kernel-gradient GEMM. ``kernel @ columns`` is then the CHWN output.
"""

import threading

import numpy as np

from . import layout, parallel

#: in inference, columns are built for at most this many bytes at a time (a band of output rows
#: of the whole batch), in one buffer per thread shared by every convolution. Small bands stay in
#: cache; but each multi-threaded BLAS call is a synchronisation of its threads, which is slow
#: when the cores are busy, so with several BLAS threads the bands are larger (fewer calls).
INFER_COLUMN_BYTES = None  # None: the two defaults below, by BLAS thread count
SMALL_BANDS, LARGE_BANDS = 4 << 20, 32 << 20


def band_bytes():
    if INFER_COLUMN_BYTES is not None:
        return INFER_COLUMN_BYTES
    return SMALL_BANDS if parallel.threads() == 1 else LARGE_BANDS


_shared = threading.local()


class Geometry:
    """Shapes of one convolution: input ``(C, H, W)``, kernel, stride, pads, output ``(Ho, Wo)``."""

    def __init__(self, in_shape, kernel, stride, pads, out_hw):
        self.c, self.h, self.w = in_shape
        self.kh, self.kw = kernel
        self.sh, self.sw = stride
        self.pads = tuple(pads)
        self.ho, self.wo = out_hw
        top, bottom, left, right = self.pads
        self.hp, self.wp = self.h + top + bottom, self.w + left + right
        self.rows = self.c * self.kh * self.kw

    def padded(self, x, ws):
        """The CHWN ``(C, Hp, Wp, N)`` form of the NCHW batch ``x`` (no copy when possible)."""
        xt = layout.chwn(x)
        if not any(self.pads) and xt.flags.c_contiguous:
            return xt
        n = x.shape[0]
        xp = ws.get("input", (self.c, self.hp, self.wp, n), x.dtype, init=lambda a: a.fill(0))
        top, _, left, _ = self.pads
        xp[:, top : top + self.h, left : left + self.w] = xt
        return xp

    def window(self, a, i, j, r0, r1):
        """Output rows ``[r0, r1)`` of kernel offset ``(i, j)`` in the padded CHWN array ``a``."""
        return a[
            :, i + self.sh * r0 : i + self.sh * (r1 - 1) + 1 : self.sh, j : j + self.sw * (self.wo - 1) + 1 : self.sw
        ]

    def columns(self, xp, out, r0=0, r1=None):
        """Fill ``out`` (rows ``C*kh*kw`` first) with the columns of output rows ``[r0, r1)``."""
        r1 = self.ho if r1 is None else r1
        n = xp.shape[3]
        cols = out[: self.rows].reshape(self.c, self.kh, self.kw, r1 - r0, self.wo, n)
        for i in range(self.kh):
            for j in range(self.kw):
                cols[:, i, j] = self.window(xp, i, j, r0, r1)
        return out

    def scatter(self, dcols, n, dtype):
        """Adjoint of ``columns``: sum ``dcols (C*kh*kw, Ho*Wo*n)`` into a CHWN ``(C, H, W, n)`` view."""
        cols = dcols.reshape(self.c, self.kh, self.kw, self.ho, self.wo, n)
        dxp = np.zeros((self.c, self.hp, self.wp, n), dtype)
        for i in range(self.kh):
            for j in range(self.kw):
                self.window(dxp, i, j, 0, self.ho)[...] += cols[:, i, j]
        top, _, left, _ = self.pads
        return dxp[:, top : top + self.h, left : left + self.w]


def _weights(kernel, bias):
    k2 = kernel.reshape(kernel.shape[0], -1)
    return k2 if bias is None else np.concatenate([k2, bias[:, None]], axis=1)


def _ones_row(rows):
    def init(arr):
        if arr.shape[0] > rows:
            arr[rows] = 1

    return init


def _shared_buffer(shape, dtype):
    """A scratch array of ``shape`` from this thread's buffer (grown as needed, never shrunk)."""
    size = shape[0] * shape[1]
    if size * np.dtype(dtype).itemsize > 2 * LARGE_BANDS:  # one output row of a huge batch: not kept
        return np.empty(shape, dtype)
    flat = _shared.__dict__.get(np.dtype(dtype))
    if flat is None or flat.size < size:
        flat = _shared.__dict__[np.dtype(dtype)] = np.empty(size, dtype)
    return flat[:size].reshape(shape)


def forward(x, kernel, bias, geo, ws, training):
    """Convolve the NCHW batch ``x``; returns the output (NCHW, stored CHWN) and the columns
    (kept for ``backward`` in training, else ``None``)."""
    n = x.shape[0]
    dtype = np.result_type(x.dtype, kernel.dtype)
    xp = geo.padded(x.astype(dtype, copy=False), ws)
    wk = _weights(kernel, bias).astype(dtype, copy=False)
    f, k = wk.shape
    y = np.empty((f, geo.ho * geo.wo * n), dtype)
    if training:
        cols = geo.columns(xp, ws.get("train", (k, geo.ho * geo.wo * n), dtype, init=_ones_row(geo.rows)))
        np.matmul(wk, cols, out=y)
    else:
        cols = None
        band = max(1, min(geo.ho, band_bytes() // (k * geo.wo * n * np.dtype(dtype).itemsize)))
        band = -(-geo.ho // -(-geo.ho // band))  # equal bands
        for r0 in range(0, geo.ho, band):
            r1 = min(geo.ho, r0 + band)
            part = _shared_buffer((k, (r1 - r0) * geo.wo * n), dtype)
            if bias is not None:
                part[geo.rows] = 1
            geo.columns(xp, part, r0, r1)
            np.matmul(wk, part, out=y[:, r0 * geo.wo * n : r1 * geo.wo * n])
    return layout.from_chwn(y.reshape(f, geo.ho, geo.wo, n)), cols


def backward(grad, cols, kernel, bias, geo, need_input_grad=True):
    """Gradients ``(d_kernel, d_bias, d_x)`` for the output gradient ``grad`` (NCHW, any layout);
    ``d_x`` is NCHW stored CHWN, or ``None`` when not needed."""
    n, f = grad.shape[0], grad.shape[1]
    g2 = layout.contiguous_chwn(grad).reshape(f, -1)
    dw = g2 @ cols.T
    dk = dw[:, : geo.rows].reshape(kernel.shape)
    db = dw[:, geo.rows] if bias is not None else None
    if not need_input_grad:
        return dk, db, None
    dcols = kernel.reshape(f, -1).T @ g2
    return dk, db, layout.from_chwn(geo.scatter(dcols, n, dcols.dtype))

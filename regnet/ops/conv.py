"""2-D convolution as GEMMs over batch-innermost im2col columns (see ``layout``).

The input is first held as a padded CHWN array ``(C, Hp, Wp, N)`` (the input itself when it is
already stored so and needs no padding; otherwise a buffer whose zero border is written once).
Columns are ``(C*kh*kw [+1], Ho*Wo*N)``: row ``(c, i, j)`` holds, for every output pixel of every
sample, the input under kernel offset ``(i, j)`` of channel ``c``, so building it is one strided
copy per kernel offset whose inner runs are ``Wo*N`` values long (never a loop over samples or
pixels). The optional last row is all ones: the bias is one more kernel column, and its gradient
comes out of the kernel-gradient GEMM. ``kernel @ columns`` is then the CHWN output.

Large columns are never built whole: they are built for a band of output rows at a time (a few
MiB, in one buffer per thread that every convolution shares), each band multiplied as soon as it
is built, so that it is read back from cache and memory does not grow with the batch. In
training, columns of moderate size are kept for the backward pass; larger ones are not: only the
padded input is kept and the backward pass builds the bands again for the kernel gradient (summed
band by band; ``KEEP_COLUMN_BYTES``). The input gradient is computed, per layer shape (chosen when the layer is built):

* stride 1, an output the size of the input, not many more filters than channels: as the forward
  convolution of the padded output gradient with the flipped, transposed kernel (columns and one
  GEMM per band again);
* otherwise: the gradient of each band's columns (one GEMM) added back under the kernel offsets
  it came from (a scatter, band by band).
"""

import threading

import numpy as np

from . import layout, parallel

#: columns are built for at most this many bytes at a time (a band of output rows of the whole
#: batch), in one buffer per thread shared by every convolution. Small bands stay in cache; each
#: multi-threaded BLAS call is also a synchronisation of its threads, so with several BLAS threads
#: the bands are somewhat larger (fewer calls). Measured with 2 threads (benchmarks/README.md):
#: 8 MiB against 32 MiB bands gave LeNet-5 inference (batch 1000) 20,000-21,000 img/s against
#: 16,500-18,000 at 43 MiB peak memory against 94, and no slower training.
COLUMN_BYTES = None  # None: the two defaults below, by BLAS thread count
SMALL_BANDS, LARGE_BANDS = 4 << 20, 8 << 20
#: in training, whole columns up to this size are kept for the backward pass (larger ones are
#: built again there, band by band)
KEEP_COLUMN_BYTES = 32 << 20


def band_bytes():
    if COLUMN_BYTES is not None:
        return COLUMN_BYTES
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

    def padded(self, x, ws, name="input"):
        """The CHWN ``(C, Hp, Wp, N)`` form of the NCHW batch ``x`` (no copy when possible)."""
        xt = layout.chwn(x)
        if not any(self.pads) and xt.flags.c_contiguous:
            return xt
        n = x.shape[0]
        xp = ws.get(name, (self.c, self.hp, self.wp, n), x.dtype, init=lambda a: a.fill(0))
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

    def scatter_add(self, dcols, dxp, r0=0, r1=None):
        """Adjoint of ``columns``: add ``dcols`` (the columns of output rows ``[r0, r1)``) into
        the padded CHWN gradient ``dxp`` under the kernel offsets they came from."""
        r1 = self.ho if r1 is None else r1
        cols = dcols[: self.rows].reshape(self.c, self.kh, self.kw, r1 - r0, self.wo, dxp.shape[3])
        for i in range(self.kh):
            for j in range(self.kw):
                self.window(dxp, i, j, r0, r1)[...] += cols[:, i, j]

    def scatter(self, dcols, n, dtype):
        """Adjoint of ``columns``: sum ``dcols (C*kh*kw, Ho*Wo*n)`` into a CHWN ``(C, H, W, n)`` view."""
        dxp = np.zeros((self.c, self.hp, self.wp, n), dtype)
        self.scatter_add(dcols, dxp)
        return self.unpad(dxp)

    def unpad(self, dxp):
        top, _, left, _ = self.pads
        return dxp[:, top : top + self.h, left : left + self.w]

    def transposed(self, filters):
        """The geometry of the input gradient as a convolution of the output gradient (``filters``
        channels) with the flipped kernel, where that is the cheaper method: stride 1, an output
        the size of the input (so both methods multiply as much) and not many more filters than
        input channels (its columns copy the output gradient where the scatter adds into the
        input's); else ``None``."""
        top, bottom, left, right = self.pads
        kh, kw = self.kh, self.kw
        if (self.sh, self.sw) != (1, 1) or (self.ho, self.wo) != (self.h, self.w) or filters > 2 * self.c:
            return None
        if max(top, bottom) > kh - 1 or max(left, right) > kw - 1:
            return None
        pads = (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right)
        return Geometry((filters, self.ho, self.wo), (kh, kw), (1, 1), pads, (self.h, self.w))


def _weights(kernel, bias):
    k2 = kernel.reshape(kernel.shape[0], -1)
    return k2 if bias is None else np.concatenate([k2, bias[:, None]], axis=1)


def flipped(kernel):
    """``(F, C, kh, kw)`` -> the ``(C, F*kh*kw)`` kernel of the input gradient's convolution."""
    f, c, kh, kw = kernel.shape
    return np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(c, f * kh * kw)


def shared_buffer(shape, dtype):
    """A scratch array of ``shape`` from this thread's buffer (grown as needed, never shrunk)."""
    size = shape[0] * shape[1]
    if size * np.dtype(dtype).itemsize > 2 * LARGE_BANDS:  # one output row of a huge batch: not kept
        return np.empty(shape, dtype)
    flat = _shared.__dict__.get(np.dtype(dtype))
    if flat is None or flat.size < size:
        flat = _shared.__dict__[np.dtype(dtype)] = np.empty(size, dtype)
    return flat[:size].reshape(shape)


def bands(geo, k, n, dtype, width=None):
    """``(r0, r1)`` bands of output rows whose ``k``-row columns fit ``band_bytes()`` (equal bands);
    ``width`` is the positions per row (``geo.wo`` unless given)."""
    width = geo.wo if width is None else width
    row_bytes = k * width * n * np.dtype(dtype).itemsize
    if COLUMN_BYTES is None and row_bytes * geo.ho <= SMALL_BANDS:  # one band at any thread count
        return [(0, geo.ho)]  # (and no look-up of that count, which reads the environment)
    band = max(1, min(geo.ho, band_bytes() // row_bytes))
    band = -(-geo.ho // -(-geo.ho // band))
    return [(r0, min(geo.ho, r0 + band)) for r0 in range(0, geo.ho, band)]


def _band_columns(geo, xp, k, r0, r1, dtype):
    """The columns of output rows ``[r0, r1)`` in the shared buffer (a row of ones after the
    ``geo.rows`` kernel rows when ``k`` is one more)."""
    part = shared_buffer((k, (r1 - r0) * geo.wo * xp.shape[3]), dtype)
    if k > geo.rows:
        part[geo.rows] = 1
    return geo.columns(xp, part, r0, r1)


def convolve(xp, wk, geo, out):
    """``out (F, Ho*Wo*N) = wk (F, k) @ columns`` of the padded CHWN input ``xp``, band by band."""
    n, dtype = xp.shape[3], out.dtype
    k = wk.shape[1]
    step = geo.wo * n
    for r0, r1 in bands(geo, k, n, dtype):
        part = _band_columns(geo, xp, k, r0, r1, dtype)
        np.matmul(wk, part, out=out[:, r0 * step : r1 * step])
    return out


def _ones_row(rows):
    def init(arr):
        if arr.shape[0] > rows:
            arr[rows] = 1

    return init


def keeps_columns(geo, k, n, dtype):
    """Whether training keeps the whole ``k``-row columns of an ``n``-image batch."""
    return k * geo.ho * geo.wo * n * np.dtype(dtype).itemsize <= KEEP_COLUMN_BYTES


def forward(x, kernel, bias, geo, ws, training):
    """Convolve the NCHW batch ``x``; returns the output (NCHW, stored CHWN) and, in training,
    what ``backward`` reads: the whole columns up to ``KEEP_COLUMN_BYTES`` (not built again), else
    the padded input (``None`` in inference)."""
    n = x.shape[0]
    dtype = np.result_type(x.dtype, kernel.dtype)
    xp = geo.padded(x.astype(dtype, copy=False), ws)
    wk = _weights(kernel, bias).astype(dtype, copy=False)
    f, k = wk.shape
    y = np.empty((f, geo.ho * geo.wo * n), dtype)
    if training and keeps_columns(geo, k, n, dtype):
        cols = geo.columns(xp, ws.get("columns", (k, geo.ho * geo.wo * n), dtype, init=_ones_row(geo.rows)))
        np.matmul(wk, cols, out=y)
        return layout.from_chwn(y.reshape(f, geo.ho, geo.wo, n)), cols
    convolve(xp, wk, geo, y)
    return layout.from_chwn(y.reshape(f, geo.ho, geo.wo, n)), (xp if training else None)


def kernel_gradient(g2, kept, kernel_shape, has_bias, geo):
    """``(d_kernel, d_bias or None)`` from the CHWN output gradient ``g2 (F, Ho*Wo*N)`` and what
    ``forward`` kept: the whole columns (2-D, one product) or the padded input (4-D: columns
    built again band by band, their products summed)."""
    f, dtype = g2.shape[0], g2.dtype
    if kept.ndim == 2:
        dw = g2 @ kept.T
    else:
        n = kept.shape[3]
        k, step = geo.rows + has_bias, geo.wo * n
        dw = np.zeros((f, k), dtype)
        tmp = np.empty_like(dw)
        for r0, r1 in bands(geo, k, n, dtype):
            part = _band_columns(geo, kept, k, r0, r1, dtype)
            np.matmul(g2[:, r0 * step : r1 * step], part.T, out=tmp)
            dw += tmp
    return dw[:, : geo.rows].reshape(kernel_shape), (dw[:, geo.rows] if has_bias else None)


def backward(grad, kept, kernel, bias, geo, ws, need_input_grad=True, transposed=None):
    """Gradients ``(d_kernel, d_bias, d_x)`` for the output gradient ``grad`` (NCHW, any layout)
    given what ``forward`` kept (columns, 2-D, or the padded input, 4-D); ``d_x`` is NCHW stored
    CHWN, or ``None`` when not needed. ``transposed`` (``geo.transposed(F)``) selects the input
    gradient's method."""
    n, f = grad.shape[0], grad.shape[1]
    dtype = np.result_type(grad.dtype, kernel.dtype)
    g2 = layout.contiguous_chwn(grad.astype(dtype, copy=False)).reshape(f, -1)
    dk, db = kernel_gradient(g2, kept, kernel.shape, bias is not None, geo)
    step = geo.wo * n
    if not need_input_grad:
        return dk, db, None
    kernel = kernel.astype(dtype, copy=False)
    if transposed is not None:
        gp = transposed.padded(layout.from_chwn(g2.reshape(f, geo.ho, geo.wo, n)), ws, "output_grad")
        dx = np.empty((geo.c, geo.h * geo.w * n), dtype)
        convolve(gp, flipped(kernel), transposed, dx)
        return dk, db, layout.from_chwn(dx.reshape(geo.c, geo.h, geo.w, n))
    kt = kernel.reshape(f, -1).T
    dxp = np.zeros((geo.c, geo.hp, geo.wp, n), dtype)
    for r0, r1 in bands(geo, geo.rows, n, dtype):
        dcols = shared_buffer((geo.rows, (r1 - r0) * step), dtype)
        np.matmul(kt, g2[:, r0 * step : r1 * step], out=dcols)
        geo.scatter_add(dcols, dxp, r0, r1)
    return dk, db, layout.from_chwn(geo.unpad(dxp))

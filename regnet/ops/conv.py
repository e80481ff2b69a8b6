"""2-D convolution as one GEMM over channel-major im2col columns (see ``layout``).

Columns are ``(C*kh*kw [+1], N*Ho*Wo)``: row ``(c, i, j)`` holds, for every output pixel of every
sample, the input value under kernel offset ``(i, j)`` of channel ``c``. The optional last row is
all ones, so the bias is one more kernel column and its gradient comes out of the kernel-gradient
GEMM. The column buffer is reused across batches: zeros under the padding and the row of ones
are written once, when the buffer is made, and each batch writes only the in-image part.
Building and scattering columns loops over the ``kh*kw`` kernel offsets (never over samples or
pixels); each offset is one strided copy of the whole batch.
"""

import numpy as np

from . import layout

#: in inference, columns are built for this many bytes of batch at a time (cache-sized pieces)
INFER_COLUMN_BYTES = 2 << 20


def span(size, out, offset, stride, before):
    """Output positions ``[lo, hi)`` whose input under kernel ``offset`` lies inside the image,
    and the input index of ``lo``."""
    lo = max(0, -(-(before - offset) // stride))
    hi = min(out, (size - 1 - offset + before) // stride + 1)
    return lo, max(lo, hi), lo * stride + offset - before


class Geometry:
    """Shapes of one convolution: input ``(C, H, W)``, kernel, stride, pads, output ``(Ho, Wo)``."""

    def __init__(self, in_shape, kernel, stride, pads, out_hw):
        self.c, self.h, self.w = in_shape
        self.kh, self.kw = kernel
        self.sh, self.sw = stride
        self.pads = tuple(pads)
        self.ho, self.wo = out_hw
        self.rows = self.c * self.kh * self.kw
        top, _, left, _ = self.pads
        self.offsets = []
        for i in range(self.kh):
            r0, r1, y0 = span(self.h, self.ho, i, self.sh, top)
            for j in range(self.kw):
                c0, c1, x0 = span(self.w, self.wo, j, self.sw, left)
                if r1 > r0 and c1 > c0:
                    src = (slice(y0, y0 + self.sh * (r1 - r0 - 1) + 1, self.sh),
                           slice(x0, x0 + self.sw * (c1 - c0 - 1) + 1, self.sw))
                    self.offsets.append((i, j, (slice(r0, r1), slice(c0, c1)), src))

    def columns(self, xt, out):
        """Fill ``out`` (rows ``C*kh*kw`` first) from the channel-major batch ``xt (C, n, H, W)``."""
        n = xt.shape[1]
        cols = out[: self.rows].reshape(self.c, self.kh, self.kw, n, self.ho, self.wo)
        for i, j, dst, src in self.offsets:
            cols[:, i, j, :, dst[0], dst[1]] = xt[:, :, src[0], src[1]]
        return out

    def scatter(self, dcols, n, dtype):
        """Adjoint of ``columns``: sum ``dcols (C*kh*kw, n*Ho*Wo)`` into a ``(C, n, H, W)`` batch."""
        cols = dcols.reshape(self.c, self.kh, self.kw, n, self.ho, self.wo)
        dx = np.zeros((self.c, n, self.h, self.w), dtype)
        for i, j, dst, src in self.offsets:
            dx[:, :, src[0], src[1]] += cols[:, i, j, :, dst[0], dst[1]]
        return dx

    # Stride 1 has a cheaper adjoint on the "wide" grid: output rows as long as a padded input row
    # (``Wp``), the extra ``kw - 1`` columns zero. Kernel offset (i, j) then shifts a whole sample
    # by ``i*Wp + j`` in the flattened padded image, so each offset is one long contiguous add.
    @property
    def wide(self):
        return (self.sh, self.sw) == (1, 1)

    def padded_hw(self):
        top, bottom, left, right = self.pads
        return self.h + top + bottom, self.w + left + right

    def scatter_wide(self, dcols, n, dtype):
        """Adjoint of ``columns`` from wide ``dcols (C*kh*kw, n*Ho*Wp)``; a ``(C, n, H, W)`` view."""
        hp, wp = self.padded_hw()
        run = self.ho * wp
        cols = dcols.reshape(self.c, self.kh, self.kw, n, run)
        flat = np.zeros((self.c, n, hp * wp + self.kw - 1), dtype)
        for i in range(self.kh):
            for j in range(self.kw):
                start = i * wp + j
                flat[:, :, start : start + run] += cols[:, i, j]
        top, _, left, _ = self.pads
        image = flat[:, :, : hp * wp].reshape(self.c, n, hp, wp)
        return image[:, :, top : top + self.h, left : left + self.w]


def _column_buffer(ws, name, geo, n, bias, dtype):
    rows = geo.rows + (1 if bias else 0)

    def init(arr):
        arr[: geo.rows] = 0
        if bias:
            arr[geo.rows] = 1

    return ws.get(name, (rows, n * geo.ho * geo.wo), dtype, init=init)


def _weights(kernel, bias):
    k2 = kernel.reshape(kernel.shape[0], -1)
    return k2 if bias is None else np.concatenate([k2, bias[:, None]], axis=1)


def forward(x, kernel, bias, geo, ws, training):
    """Convolve the NCHW batch ``x``; returns the channel-major NCHW output and the columns
    (kept for ``backward`` in training, else ``None``)."""
    n = x.shape[0]
    dtype = np.result_type(x.dtype, kernel.dtype)
    xt = layout.channel_major(x)
    wk = _weights(kernel, bias).astype(dtype, copy=False)
    f = wk.shape[0]
    y = np.empty((f, n, geo.ho, geo.wo), dtype)
    if training:
        cols = geo.columns(xt, _column_buffer(ws, "train", geo, n, bias is not None, dtype))
        np.matmul(wk, cols, out=y.reshape(f, -1))
        return y.transpose(1, 0, 2, 3), cols
    per_sample = (wk.shape[1]) * geo.ho * geo.wo * np.dtype(dtype).itemsize
    step = max(1, min(n, INFER_COLUMN_BYTES // per_sample))
    for s in range(0, n, step):
        e = min(n, s + step)
        cols = geo.columns(xt[:, s:e], _column_buffer(ws, "infer", geo, e - s, bias is not None, dtype))
        np.matmul(wk, cols, out=y[:, s:e].reshape(f, -1))
    return y.transpose(1, 0, 2, 3), None


def backward(grad, cols, kernel, bias, geo, ws, need_input_grad=True):
    """Gradients ``(d_kernel, d_bias, d_x)`` for the output gradient ``grad`` (NCHW, any layout);
    ``d_x`` is channel-major, or ``None`` when not needed."""
    n, f = grad.shape[0], grad.shape[1]
    g2 = layout.contiguous_channel_major(grad).reshape(f, -1)
    dw = g2 @ cols.T
    dk = dw[:, : geo.rows].reshape(kernel.shape)
    db = dw[:, geo.rows] if bias is not None else None
    if not need_input_grad:
        return dk, db, None
    kt = kernel.reshape(f, -1).T
    if geo.wide:
        _, wp = geo.padded_hw()
        gw = ws.get("grad", (f, n, geo.ho, wp), g2.dtype, init=lambda a: a.fill(0))
        gw[:, :, :, : geo.wo] = g2.reshape(f, n, geo.ho, geo.wo)
        dcols = kt @ gw.reshape(f, -1)
        dx = geo.scatter_wide(dcols, n, dcols.dtype)
    else:
        dcols = kt @ g2
        dx = geo.scatter(dcols, n, dcols.dtype)
    return dk, db, dx.transpose(1, 0, 2, 3)

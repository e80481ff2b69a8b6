"""1-D convolution over ``(N, C, L)`` batches (strides, dilation, groups) as one batched GEMM.

The padded input is held channel-first as ``(C, N, Lp)``; its columns are ``(C, k, N, Lo)``: slot
``(c, j)`` holds, for every output position of every sample, the input under kernel offset ``j``
of channel ``c`` (one strided copy per kernel offset, never a loop over samples or positions).
With ``G`` groups the columns are read as ``(G, C/G*k, N*Lo)`` and the kernel ``(F, C/G, k)`` as
``(G, F/G, C/G*k)``: one matmul batched over the groups gives the output ``(G, F/G, N*Lo)``.
The backward pass is the same two products transposed, the column gradient added back under the
kernel offsets it came from.
"""

import numpy as np


class Geometry1D:
    """Shapes of one 1-D convolution: input ``(C, L)``, kernel size, stride, dilation, groups,
    pads ``(before, after)`` and output length."""

    def __init__(self, in_shape, k, stride, dilation, groups, pads, out_len):
        self.c, self.length = in_shape
        self.k, self.stride, self.dilation, self.groups = k, stride, dilation, groups
        self.pads = tuple(pads)
        self.out = out_len
        self.padded_len = self.length + sum(self.pads)

    def window(self, a, j):
        """The strided view of the padded ``(C, N, Lp)`` array ``a`` under kernel offset ``j``."""
        start = j * self.dilation
        return a[:, :, start : start + self.stride * (self.out - 1) + 1 : self.stride]

    def padded(self, x):
        """``(N, C, L)`` -> the zero-padded ``(C, N, Lp)`` array."""
        n = x.shape[0]
        before = self.pads[0]
        xp = np.zeros((self.c, n, self.padded_len), x.dtype)
        xp[:, :, before : before + self.length] = x.transpose(1, 0, 2)
        return xp

    def columns(self, xp):
        """``(G, C/G*k, N*Lo)`` columns of the padded ``(C, N, Lp)`` input."""
        n = xp.shape[1]
        cols = np.empty((self.c, self.k, n, self.out), xp.dtype)
        for j in range(self.k):
            cols[:, j] = self.window(xp, j)
        return cols.reshape(self.groups, -1, n * self.out)

    def scatter(self, dcols, n):
        """Adjoint of ``columns`` and ``padded``: the ``(N, C, L)`` input gradient."""
        cols = dcols.reshape(self.c, self.k, n, self.out)
        dxp = np.zeros((self.c, n, self.padded_len), dcols.dtype)
        for j in range(self.k):
            self.window(dxp, j)[...] += cols[:, j]
        before = self.pads[0]
        return np.ascontiguousarray(dxp[:, :, before : before + self.length].transpose(1, 0, 2))


def forward(x, kernel, bias, geo):
    """``(y, columns)``: the ``(N, F, Lo)`` output and the columns ``backward`` reads."""
    n = x.shape[0]
    dtype = np.result_type(x.dtype, kernel.dtype)
    cols = geo.columns(geo.padded(x.astype(dtype, copy=False)))
    f = kernel.shape[0]
    wk = kernel.astype(dtype, copy=False).reshape(geo.groups, f // geo.groups, -1)
    y = np.matmul(wk, cols).reshape(f, n, geo.out)
    if bias is not None:
        y += bias.astype(dtype, copy=False)[:, None, None]
    return np.ascontiguousarray(y.transpose(1, 0, 2)), cols


def backward(grad, cols, kernel, geo, has_bias, need_input_grad=True):
    """``(d_kernel, d_bias or None, d_x or None)`` for the ``(N, F, Lo)`` output gradient."""
    n, f = grad.shape[0], grad.shape[1]
    dtype = np.result_type(grad.dtype, kernel.dtype)
    g = np.ascontiguousarray(grad.astype(dtype, copy=False).transpose(1, 0, 2)).reshape(geo.groups, f // geo.groups, -1)
    dk = np.matmul(g, cols.transpose(0, 2, 1)).reshape(kernel.shape)
    db = grad.sum(axis=(0, 2), dtype=dtype) if has_bias else None
    if not need_input_grad:
        return dk, db, None
    wk = kernel.astype(dtype, copy=False).reshape(geo.groups, f // geo.groups, -1)
    dcols = np.matmul(wk.transpose(0, 2, 1), g)
    return dk, db, geo.scatter(dcols, n)

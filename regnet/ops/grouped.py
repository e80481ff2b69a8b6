"""Grouped, depthwise and dilated 2-D convolutions, and the input gradient as an operation of its
own (transposed convolution), over padded CHWN arrays (see ``layout`` and ``conv``).

``Dilated`` is ``conv.Geometry`` with kernel offsets ``dilation`` apart: the im2col columns,
their scatter and the band logic of ``conv`` then serve dilated convolutions as they are.

``Engine`` computes one convolution ``(C, H, W) -> (F, Ho, Wo)`` in ``groups`` groups (input
channels ``C/groups`` and filters ``F/groups`` per group; the kernel is ``(F, C/groups, kh, kw)``
as in PyTorch) three ways: ``forward`` (the output), ``input_grad`` (the adjoint: the padded
input gradient, which is also the transposed convolution) and ``kernel_grad``. One group goes
through the im2col columns of ``conv`` (one GEMM per band); several groups loop over the
``kh*kw`` kernel offsets: each offset's strided window of the whole batch is one batched product
``(G, F/G, C/G) @ (G, C/G, L)`` (``L = Ho*Wo*N``), or, with one channel per group (depthwise), a
broadcast multiply-add over the whole batch. No loop over samples, pixels or groups.
"""

import numpy as np

from . import conv


class Dilated(conv.Geometry):
    """A convolution geometry whose kernel taps are ``dilation`` input pixels apart."""

    def __init__(self, in_shape, kernel, stride, pads, out_hw, dilation=(1, 1)):
        super().__init__(in_shape, kernel, stride, pads, out_hw)
        self.dh, self.dw = dilation

    def window(self, a, i, j, r0, r1):
        i, j = i * self.dh, j * self.dw
        return a[
            :, i + self.sh * r0 : i + self.sh * (r1 - 1) + 1 : self.sh, j : j + self.sw * (self.wo - 1) + 1 : self.sw
        ]

    def transposed(self, filters):
        return None  # the input gradient always scatters


def effective(kernel, dilation):
    """The extent ``(k - 1) * d + 1`` of a dilated kernel, per axis."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))


class Engine:
    """One (grouped, dilated) convolution of geometry ``geo`` with ``filters`` outputs."""

    def __init__(self, geo, filters, groups):
        self.geo, self.f, self.g = geo, filters, groups
        self.cg, self.fg = geo.c // groups, filters // groups

    def _offsets(self):
        return [(i, j) for i in range(self.geo.kh) for j in range(self.geo.kw)]

    def _view(self, a, i, j):
        """Offset ``(i, j)``'s window of the padded CHWN ``a`` as ``(G, C/G, Ho, Wo, N)``."""
        v = self.geo.window(a, i, j, 0, self.geo.ho)
        return v.reshape(self.g, self.cg, *v.shape[1:])

    def _copy(self, a, i, j, buf):
        """Offset ``(i, j)``'s window of ``a`` copied into ``buf`` ``(G, C/G, L)``."""
        buf.reshape(self.g, self.cg, self.geo.ho, self.geo.wo, -1)[...] = self._view(a, i, j)
        return buf

    def forward(self, xp, kernel):
        """``(F, Ho*Wo*N)``: the convolution of the padded CHWN input ``xp`` (no bias)."""
        geo, n, dtype = self.geo, xp.shape[3], xp.dtype
        kernel = kernel.astype(dtype, copy=False)
        length = geo.ho * geo.wo * n
        y = np.empty((self.f, length), dtype)
        if self.g == 1:
            return conv.convolve(xp, kernel.reshape(self.f, -1), geo, y)
        k = kernel.reshape(self.g, self.fg, self.cg, geo.kh, geo.kw)
        y3 = y.reshape(self.g, self.fg, length)
        tmp = np.empty_like(y3)
        if self.cg == 1:  # depthwise: a broadcast multiply-add per offset on strided views
            y5 = y.reshape(self.g, self.fg, geo.ho, geo.wo, n)
            t5 = tmp.reshape(y5.shape)
            for t, (i, j) in enumerate(self._offsets()):
                w = k[:, :, :, i, j].reshape(self.g, self.fg, 1, 1, 1)
                np.multiply(self._view(xp, i, j), w, out=t5 if t else y5)
                if t:
                    y5 += t5
            return y
        buf = np.empty((self.g, self.cg, length), dtype)
        for t, (i, j) in enumerate(self._offsets()):
            np.matmul(k[:, :, :, i, j], self._copy(xp, i, j, buf), out=tmp if t else y3)
            if t:
                y3 += tmp
        return y

    def input_grad(self, g2, kernel):
        """The padded CHWN input gradient ``(C, Hp, Wp, N)`` for the output gradient ``g2``
        ``(F, Ho*Wo*N)`` (the transposed convolution of ``g2``)."""
        geo, dtype = self.geo, g2.dtype
        n = g2.shape[1] // (geo.ho * geo.wo)
        kernel = kernel.astype(dtype, copy=False)
        dxp = np.zeros((geo.c, geo.hp, geo.wp, n), dtype)
        step = geo.wo * n
        if self.g == 1:
            kt = kernel.reshape(self.f, -1).T
            for r0, r1 in conv.bands(geo, geo.rows, n, dtype):
                dcols = conv.shared_buffer((geo.rows, (r1 - r0) * step), dtype)
                np.matmul(kt, g2[:, r0 * step : r1 * step], out=dcols)
                geo.scatter_add(dcols, dxp, r0, r1)
            return dxp
        k = kernel.reshape(self.g, self.fg, self.cg, geo.kh, geo.kw)
        g3 = g2.reshape(self.g, self.fg, -1)
        d = np.empty((self.g, self.cg, g3.shape[2]), dtype)
        shape = (self.g, self.cg, geo.ho, geo.wo, n)
        for i, j in self._offsets():
            w = k[:, :, :, i, j]
            if self.fg == 1:  # one filter per group: a broadcast multiply
                np.multiply(w.transpose(0, 2, 1), g3, out=d)
            else:
                np.matmul(w.transpose(0, 2, 1), g3, out=d)
            self._view(dxp, i, j)[...] += d.reshape(shape)
        return dxp

    def kernel_grad(self, xp, g2):
        """``(F, C/G, kh, kw)``: the kernel gradient from the padded CHWN input ``xp`` and the
        output gradient ``g2`` ``(F, Ho*Wo*N)``."""
        geo, dtype = self.geo, g2.dtype
        if self.g == 1:
            return conv.kernel_gradient(g2, xp, (self.f, geo.c, geo.kh, geo.kw), False, geo)[0]
        g3 = g2.reshape(self.g, self.fg, -1)
        dk = np.empty((geo.kh, geo.kw, self.g, self.fg, self.cg), dtype)
        buf = np.empty((self.g, self.cg, g3.shape[2]), dtype)
        for i, j in self._offsets():
            np.matmul(g3, self._copy(xp, i, j, buf).transpose(0, 2, 1), out=dk[i, j])
        return dk.transpose(2, 3, 4, 0, 1).reshape(self.f, self.cg, geo.kh, geo.kw)

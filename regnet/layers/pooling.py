"""MaxPool2D, AvgPool2D and GlobalAveragePooling2D over NCHW batches (loops over window offsets only)."""

import attrs
import numpy as np

from .. import fields
from ..ops import layout, windows
from ..ops import pool as pool_ops
from .base import Layer, layer, require_rank
from .conv import padding_field, spatial_setup


@attrs.define(slots=False, eq=False)
class _Pool2D(Layer):
    pool_size: tuple = fields.pair((2, 2))
    strides: tuple | None = fields.pair(None, optional=True)
    padding: str | int = padding_field("valid")

    @property
    def stride(self):
        return self.pool_size if self.strides is None else self.strides

    def build(self, input_shape, rng):
        ho, wo = spatial_setup(
            self, input_shape, self.pool_size, self.stride, self.padding, window_field="pool_size", pooling=True
        )
        return (input_shape[0], ho, wo)

    def _offsets(self):
        kh, kw = self.pool_size
        return [(i, j) for i in range(kh) for j in range(kw)]


@layer("MaxPool2D", aliases=("MaxPooling2D", "MaxPool2d"))
class MaxPool2D(_Pool2D):
    """Max over each window; the gradient goes to the first maximal element of the window
    (row-major window order). A NaN in a window gives a NaN maximum."""

    def forward(self, x, training=False):
        out, arg = pool_ops.max_forward(x, self.pool_size, self.stride, self._pads, self._out_hw, training)
        self.cache.arg = arg
        self.cache.x = x if arg is None else None  # backward after inference recomputes the argmax
        return out

    def backward(self, grad, *, need_input_grad=True):
        arg = self.cache.arg
        if arg is None:
            _, arg = pool_ops.max_forward(self.cache.x, self.pool_size, self.stride, self._pads, self._out_hw, True)
        in_shape = (grad.shape[0], *self.input_shape)
        return pool_ops.max_backward(grad, arg, in_shape, self.pool_size, self.stride, self._pads, self._out_hw)


@layer("AvgPool2D", aliases=("AveragePooling2D", "AvgPool2d"))
class AvgPool2D(_Pool2D):
    """Mean over each window; padded positions are not counted (as in Keras 'same')."""

    def build(self, input_shape, rng):
        out = super().build(input_shape, rng)
        ones = windows.pad(np.ones((1, 1, *input_shape[1:]), np.float32), self._pads)
        count = sum(windows.window(ones, i, j, self._out_hw, self.stride) for i, j in self._offsets())
        self._inv_count = (1.0 / count).astype(np.float32)
        return out

    def forward(self, x, training=False):
        xp = windows.pad(x, self._pads)
        out = sum(windows.window(xp, i, j, self._out_hw, self.stride) for i, j in self._offsets())
        return (out * self._inv_count).astype(x.dtype, copy=False)

    def backward(self, grad, *, need_input_grad=True):
        c, h, w = self.input_shape
        top, bottom, left, right = self._pads
        g = grad * self._inv_count
        dx = np.zeros((grad.shape[0], c, h + top + bottom, w + left + right), dtype=grad.dtype)
        for i, j in self._offsets():
            windows.window(dx, i, j, self._out_hw, self.stride)[...] += g
        return windows.unpad(dx, self._pads)


@layer("GlobalAveragePooling2D", aliases=("GlobalAvgPool2D", "GlobalAveragePool"))
class GlobalAveragePooling2D(Layer):
    """Mean of each channel over all positions: ``(N, C, H, W) -> (N, C)`` (``(N, C, 1, 1)`` with
    ``keepdims``)."""

    keepdims: bool = fields.boolean(False)

    #: not a config field: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": (3, 4, 5)},
        {"config": {"keepdims": True}, "input_shape": (2, 3, 3)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c, h, w = input_shape
        self._area = h * w
        return (c, 1, 1) if self.keepdims else (c,)

    def forward(self, x, training=False):
        n, c = x.shape[:2]
        inv = np.asarray(1.0 / self._area, x.dtype)
        if layout.is_chwn(x):  # channels first, batch innermost: a sum over contiguous rows
            means = layout.chwn(x).reshape(c, self._area, n).sum(axis=1).T
        else:
            means = x.reshape(n, c, self._area).sum(axis=2)
        means *= inv
        return means.reshape(n, c, 1, 1) if self.keepdims else means

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        c, h, w = self.input_shape
        n = grad.shape[0]
        g = grad.reshape(n, c) * np.asarray(1.0 / self._area, grad.dtype)
        dx = np.empty((c, h, w, n), grad.dtype)  # CHWN, as the convolutions before it store theirs
        dx[...] = g.T[:, None, None, :]
        return layout.from_chwn(dx)

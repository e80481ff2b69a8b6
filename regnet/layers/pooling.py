"""MaxPool2D, AvgPool2D, GlobalAveragePooling2D and GlobalMaxPooling2D over NCHW batches (loops
over window offsets only)."""

import attrs
import numpy as np

from .. import fields
from ..ops import layout, windows
from ..ops import pool as pool_ops
from .base import Layer, layer, require_rank
from .conv import padding_field, spatial_setup


@attrs.define(slots=False, eq=False)
class _Pool2D(Layer):
    pool_size: tuple = fields.pair((2, 2), doc="the window's height and width")
    strides: tuple | None = fields.pair(None, optional=True, doc="the window's step (null: pool_size)")
    padding: str | int = padding_field("valid")
    ceil_mode: bool = fields.boolean(
        False, doc="round the output size up (PyTorch's ceil_mode: partial last windows are kept)"
    )

    @property
    def stride(self):
        return self.pool_size if self.strides is None else self.strides

    def build(self, input_shape, rng):
        ho, wo = spatial_setup(
            self,
            input_shape,
            self.pool_size,
            self.stride,
            self.padding,
            window_field="pool_size",
            pooling=True,
            ceil_mode=self.ceil_mode,
        )
        return (input_shape[0], ho, wo)

    def _offsets(self):
        kh, kw = self.pool_size
        return [(i, j) for i in range(kh) for j in range(kw)]


@layer("MaxPool2D", aliases=("MaxPooling2D", "MaxPool2d"))
class MaxPool2D(_Pool2D):
    """Max over each window; the gradient goes to the first maximal element of the window
    (row-major window order). A NaN in a window gives a NaN maximum.

    >>> import numpy as np
    >>> import regnet
    >>> pool = regnet.layers.MaxPool2D(pool_size=2, ceil_mode=True)
    >>> pool.setup((1, 3, 3), np.random.default_rng(0))
    (1, 2, 2)
    >>> pool(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))[0, 0]
    array([[4., 5.],
           [7., 8.]], dtype=float32)
    """

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": (2, 4, 4)},
        {"config": {"pool_size": 3, "strides": 2, "ceil_mode": True}, "input_shape": (2, 6, 7)},
        {"config": {"pool_size": 2, "padding": 1, "ceil_mode": True}, "input_shape": (1, 4, 5)},
    ]

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
    """Mean over each window. Padded positions are not counted (as in Keras 'same') unless
    ``count_include_pad`` (PyTorch's meaning: the explicit padding counts, the part of a
    ``ceil_mode`` window beyond it does not).

    >>> import numpy as np
    >>> import regnet
    >>> pool = regnet.layers.AvgPool2D(pool_size=2, padding=1, count_include_pad=True)
    >>> pool.setup((1, 2, 2), np.random.default_rng(0))
    (1, 2, 2)
    >>> pool(np.ones((1, 1, 2, 2), np.float32))[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]], dtype=float32)
    """

    count_include_pad: bool = fields.boolean(False, doc="whether padded positions count in each window's mean")

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": (2, 4, 4)},
        {"config": {"pool_size": 3, "strides": 2, "padding": 1, "count_include_pad": True}, "input_shape": (2, 5, 5)},
        {"config": {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True}, "input_shape": (2, 6, 6)},
        {
            "config": {"pool_size": [2, 3], "strides": 2, "padding": 1, "ceil_mode": True, "count_include_pad": True},
            "input_shape": (1, 5, 6),
        },
    ]

    def build(self, input_shape, rng):
        out = super().build(input_shape, rng)
        _, h, w = input_shape
        top, bottom, left, right = self._pads  # bottom and right include the ceil_mode overhang
        counted = np.zeros((1, 1, h + top + bottom, w + left + right), np.float32)
        if self.count_include_pad:
            _, pad_bottom, _, pad_right = self._explicit_pads
            counted[:, :, : top + h + pad_bottom, : left + w + pad_right] = 1
        else:
            counted[:, :, top : top + h, left : left + w] = 1
        count = sum(windows.window(counted, i, j, self._out_hw, self.stride) for i, j in self._offsets())
        self._inv_count = (1.0 / count).astype(np.float32)
        return out

    def forward(self, x, training=False):
        if pool_ops.compiled(x):
            return pool_ops.avg_forward(x, self.pool_size, self.stride, self._pads, self._out_hw, self._inv_count)
        xp = windows.pad(x, self._pads)
        out = sum(windows.window(xp, i, j, self._out_hw, self.stride) for i, j in self._offsets())
        return (out * self._inv_count).astype(x.dtype, copy=False)

    def backward(self, grad, *, need_input_grad=True):
        c, h, w = self.input_shape
        if pool_ops.compiled(grad):
            in_shape = (grad.shape[0], c, h, w)
            return pool_ops.avg_backward(
                grad, in_shape, self.pool_size, self.stride, self._pads, self._out_hw, self._inv_count
            )
        top, bottom, left, right = self._pads
        g = grad * self._inv_count
        dx = np.zeros((grad.shape[0], c, h + top + bottom, w + left + right), dtype=grad.dtype)
        for i, j in self._offsets():
            windows.window(dx, i, j, self._out_hw, self.stride)[...] += g
        return windows.unpad(dx, self._pads)


@attrs.define(slots=False, eq=False)
class _GlobalPool2D(Layer):
    """What the global poolings share: the ``keepdims`` field, the kit's cases and the shapes."""

    keepdims: bool = fields.boolean(False, doc="keep the spatial axes as (1, 1)")

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


@layer("GlobalAveragePooling2D", aliases=("GlobalAvgPool2D", "GlobalAveragePool"))
class GlobalAveragePooling2D(_GlobalPool2D):
    """Mean of each channel over all positions: ``(N, C, H, W) -> (N, C)`` (``(N, C, 1, 1)`` with
    ``keepdims``).

    >>> import numpy as np
    >>> gap = GlobalAveragePooling2D()
    >>> gap.setup((2, 3, 3), np.random.default_rng(0))
    (2,)
    >>> gap(np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3))
    array([[ 4., 13.]], dtype=float32)
    """

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


@layer("GlobalMaxPooling2D", aliases=("GlobalMaxPool2D", "GlobalMaxPool"))
class GlobalMaxPooling2D(_GlobalPool2D):
    """Maximum of each channel over all positions: ``(N, C, H, W) -> (N, C)`` (``(N, C, 1, 1)``
    with ``keepdims``); the gradient goes to the first maximal position (row-major order).

    >>> import numpy as np
    >>> import regnet
    >>> pool = regnet.layers.GlobalMaxPooling2D()
    >>> pool.setup((2, 2, 2), np.random.default_rng(0))
    (2,)
    >>> pool(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    array([[3., 7.]], dtype=float32)
    """

    def forward(self, x, training=False):
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        arg = flat.argmax(axis=2)  # the first maximum (the first NaN, if any: a NaN maximum)
        self.cache.arg = arg
        out = np.take_along_axis(flat, arg[:, :, None], axis=2)[:, :, 0]
        return out.reshape(n, c, 1, 1) if self.keepdims else out

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        c, h, w = self.input_shape
        n = grad.shape[0]
        dx = np.zeros((n, c, h * w), grad.dtype)
        np.put_along_axis(dx, self.cache.arg[:, :, None], grad.reshape(n, c, 1), axis=2)
        return dx.reshape(n, c, h, w)

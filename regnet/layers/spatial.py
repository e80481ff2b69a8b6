"""UpSampling2D, ZeroPadding2D and Cropping2D: resampling and reshaping of NCHW images (whole
batches at once; bilinear upsampling is a product with a fixed interpolation matrix per axis)."""

import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from .base import MAX_SAMPLE_ELEMENTS, Layer, layer, require_rank


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _sides(value):
    """An int, a pair ``(vertical, horizontal)`` or ``((top, bottom), (left, right))`` as the
    latter (a tuple of tuples); anything else is returned unchanged for the validator."""
    if _is_int(value):
        return ((int(value), int(value)), (int(value), int(value)))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(map(_is_int, value)):
            return ((int(value[0]), int(value[0])), (int(value[1]), int(value[1])))
        if all(isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_int, v)) for v in value):
            return tuple((int(v[0]), int(v[1])) for v in value)
    return value


def _check_sides(_, attribute, value):
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, tuple) and len(v) == 2 for v in value)
        and all(0 <= s <= fields.MAX_SIZE for v in value for s in v)
    )
    if not ok:
        raise ConfigError(
            "expected an integer, a pair (vertical, horizontal) or ((top, bottom), (left, right)) of integers >= 0, "
            f"got {fields.show(value)}",
            field=attribute.name,
        )


def _sides_field(default, doc):
    return fields.field(
        default,
        doc=doc,
        accepts="an integer, a pair (vertical, horizontal) or ((top, bottom), (left, right)), each >= 0",
        validator=_check_sides,
        converter=_sides,
    )


@layer("ZeroPadding2D", aliases=("ZeroPad2d",))
class ZeroPadding2D(Layer):
    """Zeros added around each image: ``padding`` is an int, ``(vertical, horizontal)`` or
    ``((top, bottom), (left, right))``.

    >>> import numpy as np
    >>> import regnet
    >>> pad = regnet.layers.ZeroPadding2D(padding=((1, 0), (0, 2)))
    >>> pad.setup((1, 2, 2), np.random.default_rng(0))
    (1, 3, 4)
    >>> pad(np.ones((1, 1, 2, 2), np.float32))[0, 0]
    array([[0., 0., 0., 0.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]], dtype=float32)
    """

    padding: tuple = _sides_field(((1, 1), (1, 1)), "the zeros added at the (top, bottom), (left, right)")

    #: not a config field: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": (2, 3, 4)},
        {"config": {"padding": [2, 1]}, "input_shape": (1, 2, 3)},
        {"config": {"padding": [[0, 2], [1, 0]]}, "input_shape": (2, 3, 3)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c, h, w = input_shape
        (top, bottom), (left, right) = self.padding
        size = c * (h + top + bottom) * (w + left + right)
        if size > MAX_SAMPLE_ELEMENTS:
            raise ShapeError(f"ZeroPadding2D padding makes {size:.3g} values per sample", field="padding")
        return (c, h + top + bottom, w + left + right)

    def forward(self, x, training=False):
        (top, bottom), (left, right) = self.padding
        n, c, h, w = x.shape
        out = np.zeros((n, c, h + top + bottom, w + left + right), x.dtype)
        out[:, :, top : top + h, left : left + w] = x
        return out

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        (top, _), (left, _) = self.padding
        _, h, w = self.input_shape
        return grad[:, :, top : top + h, left : left + w]


@layer("Cropping2D")
class Cropping2D(Layer):
    """Rows and columns cut from the edges of each image: ``cropping`` is an int,
    ``(vertical, horizontal)`` or ``((top, bottom), (left, right))``.

    >>> import numpy as np
    >>> import regnet
    >>> crop = regnet.layers.Cropping2D(cropping=((1, 0), (0, 1)))
    >>> crop.setup((1, 3, 3), np.random.default_rng(0))
    (1, 2, 2)
    >>> crop(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))[0, 0]
    array([[3., 4.],
           [6., 7.]], dtype=float32)
    """

    cropping: tuple = _sides_field(((0, 0), (0, 0)), "the rows and columns cut at the (top, bottom), (left, right)")

    #: not a config field: how the conformance kit tests this layer
    test_cases = [
        {"config": {"cropping": 1}, "input_shape": (2, 4, 5)},
        {"config": {"cropping": [[0, 2], [1, 0]]}, "input_shape": (2, 4, 3)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c, h, w = input_shape
        (top, bottom), (left, right) = self.cropping
        if top + bottom >= h or left + right >= w:
            raise ShapeError(
                f"Cropping2D cropping {[list(p) for p in self.cropping]} leaves nothing of input {list(input_shape)}",
                field="cropping",
            )
        return (c, h - top - bottom, w - left - right)

    def forward(self, x, training=False):
        (top, bottom), (left, right) = self.cropping
        h, w = x.shape[2], x.shape[3]
        return x[:, :, top : h - bottom, left : w - right]

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        (top, _), (left, _) = self.cropping
        c, h, w = self.input_shape
        dx = np.zeros((grad.shape[0], c, h, w), grad.dtype)
        dx[:, :, top : top + grad.shape[2], left : left + grad.shape[3]] = grad
        return dx


def bilinear_matrix(size, scale):
    """The ``(size * scale, size)`` matrix of linear interpolation along one axis, with half-pixel
    centres (PyTorch's ``align_corners=False``, Keras's bilinear upsampling): output ``o`` samples
    the input at ``(o + 0.5) / scale - 0.5``, clamped to the first pixel, between its two
    neighbours (the last pixel repeated at the far edge)."""
    out = np.arange(size * scale)
    src = np.maximum((out + 0.5) / scale - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    frac = src - lo
    m = np.zeros((size * scale, size))
    np.add.at(m, (out, lo), 1 - frac)
    np.add.at(m, (out, hi), frac)
    return m.astype(np.float32)


@layer("UpSampling2D", aliases=("Upsample",))
class UpSampling2D(Layer):
    """Images enlarged ``size`` times per axis: 'nearest' repeats pixels, 'bilinear' interpolates
    with half-pixel centres (PyTorch's ``align_corners=False``).

    >>> import numpy as np
    >>> import regnet
    >>> up = regnet.layers.UpSampling2D(size=2, interpolation="bilinear")
    >>> up.setup((1, 1, 2), np.random.default_rng(0))
    (1, 2, 4)
    >>> up(np.array([[[[0.0, 4.0]]]], np.float32))[0, 0, 0]
    array([0., 1., 3., 4.], dtype=float32)
    """

    size: tuple = fields.pair((2, 2), doc="the upsampling factors (rows, columns)")
    interpolation: str = fields.choice("nearest", "nearest", "bilinear", doc="how new pixels get their values")

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": (2, 3, 4)},
        {"config": {"size": [3, 2], "interpolation": "bilinear"}, "input_shape": (2, 3, 4)},
        {"config": {"size": [1, 2], "interpolation": "bilinear"}, "input_shape": (1, 1, 3)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c, h, w = input_shape
        (sh, sw) = self.size
        if c * h * sh * w * sw > MAX_SAMPLE_ELEMENTS:
            raise ShapeError(f"UpSampling2D size {list(self.size)} makes too large an output", field="size")
        if self.interpolation == "bilinear":
            self._rows, self._cols = bilinear_matrix(h, sh), bilinear_matrix(w, sw)
        return (c, h * sh, w * sw)

    def forward(self, x, training=False):
        (sh, sw) = self.size
        n, c, h, w = x.shape
        if self.interpolation == "bilinear":
            return np.matmul(np.matmul(self._rows.astype(x.dtype), x), self._cols.T.astype(x.dtype))
        out = np.empty((n, c, h, sh, w, sw), x.dtype)
        out[...] = x[:, :, :, None, :, None]
        return out.reshape(n, c, h * sh, w * sw)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        (sh, sw) = self.size
        n, c = grad.shape[:2]
        _, h, w = self.input_shape
        if self.interpolation == "bilinear":
            rows, cols = self._rows.astype(grad.dtype), self._cols.astype(grad.dtype)
            return np.matmul(np.matmul(rows.T, grad), cols)
        return grad.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))

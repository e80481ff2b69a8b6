"""Layers over sequence batches ``(N, C, L)`` (channels first, as PyTorch's Conv1d): Conv1D, the
1-D max and average pools and the global pools over the length axis."""

import attrs
import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from ..ops import conv1d as conv1d_ops
from ..ops import pool as pool_ops
from ..ops import windows
from ..text import shape as shape_text
from .base import MAX_SAMPLE_ELEMENTS, Layer, layer, require_rank


def _size(value):
    """An int, or a list/tuple of one int (Keras writes ``kernel_size=(3,)``), as an int."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, np.integer):
        value = int(value)
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def size_field(default=attrs.NOTHING, *, doc, optional=False):
    """A positive int (or a list of one), stored as an int; ``None`` too if ``optional``."""

    def check(_, attribute, value):
        if value is None and optional:
            return
        if not _is_int(value) or not 1 <= value <= fields.MAX_SIZE:
            raise ConfigError(
                f"expected an integer in [1, {fields.MAX_SIZE}] (or a list of one), got {fields.show(value)}",
                field=attribute.name,
            )

    accepts = "an integer >= 1 (or a list of one)" + (" or null" if optional else "")
    return fields.field(default, doc=doc, accepts=accepts, validator=check, converter=_size)


def padding_field(default, modes, *, doc):
    """``padding``: one of ``modes`` or an integer >= 0 (the same at both ends)."""

    def check(_, attribute, value):
        ok = value in modes or (_is_int(value) and 0 <= value <= fields.MAX_SIZE)
        if not ok:
            quoted = ", ".join(f"'{m}'" for m in modes)
            raise ConfigError(f"expected {quoted} or an integer >= 0, got {fields.show(value)}", field=attribute.name)

    accepts = ", ".join(f"'{m}'" for m in modes) + " or an integer >= 0"
    return fields.field(default, doc=doc, accepts=accepts, validator=check, converter=_size)


def length_setup(layer, input_shape, k, stride, padding, *, dilation=1, window_field="kernel_size", pooling=False):
    """``(pads, out_len)`` of a sliding window of ``k`` taps ``dilation`` apart over ``(C, L)``
    inputs; 'causal' pads ``dilation * (k - 1)`` before the sequence only."""
    require_rank(layer, input_shape, (2,))
    length = input_shape[1]
    span = dilation * (k - 1) + 1
    if padding == "causal":
        pads = (span - 1, 0)
    else:
        pads = windows.padding_amounts(padding, length, span, stride)
    if pooling and _is_int(padding) and 2 * padding > k:
        raise ShapeError(  # edge windows would hold padding only
            f"{type(layer).__name__} padding {padding} is more than half the window {k}", field="padding"
        )
    if input_shape[0] * (length + sum(pads)) > MAX_SAMPLE_ELEMENTS:
        raise ShapeError(
            f"{type(layer).__name__} padding {padding!r} makes a padded input over {MAX_SAMPLE_ELEMENTS:.3g} "
            f"values per sample",
            field="padding",
        )
    out = windows.out_size(length, span, stride, *pads)
    if out < 1:
        raise ShapeError(
            f"{type(layer).__name__} window {k} (dilation {dilation}) does not fit input "
            f"{shape_text(input_shape)} with padding {padding!r}",
            field=window_field,
        )
    return pads, out


@layer("Conv1D", aliases=("Conv1d",))
class Conv1D(Layer):
    """1-D convolution over ``(N, C, L)``; ``kernel`` is ``(filters, C / groups, kernel_size)``
    (PyTorch's Conv1d weight), output ``(N, filters, Lo)``.

    >>> import numpy as np
    >>> conv = Conv1D(filters=1, kernel_size=2, padding="causal", kernel_initializer="ones")
    >>> conv.setup((1, 4), np.random.default_rng(0))
    (1, 4)
    >>> conv(np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32))
    array([[[1., 3., 5., 7.]]], dtype=float32)
    """

    filters: int = fields.integer(min=1, doc="the number of output channels")
    kernel_size: int = size_field(doc="the window length")
    strides: int = size_field(1, doc="the step between windows")
    padding: str | int = padding_field(
        "valid", ("valid", "same", "causal"), doc="'valid', 'same', 'causal' (left only) or zeros at each end"
    )
    dilation_rate: int = size_field(1, doc="the spacing between the window's taps")
    groups: int = size_field(1, doc="channel groups convolved separately (divides channels and filters)")
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True, doc="add a learned bias per filter")
    kernel_initializer: str | dict = fields.initializer("glorot_uniform", doc="how the kernel starts")
    bias_initializer: str | dict = fields.initializer("zeros", doc="how the bias starts")

    fresh_output = True

    test_config = {"filters": 4, "kernel_size": 3}
    test_input_shape = (2, 7)
    test_cases = [
        {"config": {"filters": 3, "kernel_size": 2, "strides": 2, "padding": "same"}, "input_shape": (2, 7)},
        {"config": {"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2}, "input_shape": (3, 6)},
        {"config": {"filters": 4, "kernel_size": 3, "groups": 2, "padding": 1, "use_bias": False}},
        {"config": {"filters": 2, "kernel_size": 2, "strides": 3, "dilation_rate": 2, "padding": "valid"}},
    ]

    def __attrs_post_init__(self):
        super().__attrs_post_init__()
        if self.filters % self.groups:
            raise ConfigError(f"filters {self.filters} is not a multiple of groups {self.groups}", field="groups")

    def build(self, input_shape, rng):
        pads, out = length_setup(
            self, input_shape, self.kernel_size, self.strides, self.padding, dilation=self.dilation_rate
        )
        c = input_shape[0]
        if c % self.groups:
            raise ShapeError(f"Conv1D input of {c} channels does not split into {self.groups} groups", field="groups")
        shape = (self.filters, c // self.groups, self.kernel_size)
        self.add_weight("kernel", shape, self.kernel_initializer, rng)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng)
        self._geo = conv1d_ops.Geometry1D(
            input_shape, self.kernel_size, self.strides, self.dilation_rate, self.groups, pads, out
        )
        return (self.filters, out)

    def forward(self, x, training=False):
        bias = self.params["bias"] if self.use_bias else None
        y, cols = conv1d_ops.forward(x, self.params["kernel"], bias, self._geo)
        self.cache.cols = cols if training else None
        self.cache.x = None if training else x  # inference: the columns are built again if needed
        return y

    def backward(self, grad, *, need_input_grad=True):
        cols = self.cache.cols
        kernel = self.params["kernel"]
        if cols is None:
            x = self.cache.x.astype(np.result_type(self.cache.x.dtype, kernel.dtype), copy=False)
            cols = self._geo.columns(self._geo.padded(x))
        dk, db, dx = conv1d_ops.backward(grad, cols, kernel, self._geo, self.use_bias, need_input_grad)
        self.grads["kernel"][...] = dk
        if self.use_bias:
            self.grads["bias"][...] = db
        return dx


@attrs.define(slots=False, eq=False)
class _Pool1D(Layer):
    pool_size: int = size_field(2, doc="the window length")
    strides: int | None = size_field(None, optional=True, doc="the step between windows (default: pool_size)")
    padding: str | int = padding_field(
        "valid", ("valid", "same"), doc="'valid', 'same' or padding at each end (at most half the window)"
    )

    test_cases = [
        {"config": {"pool_size": 3, "strides": 2, "padding": "same"}, "input_shape": (2, 7)},
        {"config": {"pool_size": 2, "strides": 1, "padding": 1}, "input_shape": (2, 5)},
    ]
    test_input_shape = (2, 6)

    @property
    def stride(self):
        return self.pool_size if self.strides is None else self.strides

    def build(self, input_shape, rng):
        self._pads, self._out = length_setup(
            self, input_shape, self.pool_size, self.stride, self.padding, window_field="pool_size", pooling=True
        )
        return (input_shape[0], self._out)


@layer("MaxPooling1D", aliases=("MaxPool1D", "MaxPool1d"))
class MaxPooling1D(_Pool1D):
    """Max over each window of ``(N, C, L)``; the gradient goes to the first maximal element.

    >>> import numpy as np
    >>> pool = MaxPooling1D(pool_size=2)
    >>> pool.setup((1, 4), np.random.default_rng(0))
    (1, 2)
    >>> pool(np.array([[[1.0, 3.0, 2.0, 0.0]]], np.float32))
    array([[[3., 2.]]], dtype=float32)
    """

    def _geometry(self):
        return (1, self.pool_size), (1, self.stride), (0, 0, *self._pads), (1, self._out)

    def forward(self, x, training=False):
        out, arg = pool_ops.max_forward(x[:, :, None, :], *self._geometry(), training)
        self.cache.arg = arg
        self.cache.x = x if arg is None else None  # backward after inference recomputes the argmax
        return out[:, :, 0, :]

    def backward(self, grad, *, need_input_grad=True):
        arg = self.cache.arg
        if arg is None:
            _, arg = pool_ops.max_forward(self.cache.x[:, :, None, :], *self._geometry(), True)
        c, length = self.input_shape
        shape = (grad.shape[0], c, 1, length)
        return pool_ops.max_backward(grad[:, :, None, :], arg, shape, *self._geometry())[:, :, 0, :]


@layer("AveragePooling1D", aliases=("AvgPool1D", "AvgPool1d"))
class AveragePooling1D(_Pool1D):
    """Mean over each window of ``(N, C, L)``; padded positions are not counted (as in Keras 'same').

    >>> import numpy as np
    >>> pool = AveragePooling1D(pool_size=2)
    >>> pool.setup((1, 4), np.random.default_rng(0))
    (1, 2)
    >>> pool(np.array([[[1.0, 3.0, 2.0, 0.0]]], np.float32))
    array([[[2., 1.]]], dtype=float32)
    """

    def build(self, input_shape, rng):
        out = super().build(input_shape, rng)
        ones = self._padded(np.ones((1, 1, input_shape[1]), np.float32))
        self._inv_count = (1.0 / self._window_sum(ones)).astype(np.float32)
        return out

    def _padded(self, x):
        before, after = self._pads
        if not before and not after:
            return x
        xp = np.zeros((*x.shape[:2], x.shape[2] + before + after), x.dtype)
        xp[:, :, before : before + x.shape[2]] = x
        return xp

    def _view(self, a, j):
        return a[:, :, j : j + self.stride * (self._out - 1) + 1 : self.stride]

    def _window_sum(self, xp):
        return sum(self._view(xp, j) for j in range(self.pool_size))

    def forward(self, x, training=False):
        out = self._window_sum(self._padded(x))
        return (out * self._inv_count).astype(x.dtype, copy=False)

    def backward(self, grad, *, need_input_grad=True):
        c, length = self.input_shape
        before, after = self._pads
        g = grad * self._inv_count
        dx = np.zeros((grad.shape[0], c, length + before + after), grad.dtype)
        for j in range(self.pool_size):
            self._view(dx, j)[...] += g
        return dx[:, :, before : before + length]


@attrs.define(slots=False, eq=False)
class _GlobalPool1D(Layer):
    keepdims: bool = fields.boolean(False, doc="keep the length axis (size 1): (N, C, 1) instead of (N, C)")
    data_format: str = fields.choice(
        "channels_first",
        "channels_first",
        "channels_last",
        doc="channels_first: (N, C, L) batches; channels_last: (N, L, C), e.g. what an Embedding gives",
    )

    test_input_shape = (3, 5)
    test_cases = [
        {"config": {"keepdims": True}, "input_shape": (2, 4)},
        {"config": {"data_format": "channels_last"}, "input_shape": (4, 3)},
        {"config": {"data_format": "channels_last", "keepdims": True}, "input_shape": (4, 3)},
    ]

    @property
    def axis(self):
        """The length axis of a batch: 2 for (N, C, L), 1 for (N, L, C)."""
        return 2 if self.data_format == "channels_first" else 1

    def build(self, input_shape, rng):
        # the length may be None (a variable-length input): only the channels count is read
        require_rank(self, input_shape, (2,))
        first = self.data_format == "channels_first"
        c = input_shape[0] if first else input_shape[1]
        if self.keepdims:
            return (c, 1) if first else (1, c)
        return (c,)

    def _kept(self, grad):
        """``grad`` with the pooled axis back (size 1)."""
        return np.expand_dims(grad, self.axis) if not self.keepdims else grad


@layer("GlobalAveragePooling1D", aliases=("GlobalAvgPool1D",))
class GlobalAveragePooling1D(_GlobalPool1D):
    """Mean of each channel over the length axis: ``(N, C, L) -> (N, C)`` (``(N, C, 1)`` with
    ``keepdims``); with ``data_format="channels_last"`` ``(N, L, C) -> (N, C)``. The length may
    differ from batch to batch (a variable-length input).

    >>> import numpy as np
    >>> pool = GlobalAveragePooling1D()
    >>> pool.setup((2, 3), np.random.default_rng(0))
    (2,)
    >>> pool(np.array([[[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]]], np.float32))
    array([[2., 1.]], dtype=float32)
    """

    def forward(self, x, training=False):
        self.cache.shape = x.shape[1:]
        return x.mean(axis=self.axis, keepdims=self.keepdims, dtype=x.dtype)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        shape = self.cache.shape  # this batch's (a variable-length input's length may vary)
        g = self._kept(grad) * np.asarray(1.0 / shape[self.axis - 1], grad.dtype)
        return np.broadcast_to(g, (grad.shape[0], *shape)).copy()


@layer("GlobalMaxPooling1D", aliases=("GlobalMaxPool1D",))
class GlobalMaxPooling1D(_GlobalPool1D):
    """Max of each channel over the length axis: ``(N, C, L) -> (N, C)`` (``(N, C, 1)`` with
    ``keepdims``; ``(N, L, C) -> (N, C)`` with ``data_format="channels_last"``); the gradient goes
    to the first maximal position. The length may differ from batch to batch.

    >>> import numpy as np
    >>> pool = GlobalMaxPooling1D()
    >>> pool.setup((2, 3), np.random.default_rng(0))
    (2,)
    >>> pool(np.array([[[1.0, 2.0, 3.0], [0.0, 5.0, 3.0]]], np.float32))
    array([[3., 5.]], dtype=float32)
    """

    def forward(self, x, training=False):
        ax = self.axis
        arg = np.expand_dims(np.argmax(x, axis=ax), ax)  # the first maximum (a NaN counts as the maximum)
        self.cache.arg, self.cache.shape = arg, x.shape[1:]
        y = np.take_along_axis(x, arg, axis=ax)
        return y if self.keepdims else np.squeeze(y, ax)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = np.zeros((grad.shape[0], *self.cache.shape), grad.dtype)
        np.put_along_axis(dx, self.cache.arg, self._kept(grad), axis=self.axis)
        return dx

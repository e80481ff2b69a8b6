"""Conv2D over NCHW batches, as one batched matmul over im2col columns."""

import attrs
import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from ..ops import windows
from ..registry import register_layer
from .base import Layer, require_rank


def _padding(_, attribute, value):
    ok = value in ("valid", "same") or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= fields.MAX_SIZE
    )
    if not ok:
        raise ConfigError(f"expected 'valid', 'same' or an integer >= 0, got {value!r}", field=attribute.name)


def padding_field(default="valid"):
    return attrs.field(default=default, validator=_padding)


def spatial_setup(layer, input_shape, kernel, stride, padding):
    """Record padding and output size for an NCHW layer; return ``(Ho, Wo)``."""
    require_rank(layer, input_shape, (3,))
    _, h, w = input_shape
    ph, pw = windows.padding_amounts(padding, h, kernel[0], stride[0]), windows.padding_amounts(
        padding, w, kernel[1], stride[1]
    )
    layer._pads = (*ph, *pw)
    ho = windows.out_size(h, kernel[0], stride[0], *ph)
    wo = windows.out_size(w, kernel[1], stride[1], *pw)
    if ho < 1 or wo < 1:
        raise ShapeError(
            f"{type(layer).__name__} window {list(kernel)} does not fit input {list(input_shape)} "
            f"with padding {padding!r}"
        )
    layer._out_hw = (ho, wo)
    return ho, wo


@register_layer(name="Conv2D", aliases=("Conv2d",))
@attrs.define(slots=False, eq=False)
class Conv2D(Layer):
    """2-D convolution; ``kernel`` is ``(filters, in_channels, kh, kw)``, inputs are NCHW."""

    filters: int = fields.integer(min=1)
    kernel_size: tuple = fields.pair()
    strides: tuple = fields.pair((1, 1))
    padding: str | int = padding_field("valid")
    activation: str | dict = fields.component("activations", "linear")
    use_bias: bool = fields.boolean(True)
    kernel_initializer: str | dict = fields.component("initializers", "glorot_uniform")
    bias_initializer: str | dict = fields.component("initializers", "zeros")

    def build(self, input_shape, rng):
        ho, wo = spatial_setup(self, input_shape, self.kernel_size, self.strides, self.padding)
        c = input_shape[0]
        self.add_param("kernel", (self.filters, c, *self.kernel_size), self.kernel_initializer, rng)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_initializer, rng)
        return (self.filters, ho, wo)

    def forward(self, x, training=False):
        xp = windows.pad(x, self._pads)
        self._padded_shape = xp.shape
        self._cols = windows.im2col(xp, self.kernel_size, self.strides, self._out_hw)
        k = self.params["kernel"].reshape(self.filters, -1)
        y = np.matmul(k, self._cols)
        if self.use_bias:
            y += self.params["bias"][:, None]
        return y.reshape(x.shape[0], self.filters, *self._out_hw)

    def backward(self, grad):
        n = grad.shape[0]
        g = grad.reshape(n, self.filters, -1)
        cols = self._cols
        dk = np.matmul(g, cols.transpose(0, 2, 1)).sum(axis=0)
        self.grads["kernel"][...] = dk.reshape(self.grads["kernel"].shape)
        if self.use_bias:
            self.grads["bias"][...] = g.sum(axis=(0, 2))
        k = self.params["kernel"].reshape(self.filters, -1)
        dcols = np.matmul(k.T, g)
        dxp = windows.col2im(dcols, self._padded_shape, self.kernel_size, self.strides, self._out_hw)
        return windows.unpad(dxp, self._pads)

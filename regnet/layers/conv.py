"""Conv2D over NCHW batches, as GEMMs over batch-innermost im2col columns (see ``regnet.ops.conv``)."""

import attrs
import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from ..ops import conv as conv_ops
from ..ops import layout, shift, windows
from .base import MAX_SAMPLE_ELEMENTS, Layer, layer, require_rank


def _padding(_, attribute, value):
    ok = value in ("valid", "same") or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= fields.MAX_SIZE
    )
    if not ok:
        raise ConfigError(
            f"expected 'valid', 'same' or an integer >= 0, got {fields.show(value)}", field=attribute.name
        )


def padding_field(default="valid"):
    return attrs.field(default=default, validator=_padding)


def spatial_setup(layer, input_shape, kernel, stride, padding, *, window_field="kernel_size", pooling=False):
    """Record padding (``layer._pads``) and output size (``layer._out_hw``) for a sliding-window
    layer over NCHW inputs; return ``(Ho, Wo)``. ``window_field`` names the config field of the
    window for errors; ``pooling`` refuses padding of more than half the window."""
    require_rank(layer, input_shape, (3,))
    _, h, w = input_shape
    ph, pw = (
        windows.padding_amounts(padding, h, kernel[0], stride[0]),
        windows.padding_amounts(padding, w, kernel[1], stride[1]),
    )
    layer._pads = (*ph, *pw)
    if pooling and isinstance(padding, int) and 2 * padding > min(kernel):
        raise ShapeError(  # edge windows would hold padding only: an average of nothing, a max of -inf
            f"{type(layer).__name__} padding {padding} is more than half the window {list(kernel)}",
            field="padding",
        )
    padded = input_shape[0] * (h + sum(ph)) * (w + sum(pw))
    if padded > MAX_SAMPLE_ELEMENTS:
        raise ShapeError(
            f"{type(layer).__name__} padding {padding!r} makes a padded input of "
            f"{padded:.3g} values per sample (limit {MAX_SAMPLE_ELEMENTS:.3g})",
            field="padding",
        )
    ho = windows.out_size(h, kernel[0], stride[0], *ph)
    wo = windows.out_size(w, kernel[1], stride[1], *pw)
    if ho < 1 or wo < 1:
        raise ShapeError(
            f"{type(layer).__name__} window {list(kernel)} does not fit input {list(input_shape)} "
            f"with padding {padding!r}",
            field=window_field,
        )
    layer._out_hw = (ho, wo)
    return ho, wo


@layer("Conv2D", aliases=("Conv2d",))
class Conv2D(Layer):
    """2-D convolution; ``kernel`` is ``(filters, in_channels, kh, kw)``, inputs are NCHW."""

    filters: int = fields.integer(min=1)
    kernel_size: tuple = fields.pair()
    strides: tuple = fields.pair((1, 1))
    padding: str | int = padding_field("valid")
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True)
    kernel_initializer: str | dict = fields.initializer("glorot_uniform")
    bias_initializer: str | dict = fields.initializer("zeros")

    fresh_output = True

    def build(self, input_shape, rng):
        ho, wo = spatial_setup(self, input_shape, self.kernel_size, self.strides, self.padding)
        c = input_shape[0]
        self.add_weight("kernel", (self.filters, c, *self.kernel_size), self.kernel_initializer, rng)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng)
        self._geo = conv_ops.Geometry(input_shape, self.kernel_size, self.strides, self._pads, (ho, wo))
        self._transposed = self._geo.transposed(self.filters)  # the input gradient's method
        self._shift = shift.worthwhile(self._geo, self.filters)  # shifted products, no columns
        self._ws = layout.Workspace()  # padded buffers reused from batch to batch
        return (self.filters, ho, wo)

    def _shifted(self, n):
        """Whether a batch of ``n`` goes through ``ops.shift`` (the layer shape is worth it and the
        batch is large enough), else through im2col columns (``ops.conv``)."""
        return self._shift and shift.long_enough(self._geo, n)

    def forward(self, x, training=False):
        bias = self.params["bias"] if self.use_bias else None
        shifted = self._shifted(x.shape[0])
        if shifted and training:  # columns small enough to keep give the kernel gradient in one product
            dtype = np.result_type(x.dtype, self.params["kernel"].dtype)
            shifted = not conv_ops.keeps_columns(self._geo, self._geo.rows + self.use_bias, x.shape[0], dtype)
        method = shift if shifted else conv_ops
        y, kept = method.forward(x, self.params["kernel"], bias, self._geo, self._ws, training)
        self.cache.x, self.cache.kept, self.cache.shifted = x, kept, shifted
        return y

    def backward(self, grad, *, need_input_grad=True):
        geo, kernel = self._geo, self.params["kernel"]
        bias = self.params["bias"] if self.use_bias else None
        kept, shifted = self.cache.kept, self.cache.shifted
        if kept is None:  # the forward pass ran in inference mode: pad the input now
            dtype = np.result_type(self.cache.x.dtype, kernel.dtype)
            x = self.cache.x.astype(dtype, copy=False)
            kept = shift.padded(x, geo, self._ws) if shifted else geo.padded(x, self._ws)
        if self._shifted(grad.shape[0]):
            dk, db, dx = shift.backward(
                grad, kernel, bias, geo, self._ws, need_input_grad, **{"buf" if shifted else "columns": kept}
            )
        else:
            dk, db, dx = conv_ops.backward(
                grad, kept, kernel, bias, geo, self._ws, need_input_grad=need_input_grad, transposed=self._transposed
            )
        self.grads["kernel"][...] = dk
        if self.use_bias:
            self.grads["bias"][...] = db
        return dx

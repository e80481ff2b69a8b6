"""Conv2D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose over NCHW batches: GEMMs over
batch-innermost im2col columns (``regnet.ops.conv``, ``regnet.ops.shift``); grouped, depthwise,
dilated and transposed convolutions through ``regnet.ops.grouped``. With the accelerator on
(``regnet.accel``), float32 depthwise convolutions (one input channel per group) run the compiled
kernels of ``regnet.accel.conv`` straight on NCHW arrays instead."""

import numpy as np

from .. import accel, fields
from ..errors import ConfigError, ShapeError
from ..ops import conv as conv_ops
from ..ops import grouped, layout, shift, windows
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
    return fields.field(
        default,
        validator=_padding,
        doc="'valid' (none), 'same' (output size = ceil(input / stride)) or zeros on every side",
        accepts="'valid', 'same' or an integer >= 0",
    )


def spatial_setup(
    layer, input_shape, kernel, stride, padding, *, window_field="kernel_size", pooling=False, ceil_mode=False
):
    """Record padding (``layer._pads``) and output size (``layer._out_hw``) for a sliding-window
    layer over NCHW inputs; return ``(Ho, Wo)``. ``window_field`` names the config field of the
    window for errors; ``pooling`` refuses padding of more than half the window. With
    ``ceil_mode`` the output size rounds up (PyTorch's rule: the last window must start inside the
    input or the padding before it) and ``layer._pads`` includes the extra bottom/right padding
    the last windows reach into; ``layer._explicit_pads`` are the pads without it."""
    require_rank(layer, input_shape, (3,))
    _, h, w = input_shape
    ph, pw = (
        windows.padding_amounts(padding, h, kernel[0], stride[0]),
        windows.padding_amounts(padding, w, kernel[1], stride[1]),
    )
    layer._pads = layer._explicit_pads = (*ph, *pw)
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
    if ceil_mode:
        ho = windows.ceil_out_size(h, kernel[0], stride[0], *ph)
        wo = windows.ceil_out_size(w, kernel[1], stride[1], *pw)
        extra_h = max(0, (ho - 1) * stride[0] + kernel[0] - (h + sum(ph)))
        extra_w = max(0, (wo - 1) * stride[1] + kernel[1] - (w + sum(pw)))
        layer._pads = (ph[0], ph[1] + extra_h, pw[0], pw[1] + extra_w)
    layer._out_hw = (ho, wo)
    return ho, wo


def _dilation_field():
    return fields.pair((1, 1), doc="the spacing of the kernel taps over the input (1: adjacent)")


def _groups_of(layer, channels, filters):
    """Check that ``layer.groups`` divides the input channels and the filters."""
    if channels % layer.groups or filters % layer.groups:
        raise ShapeError(
            f"{type(layer).__name__} groups={layer.groups} must divide the {channels} input channels and the "
            f"{filters} filters",
            field="groups",
        )


class _General:
    """The grouped/dilated convolution of a layer over padded CHWN inputs (``ops.grouped``):
    ``setup`` in ``build``, then ``forward``/``backward`` on NCHW batches (no bias)."""

    def __init__(self, layer, input_shape, kernel_size, dilation, filters, groups):
        keff = grouped.effective(kernel_size, dilation)
        ho, wo = spatial_setup(layer, input_shape, keff, layer.strides, layer.padding)
        self.geo = grouped.Dilated(input_shape, kernel_size, layer.strides, layer._pads, (ho, wo), dilation)
        self.engine = grouped.Engine(self.geo, filters, groups)
        self.filters = filters
        self.ws = layout.Workspace()

    def forward(self, x, kernel, training):
        """``(y2 (F, Ho*Wo*N), kept)``: the CHWN output and what ``backward`` reads."""
        dtype = np.result_type(x.dtype, kernel.dtype)
        xp = self.geo.padded(x.astype(dtype, copy=False), self.ws)
        return self.engine.forward(xp, kernel), (xp if training else None)

    def output(self, y2, n):
        return layout.from_chwn(y2.reshape(self.filters, self.geo.ho, self.geo.wo, n))

    def compiled(self, x, kernel):
        """Whether the compiled depthwise kernels (``regnet.accel.conv``) take this batch: the
        accelerator is on, one input channel per group, float32 throughout, and the batch stored
        NCHW (a batch stored CHWN, as convolutions pass it on, stays on the NumPy path, which reads
        it in place: copying it to NCHW cost more than the kernel saved)."""
        return (
            self.engine.cg == 1
            and accel.active()
            and x.dtype == np.float32
            and kernel.dtype == np.float32
            and x.ndim == 4
            and x.flags.c_contiguous
        )

    def _args(self):
        geo = self.geo
        return (geo.sh, geo.sw, *geo.pads, geo.dh, geo.dw)

    def compiled_forward(self, x, kernel, bias):
        """The NCHW output (with ``bias`` when given) of the compiled depthwise kernel."""
        b = np.zeros(0, np.float32) if bias is None else bias.astype(np.float32, copy=False)
        x = np.ascontiguousarray(x)
        return accel.kernels("conv").depthwise_forward(x, kernel, b, *self._args(), self.geo.ho, self.geo.wo)

    def compiled_backward(self, grad, x, kernel, need_input_grad):
        """``(d_kernel, d_bias, d_x or None)`` of the compiled depthwise kernels for the NCHW
        output gradient ``grad``."""
        kernels = accel.kernels("conv")
        grad = np.ascontiguousarray(grad, dtype=np.float32)
        x = np.ascontiguousarray(x)
        dk, db = kernels.depthwise_kernel_grad(x, grad, self.geo.kh, self.geo.kw, *self._args())
        dx = None
        if need_input_grad:
            dx = kernels.depthwise_input_grad(grad, kernel, self.geo.c, self.geo.h, self.geo.w, *self._args())
        return dk, db, dx

    def backward(self, g2, x, kept, kernel, need_input_grad):
        """``(d_kernel, d_x)`` for the CHWN output gradient ``g2`` (F, Ho*Wo*N)."""
        if kept is None:  # the forward pass ran in inference mode
            kept = self.geo.padded(x.astype(g2.dtype, copy=False), self.ws)
        dk = self.engine.kernel_grad(kept, g2)
        if not need_input_grad:
            return dk, None
        return dk, layout.from_chwn(self.geo.unpad(self.engine.input_grad(g2, kernel)))


def _chwn_grad(grad, dtype):
    """The NCHW gradient ``grad`` as a C-contiguous ``(C, H*W*N)`` matrix."""
    return layout.contiguous_chwn(grad.astype(dtype, copy=False)).reshape(grad.shape[1], -1)


@layer("Conv2D", aliases=("Conv2d",))
class Conv2D(Layer):
    """2-D convolution; ``kernel`` is ``(filters, in_channels / groups, kh, kw)`` (PyTorch's
    layout), inputs are NCHW. With ``groups`` the channels and filters split into that many
    independent convolutions; ``dilation_rate`` spaces the kernel taps.

    >>> import numpy as np
    >>> import regnet
    >>> conv = regnet.layers.Conv2D(filters=4, kernel_size=3, groups=2, dilation_rate=2, padding="same")
    >>> conv.setup((2, 5, 5), np.random.default_rng(0))
    (4, 5, 5)
    >>> conv.params["kernel"].shape
    (4, 1, 3, 3)
    >>> conv(np.ones((1, 2, 5, 5), np.float32)).shape
    (1, 4, 5, 5)
    """

    filters: int = fields.integer(min=1, doc="the number of output channels")
    kernel_size: tuple = fields.pair(doc="the window height and width")
    strides: tuple = fields.pair((1, 1), doc="the step between windows")
    padding: str | int = padding_field("valid")
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True, doc="whether a bias is added per filter")
    kernel_initializer: str | dict = fields.initializer("glorot_uniform", doc="the kernel's initializer")
    bias_initializer: str | dict = fields.initializer("zeros", doc="the bias's initializer")
    groups: int = fields.integer(1, min=1, doc="the number of channel groups convolved separately")
    dilation_rate: tuple = _dilation_field()

    fresh_output = True

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"filters": 3, "kernel_size": 3}, "input_shape": (2, 5, 5)},
        {"config": {"filters": 4, "kernel_size": 3, "groups": 2}, "input_shape": (4, 5, 5)},
        {"config": {"filters": 6, "kernel_size": 3, "groups": 3, "strides": 2, "padding": 1}, "input_shape": (3, 6, 6)},
        {"config": {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}, "input_shape": (2, 6, 6)},
        {
            "config": {"filters": 4, "kernel_size": [2, 3], "dilation_rate": [2, 1], "groups": 2},
            "input_shape": (2, 6, 5),
        },
    ]

    def build(self, input_shape, rng):
        self._general = None
        if self.groups != 1 or self.dilation_rate != (1, 1):
            require_rank(self, input_shape, (3,))
            _groups_of(self, input_shape[0], self.filters)
            self._general = _General(self, input_shape, self.kernel_size, self.dilation_rate, self.filters, self.groups)
            c = input_shape[0] // self.groups
            self.add_weight("kernel", (self.filters, c, *self.kernel_size), self.kernel_initializer, rng)
            if self.use_bias:
                self.add_weight("bias", (self.filters,), self.bias_initializer, rng)
            return (self.filters, *self._out_hw)
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
        if self._general is not None:
            self.cache.compiled = self._general.compiled(x, self.params["kernel"])
            if self.cache.compiled:
                self.cache.x = x
                return self._general.compiled_forward(x, self.params["kernel"], self.params.get("bias"))
            y2, kept = self._general.forward(x, self.params["kernel"], training)
            if self.use_bias:
                y2 += self.params["bias"].astype(y2.dtype, copy=False)[:, None]
            self.cache.x, self.cache.kept = x, kept
            return self._general.output(y2, x.shape[0])
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
        if self._general is not None and self.cache.compiled:
            dk, db, dx = self._general.compiled_backward(grad, self.cache.x, self.params["kernel"], need_input_grad)
            self.grads["kernel"][...] = dk
            if self.use_bias:
                self.grads["bias"][...] = db
            return dx
        if self._general is not None:
            kernel = self.params["kernel"]
            g2 = _chwn_grad(grad, np.result_type(grad.dtype, kernel.dtype))
            dk, dx = self._general.backward(g2, self.cache.x, self.cache.kept, kernel, need_input_grad)
            self.grads["kernel"][...] = dk
            if self.use_bias:
                self.grads["bias"][...] = g2.sum(axis=1)
            return dx
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


@layer("DepthwiseConv2D", aliases=("DepthwiseConv2d",))
class DepthwiseConv2D(Layer):
    """Depthwise 2-D convolution: each input channel convolved with its own ``depth_multiplier``
    filters (a convolution with one group per channel); ``kernel`` is
    ``(channels * depth_multiplier, 1, kh, kw)`` (PyTorch's layout for ``groups=channels``).

    >>> import numpy as np
    >>> import regnet
    >>> dw = regnet.layers.DepthwiseConv2D(kernel_size=3, depth_multiplier=2, padding="same")
    >>> dw.setup((3, 4, 4), np.random.default_rng(0))
    (6, 4, 4)
    >>> dw.params["kernel"].shape
    (6, 1, 3, 3)
    >>> dw(np.ones((2, 3, 4, 4), np.float32)).shape
    (2, 6, 4, 4)
    """

    kernel_size: tuple = fields.pair(doc="the window height and width")
    strides: tuple = fields.pair((1, 1), doc="the step between windows")
    padding: str | int = padding_field("valid")
    depth_multiplier: int = fields.integer(1, min=1, doc="the number of output channels per input channel")
    dilation_rate: tuple = _dilation_field()
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True, doc="whether a bias is added per output channel")
    depthwise_initializer: str | dict = fields.initializer("glorot_uniform", doc="the kernel's initializer")
    bias_initializer: str | dict = fields.initializer("zeros", doc="the bias's initializer")

    fresh_output = True

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"kernel_size": 3}, "input_shape": (3, 5, 5)},
        {
            "config": {"kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"},
            "input_shape": (2, 5, 6),
        },
        {
            "config": {"kernel_size": [2, 3], "dilation_rate": 2, "padding": 1, "use_bias": False},
            "input_shape": (3, 6, 6),
        },
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c = input_shape[0]
        f = c * self.depth_multiplier
        self._general = _General(self, input_shape, self.kernel_size, self.dilation_rate, f, c)
        self.add_weight("kernel", (f, 1, *self.kernel_size), self.depthwise_initializer, rng)
        if self.use_bias:
            self.add_weight("bias", (f,), self.bias_initializer, rng)
        return (f, *self._out_hw)

    forward = Conv2D.forward
    backward = Conv2D.backward


@layer("SeparableConv2D", aliases=("SeparableConvolution2D",))
class SeparableConv2D(Layer):
    """A depthwise convolution (``depth_multiplier`` filters per input channel, no bias) followed
    by a 1x1 pointwise convolution to ``filters`` channels and the bias. Weights:
    ``depthwise_kernel`` ``(channels * depth_multiplier, 1, kh, kw)``, ``pointwise_kernel``
    ``(filters, channels * depth_multiplier, 1, 1)`` and ``bias`` (PyTorch's layouts).

    >>> import numpy as np
    >>> import regnet
    >>> sep = regnet.layers.SeparableConv2D(filters=4, kernel_size=3, padding="same")
    >>> sep.setup((3, 5, 5), np.random.default_rng(0))
    (4, 5, 5)
    >>> sorted((k, v.shape) for k, v in sep.params.items())
    [('bias', (4,)), ('depthwise_kernel', (3, 1, 3, 3)), ('pointwise_kernel', (4, 3, 1, 1))]
    >>> sep(np.ones((2, 3, 5, 5), np.float32)).shape
    (2, 4, 5, 5)
    """

    filters: int = fields.integer(min=1, doc="the number of output channels")
    kernel_size: tuple = fields.pair(doc="the depthwise window height and width")
    strides: tuple = fields.pair((1, 1), doc="the step between depthwise windows")
    padding: str | int = padding_field("valid")
    depth_multiplier: int = fields.integer(1, min=1, doc="the depthwise output channels per input channel")
    dilation_rate: tuple = _dilation_field()
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True, doc="whether a bias is added per filter")
    depthwise_initializer: str | dict = fields.initializer("glorot_uniform", doc="the depthwise kernel's initializer")
    pointwise_initializer: str | dict = fields.initializer("glorot_uniform", doc="the pointwise kernel's initializer")
    bias_initializer: str | dict = fields.initializer("zeros", doc="the bias's initializer")

    fresh_output = True

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"filters": 4, "kernel_size": 3}, "input_shape": (3, 5, 5)},
        {
            "config": {"filters": 3, "kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"},
            "input_shape": (2, 6, 5),
        },
        {"config": {"filters": 2, "kernel_size": 2, "dilation_rate": 2, "use_bias": False}, "input_shape": (2, 5, 5)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c = input_shape[0]
        m = c * self.depth_multiplier
        self._general = _General(self, input_shape, self.kernel_size, self.dilation_rate, m, c)
        self.add_weight("depthwise_kernel", (m, 1, *self.kernel_size), self.depthwise_initializer, rng)
        self.add_weight("pointwise_kernel", (self.filters, m, 1, 1), self.pointwise_initializer, rng)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng)
        return (self.filters, *self._out_hw)

    def forward(self, x, training=False):
        d2, kept = self._general.forward(x, self.params["depthwise_kernel"], training)
        pk = self.params["pointwise_kernel"].astype(d2.dtype, copy=False)
        y2 = pk.reshape(self.filters, -1) @ d2
        if self.use_bias:
            y2 += self.params["bias"].astype(y2.dtype, copy=False)[:, None]
        self.cache.x, self.cache.kept, self.cache.depthwise = x, kept, d2
        ho, wo = self._out_hw
        return layout.from_chwn(y2.reshape(self.filters, ho, wo, x.shape[0]))

    def backward(self, grad, *, need_input_grad=True):
        pk = self.params["pointwise_kernel"]
        g2 = _chwn_grad(grad, np.result_type(grad.dtype, pk.dtype))
        d2 = self.cache.depthwise
        self.grads["pointwise_kernel"][...] = (g2 @ d2.T).reshape(pk.shape)
        if self.use_bias:
            self.grads["bias"][...] = g2.sum(axis=1)
        gd = pk.reshape(self.filters, -1).astype(g2.dtype, copy=False).T @ g2
        dk, dx = self._general.backward(
            gd, self.cache.x, self.cache.kept, self.params["depthwise_kernel"], need_input_grad
        )
        self.grads["depthwise_kernel"][...] = dk
        return dx


def _transposed_size(layer, size, k, stride, extra):
    """``(output size, pad before, pad after)`` of a transposed convolution along one axis: the
    gradient of a convolution whose input is the output and whose output is ``size`` long."""
    if layer.padding == "same":
        out = size * stride
        total = max((size - 1) * stride + k - out, 0)
        return out, total // 2, total - total // 2
    p = 0 if layer.padding == "valid" else int(layer.padding)
    return (size - 1) * stride + k - 2 * p + extra, p, p


@layer("Conv2DTranspose", aliases=("ConvTranspose2d", "Conv2DTransposed"))
class Conv2DTranspose(Layer):
    """Transposed 2-D convolution (the gradient of a convolution with respect to its input);
    ``kernel`` is ``(in_channels, filters / groups, kh, kw)`` (PyTorch's layout). The output is
    ``(H - 1) * strides - 2 * padding + (kernel_size - 1) * dilation_rate + 1 + output_padding``
    high (likewise wide); 'same' gives ``H * strides`` (and takes no ``output_padding``).

    >>> import numpy as np
    >>> import regnet
    >>> up = regnet.layers.Conv2DTranspose(filters=2, kernel_size=3, strides=2, padding=1, output_padding=1)
    >>> up.setup((3, 4, 4), np.random.default_rng(0))
    (2, 8, 8)
    >>> up.params["kernel"].shape
    (3, 2, 3, 3)
    >>> up(np.ones((1, 3, 4, 4), np.float32)).shape
    (1, 2, 8, 8)
    """

    filters: int = fields.integer(min=1, doc="the number of output channels")
    kernel_size: tuple = fields.pair(doc="the window height and width")
    strides: tuple = fields.pair((1, 1), doc="the step between windows (the upsampling factor)")
    padding: str | int = padding_field("valid")
    output_padding: tuple = fields.pair(
        (0, 0), min=0, doc="rows and columns added at the bottom and right of the output (less than strides)"
    )
    dilation_rate: tuple = _dilation_field()
    groups: int = fields.integer(1, min=1, doc="the number of channel groups convolved separately")
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True, doc="whether a bias is added per filter")
    kernel_initializer: str | dict = fields.initializer("glorot_uniform", doc="the kernel's initializer")
    bias_initializer: str | dict = fields.initializer("zeros", doc="the bias's initializer")

    fresh_output = True

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"filters": 2, "kernel_size": 3}, "input_shape": (3, 4, 4)},
        {
            "config": {"filters": 2, "kernel_size": 3, "strides": 2, "padding": 1, "output_padding": 1},
            "input_shape": (2, 3, 4),
        },
        {"config": {"filters": 3, "kernel_size": [2, 3], "strides": 2, "padding": "same"}, "input_shape": (2, 3, 3)},
        {
            "config": {"filters": 4, "kernel_size": 3, "groups": 2, "dilation_rate": 2, "use_bias": False},
            "input_shape": (4, 3, 3),
        },
        {"config": {"filters": 2, "kernel_size": 1, "strides": 3, "padding": "same"}, "input_shape": (2, 2, 3)},
    ]

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        c, h, w = input_shape
        _groups_of(self, c, self.filters)
        if self.padding == "same" and any(self.output_padding):
            raise ConfigError(
                f"{type(self).__name__} takes no output_padding with padding 'same'", field="output_padding"
            )
        if any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise ConfigError(
                f"{type(self).__name__} output_padding {list(self.output_padding)} must be less than strides "
                f"{list(self.strides)}",
                field="output_padding",
            )
        keff = grouped.effective(self.kernel_size, self.dilation_rate)
        (ho, top, bottom), (wo, left, right) = (
            _transposed_size(self, n, k, s, e) for n, k, s, e in zip((h, w), keff, self.strides, self.output_padding)
        )
        if ho < 1 or wo < 1:
            raise ShapeError(
                f"{type(self).__name__} padding {self.padding!r} leaves no output for input {list(input_shape)}",
                field="padding",
            )
        if self.filters * (ho + top + bottom) * (wo + left + right) > MAX_SAMPLE_ELEMENTS:
            raise ShapeError(f"{type(self).__name__} output {[self.filters, ho, wo]} is too large", field="strides")
        self._pads = (top, bottom, left, right)
        self._geo = grouped.Dilated(
            (self.filters, ho, wo), self.kernel_size, self.strides, self._pads, (h, w), self.dilation_rate
        )
        self._engine = grouped.Engine(self._geo, c, self.groups)
        self._ws = layout.Workspace()
        self.add_weight("kernel", (c, self.filters // self.groups, *self.kernel_size), self.kernel_initializer, rng)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng)
        return (self.filters, ho, wo)

    def forward(self, x, training=False):
        kernel = self.params["kernel"]
        x2 = _chwn_grad(x, np.result_type(x.dtype, kernel.dtype))
        y = self._geo.unpad(self._engine.input_grad(x2, kernel))  # (F, Ho, Wo, N)
        if self.use_bias:
            y = y + self.params["bias"].astype(y.dtype, copy=False)[:, None, None, None]
        self.cache.x2 = x2
        return layout.from_chwn(y)

    def backward(self, grad, *, need_input_grad=True):
        kernel = self.params["kernel"]
        grad = grad.astype(np.result_type(grad.dtype, kernel.dtype), copy=False)
        gp = self._geo.padded(grad, self._ws)
        x2 = self.cache.x2
        self.grads["kernel"][...] = self._engine.kernel_grad(gp, x2)
        if self.use_bias:
            self.grads["bias"][...] = grad.sum(axis=(0, 2, 3))
        if not need_input_grad:
            return None
        c, h, w = self.input_shape
        return layout.from_chwn(self._engine.forward(gp, kernel).reshape(c, h, w, grad.shape[0]))

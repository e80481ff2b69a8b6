"""RMS normalisation: each sample divided by its root mean square over one axis, then scaled."""

import numpy as np

from regnet import fields
from regnet.errors import ConfigError, ShapeError
from regnet.layers import Layer, layer


def _axis(_, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (axis 0 is the batch), got {value!r}", field=attribute.name
        )


@layer("RMSNorm", register=False)  # the entry point registers it
class RMSNorm(Layer):
    """``y = gamma * x / sqrt(mean(x ** 2) + epsilon)`` with the mean of squares taken over ``axis``
    of each sample; ``gamma`` has that axis's length (Zhang and Sennrich, 2019).

    Unlike LayerNormalization it does not centre the input and has no offset; ``axis=-1``
    normalises the features of a dense input, ``axis=1`` the channels of an NCHW one. The same in
    training and inference.
    """

    test_cases = [
        {"config": {}, "input_shape": (6,)},
        {"config": {"axis": 1, "activation": "tanh"}, "input_shape": (4, 2, 3)},
        {"config": {"scale": False, "epsilon": 0.01}, "input_shape": (3, 5)},
    ]

    axis: int = fields.field(-1, doc="the axis normalised over (counted with the batch axis)", validator=_axis)
    epsilon: float = fields.number(1e-6, min=0.0, min_open=True, doc="added to the mean square")
    scale: bool = fields.boolean(True, doc="learn a scale gamma")
    activation: str | dict = fields.activation()

    def build(self, input_shape, rng):
        rank = len(input_shape) + 1
        ax = self.axis if self.axis > 0 else rank + self.axis
        if not 1 <= ax < rank:
            raise ShapeError(f"RMSNorm axis {self.axis} does not fit input {['N', *input_shape]}", field="axis")
        self._ax = ax
        n = input_shape[ax - 1]
        self._bshape = tuple(n if i == ax else 1 for i in range(rank))
        if self.scale:
            self.add_weight("gamma", (n,), "ones", rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        inv_rms = 1 / np.sqrt(np.square(x).mean(axis=self._ax, keepdims=True) + np.asarray(self.epsilon, x.dtype))
        xhat = x * inv_rms
        self.cache.xhat, self.cache.inv_rms = xhat, inv_rms
        return xhat * self.params["gamma"].reshape(self._bshape) if self.scale else xhat

    def to_onnx(self, ctx, inputs):
        """ONNX lowering (``regnet.onnx.export``): the mean square over ``axis`` with ReduceMean,
        its square root, a division and the scale; gamma is an initializer shaped to broadcast."""
        x, ax = inputs[0], self._ax
        square = ctx.node("Mul", [x, x])
        if ctx.opset >= 18:  # ReduceMean takes its axes as an input from opset 18
            ms = ctx.node("ReduceMean", [square, ctx.constant(np.array([ax], np.int64), "axes")], keepdims=1)
        else:
            ms = ctx.node("ReduceMean", [square], axes=[ax], keepdims=1)
        rms = ctx.node("Sqrt", [ctx.node("Add", [ms, ctx.constant(np.float32(self.epsilon), "epsilon")])])
        y = ctx.node("Div", [x, rms])
        if self.scale:
            y = ctx.node("Mul", [y, ctx.weight("gamma", self.params["gamma"].reshape(self._bshape[1:]))])
        return y

    def backward(self, grad, *, need_input_grad=True):
        xhat, ax = self.cache.xhat, self._ax
        if self.scale:
            others = tuple(i for i in range(grad.ndim) if i != ax)
            self.grads["gamma"][...] = (grad * xhat).sum(axis=others)
            grad = grad * self.params["gamma"].reshape(self._bshape)
        if not need_input_grad:
            return None
        # d(x * r)/dx with r = mean(x^2)^(-1/2): r * (g - xhat * mean(g * xhat))
        return (grad - xhat * (grad * xhat).mean(axis=ax, keepdims=True)) * self.cache.inv_rms

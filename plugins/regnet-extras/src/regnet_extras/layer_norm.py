"""Layer normalisation: each sample normalised over one axis, then scaled and shifted."""

import attrs
import numpy as np

from regnet import fields
from regnet.errors import ConfigError, ShapeError
from regnet.layers import Layer, layer


def _axis(_, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (axis 0 is the batch), got {value!r}", field=attribute.name
        )


@layer("LayerNorm", register=False)  # the entry point registers it
class LayerNorm(Layer):
    """``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the mean and (biased) variance
    taken over ``axis`` of each sample; ``gamma`` and ``beta`` have that axis's length.

    ``axis=-1`` normalises the features of a dense input; ``axis=1`` the channels of an NCHW one.
    Unlike BatchNorm it keeps no running statistics and behaves the same in training and inference.
    """

    test_cases = [
        {"config": {}, "input_shape": (6,)},
        {"config": {"axis": 1, "activation": "tanh"}, "input_shape": (4, 2, 3)},
        {"config": {"center": False, "epsilon": 0.01}, "input_shape": (3, 5)},
    ]

    axis: int = attrs.field(default=-1, validator=_axis)
    epsilon: float = fields.number(1e-5, min=0.0, min_open=True)
    center: bool = fields.boolean(True)
    scale: bool = fields.boolean(True)
    activation: str | dict = fields.activation()

    def build(self, input_shape, rng):
        rank = len(input_shape) + 1
        ax = self.axis if self.axis > 0 else rank + self.axis
        if not 1 <= ax < rank:
            raise ShapeError(f"LayerNorm axis {self.axis} does not fit input {['N', *input_shape]}")
        self._ax = ax
        n = input_shape[ax - 1]
        self._bshape = tuple(n if i == ax else 1 for i in range(rank))
        if self.scale:
            self.add_weight("gamma", (n,), "ones", rng)
        if self.center:
            self.add_weight("beta", (n,), "zeros", rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        mean = x.mean(axis=self._ax, keepdims=True)
        var = x.var(axis=self._ax, keepdims=True)
        inv_std = 1 / np.sqrt(var + np.asarray(self.epsilon, x.dtype))
        xhat = (x - mean) * inv_std
        self.cache.xhat, self.cache.inv_std = xhat, inv_std
        y = xhat * self.params["gamma"].reshape(self._bshape) if self.scale else xhat.copy()
        if self.center:
            y += self.params["beta"].reshape(self._bshape)
        return y

    def to_onnx(self, ctx, inputs):
        """ONNX lowering (``regnet.onnx.export``): the mean and variance over ``axis`` with
        ReduceMean, then the affine map; gamma and beta are initializers shaped to broadcast."""
        x, ax = inputs[0], self._ax

        def mean(t):
            if ctx.opset >= 18:  # ReduceMean takes its axes as an input from opset 18
                return ctx.node("ReduceMean", [t, ctx.constant(np.array([ax], np.int64), "axes")], keepdims=1)
            return ctx.node("ReduceMean", [t], axes=[ax], keepdims=1)

        d = ctx.node("Sub", [x, mean(x)])
        var = mean(ctx.node("Mul", [d, d]))
        std = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.constant(np.float32(self.epsilon), "epsilon")])])
        y = ctx.node("Div", [d, std])
        shape = self._bshape[1:]
        if self.scale:
            y = ctx.node("Mul", [y, ctx.weight("gamma", self.params["gamma"].reshape(shape))])
        if self.center:
            y = ctx.node("Add", [y, ctx.weight("beta", self.params["beta"].reshape(shape))])
        return y

    def backward(self, grad, *, need_input_grad=True):
        xhat, ax = self.cache.xhat, self._ax
        others = tuple(i for i in range(grad.ndim) if i != ax)
        if self.center:
            self.grads["beta"][...] = grad.sum(axis=others)
        if self.scale:
            self.grads["gamma"][...] = (grad * xhat).sum(axis=others)
            grad = grad * self.params["gamma"].reshape(self._bshape)
        mean_g = grad.mean(axis=ax, keepdims=True)
        mean_gx = (grad * xhat).mean(axis=ax, keepdims=True)
        return (grad - mean_g - xhat * mean_gx) * self.cache.inv_std

"""Dense, Flatten, Reshape, Activation, Dropout."""

import math

import attrs
import numpy as np

from .. import fields
from ..errors import ShapeError
from ..ops import fused
from ..registry import register_layer
from .base import Layer


@register_layer(name="Dense", aliases=("Linear",))
@attrs.define(slots=False, eq=False)
class Dense(Layer):
    """``y = x @ kernel + bias`` over the last axis; ``kernel`` is ``(in, units)``."""

    units: int = fields.integer(min=1)
    activation: str | dict = fields.component("activations", "linear")
    use_bias: bool = fields.boolean(True)
    kernel_initializer: str | dict = fields.component("initializers", "glorot_uniform")
    bias_initializer: str | dict = fields.component("initializers", "zeros")

    def build(self, input_shape, rng):
        self.add_param("kernel", (input_shape[-1], self.units), self.kernel_initializer, rng)
        if self.use_bias:
            self.add_param("bias", (self.units,), self.bias_initializer, rng)
        return (*input_shape[:-1], self.units)

    def __call__(self, x, training=False):
        y = fused.call(self, x, training)  # ReLU in place on the fresh output
        return super().__call__(x, training) if y is None else y

    def forward(self, x, training=False):
        self._x = x
        y = x @ self.params["kernel"]
        if self.use_bias:
            y += self.params["bias"]
        return y

    def release(self):
        self._x = None

    def backward(self, grad):
        x, k = self._x, self.params["kernel"]
        x2, g2 = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        np.matmul(x2.T, g2, out=self.grads["kernel"])
        if self.use_bias:
            np.sum(g2, axis=0, out=self.grads["bias"])
        if not getattr(self, "needs_input_grad", True):
            return None  # the model input's gradient is not wanted (training)
        return grad @ k.T


@register_layer(name="Flatten")
@attrs.define(slots=False, eq=False)
class Flatten(Layer):
    def build(self, input_shape, rng):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._shape)


@register_layer(name="Reshape")
@attrs.define(slots=False, eq=False)
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1)."""

    target_shape: tuple = fields.shape(allow_minus_one=True)

    def build(self, input_shape, rng):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(f"cannot reshape {list(input_shape)} into {list(self.target_shape)}", field="target_shape")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ShapeError(
                f"cannot reshape {list(input_shape)} ({size} values) into "
                f"{list(self.target_shape)} ({known} values)",
                field="target_shape",
            )
        return self.target_shape

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, grad):
        return grad.reshape(self._shape)


@register_layer(name="Activation")
@attrs.define(slots=False, eq=False)
class Activation(Layer):
    """Applies ``activation`` on its own (the work is done by the base class)."""

    activation: str | dict = fields.component("activations")

    def forward(self, x, training=False):
        return x

    def backward(self, grad):
        return grad


@register_layer(name="Dropout")
@attrs.define(slots=False, eq=False)
class Dropout(Layer):
    """Inverted dropout: zero a fraction ``rate`` of inputs in training and scale the rest."""

    rate: float = fields.number(0.5, min=0.0, max=1.0)

    def build(self, input_shape, rng):
        self._rng = rng
        if self.rate >= 1.0:
            raise ShapeError("Dropout rate must be < 1 (a rate of 1 drops everything)", field="rate")
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.rate
        self._mask = (self._rng.random(x.shape, dtype=np.float32) < keep) * np.float32(1 / keep)
        return x * self._mask

    def backward(self, grad):
        return grad if self._mask is None else grad * self._mask

"""Dense, Flatten, Reshape, Activation, Dropout."""

import math

import numpy as np

from .. import fields, sharding
from ..errors import ShapeError
from .base import Layer, layer


@layer("Dense", aliases=("Linear",))
class Dense(Layer):
    """``y = x @ kernel + bias`` over the last axis; ``kernel`` is ``(in, units)``.

    >>> import numpy as np
    >>> dense = Dense(units=2, kernel_initializer="ones")
    >>> dense.setup((3,), np.random.default_rng(0))
    (2,)
    >>> dense(np.array([[1.0, 2.0, 3.0]], np.float32))
    array([[6., 6.]], dtype=float32)
    """

    units: int = fields.integer(min=1, doc="the number of output features")
    activation: str | dict = fields.activation()
    use_bias: bool = fields.boolean(True, doc="add a learned bias")
    kernel_initializer: str | dict = fields.initializer("glorot_uniform", doc="how the kernel is drawn")
    bias_initializer: str | dict = fields.initializer("zeros", doc="how the bias is drawn")

    fresh_output = True

    def build(self, input_shape, rng):
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer, rng)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, rng)
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False):
        self.cache.x = x
        y = x @ self.params["kernel"]
        if self.use_bias:
            y += self.params["bias"]
        return y

    def backward(self, grad, *, need_input_grad=True):
        x, k = self.cache.x, self.params["kernel"]
        x2, g2 = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        np.matmul(x2.T, g2, out=self.grads["kernel"])
        if self.use_bias:
            np.sum(g2, axis=0, out=self.grads["bias"])
        return grad @ k.T if need_input_grad else None


@layer("Flatten")
class Flatten(Layer):
    """Each sample as one vector (C order).

    >>> import numpy as np
    >>> Flatten().setup((2, 3, 4), np.random.default_rng(0))
    (24,)
    """

    def build(self, input_shape, rng):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1)

    def backward(self, grad, *, need_input_grad=True):
        return grad.reshape(grad.shape[0], *self.input_shape)


@layer("Reshape")
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1).

    >>> import numpy as np
    >>> Reshape(target_shape=[4, -1]).setup((2, 3, 4), np.random.default_rng(0))
    (4, 6)
    """

    target_shape: tuple = fields.shape(allow_minus_one=True, doc="each sample's new shape (batch axis excluded)")

    def build(self, input_shape, rng):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(
                    f"cannot reshape {list(input_shape)} into {list(self.target_shape)}", field="target_shape"
                )
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ShapeError(
                f"cannot reshape {list(input_shape)} ({size} values) into {list(self.target_shape)} ({known} values)",
                field="target_shape",
            )
        return self.target_shape

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, grad, *, need_input_grad=True):
        return grad.reshape(grad.shape[0], *self.input_shape)


@layer("Activation")
class Activation(Layer):
    """Applies ``activation`` on its own (the work is done by the base class).

    >>> import numpy as np
    >>> relu = Activation(activation="relu")
    >>> relu.setup((3,), np.random.default_rng(0))
    (3,)
    >>> relu(np.array([[-1.0, 0.0, 2.0]], np.float32))
    array([[0., 0., 2.]], dtype=float32)
    """

    activation: str | dict = fields.component("activations", doc="the activation to apply")

    def forward(self, x, training=False):
        return x

    def backward(self, grad, *, need_input_grad=True):
        return grad


@layer("Dropout")
class Dropout(Layer):
    """Inverted dropout: zero a fraction ``rate`` of inputs in training and scale the rest.

    In data-parallel training the mask is drawn for the global batch (``regnet.sharding``), so
    the masks do not depend on the number of processes.

    >>> import numpy as np
    >>> drop = Dropout(rate=0.5)
    >>> drop.setup((4,), np.random.default_rng(0))
    (4,)
    >>> drop(np.ones((1, 4), np.float32))  # inference: unchanged
    array([[1., 1., 1., 1.]], dtype=float32)
    >>> sorted(set(drop(np.ones((1, 1000), np.float32), training=True).ravel().tolist()))
    [0.0, 2.0]
    """

    rate: float = fields.number(0.5, min=0.0, max=1.0, doc="the fraction of inputs zeroed in training")

    def build(self, input_shape, rng):
        self._rng = rng
        if self.rate >= 1.0:
            raise ShapeError("Dropout rate must be < 1 (a rate of 1 drops everything)", field="rate")
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self.cache.mask = None
            return x
        keep = 1.0 - self.rate
        shard = sharding.current()  # data-parallel: draw for the global batch, keep this shard's rows
        if shard is None:
            draw = self._rng.random(x.shape, dtype=np.float32)
        else:
            draw = self._rng.random((shard.total, *x.shape[1:]), dtype=np.float32)[shard.start : shard.stop]
        self.cache.mask = (draw < keep) * np.float32(1 / keep)
        return x * self.cache.mask

    def backward(self, grad, *, need_input_grad=True):
        mask = getattr(self.cache, "mask", None)
        return grad if mask is None else grad * mask

"""Layers that act on each value or channel on its own: PReLU, Rescaling, SpatialDropout2D."""

import numpy as np

from .. import fields, sharding
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from .base import Layer, layer, require_rank


def _check_shared_axes(_, attribute, value):
    ok = value is None or (
        isinstance(value, tuple)
        and len(value) >= 1
        and all(isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        raise ConfigError(
            f"expected null or a non-empty list of distinct axes >= 1 (axis 0 is the batch), got {fields.show(value)}",
            field=attribute.name,
        )


@layer("PReLU")
class PReLU(Layer):
    """Leaky ReLU with a learned slope: ``y = x`` for ``x > 0``, else ``alpha * x``.

    ``alpha`` has the shape of a sample with the ``shared_axes`` (counted with the batch axis,
    1-based as in Keras) set to 1: no shared axes gives one slope per value (Keras's default),
    ``shared_axes=[2, 3]`` one per channel of an NCHW input (PyTorch's ``PReLU(num_parameters=C)``)
    and every axis one slope for everything (PyTorch's default ``PReLU()``, with
    ``alpha_initializer={"type": "constant", "value": 0.25}``).

    >>> import numpy as np
    >>> from regnet.layers import PReLU
    >>> prelu = PReLU(alpha_initializer={"type": "constant", "value": 0.25}, shared_axes=[1])
    >>> prelu.setup((3,), np.random.default_rng(0))
    (3,)
    >>> prelu(np.array([[-4.0, 0.5, 2.0]], np.float32))
    array([[-1. ,  0.5,  2. ]], dtype=float32)
    """

    alpha_initializer: str | dict = fields.initializer("zeros", doc="the initializer of the slopes alpha")
    shared_axes: tuple | None = fields.field(
        None,
        doc="axes (1-based, the batch excluded) that share one slope; null: one slope per value",
        accepts="null or a non-empty list of distinct integers >= 1",
        validator=_check_shared_axes,
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
    )

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"alpha_initializer": {"type": "constant", "value": 0.25}}, "input_shape": (5,)},
        {"config": {"alpha_initializer": "glorot_uniform", "shared_axes": [2, 3]}, "input_shape": (3, 2, 2)},
        {
            "config": {"alpha_initializer": {"type": "constant", "value": 0.1}, "shared_axes": [1, 2, 3]},
            "input_shape": (2, 3, 2),
        },
    ]

    def build(self, input_shape, rng):
        rank = len(input_shape)
        shared = set(self.shared_axes or ())
        if any(a > rank for a in shared):
            raise ShapeError(
                f"PReLU shared_axes {list(self.shared_axes)} do not fit input {shape_text(tuple(input_shape))} "
                f"(axes 1..{rank})",
                field="shared_axes",
            )
        shape = tuple(1 if i + 1 in shared else d for i, d in enumerate(input_shape))
        self.add_weight("alpha", shape, self.alpha_initializer, rng)
        self._sums = (0, *(i + 1 for i, (a, d) in enumerate(zip(shape, input_shape)) if a == 1 and d != 1))
        return tuple(input_shape)

    def forward(self, x, training=False):
        neg = x <= 0
        self.cache.x, self.cache.neg = x, neg
        return np.where(neg, x * self.params["alpha"], x)

    def backward(self, grad, *, need_input_grad=True):
        x, neg = self.cache.x, self.cache.neg
        alpha = self.params["alpha"]
        g_neg = np.where(neg, grad, 0).astype(grad.dtype, copy=False)
        self.grads["alpha"][...] = (g_neg * x).sum(axis=self._sums, keepdims=True).reshape(alpha.shape)
        if not need_input_grad:
            return None
        return np.where(neg, grad * alpha, grad)


@layer("Rescaling")
class Rescaling(Layer):
    """``y = x * scale + offset`` with fixed numbers (inputs from [0, 255] to [0, 1]: ``scale=1/255``).

    >>> import numpy as np
    >>> from regnet.layers import Rescaling
    >>> rescale = Rescaling(scale=0.5, offset=-1.0)
    >>> rescale.setup((2,), np.random.default_rng(0))
    (2,)
    >>> rescale(np.array([[2.0, 4.0]], np.float32))
    array([[0., 1.]], dtype=float32)
    """

    scale: float = fields.number(doc="the factor every input is multiplied by")
    offset: float = fields.number(0.0, doc="the value added after the scaling")

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"scale": 0.5}, "input_shape": (4,)},
        {"config": {"scale": -2.0, "offset": 1.5}, "input_shape": (2, 3, 3)},
    ]

    def forward(self, x, training=False):
        y = x * np.asarray(self.scale, x.dtype)
        if self.offset:
            y += np.asarray(self.offset, x.dtype)
        return y

    def backward(self, grad, *, need_input_grad=True):
        return grad * np.asarray(self.scale, grad.dtype) if need_input_grad else None


@layer("SpatialDropout2D", aliases=("Dropout2d",))
class SpatialDropout2D(Layer):
    """Dropout of whole channels: in training each channel of each sample of an NCHW input is
    zeroed with probability ``rate`` and the others scaled by ``1 / (1 - rate)``; the identity
    in inference. In data-parallel training the mask is drawn for the global batch.

    >>> import numpy as np
    >>> from regnet.layers import SpatialDropout2D
    >>> drop = SpatialDropout2D(rate=0.5)
    >>> drop.setup((4, 2, 2), np.random.default_rng(0))
    (4, 2, 2)
    >>> y = drop(np.ones((1, 4, 2, 2), np.float32), training=True)
    >>> sorted(set(y.ravel().tolist())), bool((y == y[:, :, :1, :1]).all())
    ([0.0, 2.0], True)
    """

    rate: float = fields.number(0.5, min=0.0, max=1.0, doc="the fraction of channels dropped in training")

    test_config = {"rate": 0.3}
    test_input_shape = (3, 2, 2)

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (3,))
        if self.rate >= 1.0:
            raise ShapeError("SpatialDropout2D rate must be < 1 (a rate of 1 drops everything)", field="rate")
        self._rng = rng
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self.cache.mask = None
            return x
        keep = 1.0 - self.rate
        n, c = x.shape[:2]
        shard = sharding.current()
        if shard is None:
            draw = self._rng.random((n, c), dtype=np.float32)
        else:
            draw = self._rng.random((shard.total, c), dtype=np.float32)[shard.start : shard.stop]
        self.cache.mask = ((draw < keep) * np.float32(1 / keep)).reshape(n, c, 1, 1)
        return x * self.cache.mask

    def backward(self, grad, *, need_input_grad=True):
        mask = getattr(self.cache, "mask", None)
        return grad if mask is None else grad * mask

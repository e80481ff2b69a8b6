"""Weight initializers: ``init(shape, rng) -> float32 array``, drawing only from the given Generator.

Fans follow the usual convention: a dense kernel is ``(fan_in, fan_out)``; a conv kernel is
``(out_channels, in_channels, kh, kw)`` with ``fan_in = in*kh*kw`` and ``fan_out = out*kh*kw``.
"""

import math

import attrs
import numpy as np

from . import fields
from .registry import get_config, initializers, register_initializer


def fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    def __call__(self, shape, rng, dtype=np.float32):
        raise NotImplementedError

    def get_config(self):
        return get_config(self)


def get(spec):
    return initializers.create(spec)


@register_initializer(name="zeros")
@attrs.define
class Zeros(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return np.zeros(shape, dtype)


@register_initializer(name="ones")
@attrs.define
class Ones(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return np.ones(shape, dtype)


@register_initializer(name="constant")
@attrs.define
class Constant(Initializer):
    value: float = fields.number(0.0)

    def __call__(self, shape, rng, dtype=np.float32):
        return np.full(shape, self.value, dtype)


@attrs.define
class _Scaled(Initializer):
    """Variance scaling: std or limit from ``scale / fan``."""

    scale = 1.0
    mode = "fan_in"
    distribution = "normal"

    def __call__(self, shape, rng, dtype=np.float32):
        fan_in, fan_out = fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, fan)
        if self.distribution == "normal":
            return (rng.standard_normal(shape, dtype=np.float32) * math.sqrt(var)).astype(dtype)
        limit = math.sqrt(3 * var)
        return rng.uniform(-limit, limit, size=shape).astype(dtype)


@register_initializer(name="he_normal")
@attrs.define
class HeNormal(_Scaled):
    scale, mode, distribution = 2.0, "fan_in", "normal"


@register_initializer(name="he_uniform")
@attrs.define
class HeUniform(_Scaled):
    scale, mode, distribution = 2.0, "fan_in", "uniform"


@register_initializer(name="glorot_normal", aliases=("xavier_normal",))
@attrs.define
class GlorotNormal(_Scaled):
    scale, mode, distribution = 1.0, "fan_avg", "normal"


@register_initializer(name="glorot_uniform", aliases=("xavier_uniform",))
@attrs.define
class GlorotUniform(_Scaled):
    scale, mode, distribution = 1.0, "fan_avg", "uniform"


@register_initializer(name="lecun_normal")
@attrs.define
class LecunNormal(_Scaled):
    scale, mode, distribution = 1.0, "fan_in", "normal"


@register_initializer(name="lecun_uniform")
@attrs.define
class LecunUniform(_Scaled):
    scale, mode, distribution = 1.0, "fan_in", "uniform"

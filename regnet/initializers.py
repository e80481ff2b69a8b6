"""Weight initializers: ``init(shape, rng) -> float32 array``, drawing only from the given Generator.

Fans follow the usual convention: a dense kernel is ``(fan_in, fan_out)``; a conv kernel is
``(out_channels, in_channels, kh, kw)`` with ``fan_in = in*kh*kw`` and ``fan_out = out*kh*kw``; a
vector (a bias) has ``fan_in = fan_out = its length``.
"""

import math
from typing import Any

import attrs
import numpy as np

from . import fields, registry
from .errors import ConfigError


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` (see the module docstring)."""
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    """Base class of initializers: ``__call__(shape, rng, dtype=np.float32)`` returns a new array
    of ``shape`` drawn only from the ``numpy.random.Generator`` ``rng`` (never from global state,
    so a seed fixes every weight). Declare one with ``@initializer("name")``."""

    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return registry.get_config(self)


registry.initializers.bind(Initializer)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def initializer(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@initializer("name", aliases=(...))``: make the class an attrs initializer and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.initializers, name, aliases=aliases, register=register)


def get(spec: Any) -> Initializer:
    return registry.initializers.create(spec)


@initializer("zeros")
class Zeros(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return np.zeros(shape, dtype)


@initializer("ones")
class Ones(Initializer):
    def __call__(self, shape, rng, dtype=np.float32):
        return np.ones(shape, dtype)


@initializer("constant")
class Constant(Initializer):
    value: float = fields.number(0.0, doc="the value every element takes")

    def __call__(self, shape, rng, dtype=np.float32):
        return np.full(shape, self.value, dtype)


@initializer("random_uniform", aliases=("RandomUniform", "uniform"))
class RandomUniform(Initializer):
    """Uniform on ``[minval, maxval)`` whatever the shape (Keras's default for ``Embedding``)."""

    minval: float = fields.number(-0.05, doc="the lower bound")
    maxval: float = fields.number(0.05, doc="the upper bound (above minval)")

    def __attrs_post_init__(self) -> None:
        if self.maxval <= self.minval:
            raise ConfigError(
                f"expected a number > minval ({self.minval}), got {fields.show(self.maxval)}", field="maxval"
            )

    def __call__(self, shape, rng, dtype=np.float32):
        return rng.uniform(self.minval, self.maxval, size=shape).astype(dtype)


@initializer("variance_scaling", aliases=("VarianceScaling",))
class VarianceScaling(Initializer):
    """Variance ``scale / fan`` (``mode``: fan_in, fan_out or fan_avg), from a normal or a uniform
    distribution (limit ``sqrt(3 * variance)``). The named schemes below fix the three fields."""

    scale: float = fields.number(1.0, min=0.0, min_open=True, doc="the variance is scale / n")
    mode: str = fields.choice(
        "fan_in", "fan_in", "fan_out", "fan_avg", doc="n: the inputs, outputs or their mean per unit"
    )
    distribution: str = fields.choice("normal", "normal", "uniform", doc="draw from a truncated normal or a uniform")

    def __call__(self, shape, rng, dtype=np.float32):
        fan_in, fan_out = fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, fan)
        if self.distribution == "normal":
            return (rng.standard_normal(shape, dtype=np.float32) * math.sqrt(var)).astype(dtype)
        limit = math.sqrt(3 * var)
        return rng.uniform(-limit, limit, size=shape).astype(dtype)


#: name: (scale, mode, distribution, aliases)
SCHEMES = {
    "he_normal": (2.0, "fan_in", "normal", ()),
    "he_uniform": (2.0, "fan_in", "uniform", ()),
    "glorot_normal": (1.0, "fan_avg", "normal", ("xavier_normal",)),
    "glorot_uniform": (1.0, "fan_avg", "uniform", ("xavier_uniform",)),
    "lecun_normal": (1.0, "fan_in", "normal", ()),
    "lecun_uniform": (1.0, "fan_in", "uniform", ()),
}


def _scheme(name: str, scale: float, mode: str, distribution: str, aliases: tuple[str, ...]) -> type:
    """A field-less initializer for one named scheme (its config is just its name)."""

    def init(self, shape, rng, dtype=np.float32):
        return VarianceScaling(scale, mode, distribution)(shape, rng, dtype)

    camel = "".join(part.capitalize() for part in name.split("_"))
    doc = f"Variance scaling with scale {scale}, {mode}, {distribution} distribution."
    cls = type(camel, (Initializer,), {"__call__": init, "__doc__": doc, "__module__": __name__})
    return initializer(name, aliases=aliases)(cls)


HeNormal, HeUniform, GlorotNormal, GlorotUniform, LecunNormal, LecunUniform = (
    _scheme(name, *scheme) for name, scheme in SCHEMES.items()
)

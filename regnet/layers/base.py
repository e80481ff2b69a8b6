"""The layer contract.

A layer is an attrs class whose fields are its configuration::

    @register_layer("Dense")
    @attrs.define
    class Dense(Layer):
        units: int = fields.integer(min=1)

        def build(self, input_shape, rng):   # create params; return the output shape
        def forward(self, x, training=False): # whole batch in, whole batch out; cache for backward
        def backward(self, grad):             # fill self.grads[name]; return dL/dx

* Shapes passed to ``build`` exclude the batch axis. Layers with several inputs (``n_inputs`` is
  ``None``) receive a list of shapes / arrays and return a list of gradients.
* ``params`` (trainable) and ``buffers`` (non-trainable state such as running statistics) are
  dicts of float32 arrays keyed by stable names; ``grads`` mirrors ``params``.
* A layer never reads global state: randomness comes from the Generator given to ``build``.
"""

import math

import attrs
import numpy as np

from .. import activations as _activations
from .. import fields
from .. import initializers as _initializers
from ..errors import ConfigError, ShapeError
from ..registry import construct, get_config, layers

#: the largest tensor a layer may allocate (elements); protects against absurd configs
MAX_PARAM_ELEMENTS = 1 << 28
#: the largest tensor one sample may flow through a layer as (elements, batch axis excluded)
MAX_SAMPLE_ELEMENTS = 1 << 28


def _check_name(_, attribute, value):
    if value is not None and (not isinstance(value, str) or not value or "/" in value):
        raise ConfigError(f"expected a non-empty name without '/', got {fields.show(value)}", field="name")


@attrs.define(slots=False, eq=False)
class Layer:
    name: str | None = attrs.field(default=None, kw_only=True, validator=_check_name)

    #: number of inputs; ``None`` means two or more (merge layers)
    n_inputs = 1
    #: False when a sample's output depends on the rest of the batch in training (BatchNorm)
    batch_independent = True

    def __attrs_post_init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.input_shape = None
        self.output_shape = None
        act = getattr(self, "activation", None)
        self._act = _activations.get(act) if act is not None else None
        if isinstance(self._act, _activations.Linear):
            self._act = None
        self._act_cache = None

    # -- the contract ---------------------------------------------------------------------------
    def build(self, input_shape, rng):
        """Create parameters for ``input_shape`` (no batch axis); return the output shape."""
        return tuple(input_shape)

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    # -- helpers for implementations ------------------------------------------------------------
    def add_param(self, name, shape, initializer, rng, *, trainable=True):
        shape = tuple(int(s) for s in shape)
        size = math.prod(shape)
        if size > MAX_PARAM_ELEMENTS:
            raise ConfigError(
                f"parameter '{name}' of shape {list(shape)} would hold {size:.3g} elements "
                f"(limit {MAX_PARAM_ELEMENTS:.3g})"
            )
        value = _initializers.get(initializer)(shape, rng)
        value = np.ascontiguousarray(value, dtype=np.float32)
        if trainable:
            self.params[name] = value
            self.grads[name] = np.zeros_like(value)
        else:
            self.buffers[name] = value
        return value

    # -- what the model calls -------------------------------------------------------------------
    def setup(self, input_shape, rng):
        """Build and record shapes (the model calls this; layers implement ``build``)."""
        self.input_shape = input_shape
        self.params, self.grads, self.buffers = {}, {}, {}
        out = self.build(input_shape, rng)
        self.output_shape = tuple(int(s) for s in out)
        size = math.prod(self.output_shape)
        if size > MAX_SAMPLE_ELEMENTS:
            raise ShapeError(
                f"{type(self).__name__} output of shape {['N', *self.output_shape]} would hold "
                f"{size:.3g} values per sample (limit {MAX_SAMPLE_ELEMENTS:.3g})"
            )
        axis = getattr(self._act, "axis", None)
        rank = len(self.output_shape) + 1
        if isinstance(axis, int) and not (1 <= axis < rank or -rank < axis <= -1):
            raise ShapeError(
                f"activation axis {axis} does not fit output {['N', *self.output_shape]}: expected "
                f"an axis in [1, {rank - 1}] or [-{rank - 1}, -1] (axis 0 is the batch)",
                field="activation",
            )
        return self.output_shape

    def __call__(self, x, training=False):
        """``forward`` followed by the layer's ``activation`` (if it has one)."""
        z = self.forward(x, training)
        if self._act is None:
            return z
        y = self._act.forward(z)
        self._act_cache = (z, y)
        return y

    def call_backward(self, grad):
        """Backward through the activation, then through ``backward``."""
        if self._act is not None:
            z, y = self._act_cache
            grad = self._act.backward(grad, z, y)
        return self.backward(grad)

    @property
    def weights(self):
        """Every stored tensor, trainable and not: ``{name: array}``."""
        return {**self.params, **self.buffers}

    def count_params(self):
        return sum(int(v.size) for v in self.weights.values())

    # -- configuration --------------------------------------------------------------------------
    def get_config(self):
        cfg = get_config(self)
        if cfg.get("name") is None:
            cfg.pop("name", None)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k != "type"}
        return construct(cls, config, what=f"layer type '{getattr(cls, 'registered_name', cls.__name__)}'")


def require_rank(layer, shape, ranks, what="input"):
    if len(shape) not in ranks:
        want = " or ".join(str(r + 1) for r in ranks)
        raise ShapeError(
            f"{type(layer).__name__} expects a rank-{want} {what} (batch axis included), "
            f"got shape {['N', *shape]}",
            field="inputs",
        )


def create(spec):
    """A layer from a ``{"type": ..., ...}`` dict or an instance."""
    if isinstance(spec, Layer):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(f"a layer must be a dict with a 'type' field, got {type(spec).__name__}")
    if "type" not in spec:
        raise ConfigError("a layer needs a 'type' field", field="type")
    try:
        cls = layers.get(spec["type"])
    except ConfigError as exc:
        raise type(exc)(str(exc), field="type") from exc
    return cls.from_config({k: v for k, v in spec.items() if k != "inputs"})

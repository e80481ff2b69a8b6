"""The layer contract: what every layer, built-in or from a plugin, is and does.

A layer is a small attrs class whose fields are its configuration. ``@layer("Name")`` makes the
class an attrs class and registers it; a complete layer (the doctest below runs it)::

    >>> import numpy as np
    >>> from regnet import fields
    >>> from regnet.layers import Layer, layer
    >>> @layer("ExampleScale")
    ... class ExampleScale(Layer):
    ...     '''``y = x * scale``, one learned scale per feature (axis 1).'''
    ...     initial: float = fields.number(1.0)
    ...     activation: str = fields.activation()  # optional: the base class applies it
    ...
    ...     def build(self, input_shape, rng):
    ...         self.add_weight("scale", (input_shape[0],), {"type": "constant", "value": self.initial}, rng)
    ...         return tuple(input_shape)  # the output shape (no batch axis)
    ...
    ...     def forward(self, x, training=False):
    ...         self.cache.x = x  # what backward needs; release() drops it
    ...         return x * self.params["scale"]
    ...
    ...     def backward(self, grad, *, need_input_grad=True):
    ...         self.grads["scale"][...] = (grad * self.cache.x).sum(axis=0)
    ...         return grad * self.params["scale"] if need_input_grad else None
    >>> scale = ExampleScale(initial=2.0, activation="relu")
    >>> scale.setup((3,), np.random.default_rng(0))
    (3,)
    >>> scale(np.array([[1.0, -1.0, 0.5]], np.float32))
    array([[2., 0., 1.]], dtype=float32)
    >>> scale.call_backward(np.ones((1, 3), np.float32))
    array([[2., 0., 2.]], dtype=float32)
    >>> scale.grads["scale"]
    array([1. , 0. , 0.5], dtype=float32)
    >>> scale.get_config()
    {'type': 'ExampleScale', 'initial': 2.0, 'activation': 'relu'}
    >>> from regnet import registry; registry.layers.unregister("ExampleScale")

The contract
------------
``build(input_shape, rng) -> output_shape``
    Shapes exclude the batch axis. Create weights with ``add_weight`` and return the output
    shape. Randomness comes only from ``rng`` (keep a reference if ``forward`` needs some, as
    Dropout does).
``forward(x, training=False) -> y``
    The whole batch at once (no Python loop over samples or pixels); keep the input dtype; never
    modify ``x`` in place. Store what ``backward`` needs on ``self.cache``.
``backward(grad, *, need_input_grad=True) -> dL/dx``
    Write every ``self.grads[name]`` (the parameter's shape) and return the input gradient. When
    the model needs no input gradient (the layer reads only the model input in training),
    ``need_input_grad`` is False: the layer may return ``None`` but must fill ``grads`` as before.

Declarations (class attributes, not config fields)
--------------------------------------------------
``n_inputs``: 1, or ``None`` for two or more (merge layers receive and return lists).
``batch_independent``: False when a sample's training output depends on the rest of the batch.
``fresh_output``: True when ``forward`` returns a new array that nothing else holds, so the base
class may apply a ReLU activation in place on it (no second array of the output's size).
``integer_inputs``: True when the layer reads integer arrays (token ids, as ``Embedding``); only
such a layer may read a model input of dtype ``int64``.

Everything else (the activation after ``forward``, shapes, the cache, limits, configs) is the
base class's work: models call ``setup``, ``layer(x, training)``, ``call_backward`` and
``release``.
"""

import inspect
import math
from types import SimpleNamespace
from typing import Any, ClassVar

import attrs
import numpy as np

from .. import activations as _activations
from .. import fields, names, registry
from .. import initializers as _initializers
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from . import symbolic

#: the largest tensor a layer may allocate (elements); protects against absurd configs
MAX_PARAM_ELEMENTS = 1 << 28
#: the largest tensor one sample may flow through a layer as (elements, batch axis excluded)
MAX_SAMPLE_ELEMENTS = 1 << 28

Shape = tuple[int, ...]


def _check_name(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        names.check(value, field="name")


@attrs.define(slots=False, eq=False)
class Layer:
    """Base class of every layer (see the module docstring for the contract)."""

    name: str | None = fields.field(
        None,
        kw_only=True,
        validator=_check_name,
        doc="the layer's name in the model (unique; generated as <type>_<n> when absent)",
        accepts="a name without '/' or null",
    )
    #: False freezes the layer: its parameters get no updates (and no optimizer state)
    trainable: bool = fields.boolean(True, kw_only=True, doc="false freezes the layer's parameters")

    n_inputs: ClassVar[int | None] = 1
    batch_independent: ClassVar[bool] = True
    fresh_output: ClassVar[bool] = False
    integer_inputs: ClassVar[bool] = False
    registered_name: ClassVar[str]
    _backward_takes_flag: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.input_shape: Any = None
        self.output_shape: Shape | None = None
        self.cache = SimpleNamespace()
        act = getattr(self, "activation", None)
        self.activation_fn: _activations.Activation | None = None
        if act is not None:
            fn = _activations.get(act)
            self.activation_fn = None if isinstance(fn, _activations.Linear) else fn

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params = inspect.signature(cls.backward).parameters
        cls._backward_takes_flag = "need_input_grad" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )

    # -- the contract ---------------------------------------------------------------------------
    def build(self, input_shape: Any, rng: np.random.Generator) -> Shape:
        """Create weights for ``input_shape`` (no batch axis); return the output shape."""
        return tuple(input_shape)

    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, *, need_input_grad: bool = True) -> Any:
        raise NotImplementedError

    # -- helpers for implementations ------------------------------------------------------------
    def add_weight(
        self, name: str, shape: tuple, initializer: Any, rng: np.random.Generator, *, trainable: bool = True
    ) -> np.ndarray:
        """A float32 tensor drawn from ``initializer``: a parameter (with a gradient in ``grads``)
        or, with ``trainable=False``, a buffer (state such as running statistics)."""
        names.check(name, field=f"weight {fields.show(name)}")
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
    def setup(self, input_shape: Any, rng: np.random.Generator) -> Shape:
        """Build and record shapes (the model calls this; layers implement ``build``)."""
        self.input_shape = input_shape
        self.params, self.grads, self.buffers = {}, {}, {}
        self.release()
        out = self.build(input_shape, rng)
        # ``None``: an axis of any length (a model input's variable-length axis, passed through)
        self.output_shape = tuple(None if s is None else int(s) for s in out)
        size = math.prod(s for s in self.output_shape if s is not None)
        if size > MAX_SAMPLE_ELEMENTS:
            raise ShapeError(
                f"{type(self).__name__} output of shape {shape_text(self.output_shape)} would hold "
                f"{size:.3g} values per sample (limit {MAX_SAMPLE_ELEMENTS:.3g})"
            )
        axis = getattr(self.activation_fn, "axis", None)
        rank = len(self.output_shape) + 1
        if isinstance(axis, int) and not (1 <= axis < rank or -rank < axis <= -1):
            raise ShapeError(
                f"activation axis {axis} does not fit output {shape_text(self.output_shape)}: expected "
                f"an axis in [1, {rank - 1}] or [-{rank - 1}, -1] (axis 0 is the batch)",
                field="activation",
            )
        return self.output_shape

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward`` followed by the layer's activation (if it has one). On symbolic tensors
        (``regnet.Input(...)`` or another layer's symbolic output) it records the call for the
        functional API instead and returns the symbolic output."""
        if type(x) is not np.ndarray and symbolic.is_symbolic(x):  # arrays: the hot path, one check
            return symbolic.call(self, x)
        z = self.forward(x, training)
        act = self.activation_fn
        if act is None:
            return z
        if self.fresh_output and isinstance(act, _activations.ReLU):
            # relu'(z) is read as z > 0, the same on max(z, 0): one array serves as both
            np.maximum(z, 0, out=z)
            self.cache.activation = (z, z)
            return z
        y = act.forward(z)
        self.cache.activation = (z, y)
        return y

    def call_backward(self, grad: np.ndarray, *, need_input_grad: bool = True) -> Any:
        """Backward through the activation, then through ``backward``."""
        if self.activation_fn is not None:
            z, y = self.cache.activation
            grad = self.activation_fn.backward(grad, z, y)
        return self.backward_only(grad, need_input_grad=need_input_grad)

    def backward_only(self, grad: np.ndarray, *, need_input_grad: bool = True) -> Any:
        """``backward`` alone (the model uses it where the loss took the activation's place)."""
        if self._backward_takes_flag:
            return self.backward(grad, need_input_grad=need_input_grad)
        return self.backward(grad)  # a layer written before the flag existed

    def release(self) -> None:
        """Drop what the last forward pass kept for ``backward`` (the whole ``cache``)."""
        self.cache.__dict__.clear()  # in place: cheaper than a new namespace through attrs' __setattr__

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Every stored tensor, trainable and not: ``{name: array}``."""
        return {**self.params, **self.buffers}

    def count_params(self) -> int:
        return sum(int(v.size) for v in self.weights.values())

    # -- configuration --------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        cfg = registry.get_config(self)
        if cfg.get("name") is None:
            cfg.pop("name", None)
        if cfg.get("trainable") is True:  # written only for a frozen layer
            del cfg["trainable"]
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        config = {k: v for k, v in config.items() if k != "type"}
        return registry.construct(cls, config, what=f"layer type '{getattr(cls, 'registered_name', cls.__name__)}'")


registry.layers.bind(Layer)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def layer(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@layer("name", aliases=(...))``: make the class an attrs layer and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.layers, name, aliases=aliases, register=register, slots=False, eq=False)


def require_rank(layer: Layer, shape: Shape, ranks: tuple[int, ...], what: str = "input") -> None:
    """Raise ``ShapeError`` unless ``shape`` (no batch axis) has one of ``ranks``."""
    if len(shape) not in ranks:
        want = " or ".join(str(r + 1) for r in ranks)
        raise ShapeError(
            f"{type(layer).__name__} expects a rank-{want} {what} (batch axis included), got shape {shape_text(shape)}",
            field="inputs",
        )


def create(spec: "dict[str, Any] | Layer") -> Layer:
    """A layer from a ``{"type": ..., ...}`` dict or an instance."""
    if isinstance(spec, Layer):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(f"a layer must be a dict with a 'type' field, got {type(spec).__name__}")
    if "type" not in spec:
        raise ConfigError("a layer needs a 'type' field", field="type")
    try:
        cls = registry.layers.get(spec["type"])
    except ConfigError as exc:
        raise type(exc)(str(exc), field="type") from exc
    return cls.from_config({k: v for k, v in spec.items() if k != "inputs"})

"""Layers written as a forward pass only: the backward pass is derived by ``autograd``.

``autograd`` (the optional extra ``regnet[autodiff]``) differentiates NumPy code written with its
``autograd.numpy`` module. A ``DerivedLayer`` subclass creates its weights in ``build`` as any
layer does and writes ``compute(x, weights, training)`` with ``autograd.numpy`` operations;
``forward`` records the computation and ``backward`` gives the input gradient and every weight's
gradient from it. Nothing else changes: the layer saves, loads, exports (with a ``to_onnx`` hook)
and passes the conformance kit like a hand-written one::

    >>> import numpy as np
    >>> import autograd.numpy as anp
    >>> from regnet import DerivedLayer, fields
    >>> from regnet.layers import layer
    >>> @layer("ExampleGatedUnit")
    ... class ExampleGatedUnit(DerivedLayer):
    ...     '''``(x @ a) * sigmoid(x @ b)``: a gated linear unit over the last axis.'''
    ...     units: int = fields.integer(min=1, doc="the number of output features")
    ...
    ...     def build(self, input_shape, rng):
    ...         for name in ("a", "b"):
    ...             self.add_weight(name, (input_shape[-1], self.units), "glorot_uniform", rng)
    ...         return (*input_shape[:-1], self.units)
    ...
    ...     def compute(self, x, w, training=False):
    ...         return (x @ w["a"]) * (1 / (1 + anp.exp(-(x @ w["b"]))))
    >>> unit = ExampleGatedUnit(units=2)
    >>> unit.setup((3,), np.random.default_rng(0))
    (2,)
    >>> unit(np.ones((4, 3), np.float32)).shape
    (4, 2)
    >>> unit.call_backward(np.ones((4, 2), np.float32)).shape
    (4, 3)
    >>> sorted(unit.grads)
    ['a', 'b']
    >>> from regnet import registry; registry.layers.unregister("ExampleGatedUnit")

The cost is autograd's tracing: each forward pass records every operation in Python, so a layer
of a few large array operations pays a few tens of microseconds more than a hand-written one,
and one made of many small operations pays more (benchmarks/derived_layers.py measures it).
Weights are read by name from ``w``; buffers (``add_weight(..., trainable=False)``) are in ``w``
too, as constants.
"""

from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .base import Layer

try:
    from autograd import make_vjp
except ImportError:  # the optional extra is not installed
    make_vjp = None


def require_autograd() -> Any:
    if make_vjp is None:
        raise MissingDependencyError(
            "a DerivedLayer derives its backward pass with autograd: pip install 'regnet[autodiff]'"
        )
    return make_vjp


class DerivedLayer(Layer):
    """Base class of layers that write ``compute`` only (see the module docstring)."""

    def compute(self, x: Any, w: dict[str, Any], training: bool = False) -> Any:
        """The layer's output for the batch ``x`` from the weights ``w`` (by name), written with
        ``autograd.numpy`` so that it can be differentiated."""
        raise NotImplementedError

    def forward(self, x: Any, training: bool = False) -> Any:
        vjp_of = require_autograd()
        names = list(self.params)
        constants = dict(self.buffers)

        def traced(args: tuple) -> Any:
            return self.compute(args[0], {**constants, **dict(zip(names, args[1:]))}, training)

        vjp, y = vjp_of(traced)((x, *(self.params[n] for n in names)))
        self.cache.vjp, self.cache.names = vjp, names
        return np.asarray(y, dtype=x.dtype)

    def backward(self, grad: np.ndarray, *, need_input_grad: bool = True) -> Any:
        grads = self.cache.vjp(grad)
        for name, g in zip(self.cache.names, grads[1:]):
            self.grads[name][...] = g
        return np.asarray(grads[0], dtype=grad.dtype) if need_input_grad else None

"""The functional API: layers called on symbolic tensors describe a graph, as in Keras::

    x = regnet.Input((1, 28, 28))
    h = regnet.layers.Conv2D(8, 3, activation="relu")(x)
    y = regnet.layers.Dense(10, activation="softmax")(regnet.layers.Flatten()(h))
    model = regnet.Model(x, y)

A ``SymbolicTensor`` (``regnet.layers.symbolic``) records the layer that made it and the tensors
that layer read; calling a layer on one checks the shapes at once (a ``ShapeError`` names the
layer). ``Model(inputs, outputs)`` walks back from the output and gives ``spec.build_nodes`` the
layers in topological order with their inputs, so the model, its JSON and its saved file are those
of the equivalent spec. Each layer belongs to one place in a graph: calling the same layer twice
(shared weights) is refused.
"""

from typing import Any

from . import spec
from .errors import ConfigError
from .layers import symbolic
from .layers.symbolic import SymbolicTensor

__all__ = ["Input", "SymbolicTensor", "entries"]


def Input(shape: Any) -> SymbolicTensor:
    """The model input: a sample's shape without the batch axis, e.g. ``(1, 28, 28)``."""
    return SymbolicTensor(tuple(spec.parse_input_shape(list(shape) if isinstance(shape, tuple) else shape)))


def entries(inputs: SymbolicTensor, outputs: SymbolicTensor) -> tuple[tuple[int, ...], list]:
    """``(input_shape, [(layer, [input names]), ...])`` in topological order, for
    ``spec.build_nodes``; layers without a name get the name the spec would give them."""
    if not isinstance(inputs, SymbolicTensor) or inputs.layer is not None:
        raise ConfigError("Model(inputs, outputs): inputs must be the tensor regnet.Input(shape) returned")
    if not isinstance(outputs, SymbolicTensor) or outputs.layer is None:
        raise ConfigError("Model(inputs, outputs): outputs must be the tensor a layer returned")
    order: list[SymbolicTensor] = []
    seen: set[int] = set()
    stack: list[tuple[SymbolicTensor, int]] = [(outputs, 0)]
    while stack:  # iterative post-order: parents (in order) before the layer that reads them
        t, i = stack.pop()
        if i < len(t.parents):
            stack.append((t, i + 1))
            p = t.parents[i]
            if id(p) not in seen and p.layer is not None:
                seen.add(id(p))
                stack.append((p, 0))
        elif t.layer is not None:
            order.append(t)
    for t in order:
        for p in t.parents:
            if p.layer is None and p is not inputs:
                raise ConfigError("the output depends on an Input that is not the model's input")
    names = spec.Names()
    named = {id(t): t.layer.name for t in order if t.layer is not None and t.layer.name}
    names.update(named.values())
    result = []
    for t in order:
        layer = t.layer
        assert layer is not None
        if not layer.name:
            layer.name = spec.fresh_name(layer, names)
            names.add(layer.name)
        result.append((layer, [spec.INPUT if p.layer is None else p.layer.name for p in t.parents]))
    for layer, _ in result:
        symbolic.release(layer)  # the model owns the layers now
    return inputs.shape, result

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

Several inputs: ``regnet.Input(shape, name=..., dtype=...)`` each (``dtype`` ``"float32"`` or
``"int64"``; ``None`` in ``shape`` for an axis of any length), then ``Model([ids, features], y)``;
the inputs are the model's in that order, and unnamed ones are called ``input``, ``input_2``, ...
"""

from typing import Any

from . import spec
from .errors import ConfigError
from .layers import symbolic
from .layers.symbolic import SymbolicTensor

__all__ = ["Input", "SymbolicTensor", "entries"]


def Input(shape: Any, *, name: str | None = None, dtype: str = "float32") -> SymbolicTensor:
    """A model input: a sample's shape without the batch axis, e.g. ``(1, 28, 28)`` (``None``
    for an axis of any length, e.g. ``(None,)`` for token ids of any length), an optional
    ``name`` (how a dict of inputs and layer ``inputs`` lists name it) and its ``dtype``
    (``"float32"`` or ``"int64"``)."""
    given = {"shape": list(shape) if isinstance(shape, tuple) else shape, "dtype": dtype}
    if name is not None:
        given["name"] = name
    declared = spec.parse_input(given, "Input")
    return SymbolicTensor(declared.shape, None, (), declared if name is not None else None, dtype)


def _input_specs(inputs: list[SymbolicTensor]) -> list[spec.InputSpec]:
    """The model inputs of ``Input`` tensors, unnamed ones called ``input``, ``input_2``, ..."""
    taken = {t.input.name for t in inputs if t.input is not None}
    out, k = [], 1
    for t in inputs:
        if t.input is not None:
            out.append(t.input)
            continue
        name = spec.INPUT if k == 1 else f"{spec.INPUT}_{k}"
        while name in taken:
            k += 1
            name = f"{spec.INPUT}_{k}"
        taken.add(name)
        k += 1
        out.append(spec.InputSpec(name, tuple(t.shape), t.dtype))
    return spec.parse_inputs(out)


def entries_inputs(tensor: SymbolicTensor) -> list[spec.InputSpec]:
    """The model inputs of one ``Input`` tensor (``Sequential([Input(...), ...])``)."""
    return _input_specs([tensor])


def entries(inputs: Any, outputs: SymbolicTensor) -> tuple[Any, list]:
    """``(input_shape or [spec.InputSpec], [(layer, [input names]), ...])`` in topological
    order, for ``spec.build_nodes``; layers without a name get the name the spec would give them."""
    many = isinstance(inputs, (list, tuple))
    listed = list(inputs) if many else [inputs]
    if not listed or not all(isinstance(t, SymbolicTensor) and t.layer is None for t in listed):
        raise ConfigError(
            "Model(inputs, outputs): inputs must be the tensor regnet.Input(shape) returned (or a list of them)"
        )
    if len({id(t) for t in listed}) != len(listed):
        raise ConfigError("Model(inputs, outputs): the same Input is listed twice")
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
    declared = _input_specs(listed)
    input_name = {id(t): d.name for t, d in zip(listed, declared)}
    for t in order:
        for p in t.parents:
            if p.layer is None and id(p) not in input_name:
                which = "one of the model's inputs" if many else "the model's input"
                raise ConfigError(f"the output depends on an Input that is not {which}")
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
        result.append((layer, [input_name[id(p)] if p.layer is None else p.layer.name for p in t.parents]))
    for layer, _ in result:
        symbolic.release(layer)  # the model owns the layers now
    plain = not many and declared[0] == spec.InputSpec(spec.INPUT, declared[0].shape, "float32")
    return (declared[0].shape if plain else declared), result

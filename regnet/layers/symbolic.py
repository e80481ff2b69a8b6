"""Symbolic tensors: what a layer called on ``regnet.Input(...)`` (or on another layer's output)
returns. They record the graph the functional API builds (``regnet.functional``)."""

import weakref
from typing import Any

import attrs
import numpy as np

from ..errors import ConfigError, RegnetError
from ..text import shape as shape_text

#: layers already called on a symbolic tensor (each takes one place in one graph)
_placed: "weakref.WeakSet[Any]" = weakref.WeakSet()


@attrs.define(eq=False, repr=False)
class SymbolicTensor:
    """A placeholder for the batch a layer will see: its shape (no batch axis; ``None`` for an
    axis of any length), the layer that produces it (``None`` for a model input) and that layer's
    inputs; a model input also keeps its declaration (``spec.InputSpec``, when named) and dtype."""

    shape: tuple[int | None, ...]
    layer: Any = None
    parents: tuple["SymbolicTensor", ...] = ()
    input: Any = None
    dtype: str = "float32"

    def __repr__(self) -> str:
        what = "Input" if self.layer is None else type(self.layer).__name__
        if self.input is not None:
            what += f" '{self.input.name}'"
        return f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}) from {what}>"


def is_symbolic(x: Any) -> bool:
    return isinstance(x, SymbolicTensor) or (
        isinstance(x, (list, tuple)) and bool(x) and all(isinstance(t, SymbolicTensor) for t in x)
    )


def call(layer: Any, x: Any) -> SymbolicTensor:
    """``layer(x)`` on symbolic tensors: check the shapes on a fresh copy of the layer (the model
    draws the real weights when it is built) and return the output tensor."""
    if layer in _placed:
        raise ConfigError(
            f"{type(layer).__name__} {layer.name or ''} is already used in a graph: each layer object "
            "is called once (create another layer for another place; weights are not shared)".replace("  ", " "),
            layer=layer.name,
        )
    parents = (x,) if isinstance(x, SymbolicTensor) else tuple(x)
    many = layer.n_inputs is None
    if many and len(parents) < 2:
        raise ConfigError(f"{type(layer).__name__} takes a list of two or more tensors", layer=layer.name)
    if not many and len(parents) != 1:
        raise ConfigError(f"{type(layer).__name__} takes one tensor, got {len(parents)}", layer=layer.name)
    probe = type(layer).from_config(layer.get_config())
    shapes = [p.shape for p in parents]
    try:
        out = probe.setup(shapes if many else shapes[0], np.random.default_rng(0))
    except (RegnetError, ValueError, TypeError) as exc:  # name the layer, as a spec's build does
        where = f"{layer.name or type(layer).__name__} (called on {', '.join(shape_text(s) for s in shapes)})"
        message = getattr(exc, "message", str(exc))
        if any(None in s for s in shapes):
            message = (
                f"{type(layer).__name__} cannot take an axis of variable length (from input(s) "
                f"{', '.join(_variable_inputs(parents))} whose shape has None): it needs a fixed length there "
                f"({message}); give the input a fixed length or pool that axis away first"
            )
        raise ConfigError(message, layer=where, field=getattr(exc, "field", None)) from exc
    tensor = SymbolicTensor(tuple(out), layer, parents)
    _placed.add(layer)
    return tensor


def _variable_inputs(tensors: tuple["SymbolicTensor", ...]) -> list[str]:
    """The model inputs with a variable-length axis that ``tensors`` derive from (names)."""
    found: list[str] = []
    seen: set[int] = set()
    stack = list(tensors)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.layer is None and None in t.shape:
            found.append(f"'{t.input.name}'" if t.input is not None else "an unnamed Input")
        stack.extend(t.parents)
    return sorted(set(found))


def release(layer: Any) -> None:
    """``layer`` may be called again (it became part of a model, which now owns it)."""
    _placed.discard(layer)

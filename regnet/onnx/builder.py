"""Building an ONNX graph: the context a lowering receives (``ctx``) and the graph it writes to.

A lowering adds nodes and initializers through ``LoweringContext`` and never touches protobuf
itself::

    def to_onnx(self, ctx, inputs):                       # a layer with one input
        scale = ctx.weight("scale")                       # initializer "<layer>/scale"
        return ctx.node("Mul", [inputs[0], scale])        # the output tensor's name
"""

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphBuilder:
    """Nodes and initializers of one graph, with unique names."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken: set[str] = set()

    def claim(self, name: str) -> str:
        """Reserve ``name`` exactly (graph inputs, layer outputs); it must still be free."""
        if name in self._taken:
            raise ValueError(f"ONNX name {name!r} is used twice")
        self._taken.add(name)
        return name

    def fresh(self, base: str) -> str:
        """A name not used yet: ``base``, else ``base_2``, ``base_3``, ..."""
        name, k = base, 1
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def initializer(self, name: str, value: Any) -> str:
        """Add a constant tensor (floats as float32, integers as int64) under a fresh name."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        name = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name


class LoweringContext:
    """What a ``to_onnx`` hook receives: add nodes and initializers for one layer (or activation).

    ``name`` is the layer's name (every name made here starts with it), ``opset`` the target
    opset of the default ONNX domain, ``layer`` the layer being exported.
    """

    def __init__(self, graph: GraphBuilder, name: str, layer: Any = None) -> None:
        self.graph = graph
        self.name = name
        self.layer = layer

    @property
    def opset(self) -> int:
        return self.graph.opset

    def fresh(self, hint: str) -> str:
        """A new tensor name ``<layer>/<hint>`` (with a suffix if taken)."""
        return self.graph.fresh(f"{self.name}/{hint}")

    def node(self, op_type: str, inputs: list[str], *, outputs: int = 1, domain: str = "", **attributes: Any) -> Any:
        """Add a node; returns its output name (a tuple of names when ``outputs > 1``).

        ``inputs`` are tensor names (``""`` for an omitted optional input); ``attributes`` are the
        node's attributes (ints, floats, strings or lists of them)."""
        node_name = self.graph.fresh(f"{self.name}/{op_type}")
        names = [self.graph.fresh(f"{self.name}/{op_type.lower()}") for _ in range(outputs)]
        node = helper.make_node(op_type, list(inputs), names, name=node_name, domain=domain or None, **attributes)
        self.graph.nodes.append(node)
        return names[0] if outputs == 1 else tuple(names)

    def constant(self, value: Any, name: str = "const") -> str:
        """An initializer ``<layer>/<name>`` holding ``value`` (floats as float32, integers as int64)."""
        return self.graph.initializer(f"{self.name}/{name}", value)

    def weight(self, tensor: str, value: Any = None) -> str:
        """The initializer ``<layer>/<tensor>``: the layer's weight of that name, or ``value`` (e.g.
        the weight reshaped for broadcasting)."""
        if value is None:
            value = self.layer.weights[tensor]
        return self.graph.initializer(f"{self.name}/{tensor}", value)

"""The state of an import: ONNX tensors mapped to regnet layers under construction."""

import json
from collections import Counter
from typing import Any

import attrs
import numpy as np
import onnx

from .. import registry
from ..spec import INPUT
from ..text import show
from . import folding, naming
from .errors import OnnxImportError

#: the largest node doc_string read as a regnet config hint
MAX_HINT_CHARS = 1 << 16


@attrs.define(eq=False)
class Entry:
    """A regnet layer being built from one or more ONNX nodes."""

    type: str
    config: dict
    inputs: list  # Entry, or the name of a model input (str)
    weights: dict
    shape: tuple  # per-sample output shape
    names: list  # candidate names, best first
    hint: dict | None = None  # the regnet config the exporter attached, if any
    geometry: dict = attrs.Factory(dict)  # what hints are checked against (input shape, kernel, stride)


@attrs.define(eq=False)
class Tensor:
    """A run-time tensor: the output of ``source`` (``None``: the model input called ``input``)."""

    source: Entry | None
    shape: tuple
    input: str | None = None  # the model input's name, when ``source`` is None
    dtype: str = "float32"  # "int64" for an integer model input (token ids, an attention mask)


def hint_of(node: onnx.NodeProto) -> dict | None:
    """The regnet layer config regnet's exporter writes in a node's doc_string (never trusted: it
    only picks among spellings that compute the same thing)."""
    text = node.doc_string
    if not text or len(text) > MAX_HINT_CHARS or not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("type"), str) else None


def float32_value(value: float) -> float:
    """The shortest decimal of a float32 attribute: 0.99 rather than 0.9900000095367432."""
    return float(str(np.float32(value)))


class ImportState:
    """ONNX tensor name -> value (a constant array, a ``Tensor``), the layers made so far, and the
    helpers handlers use to read inputs and report errors."""

    def __init__(self, nodes: list[onnx.NodeProto], opset: int, outputs: set[str], batch: int | None) -> None:
        self.opset = opset
        self.values: dict[str, Any] = {}
        self.entries: list[Entry] = []
        self.outputs = outputs
        self.batch = batch  # the input's fixed batch size, when the file fixes one
        self.consumers: Counter = Counter(name for node in nodes for name in node.input if name)
        self.consumers.update(outputs)
        self.readers: dict[str, list[onnx.NodeProto]] = {}  # tensor name -> the nodes that read it
        self._producers = {name: node for node in nodes for name in node.output if name}
        for node in nodes:
            for name in dict.fromkeys(node.input):
                if name:
                    self.readers.setdefault(name, []).append(node)

    # -- errors and inputs ----------------------------------------------------------------------
    def fail(self, node: onnx.NodeProto, message: str) -> OnnxImportError:
        return OnnxImportError(message, node=node.name or f"<unnamed, output {node.output[0]}>", op=node.op_type)

    def tensor(self, node: onnx.NodeProto, index: int, what: str = "input") -> Tensor:
        value = self.input(node, index)
        if not isinstance(value, Tensor) and value is not None and not isinstance(value, np.ndarray):
            raise self.fail(
                node, f"{what} (input {index}) is a time-major view of a sequence, read only by RNN/LSTM/GRU"
            )
        if not isinstance(value, Tensor):
            raise self.fail(node, f"{what} (input {index}) must be computed from the model input, not a constant")
        return value

    def input(self, node: onnx.NodeProto, index: int) -> Any:
        """The value of input ``index`` (``None`` if absent or empty)."""
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.values[node.input[index]]

    def const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        """A float32 constant input (a weight)."""
        value = self.optional_const(node, index, what)
        if value is None:
            raise self.fail(node, f"{what} (input {index}) is missing")
        return value

    def optional_const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """A float32 constant input, or ``None`` when the optional input is absent."""
        value = self.input(node, index)
        if value is None:
            return None
        if isinstance(value, Tensor):
            raise self.fail(node, f"{what} (input {index}) is computed at run time; regnet needs a constant weight")
        if value.dtype != np.float32:
            raise self.fail(
                node, f"{what} (input {index}, {show(node.input[index])}) has dtype {value.dtype}; regnet needs float32"
            )
        return value

    def int_const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        """An integer constant input (a shape, axes), possibly holding the batch size symbol."""
        value = self.input(node, index)
        if value is None or isinstance(value, Tensor):
            raise self.fail(node, f"{what} (input {index}) must be a constant (or constant shape arithmetic)")
        if value.dtype != object and value.dtype.kind not in "iu":
            raise self.fail(node, f"{what} (input {index}) has dtype {value.dtype}; expected integers")
        return value

    def producer(self, name: str) -> onnx.NodeProto | None:
        """The node whose output is tensor ``name`` (``None`` for graph inputs and initializers)."""
        return self._producers.get(name)

    def sole_consumer(self, name: str) -> bool:
        """Whether tensor ``name`` feeds exactly one node and is not a graph output."""
        return self.consumers[name] == 1 and name not in self.outputs

    # -- building -------------------------------------------------------------------------------
    def add(
        self,
        node: onnx.NodeProto,
        type_name: str,
        config: dict,
        inputs: list[Tensor],
        shape: tuple,
        weights: dict | None = None,
        weight_inputs: tuple[int, ...] = (),
        geometry: dict | None = None,
    ) -> Entry:
        """A new layer made by ``node``; its first output now names the layer's output."""
        hint = hint_of(node)
        names = [hint["name"]] if hint and isinstance(hint.get("name"), str) else []
        names += [naming.from_weight(node.input[i]) for i in weight_inputs if i < len(node.input)]
        names.append(naming.from_node(node.name, node.op_type))
        entry = Entry(
            type_name,
            config,
            [t.source if t.source is not None else (t.input or INPUT) for t in inputs],
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (weights or {}).items()},
            tuple(None if d is None else int(d) for d in shape),
            [n for n in names if n],
            hint,
            geometry or {},
        )
        self.entries.append(entry)
        self.values[node.output[0]] = Tensor(entry, entry.shape)
        return entry

    def activation(self, node: onnx.NodeProto, spec: Any) -> None:
        """Apply an activation: folded into the layer that makes its input where regnet would
        write it so (a layer with an ``activation`` field, still linear, feeding only this node),
        else an ``Activation`` layer."""
        x = self.tensor(node, 0)
        src, hint = x.source, hint_of(node)
        standalone = hint is not None and hint.get("type") == "Activation"
        if not standalone and src is not None and self.sole_consumer(node.input[0]) and _takes_activation(src):
            src.config["activation"] = spec
            self.values[node.output[0]] = Tensor(src, x.shape)
            return
        self.add(node, "Activation", {"activation": spec}, [x], x.shape)

    def alias(self, node: onnx.NodeProto, value: Any) -> None:
        """``node``'s output is ``value`` (a constant folded now)."""
        self.values[node.output[0]] = value

    def pass_through(self, node: onnx.NodeProto, value: Tensor, source: str | None = None) -> None:
        """``node``'s output is the tensor ``source`` (its first input) itself, as ``value``: a
        reader of either reads both, so that ``sole_consumer`` counts them all before a later
        node folds an activation or a bias into the layer that makes it."""
        source = node.input[0] if source is None else source
        out = node.output[0]
        self.consumers[out] += self.consumers[source] - 1
        if source in self.outputs:
            self.outputs.add(out)
        self.values[out] = value

    def shape_value(self, x: Tensor) -> np.ndarray:
        return folding.shape_of(x.shape)


def _takes_activation(entry: Entry) -> bool:
    cls = registry.layers.get(entry.type)  # a built-in: every type made here is one
    current = entry.config.get("activation")
    return "activation" in attrs.fields_dict(cls) and current in (None, "linear")

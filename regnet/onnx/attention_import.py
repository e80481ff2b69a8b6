"""Importing multi-head attention as one regnet ``MultiHeadAttention`` layer: PyTorch's
``nn.MultiheadAttention`` (alone or inside ``nn.TransformerEncoderLayer``) as its TorchScript
exporter writes it, and regnet's own export of the layer.

PyTorch's attention is time-major and merges the batch with the heads (``(L, N, E)`` projected
by one packed ``in_proj`` ``MatMul``, split into q, k, v, ``view(L, N*H, hd).transpose(0, 1)``,
the scores ``MatMul``, an optional additive mask, ``Softmax``, ``MatMul`` with v, back to
``(L*N, E)`` and the out-projection ``Gemm``, ``view(L, N, E)``). regnet's per-sample layers cannot
follow such a graph node by node, so the whole region is replaced, before the import table runs,
by one synthetic node (``REGION_OP``) that carries the region's nodes:

* ``rewrite`` finds each region, anchored on its ``Softmax``: forward to the out-projection
  (``Gemm``, or ``MatMul`` with a constant weight and its bias ``Add``) and the ``Reshape`` nodes
  after it; backward to the input projections (a ``MatMul`` with a constant weight: their
  inputs are the region's inputs) and to the mask input of regnet's export (read by ``Greater``).
  It claims only PyTorch's time-major merged-batch region (a ``Transpose(perm=[1, 0, 2])`` inside
  it) and regnet's own export (the region's last node carries a MultiHeadAttention config);
  other attention graphs stay with the general handlers.
* ``attention`` (the handler) evaluates the region's nodes on random probe inputs of the real
  sequence shapes, reads the projections (a packed weight is q, k, v in thirds), the head count
  (from the scores' size) and the mask, builds the MultiHeadAttention layer and checks that it
  computes what the region computes on the probe (this checks the weight mapping and the scale);
  anything else is refused with an ``OnnxImportError`` naming the region's node.

The region's inputs and output may be time-major views (``sequence_import.Sequence``, form
``LNF``) of regnet's batch-major tensors or batch-major tensors themselves.
"""

import math
from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .. import layers
from ..errors import RegnetError
from ..text import show
from . import folding, reader
from .errors import OnnxImportError
from .graph import ImportState, Tensor, hint_of
from .patterns import Const
from .sequence_import import Sequence

Node = onnx.NodeProto

#: the synthetic operator a recognised attention region becomes
REGION_OP = "RegnetAttentionRegion"
#: the batch size of the probe that checks a region (when the file does not fix one)
PROBE_BATCH = 2
#: the largest difference, relative to the output's largest absolute value, the check accepts
PROBE_TOLERANCE = 1e-3
#: at most this many nodes in one region (PyTorch writes about 120)
MAX_REGION_NODES = 2000
#: an additive mask at or below this is a masked key
MASKED = -1e4
#: the operators a region's nodes may use (run-time ones and their shape arithmetic)
RUN_TIME_OPS = {"MatMul", "Gemm", "Softmax", "Sqrt", "Mod", "Where", "Equal", "Not", "Greater", "Less", "Dropout"}
RUN_TIME_OPS |= {"Tile"}
REGION_OPS = {"Constant", "Shape", "Expand", *folding.FOLDERS, *RUN_TIME_OPS}


# -- finding regions (before the import table runs) ----------------------------------------------


class _Flow:
    """Producers, consumers and which tensors carry run-time data (depend on a graph input other
    than through ``Shape``)."""

    def __init__(self, nodes: list[Node], const: Const, data_inputs: set[str], outputs: set[str]) -> None:
        self.const = const
        self.producer = {o: n for n in nodes for o in n.output if o}
        self.readers: dict[str, list[Node]] = {}
        for n in nodes:
            for i in dict.fromkeys(n.input):
                if i:
                    self.readers.setdefault(i, []).append(n)
        self.uses = Counter(i for n in nodes for i in n.input if i)
        self.uses.update(outputs)
        self.data = set(data_inputs)
        for n in nodes:
            if n.op_type not in ("Shape", "Size", "ConstantOfShape") and any(i in self.data for i in n.input):
                self.data.update(o for o in n.output if o)

    def sole_reader(self, name: str) -> Node | None:
        """The one node that reads ``name`` other than for its shape (``None``: several, or an output)."""
        all_readers = self.readers.get(name, [])
        readers = [n for n in all_readers if n.op_type not in ("Shape", "Size")]
        uses = self.uses[name] - sum(list(n.input).count(name) for n in all_readers if n.op_type in ("Shape", "Size"))
        return readers[0] if len(readers) == 1 and uses == list(readers[0].input).count(name) else None

    def data_inputs(self, node: Node) -> list[int]:
        return [i for i, name in enumerate(node.input) if name and name in self.data]


def _projection(flow: _Flow, node: Node) -> bool:
    """A ``MatMul`` or ``Gemm`` of run-time data by a constant matrix: a projection."""
    return node.op_type in ("MatMul", "Gemm") and flow.data_inputs(node) == [0]


def _is_half(flow: _Flow, name: str) -> bool:
    """Whether ``name`` is the constant 0.5 (regnet's mask threshold)."""
    value = flow.const(name)
    return value is not None and value.size == 1 and bool(value.ravel()[0] == 0.5)


def _follow(flow: _Flow, name: str, through: tuple[str, ...]) -> Node | None:
    """The first node past the sole-reader chain from ``name`` through the operators ``through``."""
    for _ in range(64):
        node = flow.sole_reader(name)
        if node is None or node.op_type not in through:
            return node
        name = node.output[0]
    return None


def _region_output(flow: _Flow, softmax: Node) -> str | None:
    """The tensor the region ends with: past the out-projection (and its bias) and its Reshapes."""
    apply = _follow(flow, softmax.output[0], ("Mul", "Dropout", "Identity", "Cast"))
    if apply is None or apply.op_type != "MatMul" or flow.data_inputs(apply) != [0, 1]:
        return None
    out = _follow(flow, apply.output[0], ("Transpose", "Reshape", "Identity"))
    if out is None or not _projection(flow, out):
        return None
    name = out.output[0]
    if out.op_type == "MatMul":
        bias = flow.sole_reader(name)
        if bias is not None and bias.op_type == "Add" and len(flow.data_inputs(bias)) == 1:
            name = bias.output[0]
    for _ in range(8):
        node = flow.sole_reader(name)
        if node is None or node.op_type != "Reshape" or flow.data_inputs(node) != [0]:
            break
        name = node.output[0]
    return name


def _region(flow: _Flow, out: str, softmax: Node) -> tuple[list[str], list[Node]] | None:
    """The region's run-time inputs and its nodes: every ancestor of ``out`` up to the inputs of
    the input projections (those not computed from the Softmax) and the tensors compared by
    ``Greater`` (regnet's attention mask); ``None`` if it reads other run-time tensors."""
    after = set()  # the run-time tensors computed from the Softmax's output
    stack = [softmax.output[0]]
    while stack:
        name = stack.pop()
        if name in after:
            continue
        after.add(name)
        for reader_ in flow.readers.get(name, []):
            if reader_.op_type not in ("Shape", "Size"):
                stack.extend(o for o in reader_.output if o)
    inputs: list[str] = []
    stack, seen = [out], set()
    while stack:  # the run-time inputs, along run-time edges only
        name = stack.pop()
        if name in seen or name not in flow.data:
            continue
        seen.add(name)
        node: Node | None = flow.producer.get(name)
        if node is None:
            return None  # a graph input read without a projection
        if len(seen) > MAX_REGION_NODES:
            return None
        if node.op_type == "MatMul" and _projection(flow, node) and node.output[0] not in after:
            inputs.append(node.input[0])
        elif node.op_type == "Greater" and flow.data_inputs(node) == [0] and _is_half(flow, node.input[1]):
            inputs.append(node.input[0])
        else:
            stack.extend(i for i in node.input if i)
    inputs = list(dict.fromkeys(inputs))
    nodes: dict[int, Node] = {}
    stack, seen = [out], set(inputs)
    while stack:  # every node up to those inputs, the shape arithmetic included
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = flow.producer.get(name)
        if node is None:
            if name in flow.data:
                return None
            continue
        if len(nodes) > MAX_REGION_NODES:
            return None
        nodes[id(node)] = node
        stack.extend(i for i in node.input if i)
    return inputs, list(nodes.values())


def _claimed(flow: _Flow, nodes: list[Node], out: str) -> bool:
    """PyTorch's time-major merged-batch region (a ``Transpose(perm=[1, 0, 2])`` on run-time data
    inside it), or regnet's own export of MultiHeadAttention (its config on the last node)."""
    last = flow.producer.get(out)
    hint = hint_of(last) if last is not None else None
    if hint is not None and hint.get("type") == "MultiHeadAttention":
        return True
    for node in nodes:
        if node.op_type == "Transpose" and node.input and node.input[0] in flow.data:
            perm = [int(p) for p in reader.attribute_values(node).get("perm", [])]
            if perm == [1, 0, 2]:
                return True
    return False


def _live(nodes: list[Node], outputs: set[str]) -> list[Node]:
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    keep: set[int] = set()
    stack = list(outputs)
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in keep:
            continue
        keep.add(i)
        stack.extend(x for x in nodes[i].input if x)
    return [n for i, n in enumerate(nodes) if i in keep]


def _defined(nodes: list[Node], known: set[str]) -> bool:
    defined = set(known)
    for node in nodes:
        if any(i and i not in defined for i in node.input):
            return False
        defined.update(node.output)
    return True


def _time_major(flow: _Flow, softmax: Node) -> bool:
    """Whether the Softmax reads PyTorch's merged-batch attention: a ``Transpose(perm=[1, 0, 2])``
    between it and the projections before it."""
    stack, seen = [softmax.input[0]], set[str]()
    while stack and len(seen) < MAX_REGION_NODES:
        name = stack.pop()
        node = flow.producer.get(name)
        if name in seen or name not in flow.data or node is None:
            continue
        seen.add(name)
        if node.op_type == "Transpose":
            if [int(p) for p in reader.attribute_values(node).get("perm", [])] == [1, 0, 2]:
                return True
        if not _projection(flow, node):
            stack.extend(i for i in node.input if i)
    return False


def _replace(
    nodes: list[Node], flow: _Flow, softmax: Node, graph_inputs: set[str], weights: set[str], outputs: set[str]
) -> tuple[list[Node], Node] | str | None:
    """``nodes`` with the region around ``softmax`` replaced and the node made; or why not (a
    region not claimed: ``None``)."""
    if flow.sole_reader(softmax.output[0]) is None:
        return "has its attention weights read outside it (need_weights=True with the weights used)"
    out = _region_output(flow, softmax)
    if out is None:
        return "does not end in an out-projection (a Gemm, or a MatMul by a constant, after the MatMul with v)"
    found = _region(flow, out, softmax)
    if found is None or not found[0]:
        return (
            "reads a run-time tensor other than its query, key and value (a key_padding_mask, or an attn_mask "
            "computed at run time)"
        )
    inputs, region = found
    if not _claimed(flow, region, out):
        return None
    inside = {id(n) for n in region}
    ordered = [n for n in nodes if id(n) in inside]
    made_outputs = {o for n in ordered for o in n.output if o}
    external = [i for n in ordered for i in n.input if i and i not in made_outputs and i not in inputs]
    if any(c not in weights for c in external):
        return "reads tensors computed outside it other than its query, key and value"
    last = flow.producer[out]
    prefix = softmax.name.rsplit("/", 1)[0] if "/" in softmax.name else softmax.name
    node = helper.make_node(
        REGION_OP,
        [*inputs, *dict.fromkeys(external)],
        [out],
        name=f"{prefix}/{REGION_OP}" if prefix else "",
        region=[n.SerializeToString() for n in ordered],
        data_inputs=len(inputs),
    )
    node.doc_string = last.doc_string
    at = next(i for i, n in enumerate(nodes) if out in n.output)
    # the region's nodes go unless something else reads them (shared shape constants)
    trial = _live([node if i == at else n for i, n in enumerate(nodes)], outputs)
    kept = {id(n) for n in trial} & inside
    if any(o in flow.data for n in ordered if id(n) in kept for o in n.output):
        return "has a run-time tensor read outside it (the attention weights of need_weights=True?)"
    if not _defined(trial, graph_inputs | weights):
        return "shares tensors with the rest of the graph"
    return trial, node


def rewrite(
    nodes: list[Node], const: Const, graph_inputs: set[str], weights: set[str], outputs: set[str]
) -> tuple[list[Node], set[int]]:
    """``nodes`` with each attention region replaced by one ``REGION_OP`` node, and the ``id`` of
    each node made so. ``const`` gives the value of an initializer or ``Constant``,
    ``graph_inputs`` are the graph's run-time inputs, ``weights`` its initializers. PyTorch's
    time-major attention that cannot be replaced is refused here, at its Softmax."""
    made: set[int] = set()
    for softmax_name in [n.output[0] for n in nodes if n.op_type == "Softmax"]:
        flow = _Flow(nodes, const, graph_inputs, outputs)
        softmax = flow.producer.get(softmax_name)
        if softmax is None:  # inside a region replaced already
            continue
        result = _replace(nodes, flow, softmax, graph_inputs, weights, outputs)
        if isinstance(result, str):
            if _time_major(flow, softmax):
                raise OnnxImportError(
                    f"the attention around it (PyTorch's time-major form) {result}; regnet imports it only as a "
                    "whole (docs/onnx.md)",
                    node=softmax.name or f"<unnamed, output {softmax.output[0]}>",
                    op="Softmax",
                )
            continue
        if result is not None:
            nodes, node = result
            made.add(id(node))
    return nodes, made


# -- evaluating a region on a probe ----------------------------------------------------------------


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)


def _gemm(a: dict, x: list) -> np.ndarray:
    p = x[0].T if a.get("transA", 0) else x[0]
    q = x[1].T if a.get("transB", 0) else x[1]
    y = np.float32(a.get("alpha", 1.0)) * (p @ q)
    if len(x) > 2 and x[2] is not None:
        y = y + np.float32(a.get("beta", 1.0)) * x[2]
    return y.astype(np.float32)


def _bounded(dims, scale: int = 1) -> list[int]:
    """``dims`` as integers, refused when they would make more than ``MAX_FOLDED_ELEMENTS`` values."""
    out = [int(d) for d in dims]
    if any(d < 0 for d in out) or math.prod(out) * scale > folding.MAX_FOLDED_ELEMENTS:
        raise folding.FoldError(f"it makes a tensor of shape {out} (limit {folding.MAX_FOLDED_ELEMENTS} elements)")
    return out


EVALUATORS: dict[str, Any] = {
    "MatMul": lambda a, x: np.matmul(x[0], x[1]),
    "Gemm": _gemm,
    "Softmax": lambda a, x: _softmax(x[0], int(a.get("axis", -1))),
    "Sqrt": lambda a, x: np.sqrt(x[0]),
    "Mod": lambda a, x: np.fmod(x[0], x[1]) if a.get("fmod", 0) else np.mod(x[0], x[1]),
    "Where": lambda a, x: np.where(x[0], x[1], x[2]),
    "Equal": lambda a, x: np.equal(x[0], x[1]),
    "Not": lambda a, x: np.logical_not(x[0]),
    "Greater": lambda a, x: np.greater(x[0], x[1]),
    "Less": lambda a, x: np.less(x[0], x[1]),
    "Expand": lambda a, x: x[0] * np.ones(_bounded(np.asarray(x[1]).ravel()), x[0].dtype),
    "Tile": lambda a, x: np.tile(x[0], _bounded([int(r) for r in np.asarray(x[1]).ravel()], np.size(x[0]))),
}


def _evaluate(st: ImportState, node: Node, region: list[Node], values: dict) -> None:
    for inner in region:
        op = inner.op_type
        if inner.domain not in ("", "ai.onnx") or op not in REGION_OPS:
            raise st.fail(node, f"operator {show(op)} (node {show(inner.name)}) inside the attention is unsupported")
        a = reader.attribute_values(inner)
        if op == "Constant":
            if "value" not in a:
                raise st.fail(node, f"the Constant {show(inner.name)} inside the attention is not a tensor")
            values[inner.output[0]] = reader.to_array(a["value"], f"node {show(inner.name)}")
            continue
        x = [values[i] if i else None for i in inner.input]
        if op == "Shape":
            shape = np.array(np.asarray(x[0]).shape, np.int64)
            values[inner.output[0]] = shape[slice(int(a.get("start", 0)), a.get("end"))]
            continue
        if op == "Dropout":
            training = len(x) > 2 and x[2] is not None and bool(np.asarray(x[2]).ravel()[0])
            ratio = 0.5 if len(x) < 2 or x[1] is None else float(np.asarray(x[1]).ravel()[0])
            if training and ratio > 0:
                raise st.fail(node, f"the Dropout {show(inner.name)} runs in training mode (export in eval mode)")
            values[inner.output[0]] = x[0]
            continue
        try:
            y = EVALUATORS[op](a, x) if op in EVALUATORS else folding.fold(op, a, x, st.opset)
        except (folding.FoldError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise st.fail(node, f"cannot evaluate {op} node {show(inner.name)} of the attention: {exc}") from None
        values[inner.output[0]] = np.asarray(y)


# -- reading the layer -----------------------------------------------------------------------------


def _producers(region: list[Node]) -> dict[str, Node]:
    return {o: n for n in region for o in n.output if o}


def _depends(region: list[Node], data: set[str]) -> set[str]:
    out = set(data)
    for n in region:
        if n.op_type not in ("Shape", "Size", "ConstantOfShape") and any(i in out for i in n.input):
            out.update(n.output)
    return out


def _projections_of(region: list[Node], data: set[str], start: str) -> set[int]:
    """The input projections (``MatMul`` by a constant) ``start`` is computed from."""
    producer = _producers(region)
    found: set[int] = set()
    stack, seen = [start], set()
    while stack:
        name = stack.pop()
        if name in seen or name not in data:
            continue
        seen.add(name)
        n = producer.get(name)
        if n is None:
            continue
        if n.op_type == "MatMul" and n.input[0] in data and n.input[1] not in data:
            found.add(id(n))
            continue
        stack.extend(i for i in n.input if i)
    return found


def _walk(producer: dict, readers: dict, name: str, back: bool, data: set[str], through: tuple) -> Node | None:
    """From ``name``, past single-data-input ``through`` nodes, the first other node."""
    for _ in range(64):
        if back:
            n = producer.get(name)
        else:
            r = readers.get(name, [])
            n = r[0] if len(r) == 1 else None
        if n is None or n.op_type not in through:
            return n
        ins = [i for i in n.input if i in data]
        if back:
            if len(ins) != 1:
                return n
            name = ins[0]
        else:
            name = n.output[0]
    return None


def _bias_after(readers: dict, values: dict, data: set[str], name: str, width: int) -> tuple[str, Any]:
    """The constant bias ``Add`` reading ``name`` (its output and the bias), or ``(name, None)``."""
    r = readers.get(name, [])
    if len(r) == 1 and r[0].op_type == "Add":
        other = [i for i in r[0].input if i != name]
        if len(other) == 1 and other[0] not in data:
            b = np.asarray(values[other[0]], np.float32)
            if b.size == width:
                return r[0].output[0], b.reshape(width)
    return name, None


def _mask_kind(
    values: dict, data: set[str], flow: set[str], producer: dict, scores: str, softmax: Node, lq: int, lk: int
) -> str:
    """'none', 'causal', or 'other': the constant mask added to the scores before the Softmax."""
    name, kind = softmax.input[0], "none"
    for _ in range(16):
        n = producer.get(name)
        if n is None or name == scores:
            return kind
        consts = [i for i in n.input if i and i not in data]
        if n.op_type == "Add" and consts:
            m = np.asarray(values[consts[0]], np.float64)
            try:
                m = np.broadcast_to(m, m.shape[:-2] + (lq, lk)) if m.ndim >= 2 else np.broadcast_to(m, (lq, lk))
            except ValueError:
                return "other"
            upper = np.triu(np.ones((lq, lk), bool), 1)
            if np.all(m[..., ~upper] == 0) and np.all(m[..., upper] <= MASKED):
                kind = "causal"
            elif np.any(m != 0):
                return "other"
        ins = [i for i in n.input if i in flow]
        if len(ins) != 1:
            return kind
        name = ins[0]
    return kind


def attention(st: ImportState, node: Node, attrs_: dict) -> None:
    """A ``REGION_OP`` node: the MultiHeadAttention layer the region computes (see the module
    docstring)."""
    region = [onnx.NodeProto.FromString(s) for s in attrs_.get("region", [])]
    n_data = int(attrs_.get("data_inputs", 0))
    sources = [st.input(node, i) for i in range(n_data)]
    batch = st.batch if st.batch is not None else PROBE_BATCH
    rng = np.random.default_rng(0)
    values: dict[str, Any] = {}
    probes: list[np.ndarray] = []  # batch-major
    for i, src in enumerate(sources):
        if isinstance(src, Sequence) and src.form == "LNF" and not src.reversed and src.directions == 1:
            probe = rng.standard_normal((batch, *src.tensor.shape)).astype(np.float32)
            values[node.input[i]] = probe.transpose(1, 0, 2)
        elif isinstance(src, Tensor) and None not in src.shape:
            probe = rng.standard_normal((batch, *src.shape)).astype(np.float32)
            values[node.input[i]] = probe
        else:
            raise st.fail(node, f"the attention's input {show(node.input[i])} is not a sequence regnet can read")
        probes.append(probe)
    for i in range(n_data, len(node.input)):
        values[node.input[i]] = st.input(node, i)
    _evaluate(st, node, region, values)
    data = _depends(region, set(node.input[:n_data]))
    greater = {n.input[0] for n in region if n.op_type == "Greater"}
    # what the query, key and value flow through (not the mask)
    flow = _depends(region, {i for i in node.input[:n_data] if i not in greater})
    producer = _producers(region)
    readers: dict[str, list[Node]] = {}  # the readers of a tensor's values (not of its shape)
    for n in region:
        for i in dict.fromkeys(n.input):
            if n.op_type not in ("Shape", "Size"):
                readers.setdefault(i, []).append(n)
    softmax = next(n for n in region if n.op_type == "Softmax")
    elementwise = ("Add", "Mul", "Div", "Sub", "Cast", "Where", "Identity")
    scores_mm = _walk(producer, readers, softmax.input[0], True, flow, elementwise)
    apply = _walk(producer, readers, softmax.output[0], False, data, ("Mul", "Dropout", "Identity", "Cast"))
    if scores_mm is None or scores_mm.op_type != "MatMul" or apply is None or apply.op_type != "MatMul":
        raise st.fail(node, "the attention's scores or weighted sum is not a MatMul of two run-time tensors")
    roles = {
        "query": _projections_of(region, data, scores_mm.input[0]),
        "key": _projections_of(region, data, scores_mm.input[1]),
        "value": _projections_of(region, data, apply.input[1]),
    }
    by_id = {id(n): n for n in region}
    if any(len(v) != 1 for v in roles.values()):
        raise st.fail(node, "the query, key and value each need one input projection (a MatMul by a constant weight)")
    proj = {role: by_id[next(iter(ids))] for role, ids in roles.items()}
    weights: dict[str, np.ndarray] = {}
    biases: dict[str, Any] = {}
    tensors: dict[str, str] = {}
    sharing = {role: [r for r in ("query", "key", "value") if proj[r] is proj[role]] for role in proj}
    for role in ("query", "key", "value"):
        p = proj[role]
        w = np.asarray(values[p.input[1]], np.float32)
        if w.ndim != 2:
            raise st.fail(node, f"the {role} projection's weight has shape {list(w.shape)}; expected a matrix")
        _, b = _bias_after(readers, values, data, p.output[0], w.shape[1])
        parts, k = len(sharing[role]), sharing[role].index(role)
        if w.shape[1] % parts:  # a packed projection: q, k, v (or k, v) side by side
            raise st.fail(node, f"the packed projection's weight {list(w.shape)} does not split in {parts}")
        size = w.shape[1] // parts
        w = w[:, k * size : (k + 1) * size]
        b = None if b is None else b[k * size : (k + 1) * size]
        weights[role], biases[role], tensors[role] = w, b, p.input[0]
    position = {name: i for i, name in enumerate(node.input[:n_data])}
    if any(t not in position for t in tensors.values()):
        raise st.fail(node, "a projection does not read one of the attention's inputs directly")
    # the out-projection: the Gemm or MatMul by a constant past the weighted sum
    out_node = _walk(producer, readers, apply.output[0], False, data, ("Transpose", "Reshape", "Identity"))
    if out_node is None or out_node.op_type not in ("Gemm", "MatMul") or out_node.input[1] in data:
        raise st.fail(node, "the attention's out-projection (a Gemm or MatMul by a constant) is missing")
    oa = reader.attribute_values(out_node)
    wo = np.asarray(values[out_node.input[1]], np.float32)
    if out_node.op_type == "Gemm":
        if oa.get("transA", 0) or float(oa.get("alpha", 1.0)) != 1.0 or float(oa.get("beta", 1.0)) != 1.0:
            raise st.fail(node, "the out-projection Gemm has transA, alpha or beta regnet does not read")
        wo = wo.T if oa.get("transB", 0) else wo
        bo = None
        if len(out_node.input) > 2 and out_node.input[2]:
            bo = np.broadcast_to(np.asarray(values[out_node.input[2]], np.float32), (wo.shape[1],)).copy()
    else:
        _, bo = _bias_after(readers, values, data, out_node.output[0], wo.shape[1])
    # sizes: heads from the scores
    lq, lk = probes[position[tensors["query"]]].shape[1], probes[position[tensors["key"]]].shape[1]
    scores = values[scores_mm.output[0]]
    if scores.shape[-1] != lk or scores.shape[-2] != lq:
        raise st.fail(
            node,
            f"the scores have shape {list(scores.shape)} for {lq} queries and {lk} keys: keys added inside the "
            "attention (add_bias_kv, add_zero_attn) are unsupported",
        )
    heads = scores.size // (batch * lq * lk)
    if heads < 1 or heads * batch * lq * lk != scores.size or weights["query"].shape[1] % heads:
        raise st.fail(node, f"the scores of shape {list(scores.shape)} do not split into heads")
    key_dim = weights["query"].shape[1] // heads
    if weights["key"].shape[1] != heads * key_dim or weights["value"].shape[1] % heads:
        raise st.fail(node, "the key and value projections do not fit the query's heads")
    value_dim = weights["value"].shape[1] // heads
    if wo.ndim != 2 or wo.shape[0] != heads * value_dim:
        raise st.fail(node, f"the out-projection's weight {list(wo.shape)} does not fit {heads} heads")
    mask_kind = _mask_kind(values, data, flow, producer, scores_mm.output[0], softmax, lq, lk)
    if mask_kind == "other":
        raise st.fail(node, "an attention mask other than the causal one (a constant added to the scores)")
    masks = [i for i in range(n_data) if node.input[i] not in tensors.values()]
    if len(masks) > 1:
        raise st.fail(node, "the attention reads more than query, key, value and one mask")
    use_bias = any(v is not None for v in (*biases.values(), bo))
    config: dict[str, Any] = {"num_heads": heads, "key_dim": key_dim}
    if value_dim != key_dim:
        config["value_dim"] = value_dim
    q_dim = probes[position[tensors["query"]]].shape[-1]
    if wo.shape[1] != q_dim:
        config["output_dim"] = int(wo.shape[1])
    if not use_bias:
        config["use_bias"] = False
    if masks:
        config["use_attention_mask"] = True
    params: dict[str, np.ndarray] = {
        "query_kernel": weights["query"].reshape(-1, heads, key_dim),
        "key_kernel": weights["key"].reshape(-1, heads, key_dim),
        "value_kernel": weights["value"].reshape(-1, heads, value_dim),
        "output_kernel": wo.reshape(heads, value_dim, -1),
    }
    if use_bias:
        for role, d in (("query", key_dim), ("key", key_dim), ("value", value_dim)):
            b = biases[role]
            params[f"{role}_bias"] = (np.zeros(heads * d, np.float32) if b is None else b).reshape(heads, d)
        params["output_bias"] = np.zeros(wo.shape[1], np.float32) if bo is None else bo
    # the layer's inputs: query, value (, key) (, mask)
    order = [tensors["query"], tensors["value"]]
    if tensors["key"] != tensors["value"]:
        order.append(tensors["key"])
    order += [node.input[i] for i in masks]
    if masks:  # regnet's mask: 1 attends, 0 does not
        m = position[node.input[masks[0]]]
        probes[m] = (rng.random(probes[m].shape) < 0.7).astype(np.float32)
        values_m = probes[m].transpose(1, 0, 2) if isinstance(sources[m], Sequence) else probes[m]
        values[node.input[masks[0]]] = values_m
        _evaluate(st, node, region, values)
    got = values[node.output[0]]
    width = int(wo.shape[1])
    if got.shape not in ((lq, batch, width), (batch, lq, width)):
        raise st.fail(node, f"the attention's output has shape {list(got.shape)}; expected (L, N, E) or (N, L, E)")
    # time-major (L, N, E) or batch-major (N, L, E): the shape says, unless L equals the batch
    majors = [got.shape[0] == lq] if lq != batch else [True, False]
    xs = [probes[position[t]] for t in order]
    best, chosen = np.inf, None
    for causal in [True] if mask_kind == "causal" else [False, True]:
        trial = dict(config, use_causal_mask=True) if causal else config
        try:
            layer = layers.create({"type": "MultiHeadAttention", **trial})
            layer.setup([x.shape[1:] for x in xs], np.random.default_rng(0))
        except RegnetError as exc:
            raise st.fail(node, f"the attention maps to a MultiHeadAttention regnet refuses: {exc}") from None
        for key, v in params.items():
            layer.params[key][...] = v
        y = layer(xs)
        for time_major in majors:
            want = got.transpose(1, 0, 2) if time_major else got
            err = float(np.max(np.abs(y - want))) / max(float(np.max(np.abs(want))), 1e-6)
            if err < best:
                best, chosen = err, (trial, time_major)
    if chosen is None or not best <= PROBE_TOLERANCE:
        raise st.fail(
            node,
            f"the attention region does not compute what MultiHeadAttention computes with the weights read from it "
            f"(relative difference {best:.3g} on a probe)",
        )
    trial, time_major = chosen
    trial = dict(trial)
    hint = hint_of(node)
    if hint is not None and hint.get("type") == "MultiHeadAttention":
        # what the graph cannot say: the training-only dropout rate; the spelling of the sizes
        if hint.get("value_dim") == value_dim:
            trial["value_dim"] = value_dim
        if hint.get("output_dim") == width:
            trial["output_dim"] = width
        try:
            layers.create({"type": "MultiHeadAttention", **trial, "dropout": hint.get("dropout", 0.0)})
            trial["dropout"] = hint.get("dropout", 0.0)
        except RegnetError:
            pass
    inputs = [sources[position[t]] for t in order]
    tensors_in = [s.tensor if isinstance(s, Sequence) else s for s in inputs]
    entry = st.add(node, "MultiHeadAttention", trial, tensors_in, (lq, width), params)
    out = Tensor(entry, entry.shape)
    st.alias(node, Sequence(out, "LNF") if time_major else out)


HANDLERS = {REGION_OP: attention}

__all__ = ["HANDLERS", "REGION_OP", "attention", "rewrite"]

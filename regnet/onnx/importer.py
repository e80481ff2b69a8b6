"""ONNX -> regnet: read a checked ONNX model, fold constant shape arithmetic, map each operator to
regnet layers (``handlers``) and build a ``Model`` with the file's weights.

Never runs code from the file: the graph is data, mapped operator by operator to registered
layers (installed plugins first: ``hooks``); anything else is refused with an ``OnnxImportError``
naming the node.
"""

import os
from typing import Any

import attrs
import numpy as np
import onnx

from .. import activations, registry, spec
from ..errors import RegnetError
from ..model import Model
from ..ops import windows
from ..text import escape, show
from . import (
    attention_import,
    exporter,
    folding,
    handlers,
    naming,
    norm_patterns,
    patterns,
    reader,
    sequence_import,
    tensor_import,
    vit_import,
    vocab_handlers,
)
from .errors import OnnxImportError
from .graph import Entry, ImportState, Tensor, float32_value
from .hooks import Dispatcher

#: the opsets of the default domain regnet reads
MIN_IMPORT_OPSET = 11
#: for each supported operator, the newest version (``since_version``) whose semantics regnet knows
KNOWN_VERSIONS = {
    **dict.fromkeys(["Gemm", "MatMul", "Sum", "Concat", "Tanh", "Sigmoid", "Softmax", "Gather", "Slice"], 13),
    **dict.fromkeys(["Add", "Sub", "Mul", "Div", "Relu"], 14),
    **dict.fromkeys(["BatchNormalization"], 15),
    **dict.fromkeys(["LeakyRelu"], 16),
    **dict.fromkeys(["Gelu"], 20),
    **dict.fromkeys(["Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"], 22),
    **dict.fromkeys(["ConvTranspose"], 22),
    **dict.fromkeys(["Resize"], 19),
    **dict.fromkeys(["Pad"], 25),
    **dict.fromkeys(["Elu", "Selu", "Dropout"], 22),
    **dict.fromkeys(["Flatten", "Reshape", "Identity", "Constant", "Shape", "Unsqueeze", "Squeeze"], 25),
    **dict.fromkeys(["Transpose", "ConstantOfShape"], 25),
    **dict.fromkeys(["Neg"], 13),
    **dict.fromkeys(["Cast"], 25),
    **dict.fromkeys(["Clip", "Exp", "LogSoftmax"], 13),
    **dict.fromkeys(["HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish"], 22),
    **dict.fromkeys(["Swish"], 24),
    **dict.fromkeys(["ReduceMean"], 18),
    **dict.fromkeys(["ReduceMax"], 20),
    **dict.fromkeys(["LayerNormalization"], 17),
    **dict.fromkeys(["PRelu"], 16),
    **dict.fromkeys(["Max", "Min", "Mean"], 13),
    **dict.fromkeys(["Split", "ReduceMean"], 18),
    **dict.fromkeys(["GroupNormalization"], 21),
    **dict.fromkeys(["InstanceNormalization"], 22),
    **dict.fromkeys(["RNN", "LSTM", "GRU"], 22),
    **dict.fromkeys(["ReduceSum"], 13),
    **dict.fromkeys(["ReduceMean", "ReduceProd"], 18),
    **tensor_import.KNOWN_VERSIONS,
}
MAX_FOLDED_ELEMENTS = folding.MAX_FOLDED_ELEMENTS
#: layers made while reading (some feed only shape arithmetic and are dropped): a graph past this
#: is refused as it is read, long before a model of that size would be built
MAX_ENTRIES = 2 * spec.MAX_LAYERS
#: operator -> handler: ``handlers`` (layers, activations, resampling), ``vocab_handlers``
#: (normalisation, merges, shape operators), then the recurrent operators with the time-major
#: plumbing around them (``sequence_import``, which falls back on the other two), the attention
#: regions ``attention_import.rewrite`` replaced (one synthetic node each), then the tensor
#: operators of transformer graphs (``tensor_import``, which falls back on the others), then
#: learned tokens and the synthetic self-attention node of ``vit_import`` (falling back on the rest)
HANDLERS = {
    **handlers.HANDLERS,
    **vocab_handlers.HANDLERS,
    **sequence_import.HANDLERS,
    **attention_import.HANDLERS,
    **tensor_import.HANDLERS,
    **vit_import.HANDLERS,
}


def _default_opset(proto: onnx.ModelProto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise OnnxImportError("the model imports no version of the default ONNX domain")
    opset = int(versions[0])
    top = max(v for v in KNOWN_VERSIONS.values())
    if not MIN_IMPORT_OPSET <= opset <= max(top, onnx.defs.onnx_opset_version()):
        raise OnnxImportError(f"opset {opset} is unsupported (regnet reads opsets {MIN_IMPORT_OPSET} and newer)")
    return opset


def _builtin(node: onnx.NodeProto) -> bool:
    """Whether regnet reads ``node``'s operator itself."""
    return node.domain in ("", "ai.onnx") and node.op_type in KNOWN_VERSIONS


def _check_version(st: ImportState, node: onnx.NodeProto) -> None:
    try:
        since = onnx.defs.get_schema(node.op_type, st.opset, node.domain or "").since_version
    except onnx.defs.SchemaError:
        raise st.fail(node, f"operator {escape(node.op_type, 40)} is unknown in opset {st.opset}") from None
    known = KNOWN_VERSIONS.get(node.op_type, 0)
    if since > known:
        raise st.fail(node, f"version {since} of {node.op_type} is newer than regnet reads ({node.op_type}-{known})")


def _model_inputs(graph: onnx.GraphProto) -> tuple[list[tuple[onnx.ValueInfoProto, spec.InputSpec]], int | None]:
    """The graph inputs that are not initializers, each with the regnet input it becomes (its
    name: ``input`` for a graph with one input, else the graph input's name made valid; float32
    or int64; per-sample shape: a dynamic axis of an int64 input is a variable-length axis, a float
    input's axes are all fixed), and the fixed batch size (``None`` when symbolic)."""
    weights = {t.name for t in graph.initializer}
    values = [v for v in graph.input if v.name not in weights]
    if not values:
        raise OnnxImportError("the graph has no input")
    if len(values) > spec.MAX_INPUTS:
        raise OnnxImportError(f"the graph has {len(values)} inputs (regnet takes at most {spec.MAX_INPUTS})")
    out, taken, batch = [], set(), None
    for k, value in enumerate(values):
        where = f"graph input {show(value.name)}"
        if not value.type.HasField("tensor_type"):
            raise OnnxImportError(f"{where} is not a tensor")
        ttype = value.type.tensor_type
        dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
        if ttype.elem_type not in dtypes:
            dtype = onnx.helper.tensor_dtype_to_string(ttype.elem_type)
            raise OnnxImportError(f"{where} has dtype {dtype}; regnet models take float32 (or int64 token ids)")
        if not ttype.HasField("shape") or len(ttype.shape.dim) < 2:
            raise OnnxImportError(f"{where} needs a known shape (batch, ...) of rank 2 or more")
        dims = list(ttype.shape.dim)
        shape: list[int | None] = []
        for i, d in enumerate(dims[1:], 1):
            if ttype.elem_type == onnx.TensorProto.INT64 and not d.HasField("dim_value"):
                shape.append(None)  # token ids of any length: a variable-length axis
                continue
            if not d.HasField("dim_value") or d.dim_value <= 0:
                what = f"'{escape(d.dim_param, 40)}'" if d.HasField("dim_param") else "unknown"
                raise OnnxImportError(
                    f"{where}: dimension {i} is dynamic ({what}); regnet needs every dimension but the batch fixed"
                )
            shape.append(int(d.dim_value))
        if k == 0:
            batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") else None
        name = spec.INPUT if len(values) == 1 else naming.sanitise(value.name)
        if not name or name in taken or name[0].isdigit() or naming.grammar.problem(name) is not None:
            name = f"{spec.INPUT}_{k + 1}"
        while name in taken:
            name += "_"
        taken.add(name)
        try:
            declared = spec.parse_input({"name": name, "shape": shape, "dtype": dtypes[ttype.elem_type]})
        except RegnetError as exc:
            raise OnnxImportError(f"{where}: {exc}") from None
        out.append((value, declared))
    return out, batch


def _needed(nodes: list[onnx.NodeProto], output: str) -> list[onnx.NodeProto]:
    """The nodes the output depends on, in their order."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    keep, stack = set(), [output]
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in keep:
            continue
        keep.add(i)
        stack.extend(x for x in nodes[i].input if x)
    return [n for i, n in enumerate(nodes) if i in keep]


def _constant(st: ImportState, node: onnx.NodeProto, attrs: dict) -> np.ndarray:
    if "value" in attrs:
        return reader.to_array(attrs["value"], f"node {show(node.name)} (Constant)")
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32)):
        if key in attrs:
            return np.asarray(attrs[key], dtype)
    for key in ("value_int", "value_ints"):
        if key in attrs:
            return np.asarray(attrs[key], np.int64)
    raise st.fail(node, f"a Constant with {', '.join(attrs) or 'no value'} is unsupported (numbers only)")


def _fold(st: ImportState, node: onnx.NodeProto, attrs: dict) -> bool:
    """Evaluate ``node`` now if it only computes on constants (shape arithmetic, weight transposes)."""
    op = node.op_type
    if op == "Constant":
        st.alias(node, _constant(st, node, attrs))
        return True
    ins = [st.input(node, i) for i in range(len(node.input))]
    if op == "Shape":
        x = ins[0]
        if not isinstance(x, (Tensor, np.ndarray)):
            raise st.fail(node, "the shape of a time-major view of a sequence is read only inside attention regions")
        value = st.shape_value(x) if isinstance(x, Tensor) else np.array(x.shape, np.int64)
        rank = len(value)
        start, end = int(attrs.get("start", 0)), attrs.get("end")
        st.alias(node, value[slice(start, None if end is None else int(end))] if rank else value)
        return True
    run_time = any(v is not None and not isinstance(v, np.ndarray) for v in ins)  # a Tensor (or a Sequence)
    if op not in folding.FOLDERS or run_time or not any(v is not None for v in ins):
        return False
    if vit_import.learned_tokens(st, node, ins):  # a constant repeated for each sample, then prepended
        return False
    try:
        value = folding.fold(op, attrs, ins, st.opset)
    except folding.FoldError as exc:
        raise st.fail(node, str(exc)) from None
    if value.size > MAX_FOLDED_ELEMENTS:
        raise st.fail(node, f"folding it makes a constant of {value.size} elements (limit {MAX_FOLDED_ELEMENTS})")
    st.alias(node, value)
    for extra in node.output[1:]:
        if extra and st.consumers[extra]:
            raise st.fail(node, f"its output {show(extra)} is used; regnet folds only the first output")
    return True


def _same_activation(a: Any, b: Any, rank: int) -> bool:
    def canon(spec_: Any) -> dict:
        cfg = activations.get(spec_).get_config()
        if isinstance(cfg.get("axis"), int) and cfg["axis"] < 0:
            cfg["axis"] += rank
        return {k: float32_value(v) if isinstance(v, float) else v for k, v in cfg.items()}

    return canon(a) == canon(b)


def _pads(entry: Entry, padding: Any) -> list:
    geo = entry.geometry
    return [windows.padding_amounts(padding, n, k, s) for n, k, s in zip(geo["hw"], geo["kernel"], geo["strides"])]


def _equivalent(entry: Entry, key: str, mine: Any, theirs: Any) -> bool:
    """Whether the hint's spelling ``theirs`` of field ``key`` computes what ``mine`` does."""
    if registry.to_plain(mine) == registry.to_plain(theirs):
        return True
    number = (int, float)
    if isinstance(mine, number) and isinstance(theirs, number) and not isinstance(theirs, bool):
        return bool(np.float32(mine) == np.float32(theirs))
    rank = len(entry.shape) + 1
    if key == "activation":
        return _same_activation(mine, theirs, rank)
    if key == "padding" and entry.geometry:
        return _pads(entry, mine) == _pads(entry, theirs)
    if key == "strides" and entry.geometry:
        kernel = entry.geometry["kernel"]
        return list(mine or kernel) == [int(s) for s in (theirs or kernel)]
    if key == "axis":  # an axis or a list of axes (LayerNormalization)

        def axes(value: Any) -> list:
            return sorted(a + rank if a < 0 else a for a in (value if isinstance(value, list) else [value]))

        return axes(mine) == axes(theirs)
    if key == "target_shape":
        size = int(np.prod(entry.shape))
        known = int(np.prod([d for d in theirs if d != -1]))
        resolved = tuple(size // known if d == -1 else int(d) for d in theirs)
        return resolved == entry.shape
    return False


#: the layers whose hint may drop a neutral gamma (scale) or beta (center)
_AFFINE_NORMS = ("BatchNorm", "LayerNormalization", "GroupNormalization")


def _apply_hint(entry: Entry) -> None:
    """Adopt the regnet exporter's spelling of fields the graph leaves open (initializers, 'same'
    versus integer padding, default strides, ...) where it computes the same thing."""
    hint = entry.hint
    if not hint or hint.get("type") != entry.type:
        return
    fields = attrs.fields_dict(registry.layers.get(entry.type))
    for key, theirs in hint.items():
        if key in ("type", "name", "inputs") or key not in fields:
            continue
        default = fields[key].default
        mine = entry.config.get(key, None if isinstance(default, attrs.Factory) else default)  # type: ignore[arg-type]
        try:
            if key.endswith("_initializer"):
                registry.initializers.create(theirs)  # only a name that resolves here
                entry.config[key] = theirs
            elif key in ("center", "scale") and theirs is False and entry.type in _AFFINE_NORMS:
                weight, neutral = ("beta", 0.0) if key == "center" else ("gamma", 1.0)
                if np.all(entry.weights[weight] == neutral):
                    entry.config[key] = False
                    del entry.weights[weight]
            elif _equivalent(entry, key, mine, theirs):
                entry.config[key] = theirs
        except (RegnetError, ValueError, TypeError, KeyError, ZeroDivisionError):
            continue  # a hint is only ever a preference


def _used(entries: list[Entry], out: Entry) -> list[Entry]:
    """The entries the output depends on through layer inputs (a layer whose output only fed
    shape arithmetic has no place in the regnet model)."""
    used, stack = set(), [out]
    while stack:
        entry = stack.pop()
        if id(entry) not in used:
            used.add(id(entry))
            stack.extend(src for src in entry.inputs if isinstance(src, Entry))
    return [e for e in entries if id(e) in used]


def _spec(st: ImportState, inputs: list[spec.InputSpec], out: Entry, name: str) -> tuple[dict, dict]:
    entries = _used(st.entries, out)
    if len(entries) > spec.MAX_LAYERS:  # before naming and building anything of that size
        raise OnnxImportError(f"the graph makes {len(entries)} layers, more than the limit of {spec.MAX_LAYERS}")
    if out is not entries[-1]:
        raise OnnxImportError("the graph's output is not made by its last layer")
    for entry in entries:
        _apply_hint(entry)
    input_names = tuple(i.name for i in inputs)
    names = naming.assign([e.names for e in entries], [e.type for e in entries], input_names)
    name_of = {id(e): n for e, n in zip(entries, names)}
    read = {src for e in entries for src in e.inputs if isinstance(src, str)}
    unread = [n for n in input_names if n not in read]
    if unread:
        raise OnnxImportError(f"the graph's output does not depend on its input {show(unread[0])}")
    layers, state, prev = [], {}, input_names[0]
    for entry, layer_name in zip(entries, names):
        sources = entry.inputs
        inputs_of = [src if isinstance(src, str) else name_of[id(src)] for src in sources]
        config = {"type": entry.type, "name": layer_name, **entry.config}
        if inputs_of != [prev]:
            config["inputs"] = inputs_of
        layers.append(config)
        state.update({f"{layer_name}/{k}": v for k, v in entry.weights.items()})
        prev = layer_name
    doc: dict[str, Any] = {"format": spec.FORMAT, "version": spec.VERSION}
    if len(inputs) == 1 and inputs[0].dtype == "float32" and inputs[0].name == spec.INPUT:
        doc["input_shape"] = list(inputs[0].shape)
    else:
        doc["inputs"] = [i.to_json() for i in inputs]
    doc["layers"] = layers
    if name:
        doc["name"] = name
    return doc, state


def convert(proto: onnx.ModelProto) -> tuple[dict, dict]:
    """``(spec, state)``: the regnet spec and ``{"layer/tensor": array}`` of an ONNX model."""
    return _convert(reader.check(proto))


def _convert(proto: onnx.ModelProto) -> tuple[dict, dict]:
    opset = _default_opset(proto)
    graph = proto.graph
    if len(graph.output) != 1:
        raise OnnxImportError(f"regnet models have one output; the graph has {len(graph.output)}")
    output = graph.output[0].name
    graph_inputs, batch = _model_inputs(graph)
    consts = {t.name: t for t in graph.initializer}
    nodes = _needed(list(graph.node), output)

    constants = {o: n for n in reversed(nodes) if n.op_type == "Constant" for o in n.output}  # first maker wins

    def const(name: str) -> np.ndarray | None:
        if name in consts:
            return reader.to_array(consts[name], f"initializer {show(name)}")
        node = constants.get(name)
        values = reader.attribute_values(node) if node is not None else {}
        return reader.to_array(values["value"], f"constant {show(name)}") if "value" in values else None

    nodes, synthetic = patterns.rewrite(nodes, const, {output})
    nodes, attention = vit_import.rewrite(nodes, const, {output})
    synthetic |= attention
    nodes, norms = norm_patterns.rewrite(nodes, const, {output})
    synthetic |= norms
    runtime_inputs = {value.name for value, _ in graph_inputs}
    nodes, regions = attention_import.rewrite(nodes, const, runtime_inputs, set(consts), {output})
    synthetic |= regions
    st = ImportState(nodes, opset, {output}, batch)
    for name, tensor in consts.items():
        if st.consumers[name]:
            st.values[name] = reader.to_array(tensor, f"initializer {show(name)}")
    for value, declared in graph_inputs:
        st.values[value.name] = Tensor(None, declared.shape, declared.name, declared.dtype)
    plugins = Dispatcher(nodes, const, synthetic, {output}, _builtin)
    for node in nodes:
        if plugins(st, node):  # plugin layers and handlers first (regnet.onnx.hooks)
            continue
        if id(node) not in synthetic:  # a synthetic node may be of regnet's own (private) operators
            if node.domain not in ("", "ai.onnx"):
                raise st.fail(node, f"operators of domain '{escape(node.domain, 60)}' are unsupported")
            if node.op_type not in KNOWN_VERSIONS:
                supported = ", ".join(sorted(KNOWN_VERSIONS))
                raise st.fail(node, f"operator {escape(node.op_type, 40)} is unsupported (regnet imports {supported})")
            _check_version(st, node)
        for name in node.input:
            if name and name not in st.values:
                raise st.fail(node, f"input {show(name)} is not defined before it")
        node_attrs = reader.attribute_values(node)
        if _fold(st, node, node_attrs):
            continue
        handler = HANDLERS.get(node.op_type)
        if handler is None:  # a folding-only operator on run-time values
            raise st.fail(node, f"{node.op_type} is supported on constants only (shape arithmetic, weights)")
        try:
            handler(st, node, node_attrs)
        except (TypeError, ValueError) as exc:
            shapes = [v.shape for v in map(st.values.get, node.input) if isinstance(v, Tensor)]
            if not any(None in shape for shape in shapes):
                raise
            raise st.fail(
                node, f"regnet cannot import it on an axis of variable length (input shapes {shapes}): {exc}"
            ) from None
        if len(st.entries) > MAX_ENTRIES:
            raise st.fail(
                node, f"the graph makes more than {MAX_ENTRIES} layers (regnet models have at most {spec.MAX_LAYERS})"
            )
    out = st.values.get(output)
    if not isinstance(out, Tensor) or out.source is None:
        raise OnnxImportError(f"the graph output {show(output)} is the input or a constant, not computed by a layer")
    name = "" if graph.name == exporter.UNNAMED else naming.sanitise(graph.name)
    return _spec(st, [declared for _, declared in graph_inputs], out.source, name)


def from_proto(proto: onnx.ModelProto, *, checked: bool = False) -> Model:
    """The regnet ``Model`` of an ONNX model (not compiled: call ``compile`` to train it);
    ``checked`` skips the checks ``reader`` already ran."""
    doc, state = _convert(proto if checked else reader.check(proto))
    try:
        model = Model.from_spec(doc, seed=0)
        model.load_state_dict(state)
    except RegnetError as exc:
        raise OnnxImportError(f"the graph maps to a regnet model that regnet refuses: {exc}") from exc
    return model


def load(path: "str | os.PathLike[str]", *, max_bytes: int = reader.MAX_BYTES) -> Model:
    """The ONNX model at ``path`` as a regnet ``Model`` (spec and weights; not compiled).

    Refuses, with a ``FileFormatError``, files over ``max_bytes``, malformed or truncated files and
    external data outside the model's folder; and, with an ``OnnxImportError`` naming the node,
    operators, attributes, opsets, dtypes and dynamic shapes regnet cannot represent."""
    return from_proto(reader.read(path, max_bytes=max_bytes), checked=True)

"""regnet model -> ONNX: every layer (and its activation) lowered through ``lowering`` or the
component's own ``to_onnx`` hook, weights as initializers named ``<layer>/<tensor>``."""

import json
import os
from typing import Any

import onnx
from onnx import helper

from .. import io, registry, spec
from .._version import __version__
from ..errors import RegnetError
from ..text import show
from . import lowering
from .builder import GraphBuilder, LoweringContext
from .errors import OnnxExportError

#: the lowest opset written (per-axis Softmax, Dropout's ratio input, Unsqueeze axes as input)
MIN_OPSET = 13
#: the default opset: widely supported by runtimes
DEFAULT_OPSET = 17
#: the symbolic batch dimension of the graph's input and output
BATCH = "N"
#: the graph name of a model without a name (the importer reads it back as no name)
UNNAMED = "regnet"
#: protobuf cannot serialise a message of 2 GiB or more
MAX_PROTO_BYTES = (2 << 30) - 1


def max_opset() -> int:
    """The newest opset the installed ``onnx`` package knows."""
    return int(onnx.defs.onnx_opset_version())


def _check_opset(opset: Any) -> int:
    top = max_opset()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= top:
        raise OnnxExportError(f"opset must be an integer in [{MIN_OPSET}, {top}], got {show(opset)}", field="opset")
    return opset


def _provider(kind: str, component: Any) -> tuple[str, str]:
    """``(registered name, 'distribution version')`` of a component, for messages."""
    name = registry.registered_name(component)
    try:
        prov = registry.REGISTRIES[kind].provider(name)
    except RegnetError:
        return name, f"module {type(component).__module__}"
    return name, f"{prov.distribution} {prov.version or ''}".strip()


#: the hint key naming the distribution of a plugin layer (not a field: read only for messages)
PROVIDER_KEY = "_provider"


def _provider_hint(layer: Any) -> dict:
    """``{"_provider": {"distribution", "version"}}`` for a plugin layer, or a built-in one with a
    plugin's activation, so that an import where the plugin is missing can say what to install;
    nothing otherwise."""
    parts = [("layers", layer), ("activations", layer.activation_fn)]
    for kind, component in parts:
        if component is None:
            continue
        try:
            prov = registry.REGISTRIES[kind].provider(registry.registered_name(component))
        except RegnetError:
            continue
        if not prov.builtin:
            return {PROVIDER_KEY: {"distribution": prov.distribution, "version": prov.version}}
    return {}


def _no_lowering(kind: str, component: Any, layer_name: str) -> OnnxExportError:
    name, dist = _provider(kind, component)
    noun = "layer" if kind == "layers" else "activation"
    signature = "to_onnx(self, ctx, inputs)" if kind == "layers" else "to_onnx(self, ctx, x)"
    return OnnxExportError(
        f"{noun} type '{name}' (provided by {dist}) has no ONNX lowering: its class defines no "
        f"{signature} method (see docs/onnx.md)",
        layer=f"'{layer_name}'",
        component=name,
        kind=kind,
        distribution=dist,
    )


def _lower(kind: str, ctx: LoweringContext, component: Any, arg: Any) -> str:
    """Run the component's ``to_onnx`` hook, else the built-in lowering of its class."""
    hook = getattr(type(component), "to_onnx", None)
    table = lowering.LAYERS if kind == "layers" else lowering.ACTIVATIONS
    if hook is None and type(component) not in table:
        raise _no_lowering(kind, component, ctx.name)
    try:
        if hook is not None:
            return hook(component, ctx, arg)
        return table[type(component)](ctx, component, arg)
    except RegnetError:
        raise
    except Exception as exc:  # a plugin's lowering may fail in any way: say whose it is
        name, dist = _provider(kind, component)
        raise OnnxExportError(
            f"the ONNX lowering of {kind[:-1]} type '{name}' (provided by {dist}) failed: {type(exc).__name__}: {exc}",
            layer=f"'{ctx.name}'",
            component=name,
            kind=kind,
            distribution=dist,
        ) from exc


def _check_output(value: Any, layer_name: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise OnnxExportError(
            f"the ONNX lowering of {what} returned {show(value)}, not a tensor name", layer=layer_name
        )
    return value


def _finish_layer(graph: GraphBuilder, start: int, pre: str, out: str, name: str, config: dict) -> None:
    """Name the layer's output tensor and its main node after the layer; attach its config.

    The layer's name is reserved in the graph, so no lowering has used it: the final tensor is
    renamed to it (or an Identity node makes it, when the layer passes a tensor through)."""
    own = graph.nodes[start:]
    if any(out in node.output for node in own):
        for node in own:
            node.output[:] = [name if o == out else o for o in node.output]
            node.input[:] = [name if i == out else i for i in node.input]
        pre = name if pre == out else pre
    else:
        identity = helper.make_node("Identity", [out], [name], name=graph.fresh(f"{name}/Identity"))
        graph.nodes.append(identity)
    own = graph.nodes[start:]
    main = next((n for n in own if pre in n.output), None) or next(n for n in own if name in n.output)
    main.name = name  # node names are apart from tensor names; no other node is named without a '/'
    main.doc_string = json.dumps(config)  # the regnet config: for Netron's readers and regnet.onnx.load


def _graph_input(declared: spec.InputSpec) -> onnx.ValueInfoProto:
    """The graph input of a model input: its dtype, the batch axis ``N`` and each variable-length
    axis symbolic (``<input>_length``, or ``<input>_dim<i>`` when it has several)."""
    dtype = onnx.TensorProto.INT64 if declared.dtype == "int64" else onnx.TensorProto.FLOAT
    free = [i for i, d in enumerate(declared.shape, 1) if d is None]
    dims: list[Any] = [
        d if d is not None else (f"{declared.name}_length" if len(free) == 1 else f"{declared.name}_dim{i}")
        for i, d in enumerate(declared.shape, 1)
    ]
    return helper.make_tensor_value_info(declared.name, dtype, [BATCH, *dims])


def to_proto(model: Any, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The ONNX model of ``model`` (inference: BatchNorm's running statistics, Dropout the identity),
    with a dynamic batch dimension, one graph input per model input (named as it, float32 or
    int64, variable-length axes symbolic), checked with ``onnx.checker.check_model(full_check=True)``."""
    opset = _check_opset(opset)
    graph = GraphBuilder(opset)
    tensors = {i.name: graph.claim(i.name) for i in model.inputs}
    for node in model.nodes:
        graph.claim(node.name)
    for node in model.nodes:
        layer = node.layer
        ctx = LoweringContext(graph, node.name, layer)
        start = len(graph.nodes)
        inputs = [tensors[s] for s in node.inputs]
        pre = _check_output(_lower("layers", ctx, layer, inputs), node.name, f"layer '{node.name}'")
        out = pre
        if layer.activation_fn is not None:
            what = f"the activation of layer '{node.name}'"
            out = _check_output(_lower("activations", ctx, layer.activation_fn, pre), node.name, what)
        config = {"name": node.name, **layer.get_config(), **_provider_hint(layer)}
        _finish_layer(graph, start, pre, out, node.name, config)
        tensors[node.name] = node.name
    out_name = model.output_node.name
    g = helper.make_graph(
        graph.nodes,
        model.name or UNNAMED,
        [_graph_input(i) for i in model.inputs],
        [helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, [BATCH, *model.output_shape])],
        initializer=graph.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(g, opset_imports=opsets, producer_name="regnet", producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    size = proto.ByteSize()
    if size > MAX_PROTO_BYTES:
        raise OnnxExportError(f"the ONNX model would be {size} bytes, over protobuf's limit of {MAX_PROTO_BYTES}")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise OnnxExportError(f"the exported graph is not valid ONNX (a lowering is wrong): {detail}") from exc
    return proto


def export(model: Any, path: "str | os.PathLike[str]", opset: int = DEFAULT_OPSET) -> str:
    """Write ``model`` to ``path`` as ONNX, atomically (nothing is written if any layer cannot be
    lowered); returns the path."""
    return write(to_proto(model, opset), path)


def write(proto: onnx.ModelProto, path: "str | os.PathLike[str]") -> str:
    """Write a model proto to ``path`` atomically (temporary file, fsync, rename)."""
    with io.atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(proto.SerializeToString())
    return os.fspath(path)

"""ONNX import handlers (entry-point group ``regnet.onnx_import``, see pyproject.toml): the
spellings of RMS normalisation that other tools write, read as this package's ``RMSNorm``.

regnet needs none of this to read back a model it exported itself: the exporter's hint and
``RMSNorm.to_onnx`` bring an ``RMSNorm`` back as it was. These handlers read the graphs written
without that hint:

* ``RMSNormalization``: the standard operator of opset 23 (regnet has no handler of its own);
* ``com.microsoft::SkipSimplifiedLayerNormalization``: onnxruntime's residual sum and RMS
  normalisation in one operator of a custom domain: an ``Add`` and an ``RMSNorm``;
* ``Mul``: the pattern ``Mul(x, x) -> ReduceMean -> Add(epsilon) -> Sqrt -> Div(x, .)``,
  optionally followed by ``Mul(gamma)``. Every other ``Mul`` is declined (``NOT_MINE``), so
  regnet's own handler reads it.

Each handler receives ``(st, node, attrs)``: the import state, the node and its attributes.
"""

import numpy as np
import onnx

from regnet.onnx import NOT_MINE
from regnet.onnx.graph import ImportState, Tensor, float32_value
from regnet.onnx.reader import attribute_values, to_array

DEFAULT = ("", "ai.onnx")


def _rms_norm(st: ImportState, node: onnx.NodeProto, attrs: dict, x: Tensor, scale_input: int):
    """An ``RMSNorm`` of ``x`` over the last axis, its gamma the constant input ``scale_input``."""
    rank = len(x.shape) + 1
    axis = int(attrs.get("axis", -1))
    if (axis + rank if axis < 0 else axis) != rank - 1:
        raise st.fail(node, f"it normalises from axis {axis} of a rank-{rank} input; RMSNorm here takes the last axis")
    if any(out and st.consumers[out] for out in node.output[1:]):
        raise st.fail(node, "one of its extra outputs is used; RMSNorm makes only the normalised tensor")
    scale = st.const(node, scale_input, "scale")
    if scale.size != x.shape[-1] or any(d != 1 for d in scale.shape[:-1]):
        raise st.fail(node, f"scale of shape {list(scale.shape)} does not match the last axis ({x.shape[-1]})")
    epsilon = float(attrs.get("epsilon", 1e-5))
    if not epsilon > 0:
        raise st.fail(node, f"epsilon {epsilon} is not positive, as RMSNorm needs")
    config = {"axis": -1, "epsilon": float32_value(epsilon)}
    st.add(node, "RMSNorm", config, [x], x.shape, {"gamma": scale.reshape(-1)}, weight_inputs=(scale_input,))


def rms_normalization(st: ImportState, node: onnx.NodeProto, attrs: dict):
    """``RMSNormalization(X, scale)`` (the standard operator of opset 23, which regnet does not
    read itself) -> ``RMSNorm`` over the last axis."""
    _rms_norm(st, node, attrs, st.tensor(node, 0), 1)


def skip_simplified_layer_normalization(st: ImportState, node: onnx.NodeProto, attrs: dict):
    """``com.microsoft::SkipSimplifiedLayerNormalization(X, skip, gamma)`` (onnxruntime's fused
    residual sum and RMS normalisation, an operator of a custom domain) -> ``Add`` then
    ``RMSNorm`` over the last axis."""
    x, skip = st.tensor(node, 0), st.tensor(node, 1, "skip")
    if x.shape != skip.shape:
        raise st.fail(node, f"input {list(x.shape)} and skip {list(skip.shape)} differ in shape")
    if st.input(node, 3) is not None:
        raise st.fail(node, "a bias (input 3) is unsupported")
    added = st.add(node, "Add", {}, [x, skip], x.shape)
    _rms_norm(st, node, attrs, Tensor(added, added.shape), 2)


def _constant(st: ImportState, name: str):
    """The constant ``name`` (an initializer or a Constant node's value), else ``None``."""
    value = st.values.get(name)
    if isinstance(value, np.ndarray):
        return value
    maker = st.producer(name)
    if maker is not None and maker.op_type == "Constant" and maker.domain in DEFAULT:
        tensor = attribute_values(maker).get("value")
        return to_array(tensor, f"constant {name}") if tensor is not None else None
    return None


def _next(st: ImportState, name: str, op_type: str):
    """The one node reading ``name`` when it is ``op_type`` (and ``name`` feeds nothing else)."""
    readers = st.readers.get(name, [])
    if len(readers) != 1 or not st.sole_consumer(name):
        return None
    node = readers[0]
    return node if node.op_type == op_type and node.domain in DEFAULT else None


def rms_norm_pattern(st: ImportState, node: onnx.NodeProto, attrs: dict):
    """``Mul(x, x) -> ReduceMean(one axis, keepdims) -> Add(epsilon) -> Sqrt -> Div(x, .)
    [-> Mul(gamma)]`` -> ``RMSNorm``; any other ``Mul`` is declined."""
    if len(node.input) != 2 or node.input[0] != node.input[1]:
        return NOT_MINE
    x = st.values.get(node.input[0])
    if not isinstance(x, Tensor) or None in x.shape:
        return NOT_MINE
    mean = _next(st, node.output[0], "ReduceMean")
    if mean is None:
        return NOT_MINE
    mean_attrs = attribute_values(mean)
    axes = mean_attrs.get("axes")
    if axes is None and len(mean.input) > 1 and mean.input[1]:
        axes = _constant(st, mean.input[1])
    rank = len(x.shape) + 1
    if axes is None or np.size(axes) != 1 or int(mean_attrs.get("keepdims", 1)) != 1:
        return NOT_MINE
    ax = int(np.ravel(axes)[0])
    ax = ax + rank if ax < 0 else ax
    add = _next(st, mean.output[0], "Add")
    if not 1 <= ax < rank or add is None:
        return NOT_MINE
    other = add.input[1] if add.input[0] == mean.output[0] else add.input[0]
    epsilon = _constant(st, other)
    if epsilon is None or epsilon.size != 1 or epsilon.dtype != np.float32 or not float(epsilon.ravel()[0]) > 0:
        return NOT_MINE
    sqrt = _next(st, add.output[0], "Sqrt")
    div = sqrt and _next(st, sqrt.output[0], "Div")
    if div is None or list(div.input) != [node.input[0], sqrt.output[0]]:
        return NOT_MINE
    taken, last, weights = [mean, add, sqrt, div], div, {}
    scale = _next(st, div.output[0], "Mul")
    if scale is not None:
        gamma_name = scale.input[1] if scale.input[0] == div.output[0] else scale.input[0]
        gamma = _constant(st, gamma_name) if gamma_name != div.output[0] else None
        n = x.shape[ax - 1]
        if gamma is not None and gamma.dtype == np.float32 and gamma.ndim <= rank - 1:
            padded = (1,) * (rank - 1 - gamma.ndim) + gamma.shape
            if all(d == (n if i == ax - 1 else 1) for i, d in enumerate(padded)) and gamma.size == n:
                taken, last, weights = [*taken, scale], scale, {"gamma": gamma.reshape(-1)}
    config = {"axis": ax, "epsilon": float32_value(float(epsilon.ravel()[0])), "scale": bool(weights)}
    st.add(last, "RMSNorm", config, [x], x.shape, weights)
    return taken

"""Subgraphs that stand for one regnet normalisation layer, each replaced by one synthetic node
before the import table runs:

* layer normalisation written out, as exporters before opset 17 write it (and regnet does for
  axes that are not the last ones): ``ReduceMean -> Sub -> Pow(2) (or Mul) -> ReduceMean -> Add(eps)
  -> Sqrt -> Div`` becomes ``LayerNormalization`` with an ``axes`` attribute (the axes reduced over);
* group normalisation as PyTorch (and regnet) write it: ``Reshape (N, G, -1) ->
  InstanceNormalization -> Reshape`` back becomes ``GroupNormalization`` with a fourth input (the
  shape reshaped back to) and per-group scale and bias, as in ``GroupNormalization-18``.

The scale and shift that follow (``Mul``, ``Add`` with constants) are folded by the handlers.
"""

import onnx
from onnx import helper

from .patterns import Const, _Graph


def _axes(g: _Graph, node: onnx.NodeProto) -> list[int] | None:
    """A ReduceMean's axes (attribute or constant input) when it keeps the reduced axes."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("keepdims", 1) != 1:
        return None
    if "axes" in attrs:
        return sorted(int(a) for a in attrs["axes"])
    if len(node.input) > 1 and node.input[1]:
        value = g.const(node.input[1])
        if value is None or value.dtype.kind not in "iu":
            return None
        return sorted(int(a) for a in value.ravel())
    return None


def _squares(g: _Graph, name: str, d: str) -> onnx.NodeProto | None:
    """The node making ``d ** 2`` as ``Pow(d, 2)`` or ``Mul(d, d)``."""
    node = g.op(name, "Pow")
    if node is not None and node.input[0] == d and g.scalar(node.input[1]) == 2.0:
        return node
    node = g.op(name, "Mul")
    return node if node is not None and list(node.input) == [d, d] else None


def _match_layer_norm(g: _Graph, root: onnx.NodeProto):
    d, std = root.input
    sqrt = g.op(std, "Sqrt")
    add = None if sqrt is None else g.op(sqrt.input[0], "Add")
    if sqrt is None or add is None:
        return None
    consts = [i for i, name in enumerate(add.input) if g.scalar(name) is not None]
    if len(consts) != 1:
        return None
    eps = g.scalar(add.input[consts[0]])
    var = g.op(add.input[1 - consts[0]], "ReduceMean")
    square = None if var is None else _squares(g, var.input[0], d)
    sub = g.op(d, "Sub", inner=False)
    if var is None or square is None or sub is None or g.uses[d] != (3 if square.op_type == "Mul" else 2):
        return None
    x, m = sub.input
    mean = g.op(m, "ReduceMean")
    if mean is None or mean.input[0] != x or g.uses[square.output[0]] != 1:
        return None
    axes = _axes(g, mean)
    if axes is None or axes != _axes(g, var) or eps is None or eps < 0:
        return None
    return x, axes, eps, [mean, sub, square, var, add, sqrt]


def _match_group_norm(g: _Graph, root: onnx.NodeProto):
    inorm = g.op(root.input[0], "InstanceNormalization")
    first = None if inorm is None else g.op(inorm.input[0], "Reshape")
    if inorm is None or first is None or len(inorm.input) < 3 or len(root.input) < 2:
        return None
    shape = g.const(first.input[1])
    if shape is None or shape.dtype.kind not in "iu" or shape.size != 3:
        return None
    batch, groups, rest = (int(v) for v in shape.ravel())
    if batch != 0 or rest != -1 or groups < 1:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in inorm.attribute}
    eps = float(attrs.get("epsilon", 1e-5))
    return first.input[0], groups, eps, list(inorm.input[1:3]), [first, inorm]


def rewrite(nodes: list[onnx.NodeProto], const: Const, outputs: set[str]) -> tuple[list[onnx.NodeProto], set[int]]:
    """``nodes`` with each written-out layer or group normalisation replaced by one synthetic node,
    and the ``id`` of each node made so."""
    g = _Graph(nodes, const, outputs)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for root in nodes:
        made = None
        if root.op_type == "Div" and root.domain in ("", "ai.onnx"):
            found = _match_layer_norm(g, root)
            if found is not None:
                x, axes, eps, seen = found
                made = helper.make_node(
                    "LayerNormalization", [x], [root.output[0]], name=root.name, axes=axes, epsilon=eps
                )
        elif root.op_type == "Reshape" and root.domain in ("", "ai.onnx"):
            found = _match_group_norm(g, root)
            if found is not None:
                x, groups, eps, affine, seen = found
                made = helper.make_node(
                    "GroupNormalization",
                    [x, *affine, root.input[1]],
                    [root.output[0]],
                    name=root.name,
                    num_groups=groups,
                    epsilon=eps,
                )
        if made is None:
            continue
        inner = {id(n) for n in seen}
        if inner & removed or any(o in outputs for n in seen for o in n.output):
            continue
        made.doc_string = root.doc_string
        replaced[id(root)] = made
        removed |= inner
    made_ids = {id(n) for n in replaced.values()}
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed], made_ids


__all__ = ["rewrite"]

"""Subgraphs that stand for one regnet activation: GELU (tanh form) written out with Mul, Add,
Tanh (and Pow), as regnet exports it before opset 20 and PyTorch does for
``GELU(approximate="tanh")``. Each match becomes one synthetic ``Gelu(approximate="tanh")`` node."""

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

Const = Callable[[str], "np.ndarray | None"]

GELU_C = math.sqrt(2 / math.pi)
GELU_K = 0.044715


class _Graph:
    def __init__(self, nodes: list[onnx.NodeProto], const: Const, outputs: set[str]) -> None:
        self.producer = {o: n for n in nodes for o in n.output}
        self.uses = Counter(i for n in nodes for i in n.input)
        self.uses.update(outputs)
        self.const = const

    def scalar(self, name: str) -> float | None:
        value = self.const(name)
        if value is None or value.size != 1 or value.dtype.kind != "f":
            return None
        return float(value.ravel()[0])

    def op(self, name: str, op_type: str, inner: bool = True) -> onnx.NodeProto | None:
        """The node making ``name`` if it is ``op_type`` (and, for ``inner``, ``name`` has one use)."""
        node = self.producer.get(name)
        if node is None or node.op_type != op_type or node.domain not in ("", "ai.onnx"):
            return None
        return node if not inner or self.uses[name] == 1 else None

    def factors(self, name: str, seen: list[onnx.NodeProto], inner: bool = False) -> list[str]:
        """The factors of a product of single-use Mul nodes, recording the nodes passed through."""
        node = self.op(name, "Mul", inner)
        if node is None:
            return [name]
        seen.append(node)
        return self.factors(node.input[0], seen, True) + self.factors(node.input[1], seen, True)

    def terms(self, name: str, seen: list[onnx.NodeProto]) -> list[str] | None:
        node = self.op(name, "Add")
        if node is None:
            return None
        seen.append(node)
        return list(node.input)


def _split(g: _Graph, names: list[str], want: list[float]) -> list[str] | None:
    """``names`` without one constant close to each value in ``want``; None if one is missing."""
    rest = list(names)
    for value in want:
        hit = next((n for n in rest if (s := g.scalar(n)) is not None and math.isclose(s, value, rel_tol=1e-5)), None)
        if hit is None:
            return None
        rest.remove(hit)
    return rest


def _cube_of(g: _Graph, names: list[str], seen: list[onnx.NodeProto]) -> str | None:
    """x if ``names`` (factors) are x, x, x or one Pow(x, 3)."""
    if len(names) == 3 and len(set(names)) == 1:
        return names[0]
    if len(names) == 1:
        node = g.op(names[0], "Pow")
        if node is not None and g.scalar(node.input[1]) == 3.0:
            seen.append(node)
            return node.input[0]
    return None


def _match_gelu(g: _Graph, root: onnx.NodeProto) -> tuple[str, list[onnx.NodeProto]] | None:
    seen: list[onnx.NodeProto] = []
    rest = _split(g, g.factors(root.output[0], seen), [0.5])
    if rest is None or len(rest) != 2:
        return None
    for x, s in (rest, rest[::-1]):
        trial = list(seen)
        terms = g.terms(s, trial)
        tail = terms and _split(g, terms, [1.0])
        tanh = tail and len(tail) == 1 and g.op(tail[0], "Tanh")
        if not tanh:
            continue
        seen = trial
        seen.append(tanh)
        inner = _split(g, g.factors(tanh.input[0], seen, True), [GELU_C])
        sums = g.terms(inner[0], seen) if inner and len(inner) == 1 else None
        if not sums or x not in sums:
            return None
        terms = sums
        other = [t for t in terms if t != x] if terms.count(x) == 1 else None
        cube = other and _split(g, g.factors(other[0], seen, True), [GELU_K])
        if cube and _cube_of(g, cube, seen) == x:
            return x, seen
        return None
    return None


def rewrite(nodes: list[onnx.NodeProto], const: Const, outputs: set[str]) -> tuple[list[onnx.NodeProto], set[int]]:
    """``nodes`` with every written-out tanh-GELU replaced by one ``Gelu`` node, and the ``id`` of
    each node made so (they exist in no opset before 20)."""
    g = _Graph(nodes, const, outputs)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for root in nodes:
        if root.op_type != "Mul" or id(root) in removed:
            continue
        found = _match_gelu(g, root)
        if found is None:
            continue
        x, seen = found
        inner = {id(n) for n in seen} - {id(root)}
        if inner & removed or any(o in outputs for n in seen if n is not root for o in n.output):
            continue
        gelu = helper.make_node("Gelu", [x], [root.output[0]], name=root.name, approximate="tanh")
        gelu.doc_string = root.doc_string
        replaced[id(root)] = gelu
        removed |= inner
    made = {id(n) for n in replaced.values()}
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed], made

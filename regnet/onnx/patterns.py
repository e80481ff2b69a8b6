"""Subgraphs that stand for one regnet activation, as regnet exports them at older opsets and
PyTorch writes them, each replaced by one synthetic node of the operator it computes:

* GELU, tanh form: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` with Mul, Add, Tanh (and
  Pow) -> ``Gelu(approximate="tanh")``;
* GELU, exact form: ``x * 0.5 * (1 + erf(x / sqrt 2))`` (Div by sqrt 2 or Mul by 1/sqrt 2; the
  factors in any order) -> ``Gelu``;
* ``Mul(x, Sigmoid(x))`` -> ``Swish`` (alpha 1: silu); ``Mul(x, Tanh(Softplus(x)))`` -> ``Mish``;
  ``Mul(x, HardSigmoid(x))`` (alpha 1/6, beta 1/2) -> ``HardSwish``;
* ``Div(x, Add(Abs(x), 1))`` -> ``Softsign``.

Inner nodes must feed nothing else (``x`` may, being the input)."""

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

Const = Callable[[str], "np.ndarray | None"]

GELU_C = math.sqrt(2 / math.pi)
GELU_K = 0.044715
SQRT2 = math.sqrt(2)


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


Match = tuple[str, list[onnx.NodeProto], str, dict]


def _erf_gelu(g: _Graph, root: onnx.NodeProto) -> Match | None:
    seen: list[onnx.NodeProto] = []
    rest = _split(g, g.factors(root.output[0], seen), [0.5])
    if rest is None or len(rest) != 2:
        return None
    for x, s in (rest, rest[::-1]):
        trial = list(seen)
        terms = g.terms(s, trial)
        tail = terms and _split(g, terms, [1.0])
        erf = tail and len(tail) == 1 and g.op(tail[0], "Erf")
        if not erf:
            continue
        trial.append(erf)
        div = g.op(erf.input[0], "Div")
        if div is not None:
            scalar = g.scalar(div.input[1])
            if div.input[0] == x and scalar is not None and math.isclose(scalar, SQRT2, rel_tol=1e-5):
                return x, [*trial, div], "Gelu", {}
            return None
        scaled = _split(g, g.factors(erf.input[0], trial, True), [1 / SQRT2])
        if scaled == [x]:
            return x, trial, "Gelu", {}
        return None
    return None


def _tanh_gelu(g: _Graph, root: onnx.NodeProto) -> Match | None:
    found = _match_gelu(g, root)
    return None if found is None else (found[0], found[1], "Gelu", {"approximate": "tanh"})


def _gated(g: _Graph, root: onnx.NodeProto, chain: tuple[str, ...]) -> tuple[str, list[onnx.NodeProto]] | None:
    """``Mul(x, chain(x))``: ``chain`` names the single-use operators from the gate back to x."""
    if len(root.input) != 2:
        return None
    for x, gate in (root.input, root.input[::-1]):
        seen, name = [root], gate
        for op in chain:
            node = g.op(name, op)
            if node is None or not node.input:
                break
            seen.append(node)
            name = node.input[0]
        else:
            if name == x:
                return x, seen
    return None


def _silu(g: _Graph, root: onnx.NodeProto) -> Match | None:
    found = _gated(g, root, ("Sigmoid",))
    return None if found is None else (*found, "Swish", {"alpha": 1.0})


def _mish(g: _Graph, root: onnx.NodeProto) -> Match | None:
    found = _gated(g, root, ("Tanh", "Softplus"))
    return None if found is None else (*found, "Mish", {})


def _hard_swish(g: _Graph, root: onnx.NodeProto) -> Match | None:
    found = _gated(g, root, ("HardSigmoid",))
    if found is None:
        return None
    values = {a.name: helper.get_attribute_value(a) for a in found[1][1].attribute}
    alpha, beta = float(values.get("alpha", 0.2)), float(values.get("beta", 0.5))
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and math.isclose(beta, 0.5, rel_tol=1e-6):
        return (*found, "HardSwish", {})
    return None


def _softsign(g: _Graph, root: onnx.NodeProto) -> Match | None:
    if len(root.input) != 2:
        return None
    x, seen = root.input[0], [root]
    terms = g.terms(root.input[1], seen)
    rest = terms and _split(g, terms, [1.0])
    absolute = rest and len(rest) == 1 and g.op(rest[0], "Abs")
    if absolute and absolute.input[0] == x:
        return x, [*seen, absolute], "Softsign", {}
    return None


#: the patterns tried on a node of each operator (the root: the node that makes the output)
MATCHERS: dict[str, tuple[Callable[[_Graph, onnx.NodeProto], Match | None], ...]] = {
    "Mul": (_tanh_gelu, _erf_gelu, _silu, _mish, _hard_swish),
    "Div": (_softsign,),
}


def rewrite(nodes: list[onnx.NodeProto], const: Const, outputs: set[str]) -> tuple[list[onnx.NodeProto], set[int]]:
    """``nodes`` with every pattern above replaced by one node, and the ``id`` of each node made
    so (their operator may be newer than the file's opset)."""
    g = _Graph(nodes, const, outputs)
    replaced: dict[int, onnx.NodeProto] = {}
    removed: set[int] = set()
    for root in nodes:
        if id(root) in removed:
            continue
        for matcher in MATCHERS.get(root.op_type, ()):
            found = matcher(g, root)
            if found is None:
                continue
            x, seen, op_type, attributes = found
            inner = {id(n) for n in seen} - {id(root)}
            if inner & (removed | set(replaced)) or any(o in outputs for n in seen if n is not root for o in n.output):
                continue
            node = helper.make_node(op_type, [x], [root.output[0]], name=root.name, **attributes)
            node.doc_string = root.doc_string
            replaced[id(root)] = node
            removed |= inner
            break
    made = {id(n) for n in replaced.values()}
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed], made

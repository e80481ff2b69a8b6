"""Vision-transformer pieces of an ONNX graph as PyTorch (timm) writes them:

* learned tokens prepended to a sequence: ``Concat([Expand(token, (N, 1, D)), ..., x], axis=1)``
  with ``token`` a ``(1, k, D)`` constant (timm's class token, DeiT's distillation token; the
  shape ``(N, 1, D)`` is folded from ``expand(N, -1, -1)``'s ``Where(Equal(shape, -1), 1, shape)``)
  -> one ``ClassToken`` layer;
* timm's ``Attention`` block, self-attention with one fused ``qkv`` projection::

      MatMul(x, W) [+ b] -> Reshape (N, L, 3, H, d) -> Transpose(2, 0, 3, 1, 4)
        -> Split (axis 0) + Squeeze, or Gather 0 / 1 / 2 (axis 0): q, k, v
      q [* s], Transpose(k, (0, 1, 3, 2)) [* s] -> MatMul [* s or / s] -> Softmax(axis -1) -> MatMul(., v)
        -> Transpose(0, 2, 1, 3) -> Reshape (N, L, H d) -> MatMul(., W_proj) [+ b_proj]

  (the scales ``s``: numbers, or the ``sqrt(1 / sqrt(d))`` that ``scaled_dot_product_attention``
  computes from ``Shape(q)``; older timm scales the scores) -> one ``MultiHeadAttention`` layer
  with ``query = value = x``: head ``h`` of q is columns ``h d .. (h + 1) d`` of ``W``, of k ``H d + h d ..``, of v
  ``2 H d + h d ..``; a scale other than ``1/sqrt(d)`` is folded into the query kernel and bias.
  The batch leaves axis 0 only inside the block, so the block is recognised whole, before the
  import table runs (``rewrite``), and becomes one synthetic node (``SelfAttention`` of the
  private domain ``regnet``, which a file may not use: the importer accepts it only as made
  here). A ``Shape`` of q, k or v outside the block is rewritten as a ``Gather`` of the reshape's
  target shape, which the importer folds.
"""

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import handlers, naming, sequence_import, tensor_import, vocab_handlers
from .folding import BATCH, has_batch
from .graph import ImportState, Tensor
from .patterns import Const, _Graph

Node = onnx.NodeProto

#: the synthetic operator and its (private) domain
ATTENTION_OP = "SelfAttention"
DOMAIN = "regnet"
#: the per-head axes of q, k and v in the reshape's target shape (N, L, 3, H, d): (N, H, L, d)
_QKV_AXES = (0, 3, 1, 4)
#: the inputs of the synthetic node, in order
_ATTENTION_INPUTS = (
    "x",
    "qkv_kernel",
    "qkv_bias",
    "qkv_shape",
    "q_scale",
    "k_scale",
    "out_shape",
    "kernel",
    "bias",
    "score_scale",
    "score_divisor",
)


# -- learned tokens -----------------------------------------------------------------------------------
class Broadcast:
    """A constant repeated for every sample (``Expand`` to the batch size): only a ``Concat`` that
    prepends it to a sequence reads it."""

    def __init__(self, value: np.ndarray, weight: str) -> None:
        self.value = value  # per sample
        self.weight = weight  # the initializer's name

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)


def _fallback(op: str) -> Callable[[ImportState, Node, dict], None]:
    """The handler of ``op`` in the tables before this one."""
    for table in (tensor_import.HANDLERS, sequence_import.HANDLERS, vocab_handlers.HANDLERS, handlers.HANDLERS):
        if op in table:
            return table[op]
    raise LookupError(f"no {op} handler")


def learned_tokens(st: ImportState, node: Node, inputs: list) -> bool:
    """Whether ``node`` expands a constant to a shape holding the batch size for ``Concat`` nodes
    only: learned tokens (``expand`` below), not a constant folded now."""
    if node.op_type != "Expand" or len(inputs) < 2 or not isinstance(inputs[0], np.ndarray):
        return False
    shape = inputs[1]
    if not isinstance(shape, np.ndarray) or not has_batch(shape):
        return False
    readers = st.readers.get(node.output[0], [])
    return bool(readers) and all(n.op_type == "Concat" for n in readers)


def expand(st: ImportState, node: Node, attrs: dict) -> None:
    """``Expand(c, (N, ...))`` of a constant with a leading axis of 1, read only by ``Concat``
    (``learned_tokens``); other Expands go to the earlier handlers."""
    c = st.input(node, 0)
    if not isinstance(c, np.ndarray):
        _fallback("Expand")(st, node, attrs)
        return
    shape = st.int_const(node, 1, "shape").ravel()
    if c.dtype != np.float32 or c.ndim < 2 or c.shape[0] != 1 or len(shape) != c.ndim or shape[0] is not BATCH:
        raise st.fail(
            node,
            f"only a float32 constant of shape (1, ...) expanded to the batch size is supported; got "
            f"{list(c.shape)} to {list(shape)}",
        )
    try:
        per_sample = np.broadcast_to(c[0], np.broadcast_shapes(c.shape[1:], tuple(int(d) for d in shape[1:])))
    except (TypeError, ValueError):
        raise st.fail(node, f"cannot expand {list(c.shape)} to {list(shape)}") from None
    readers = st.readers.get(node.output[0], [])
    if not readers or any(n.op_type != "Concat" for n in readers) or node.output[0] in st.outputs:
        raise st.fail(node, "a constant expanded to the batch size is supported only as tokens prepended by a Concat")
    st.alias(node, Broadcast(np.ascontiguousarray(per_sample), node.input[0]))


def concat(st: ImportState, node: Node, attrs: dict) -> None:
    """Learned tokens (``Broadcast``) first, then one sequence ``(N, L, D)`` along axis 1: a
    ``ClassToken``; any other Concat goes to the usual handler."""
    values = [st.input(node, i) for i in range(len(node.input))]
    tokens = [v for v in values if isinstance(v, Broadcast)]
    if not tokens:
        _fallback("Concat")(st, node, attrs)
        return
    x = values[-1]
    axis = int(attrs.get("axis", 0))
    if not isinstance(x, Tensor) or len(tokens) != len(values) - 1 or len(x.shape) != 2 or axis not in (1, -2):
        raise st.fail(
            node,
            "constants expanded to the batch size are supported only as tokens before one (N, L, D) sequence "
            "(Concat on axis 1, the sequence last)",
        )
    table = np.concatenate([t.value for t in tokens], axis=0)
    if table.ndim != 2 or table.shape[1] != x.shape[1]:
        raise st.fail(
            node, f"tokens of shape {list(table.shape)} do not match the sequence (N, {x.shape[0]}, {x.shape[1]})"
        )
    length = None if x.shape[0] is None else x.shape[0] + table.shape[0]
    config = {"num_tokens": int(table.shape[0])} if table.shape[0] != 1 else {}
    entry = st.add(node, "ClassToken", config, [x], (length, x.shape[1]), {"tokens": table})
    entry.names[:0] = [n for n in (naming.from_weight(t.weight) or t.weight for t in tokens[:1]) if n]


# -- the attention block ------------------------------------------------------------------------------
def _ints(g: _Graph, node: Node, name: str, index: int) -> list[int] | None:
    """An integer list given as attribute ``name`` or as the constant input ``index``."""
    for a in node.attribute:
        if a.name == name:
            return [int(v) for v in helper.get_attribute_value(a)] if a.ints else [int(a.i)]
    if len(node.input) > index and node.input[index]:
        value = g.const(node.input[index])
        if value is None or value.dtype.kind not in "iu":
            return None
        return [int(v) for v in value.ravel()]
    return None


def _readers(nodes: list[Node]) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in nodes:
        for name in dict.fromkeys(n.input):
            if name:
                out.setdefault(name, []).append(n)
    return out


def _perm(node: Node | None) -> list[int] | None:
    if node is None or node.op_type != "Transpose":
        return None
    for a in node.attribute:
        if a.name == "perm":
            return [int(v) for v in a.ints]
    return None


def _sole(readers: dict[str, list[Node]], name: str, op_type: str, outputs: set[str]) -> Node | None:
    """The one reader of ``name`` if it is an ``op_type`` node of the default domain."""
    found = readers.get(name, [])
    if len(found) != 1 or name in outputs or found[0].op_type != op_type or found[0].domain not in ("", "ai.onnx"):
        return None
    return found[0]


def _split_heads(g: _Graph, readers, t: Node) -> tuple[list[str], list[Node]] | None:
    """q, k, v (names) taken off axis 0 of the transposed (3, N, H, L, d) tensor, and the nodes."""
    out = readers.get(t.output[0], [])
    if len(out) == 1 and out[0].op_type == "Split":
        split = out[0]
        if (_ints(g, split, "axis", 99) or [0])[0] != 0 or len(split.output) != 3:
            return None
        sizes = _ints(g, split, "split", 1)
        if sizes is not None and sizes != [1, 1, 1]:
            return None
        names, seen = [], [split]
        for part in split.output:
            squeeze = readers.get(part, [])
            if len(squeeze) != 1 or squeeze[0].op_type != "Squeeze" or _ints(g, squeeze[0], "axes", 1) != [0]:
                return None
            names.append(squeeze[0].output[0])
            seen.append(squeeze[0])
        return names, seen
    if len(out) == 3 and all(n.op_type == "Gather" for n in out):
        by_index: dict[int, Node] = {}
        for n in out:
            index = g.const(n.input[1])
            if (_ints(g, n, "axis", 99) or [0])[0] != 0 or index is None or index.ndim != 0:
                return None
            by_index[int(index) % 3] = n
        if sorted(by_index) != [0, 1, 2]:
            return None
        return [by_index[i].output[0] for i in range(3)], [by_index[i] for i in range(3)]
    return None


def _through(g: _Graph, readers, name: str, outputs: set[str], allowed: dict[str, int]):
    """Follow single readers of ``name`` through ``Mul`` by a scale and ``Transpose`` (at most
    ``allowed[op]`` of each, any order) to the next node: ``(that node, the name it reads, scales,
    transposes, nodes passed)``."""
    scales: list[str] = []
    perms: list[list[int]] = []
    seen: list[Node] = []
    left = dict(allowed)
    while True:
        found = [n for n in readers.get(name, []) if n.op_type != "Shape"]
        if len(found) != 1 or name in outputs:
            return None
        n = found[0]
        if n.op_type == "Mul" and left.get("Mul", 0) and name in n.input:
            other = n.input[1] if n.input[0] == name else n.input[0]
            scales.append(other)
            left["Mul"] -= 1
        elif n.op_type == "Transpose" and left.get("Transpose", 0):
            perms.append(_perm(n) or [])
            left["Transpose"] -= 1
        else:
            return n, name, scales, perms, seen
        seen.append(n)
        name = n.output[0]


def _match_attention(g: _Graph, readers, t: Node, outputs: set[str]):
    """The timm attention block around the ``Transpose(2, 0, 3, 1, 4)`` node ``t``, or None."""
    if _perm(t) != [2, 0, 3, 1, 4]:
        return None
    reshape = g.op(t.input[0], "Reshape")
    if reshape is None:
        return None
    qkv, bias, kernel_node = reshape.input[0], "", None
    add = g.op(qkv, "Add")
    inner = [reshape]
    if add is not None:
        consts = [i for i in add.input if g.const(i) is not None]
        if len(consts) != 1:
            return None
        bias = consts[0]
        kernel_node = g.op(add.input[1] if add.input[0] == bias else add.input[0], "MatMul")
        inner.append(add)
    else:
        kernel_node = g.op(qkv, "MatMul")
    if kernel_node is None or g.const(kernel_node.input[1]) is None:
        return None
    inner.append(kernel_node)
    heads = _split_heads(g, readers, t)
    if heads is None:
        return None
    (q, k, v), split_nodes = heads
    inner += [t, *split_nodes]
    q_side = _through(g, readers, q, outputs, {"Mul": 1})
    k_side = _through(g, readers, k, outputs, {"Mul": 1, "Transpose": 1})
    if q_side is None or k_side is None:
        return None
    scores, q_in, q_scales, _, q_seen = q_side
    scores_k, k_in, k_scales, k_perms, k_seen = k_side
    if scores is not scores_k or scores.op_type != "MatMul" or list(scores.input) != [q_in, k_in]:
        return None
    if k_perms != [[0, 1, 3, 2]]:
        return None
    scaled, score_scale, score_divisor = scores.output[0], "", ""
    after = [n for n in readers.get(scaled, []) if n.domain in ("", "ai.onnx")]
    if len(after) == 1 and after[0].op_type in ("Mul", "Div") and scaled not in outputs:
        op = after[0]
        other = op.input[1] if op.input[0] == scaled else op.input[0]
        if op.op_type == "Div" and op.input[0] != scaled:
            return None
        if op.op_type == "Mul":
            score_scale = other
        else:
            score_divisor = other
        scores_seen = [op]
        scaled = op.output[0]
    else:
        scores_seen = []
    softmax = _sole(readers, scaled, "Softmax", outputs)
    if softmax is None or (_ints(g, softmax, "axis", 99) or [-1])[0] not in (-1, 3):
        return None
    mix = _sole(readers, softmax.output[0], "MatMul", outputs)
    if (
        mix is None
        or list(mix.input) != [softmax.output[0], v]
        or [n for n in readers.get(v, []) if n.op_type != "Shape"] != [mix]
    ):
        return None
    back = _sole(readers, mix.output[0], "Transpose", outputs)
    if _perm(back) != [0, 2, 1, 3]:
        return None
    merge = _sole(readers, back.output[0], "Reshape", outputs)  # type: ignore[union-attr]
    proj = None if merge is None else _sole(readers, merge.output[0], "MatMul", outputs)
    if merge is None or proj is None or proj.input[0] != merge.output[0] or g.const(proj.input[1]) is None:
        return None
    inner += [*q_seen, *k_seen, scores, *scores_seen, softmax, mix, back, merge, proj]  # type: ignore[list-item]
    last, proj_bias = proj, ""
    add = _sole(readers, proj.output[0], "Add", outputs)
    if add is not None:
        other = add.input[1] if add.input[0] == proj.output[0] else add.input[0]
        value = g.const(other)
        if value is not None and value.ndim == 1:
            last, proj_bias = add, other
            inner.append(add)
    # every tensor made inside feeds only the block (q, k and v may also feed a Shape)
    made = {o for n in inner for o in n.output if o}
    ids = {id(n) for n in inner}
    for o in made - {last.output[0]}:
        if o in outputs or any(
            id(r) not in ids and not (r.op_type == "Shape" and o in (q, k, v)) for r in readers.get(o, [])
        ):
            return None
    scales = [*q_scales, *k_scales, score_scale, score_divisor]
    if any(s in made for s in scales):
        return None
    inputs = [
        kernel_node.input[0],
        kernel_node.input[1],
        bias,
        reshape.input[1],
        q_scales[0] if q_scales else "",
        k_scales[0] if k_scales else "",
        merge.input[1],
        proj.input[1],
        proj_bias,
        score_scale,
        score_divisor,
    ]
    return inputs, inner, last, (q, k, v)


def _scope(name: str) -> str:
    """``/blocks/blocks.0/attn/Transpose`` -> ``/blocks/blocks.0/attn``."""
    return name.rsplit("/", 1)[0] if "/" in name else name


def _shape_as_gather(node: Node, shape: str, counter: list[int]) -> list[Node]:
    """``Shape(q)`` (q, k or v: ``(N, H, L, d)``) as a ``Gather`` of the reshape's target shape."""
    axes = list(_QKV_AXES)
    start = end = None
    for a in node.attribute:
        if a.name == "start":
            start = int(a.i)
        elif a.name == "end":
            end = int(a.i)
    axes = axes[slice(start, end)]
    counter[0] += 1
    index = f"{node.output[0]}::regnet_axes_{counter[0]}"
    const = helper.make_node(
        "Constant", [], [index], name=f"{node.name}/axes", value=numpy_helper.from_array(np.array(axes, np.int64))
    )
    gather = helper.make_node("Gather", [shape, index], [node.output[0]], name=node.name, axis=0)
    return [const, gather]


def rewrite(nodes: list[Node], const: Const, outputs: set[str]) -> tuple[list[Node], set[int]]:
    """``nodes`` with each timm attention block replaced by one synthetic ``SelfAttention`` node
    (and the ``Shape`` nodes that read its q, k or v made ``Gather`` of its shape), and the ``id``
    of each synthetic node."""
    if not any(n.op_type == "Transpose" and _perm(n) == [2, 0, 3, 1, 4] for n in nodes):
        return nodes, set()
    producer = {o: n for n in nodes for o in n.output}

    def through_identity(name: str) -> np.ndarray | None:
        """A constant, also behind ``Identity`` nodes (PyTorch shares equal initializers so)."""
        for _ in range(len(nodes) + 1):
            node = producer.get(name)
            if node is None or node.op_type != "Identity" or not node.input:
                break
            name = node.input[0]
        return const(name)

    g = _Graph(nodes, through_identity, outputs)
    readers = _readers(nodes)
    replaced: dict[int, list[Node]] = {}
    removed: set[int] = set()
    counter = [0]
    for t in nodes:
        if t.op_type != "Transpose" or id(t) in removed:
            continue
        found = _match_attention(g, readers, t, outputs)
        if found is None:
            continue
        inputs, inner, last, qkv = found
        if {id(n) for n in inner} & (removed | set(replaced)):
            continue
        made = helper.make_node(
            ATTENTION_OP, inputs, [last.output[0]], name=f"{_scope(t.name)}/{ATTENTION_OP}", domain=DOMAIN
        )
        replaced[id(last)] = [made]
        removed |= {id(n) for n in inner} - {id(last)}
        for name in qkv:
            for reader in readers.get(name, []):
                if reader.op_type == "Shape":
                    replaced[id(reader)] = _shape_as_gather(reader, inputs[3], counter)
    out: list[Node] = []
    synthetic: set[int] = set()
    for n in nodes:
        if id(n) in removed:
            continue
        new = replaced.get(id(n), [n])
        out += new
        if new[-1].op_type == ATTENTION_OP and new[-1].domain == DOMAIN:
            synthetic.add(id(new[-1]))
    return out, synthetic


def _target(st: ImportState, node: Node, index: int, what: str) -> list:
    return list(st.int_const(node, index, what).ravel())


def _scale(st: ImportState, node: Node, index: int) -> float:
    if index >= len(node.input) or not node.input[index]:
        return 1.0
    value = st.input(node, index)
    if not isinstance(value, np.ndarray) or value.size != 1 or value.dtype.kind != "f":
        raise st.fail(node, f"the attention scale ({_ATTENTION_INPUTS[index]}) must be one constant number")
    return float(value.ravel()[0])


def self_attention(st: ImportState, node: Node, attrs: dict) -> None:
    """The synthetic node of ``rewrite``: a ``MultiHeadAttention`` on ``[x, x]``."""
    x = st.tensor(node, 0)
    w = st.const(node, 1, "the qkv kernel")
    b = st.optional_const(node, 2, "the qkv bias")
    if len(x.shape) != 2 or None in x.shape:
        raise st.fail(node, f"attention needs a (N, L, D) input of fixed length; got {['N', *x.shape]}")
    length, d = x.shape
    shape = _target(st, node, 3, "the q, k, v shape")
    if len(shape) != 5 or w.ndim != 2 or w.shape[0] != d:
        raise st.fail(node, f"a qkv kernel {list(w.shape)} reshaped to {shape} on {['N', *x.shape]} is unsupported")
    batch, n, three, heads, dim = shape
    if not (batch is BATCH or batch == 0 or (st.batch is not None and batch == st.batch)):
        raise st.fail(node, f"the q, k, v shape {shape} does not keep the batch on axis 0")
    ok = (
        n in (length, 0, -1)
        and three == 3
        and isinstance(heads, (int, np.integer))
        and isinstance(dim, (int, np.integer))
    )
    if not ok or heads < 1 or dim < 1 or w.shape[1] != 3 * heads * dim or (b is not None and b.shape != (w.shape[1],)):
        raise st.fail(node, f"a qkv kernel {list(w.shape)} reshaped to {shape} is unsupported")
    heads, dim = int(heads), int(dim)
    out_shape = _target(st, node, 6, "the output shape")
    if len(out_shape) != 3 or out_shape[1] not in (length, 0, -1) or out_shape[2] not in (heads * dim, -1):
        raise st.fail(node, f"the heads merged to {out_shape} are unsupported (expected (N, {length}, {heads * dim}))")
    kernel = st.const(node, 7, "the output kernel")
    out_bias = st.optional_const(node, 8, "the output bias")
    if (
        kernel.ndim != 2
        or kernel.shape[0] != heads * dim
        or (out_bias is not None and out_bias.shape != kernel.shape[1:])
    ):
        raise st.fail(node, f"an output kernel {list(kernel.shape)} after {heads} heads of {dim} is unsupported")
    divisor = _scale(st, node, 10)
    if divisor == 0:
        raise st.fail(node, "the attention scores are divided by zero")
    scale = _scale(st, node, 4) * _scale(st, node, 5) * _scale(st, node, 9) / divisor
    ratio = scale * math.sqrt(dim)  # MultiHeadAttention scales by 1/sqrt(d)
    parts = w.reshape(d, 3, heads, dim)
    biases = (b if b is not None else np.zeros(w.shape[1], np.float32)).reshape(3, heads, dim)
    weights = {
        "query_kernel": parts[:, 0] * ratio,
        "key_kernel": parts[:, 1],
        "value_kernel": parts[:, 2],
        "output_kernel": kernel.reshape(heads, dim, kernel.shape[1]),
    }
    config: dict = {"num_heads": heads, "key_dim": dim}
    if b is not None or out_bias is not None:
        weights.update(
            query_bias=biases[0] * ratio,
            key_bias=biases[1],
            value_bias=biases[2],
            output_bias=out_bias if out_bias is not None else np.zeros(kernel.shape[1], np.float32),
        )
    else:
        config["use_bias"] = False
    if kernel.shape[1] != d:
        config["output_dim"] = int(kernel.shape[1])
    st.add(node, "MultiHeadAttention", config, [x, x], (length, int(kernel.shape[1])), weights)


HANDLERS: dict[str, Callable[[ImportState, Node, dict], None]] = {
    "Expand": expand,
    "Concat": concat,
    ATTENTION_OP: self_attention,
}

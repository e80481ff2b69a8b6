"""Import handlers for the generic tensor operators of transformer graphs (HuggingFace BERT,
DistilBERT, GPT-2): ``MatMul`` of two run-time tensors, ``Gather`` and ``Slice`` with constant
indices along any non-batch axis, ``Softmax`` (regnet's own layer), ``Cast``, ``Equal``, ``Not``,
``And`` (with a constant causal mask), ``Where`` and ``Expand`` of attention masks, ``Unsqueeze``
of leading axes before layers that broadcast, ``Where`` with a constant causal condition
(``CausalMask``), the ``IsNaN`` guard (``ReplaceNaN``), ``Gemm`` on the batch merged into the
positions (``Merged``) and ``Split`` off the channel axis. Each handler takes ``(state, node,
attrs)``; a node it does not handle goes to the handler the table had before (``handlers``,
``vocab_handlers``, ``sequence_import``).

Attention masks: an ``int64`` model input (``attention_mask``) is reshaped, expanded, compared
and cast before it meets the attention scores. Until it is cast to float32 numbers (a ``Cast``
layer) or read as a condition (a ``Where`` layer) it is a ``Mask``: the regnet tensor it is a
view of, the shape ONNX sees, the shape its values are laid out in and whether the condition is
negated (``Equal(mask, 0)``, ``Not``). A condition is read as non-zero, as ONNX's cast to bool.
"""

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import onnx

from .. import layers
from ..errors import RegnetError
from . import handlers, sequence_import, vocab_handlers
from .errors import OnnxImportError
from .folding import BATCH
from .graph import ImportState, Tensor, hint_of
from .handlers import hint_type

Node = onnx.NodeProto

#: for each operator handled here, the newest version (``since_version``) whose semantics it knows
KNOWN_VERSIONS = {
    "Where": 16,
    "Equal": 19,
    "Expand": 13,
    "Not": 1,
    "Sqrt": 13,
    "Range": 11,
    "Less": 13,
    "LessOrEqual": 16,
    "Greater": 13,
    "GreaterOrEqual": 16,
    "And": 7,
    "Or": 7,
    "IsNaN": 20,
    "Pow": 15,
}
#: the operators whose regnet layers broadcast a sample of fewer axes by itself
BROADCASTING = vocab_handlers.MERGES | {"MatMul", "Where"}


@attrs.define(eq=False)
class Mask:
    """An integer or boolean run-time value on its way to a ``Cast`` or a ``Where`` (see the
    module docstring): ``base`` is the regnet tensor, ``shape`` what ONNX sees (per sample),
    ``layout`` the shape the values are laid out in (``base``'s values, reshaped: the same size),
    ``dtype`` ``"int64"`` (numbers) or ``"bool"`` (a condition: non-zero is true), ``negate``
    whether the condition is ``base == 0``, ``also`` a constant condition And-ed with it (read
    only as a causal mask by ``Where``). Not a ``Tensor``: no other handler reads one."""

    base: Tensor
    shape: tuple
    layout: tuple
    dtype: str
    negate: bool = False
    #: a constant condition And-ed with this one (a causal mask; the batch axis included, as 1)
    also: np.ndarray | None = None

    def but(self, **changes: Any) -> "Mask":
        return attrs.evolve(self, **changes)


@attrs.define(eq=False)
class Merged:
    """A float run-time tensor ``(N, ..., D)`` reshaped to ``(-1, D)`` (the batch merged into the
    positions, as PyTorch's ``Conv1D`` of GPT-2 writes ``Gemm``): read only by ``Gemm`` (a
    ``Dense`` on the last axis) and by a ``Reshape`` back to ``(N, ..., units)``."""

    tensor: Tensor


@attrs.define(eq=False)
class NaNTest:
    """``IsNaN`` of a float run-time tensor: read only by ``Where(test, value, tensor)`` (a
    ``ReplaceNaN`` layer)."""

    tensor: Tensor


def _mask(x: "Tensor | Mask") -> Mask:
    if isinstance(x, Mask):
        return x
    return Mask(x, x.shape, x.shape, x.dtype)


def _is_mask(x: object) -> bool:
    """An integer run-time tensor (an int64 model input) or a mask view of one."""
    return isinstance(x, Mask) or (isinstance(x, Tensor) and x.dtype != "float32")


def _plain(st: ImportState, node: Node, m: Mask) -> Mask:
    """``m``, refused when a constant condition is And-ed with it (only ``Where`` reads that)."""
    if m.also is not None:
        raise st.fail(node, f"{node.op_type} of a mask And-ed with a constant condition is unsupported (only Where)")
    return m


def _maskable(x: object) -> bool:
    return isinstance(x, (Tensor, Mask))


def previous() -> dict:
    """The import table without this module: ``handlers``, ``vocab_handlers``, ``sequence_import``."""
    return {**handlers.HANDLERS, **vocab_handlers.HANDLERS, **sequence_import.HANDLERS}


def _fallback(st: ImportState, node: Node, attrs_: dict) -> None:
    handler = previous().get(node.op_type)
    if handler is None:
        raise st.fail(node, f"{node.op_type} of these inputs is unsupported")
    handler(st, node, attrs_)


def _shape(x: "Tensor | Mask") -> list:
    return ["N", *x.shape]


def _axis(st: ImportState, node: Node, axis: int, rank: int) -> int:
    ax = axis + rank if axis < 0 else axis
    if not 1 <= ax < rank:
        raise st.fail(node, f"axis={axis} is unsupported on a rank-{rank} input (the batch axis stays)")
    return ax


def _spelled(node: Node, type_name: str, ax: int, rank: int) -> int:
    """The axis ``ax`` as the exporter's hint spells it (negative from the end) when it means the
    same axis, else as ``ax``."""
    hint = hint_of(node) or {}
    theirs = hint.get("axis")
    if hint.get("type") == type_name and isinstance(theirs, int) and not isinstance(theirs, bool):
        if (theirs + rank if theirs < 0 else theirs) == ax:
            return theirs
    return ax


def _canonical(layer: object) -> tuple:
    idx = getattr(layer, "_idx", None)
    return (
        getattr(layer, "_ax", None),
        idx.tolist() if isinstance(idx, np.ndarray) else idx,
        getattr(layer, "_slice", None),
        tuple(getattr(layer, "output_shape", ())),
    )


def _as_hinted(node: Node, type_name: str, config: dict, input_shape: tuple) -> dict:
    """``config`` in the exporter's spelling (negative indices, null bounds) where the hint's
    fields select the same entries of an input of ``input_shape``, else as it is."""
    hint = hint_of(node) or {}
    if hint.get("type") != type_name:
        return config
    theirs = {k: hint[k] for k in config if k in hint}
    try:
        mine = layers.create({"type": type_name, **config})
        other = layers.create({"type": type_name, **{**config, **theirs}})
        mine.setup(input_shape, np.random.default_rng(0))
        other.setup(input_shape, np.random.default_rng(0))
    except (RegnetError, TypeError, ValueError):
        return config
    return {**config, **theirs} if _canonical(mine) == _canonical(other) else config


def _leading_ones(shape: tuple, base: tuple) -> bool:
    """Whether ``shape`` is ``base`` with leading axes of length 1 (what broadcasting adds)."""
    k = len(shape) - len(base)
    return k >= 0 and tuple(shape[k:]) == tuple(base) and all(d == 1 for d in shape[:k])


# -- MatMul -----------------------------------------------------------------------------------------
def matmul(st: ImportState, node: Node, attrs_: dict) -> None:
    """``MatMul`` of two run-time tensors: a ``MatMul`` layer (a constant B: ``Dense``, as before)."""
    a, b = st.input(node, 0), st.input(node, 1)
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or _is_mask(a) or _is_mask(b):
        _fallback(st, node, attrs_)
        return
    if len(a.shape) != len(b.shape) or len(a.shape) < 2:
        raise st.fail(
            node,
            f"MatMul of inputs {_shape(a)} and {_shape(b)}: regnet multiplies run-time tensors of one rank, 3 or "
            f"more (ONNX would broadcast the batch axis against another)",
        )
    if a.shape[-1] != b.shape[-2]:
        raise st.fail(node, f"MatMul of inputs {_shape(a)} and {_shape(b)}: the inner sizes differ")
    try:
        lead = tuple(int(d) for d in np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        raise st.fail(node, f"the leading axes of {_shape(a)} and {_shape(b)} do not broadcast") from None
    shape = (*lead, a.shape[-2], b.shape[-1])
    config: dict = {}
    src = b.source
    hint = hint_of(node) or {}
    if (
        hint.get("type") == "MatMul"
        and hint.get("transpose_b") is True
        and src is not None
        and src.type == "Permute"
        and st.sole_consumer(node.input[1])
    ):
        dims = list(src.config["dims"])
        swapped = [*range(1, len(dims) - 1), len(dims), len(dims) - 1]
        if dims == swapped:  # regnet's transpose_b: the Permute before folds into the layer
            config["transpose_b"] = True
            inner = src.inputs[0]
            inner_shape = (*b.shape[:-2], b.shape[-1], b.shape[-2])
            b = Tensor(inner, inner_shape) if not isinstance(inner, str) else Tensor(None, inner_shape, inner)
    st.add(node, "MatMul", config, [a, b], shape)


# -- Softmax ----------------------------------------------------------------------------------------
def softmax(st: ImportState, node: Node, attrs_: dict) -> None:
    """regnet's ``Softmax`` layer where the exporter wrote one; else the softmax activation (folded
    into the layer before where it can be), as before."""
    if hint_type(node) != "Softmax" or st.opset < 13:
        _fallback(st, node, attrs_)
        return
    x = st.tensor(node, 0)
    rank = len(x.shape) + 1
    ax = _axis(st, node, int(attrs_.get("axis", -1)), rank)
    st.add(node, "Softmax", {"axis": _spelled(node, "Softmax", ax, rank)}, [x], x.shape)


# -- Gather, Slice ----------------------------------------------------------------------------------
def gather(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Gather`` of a run-time tensor at constant indices: a ``Gather`` layer (a scalar index drops
    the axis). A constant table read at run-time ids is an Embedding, as before."""
    x, idx = st.input(node, 0), st.input(node, 1)
    if isinstance(x, Mask) and isinstance(idx, np.ndarray):
        _gather_mask(st, node, x, idx, int(attrs_.get("axis", 0)))
        return
    if not isinstance(x, Tensor) or _is_mask(x) or isinstance(idx, Tensor) or idx is None:
        _fallback(st, node, attrs_)
        return
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        raise st.fail(node, f"indices of dtype {idx.dtype}, shape {list(idx.shape)}: regnet takes a scalar or a list")
    rank = len(x.shape) + 1
    ax = _axis(st, node, int(attrs_.get("axis", 0)), rank)
    n = x.shape[ax - 1]
    values = [int(i) for i in idx.ravel()]
    if any(not -n <= i < n for i in values):
        raise st.fail(node, f"indices {values} are outside axis {ax} of length {n}")
    shape = list(x.shape)
    if idx.ndim == 0:
        indices: int | list = values[0]
        del shape[ax - 1]
        if not shape:
            raise st.fail(node, f"taking one index of inputs {_shape(x)} leaves the batch axis alone")
    else:
        indices = values
        shape[ax - 1] = len(values)
    config = _as_hinted(node, "Gather", {"indices": indices, "axis": ax}, x.shape)
    st.add(node, "Gather", config, [x], tuple(shape))


def _gather_mask(st: ImportState, node: Node, m: Mask, idx: np.ndarray, axis: int) -> None:
    """A mask taken at every index of an axis in order (``mask[:, arange(L)]``, as transformers'
    padding mask is read) is the mask itself; other takes of a mask are refused."""
    rank = len(m.shape) + 1
    ax = _axis(st, node, axis, rank)
    n = m.shape[ax - 1]
    if idx.dtype.kind not in "iu" or idx.ndim != 1 or not np.array_equal(np.where(idx < 0, idx + n, idx), np.arange(n)):
        raise st.fail(
            node, f"taking indices of shape {list(idx.shape)} of a mask is supported only as every index in order"
        )
    st.alias(node, m)


def _slice_mask(st: ImportState, node: Node, m: Mask) -> None:
    """A mask sliced whole (``mask[:, :, :, :L]`` of length ``L``) is the mask itself; other slices
    of a mask are refused."""
    starts = [int(v) for v in st.int_const(node, 1, "starts").ravel()]
    ends = [int(v) for v in st.int_const(node, 2, "ends").ravel()]
    rank = len(m.shape) + 1
    axes = [int(v) for v in st.int_const(node, 3, "axes").ravel()] if st.input(node, 3) is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [int(v) for v in st.int_const(node, 4, "steps").ravel()] if st.input(node, 4) is not None else None
    steps = [1] * len(starts) if steps is None else steps
    for s, e, a, step in zip(starts, ends, axes, steps):
        ax = _axis(st, node, a, rank)
        n = m.shape[ax - 1]
        if step != 1 or _python_slice(s, e, 1, n)[:2] != (0, n):
            raise st.fail(node, f"slicing a mask is supported only whole (axis {ax}: [{s}:{e}:{step}] of {n})")
    st.alias(node, m)


def _python_slice(start: int, end: int, step: int, n: int) -> tuple[int, int | None, int]:
    """ONNX ``Slice`` bounds (clamped as ONNX clamps them) as Python's ``start:stop:step``."""
    start = start + n if start < 0 else start
    end = end + n if end < 0 else end
    if step > 0:
        return min(max(start, 0), n), min(max(end, 0), n), step
    start, end = min(max(start, 0), n - 1), min(max(end, -1), n - 1)
    return start, (None if end == -1 else end), step


def slice_(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Slice`` of a run-time tensor with constant bounds: regnet's ``Slice`` layer (one per
    axis) where the exporter wrote one or the other readings (channels, cropping, the time
    reversal of a recurrent output) do not apply."""
    x = st.input(node, 0)
    if isinstance(x, Mask):
        _slice_mask(st, node, x)
        return
    if not isinstance(x, Tensor) or _is_mask(x) or st.opset < 10:
        _fallback(st, node, attrs_)
        return
    if hint_type(node) != "Slice":
        try:
            _fallback(st, node, attrs_)
            return
        except OnnxImportError:
            pass  # none of those readings: the general one below
    starts = [int(v) for v in st.int_const(node, 1, "starts").ravel()]
    ends = [int(v) for v in st.int_const(node, 2, "ends").ravel()]
    rank = len(x.shape) + 1
    axes = [int(v) for v in st.int_const(node, 3, "axes").ravel()] if st.input(node, 3) is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [int(v) for v in st.int_const(node, 4, "steps").ravel()] if st.input(node, 4) is not None else None
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise st.fail(node, f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    out = x
    for k, (s, e, a, step) in enumerate(zip(starts, ends, axes, steps)):
        ax = _axis(st, node, a, rank)
        n = out.shape[ax - 1]
        if step == 0:
            raise st.fail(node, "a step of 0")
        start, stop, step = _python_slice(s, e, step, n)
        length = len(range(n)[slice(start, stop, step)])
        if length == 0:
            raise st.fail(node, f"the slice [{s}:{e}:{step}] of axis {ax} (length {n}) is empty")
        if (start, stop, step) in ((0, n, 1), (0, None, 1)):
            continue
        shape = list(out.shape)
        shape[ax - 1] = length
        config = {"axis": ax, "start": start, "stop": stop, "step": step}
        if len(starts) == 1:
            config = _as_hinted(node, "Slice", config, out.shape)
        entry = st.add(node, "Slice", config, [out], tuple(shape))
        out = Tensor(entry, entry.shape)
        if k:  # the first slice keeps the node's hint and names; the others are plain
            entry.hint, entry.names = None, [f"{n_}_{k}" for n_ in entry.names]
    if out is x:
        st.pass_through(node, x)
    else:
        st.values[node.output[0]] = out


def split(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Split`` of a run-time tensor on an axis other than the channels (GPT-2's query, key and
    value along the features): one ``Slice`` layer per output; the channels as before."""
    x = st.input(node, 0)
    rank = len(x.shape) + 1 if isinstance(x, Tensor) else 0
    axis = int(attrs_.get("axis", 0))
    if not isinstance(x, Tensor) or _is_mask(x) or (axis + rank if axis < 0 else axis) == 1:
        _fallback(st, node, attrs_)
        return
    ax = _axis(st, node, axis, rank)
    n, k = x.shape[ax - 1], len(node.output)
    if st.opset < 13 and "split" in attrs_:
        sizes = [int(v) for v in attrs_["split"]]
    elif st.opset >= 13 and len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in st.int_const(node, 1, "split").ravel()]
    else:
        parts = int(attrs_.get("num_outputs", k))
        step = -(-n // parts)
        sizes = [min(step, n - i * step) for i in range(parts)]
    if len(sizes) != k or sum(sizes) != n or min(sizes) < 1:
        raise st.fail(node, f"split sizes {sizes} do not cut axis {ax} of length {n} into {k} outputs")
    start, outputs = 0, {}
    for i, size in enumerate(sizes):
        shape = list(x.shape)
        shape[ax - 1] = size
        entry = st.add(node, "Slice", {"axis": ax, "start": start, "stop": start + size, "step": 1}, [x], tuple(shape))
        entry.hint, entry.names = None, [f"{n_}_{i}" for n_ in entry.names]
        outputs[node.output[i]] = Tensor(entry, entry.shape)
        start += size
    st.values.update(outputs)


# -- shapes of masks and broadcasting operands ------------------------------------------------------
def _new_layout(st: ImportState, node: Node, m: Mask, shape: tuple) -> Mask:
    _plain(st, node, m)
    if math.prod(shape) != math.prod(m.layout):
        raise st.fail(node, f"reshaping the mask {_shape(m)} to {['N', *shape]} changes its size")
    return m.but(shape=tuple(shape), layout=tuple(shape))


def unsqueeze(st: ImportState, node: Node, attrs_: dict) -> None:
    """Leading axes for a layer that broadcasts (a merge, ``MatMul``, ``Where``) pass through; a
    mask gets the axes in its layout."""
    x = st.input(node, 0)
    if not _maskable(x):
        _fallback(st, node, attrs_)
        return
    axes = vocab_handlers._axes_of(st, node, attrs_, 1, 13) or []
    rank = len(x.shape) + 1 + len(axes)
    where = sorted(a + rank if a < 0 else a for a in axes)
    if not axes or len(set(where)) != len(where) or min(where) < 1 or max(where) >= rank:
        raise st.fail(node, f"axes={axes} are unsupported (regnet keeps the batch on axis 0)")
    shape = list(x.shape)
    for a in where:
        shape.insert(a - 1, 1)
    if _is_mask(x):
        st.alias(node, _new_layout(st, node, _mask(x), tuple(shape)))
        return
    assert isinstance(x, Tensor)
    out = node.output[0]
    readers = {n.op_type for n in st.readers.get(out, [])}
    if where == list(range(1, len(where) + 1)) and out not in st.outputs and readers and readers <= BROADCASTING:
        st.pass_through(node, Tensor(x.source, tuple(shape), x.input, x.dtype))
        return
    _fallback(st, node, attrs_)


def _merge_reshape(st: ImportState, node: Node, x: "Tensor | Merged") -> bool:
    """``Reshape(x, [-1, D])`` of ``(N, ..., D)`` read only by ``Gemm``: a ``Merged`` view; a
    ``Merged`` result reshaped back to ``(N, ..., units)``: the tensor itself."""
    target = list(st.int_const(node, 1, "shape").ravel())
    if isinstance(x, Merged):
        t = x.tensor
        rest = [int(t.shape[i]) if d == 0 and i < len(t.shape) else d for i, d in enumerate(target[1:])]
        if target and (target[0] is BATCH or target[0] in (-1, st.batch)) and tuple(rest) == tuple(t.shape):
            st.pass_through(node, t)
            return True
        raise st.fail(node, f"reshaping the merged batch {_shape(t)} to {target} is unsupported (only back to it)")
    readers = st.readers.get(node.output[0], [])
    if (
        len(x.shape) >= 2
        and len(target) == 2
        and target[0] == -1
        and target[1] == x.shape[-1]
        and readers
        and all(r.op_type == "Gemm" and list(r.input[:1]) == [node.output[0]] for r in readers)
        and node.output[0] not in st.outputs
    ):
        st.alias(node, Merged(x))
        return True
    return False


def reshape(st: ImportState, node: Node, attrs_: dict) -> None:
    """A mask reshaped (the batch stays on axis 0); the batch merged into the positions before
    ``Gemm`` (``Merged``) and back; other tensors as before."""
    x = st.input(node, 0)
    if isinstance(x, Merged) or (isinstance(x, Tensor) and not _is_mask(x) and _merge_reshape(st, node, x)):
        if isinstance(x, Merged):
            _merge_reshape(st, node, x)
        return
    if not _is_mask(x):
        _fallback(st, node, attrs_)
        return
    m = _mask(x)
    target = list(st.int_const(node, 1, "shape").ravel())
    if not target or not (target[0] is BATCH or target[0] in (0, -1) or target[0] == st.batch):
        raise st.fail(node, f"the target shape {target} does not keep the batch size on axis 0")
    rest = [int(m.shape[i]) if (d == 0 and i < len(m.shape)) else int(d) for i, d in enumerate(target[1:])]
    size = math.prod(m.layout)
    known = math.prod(d for d in rest if d != -1)
    if target[0] == -1 and (-1 in rest or known != size):
        raise st.fail(node, f"the target shape {target} of the mask {_shape(m)} does not keep the batch on axis 0")
    if rest.count(-1) > 1 or (-1 in rest and (known == 0 or size % known)):
        raise st.fail(node, f"the target shape {target} of the mask {_shape(m)} is unsupported")
    out = _new_layout(st, node, m, tuple(size // known if d == -1 else d for d in rest))
    if out.layout == m.base.shape and out.dtype == m.base.dtype and not out.negate:
        st.alias(node, m.base)  # the tensor itself again
        return
    st.alias(node, out)


def expand(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Expand`` of a mask or of a tensor read by layers that broadcast: the broadcast is theirs
    (the batch size in the shape stays the batch); a constant is folded before it gets here."""
    x = st.input(node, 0)
    if not _maskable(x):
        raise st.fail(node, "Expand of this input is unsupported")
    target = list(st.int_const(node, 1, "shape").ravel())
    dims = [1 if d is BATCH else int(d) for d in target]
    full = [1, *x.shape]
    try:
        out = tuple(int(d) for d in np.broadcast_shapes(tuple(full), tuple(dims)))
    except ValueError:
        raise st.fail(node, f"the inputs {_shape(x)} do not expand to {target}") from None
    if len(out) != len(full) or out[0] != 1 or (target and target[0] not in (BATCH, 1, st.batch)):
        raise st.fail(node, f"expanding {_shape(x)} to {target} changes the batch axis or the rank")
    shape = out[1:]
    if _is_mask(x):
        m = _plain(st, node, _mask(x))
        st.alias(node, m.but(shape=shape))
        return
    assert isinstance(x, Tensor)
    if shape == x.shape:
        st.pass_through(node, x)
        return
    readers = {n.op_type for n in st.readers.get(node.output[0], [])}
    if readers and readers <= BROADCASTING and node.output[0] not in st.outputs:
        st.pass_through(node, Tensor(x.source, x.shape, x.input, x.dtype))  # the reader broadcasts it
        return
    raise st.fail(node, f"expanding {_shape(x)} to {target} is supported only before layers that broadcast")


# -- casts, comparisons, Where ----------------------------------------------------------------------
def _laid_out(st: ImportState, node: Node, m: Mask, values: Tensor) -> Tensor:
    """``values`` (the base's values as float32) reshaped to the mask's layout."""
    if m.layout == values.shape:
        return values
    entry = st.add(node, "Reshape", {"target_shape": list(m.layout)}, [values], m.layout)
    entry.hint, entry.names = None, [f"{n}_layout" for n in entry.names]
    return Tensor(entry, m.layout)


def cast(st: ImportState, node: Node, attrs_: dict) -> None:
    """An integer tensor (an attention mask) cast to float32: a ``Cast`` layer (then its layout);
    cast to bool: a condition. regnet's own ``Cast`` layer imports as one; other casts as before."""
    x = st.input(node, 0)
    to = int(attrs_.get("to", 0))
    if _maskable(x) and to == onnx.TensorProto.BOOL:
        m = _mask(x)
        st.alias(node, m.but(dtype="bool"))
        return
    if _is_mask(x) and to in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        m = _mask(x)
        if m.dtype == "bool":  # would be base != 0 (or == 0) as 1 and 0: no layer computes it
            raise st.fail(node, "casting a condition (a comparison or a cast to bool) to numbers is unsupported")
        entry = st.add(node, "Cast", {}, [m.base], m.base.shape)
        st.values[node.output[0]] = _laid_out(st, node, m, Tensor(entry, entry.shape))
        return
    if isinstance(x, Tensor) and to == onnx.TensorProto.FLOAT and hint_type(node) == "Cast":
        st.add(node, "Cast", {}, [x], x.shape)  # regnet's Cast layer (on float inputs: a copy)
        return
    _fallback(st, node, attrs_)


def _scalar(value: np.ndarray) -> float | None:
    array = np.asarray(value)
    return float(array.ravel()[0]) if array.size == 1 and array.dtype.kind in "fiu" else None


#: an infinite mask value (PyTorch's sdpa writes ``-inf``) as regnet's layers store it: float32's
#: largest finite number of that sign (a config holds finite numbers; after a softmax the weights
#: are the same unless every key of a query is masked, see docs/onnx.md)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _finite(number: float) -> float:
    if math.isinf(number):
        return math.copysign(_FLOAT32_MAX, number)
    return float(np.float32(number))


def equal(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Equal(mask, 0)``: the negated condition (non-zero is true)."""
    a, b = st.input(node, 0), st.input(node, 1)
    x, c = (a, b) if _maskable(a) else (b, a)
    if not _maskable(x) or _maskable(c) or c is None or _scalar(c) != 0.0:
        raise st.fail(node, "Equal of a run-time tensor is supported only against 0 (an attention mask's padding)")
    m = _plain(st, node, _mask(x))
    st.alias(node, m.but(dtype="bool", negate=not m.negate))


def not_(st: ImportState, node: Node, attrs_: dict) -> None:
    x = st.input(node, 0)
    if not _maskable(x):
        raise st.fail(node, "Not of this input is unsupported")
    m = _plain(st, node, _mask(x))
    st.alias(node, m.but(dtype="bool", negate=not m.negate))


def where(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Where(condition, x, y)`` with a run-time condition: a ``Where`` layer, a scalar constant
    branch as its ``true_value`` or ``false_value``."""
    cond = st.input(node, 0)
    if isinstance(cond, NaNTest):
        same = node.input[2] and st.input(node, 2) is cond.tensor
        value = _scalar_branch(st, node, st.input(node, 1), "the first branch") if same else None
        if value is None:
            raise st.fail(node, "Where on IsNaN(x) is supported only as Where(IsNaN(x), number, x)")
        st.add(node, "ReplaceNaN", {"value": value}, [cond.tensor], cond.tensor.shape)
        return
    if isinstance(cond, np.ndarray):
        _constant_condition(st, node, cond)
        return
    if not _maskable(cond):
        raise st.fail(node, "Where with a constant condition and run-time branches is unsupported")
    m = _mask(cond)
    if m.also is not None:
        _and_causal(st, node, m)
        return
    branches = [st.input(node, 1), st.input(node, 2)]
    if m.negate:
        branches.reverse()
    config: dict = {}
    inputs: list[Tensor] = []
    for key, value in zip(("true_value", "false_value"), branches):
        if _maskable(value):
            if _is_mask(value) or not isinstance(value, Tensor):
                raise st.fail(node, "a branch of Where is an integer tensor; regnet chooses between float values")
            inputs.append(value)
            continue
        number = _scalar(value)
        if number is None:
            raise st.fail(node, f"a constant branch of shape {list(np.shape(value))} is unsupported (one number)")
        config[key] = _finite(number)
    condition = m.base if _leading_ones(m.layout, m.base.shape) else None
    if condition is None:  # values laid out otherwise: as numbers, reshaped (non-zero stays non-zero)
        entry = st.add(node, "Cast", {}, [m.base], m.base.shape)
        entry.hint, entry.names = None, [f"{n}_condition" for n in entry.names]
        reshaped = st.add(node, "Reshape", {"target_shape": list(m.layout)}, [Tensor(entry, entry.shape)], m.layout)
        reshaped.hint, reshaped.names = None, [f"{n}_layout" for n in reshaped.names]
        condition = Tensor(reshaped, m.layout)
    shapes = [m.shape, *(t.shape for t in inputs)]
    if len({len(s) for s in shapes}) != 1:
        raise st.fail(node, f"inputs of shapes {[['N', *s] for s in shapes]} have different ranks")
    try:
        shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise st.fail(node, f"inputs of shapes {[['N', *s] for s in shapes]} do not broadcast") from None
    if inputs:
        st.add(node, "Where", config, [condition, *inputs], shape)
        return
    # two constants: the layer's output has the condition's shape; leading ones as ONNX sees them
    entry = st.add(node, "Where", config, [condition], condition.shape)
    if condition.shape != shape:
        reshaped = st.add(node, "Reshape", {"target_shape": list(shape)}, [Tensor(entry, entry.shape)], shape)
        reshaped.hint, reshaped.names = None, [f"{n}_shape" for n in reshaped.names]


def _causal(st: ImportState, node: Node, keep: np.ndarray, shape: tuple) -> None:
    """Refuses a constant condition (the batch axis included) other than the lower triangle of
    ``(L, L)`` on the last two axes of a result of per-sample ``shape``, the same for every
    leading index."""
    keep = np.asarray(keep).astype(bool)
    n = shape[-1] if shape else 0
    if len(shape) < 2 or shape[-2] != n or keep.ndim > len(shape) + 1:
        raise st.fail(
            node, f"a constant condition of shape {list(keep.shape)} on inputs {_shape_list(shape)} is unsupported"
        )
    try:
        full = np.broadcast_to(keep, (*keep.shape[:-2], n, n)) if keep.ndim >= 2 else None
    except ValueError:
        full = None
    if full is None or not (full == np.tril(np.ones((n, n), bool))).all():
        raise st.fail(
            node,
            f"a constant condition of shape {list(keep.shape)} is supported only as a causal mask (the lower "
            f"triangle of the last two axes, {n} x {n})",
        )


def _shape_list(shape: tuple) -> list:
    return ["N", *shape]


def _broadcasts_into(shape: tuple, target: tuple) -> bool:
    try:
        return tuple(np.broadcast_shapes(shape, target)) == tuple(target)
    except ValueError:
        return False


def _scalar_branch(st: ImportState, node: Node, value: object, what: str) -> float:
    number = _scalar(value) if isinstance(value, np.ndarray) else None
    if number is None:
        raise st.fail(node, f"{what} must be one constant number with a causal (constant) condition")
    return _finite(number)


def _constant_condition(st: ImportState, node: Node, keep: np.ndarray) -> None:
    """``Where(constant, x, value)``: x itself where the condition is all true, a ``CausalMask``
    where it is the lower triangle of the last two axes (GPT-2's causal bias)."""
    x, other = st.input(node, 1), st.input(node, 2)
    if not isinstance(x, Tensor) or _is_mask(x):
        raise st.fail(node, "Where with a constant condition is supported only with a run-time float first branch")
    value = _scalar_branch(st, node, other, "the second branch")
    keep = np.asarray(keep).astype(bool)
    if keep.all() and _broadcasts_into(keep.shape, (1, *x.shape)):
        st.pass_through(node, x)
        return
    n = x.shape[-1] if x.shape else 0
    if len(x.shape) >= 2 and x.shape[-2] == 1:  # one row for every query: broadcast by the mask
        shape = (*x.shape[:-2], n, n)
    else:
        shape = x.shape
    _causal(st, node, keep, shape)
    st.add(node, "CausalMask", {"value": value}, [x], shape)


def _and_causal(st: ImportState, node: Node, m: Mask) -> None:
    """``Where(causal & condition, x, value)`` = ``CausalMask(value)`` of ``Where(condition, x,
    value)``: the run-time condition's ``Where`` (two constants: an additive mask) then the causal
    triangle."""
    assert m.also is not None
    value = _scalar_branch(st, node, st.input(node, 2), "the second branch")
    shape = m.shape
    _causal(st, node, m.also, shape)
    inner = Mask(m.base, m.layout, m.layout, "bool", m.negate)
    name = node.output[0]
    tmp = f"{name}__padding"
    st.values[tmp] = inner
    proxy = onnx.helper.make_node("Where", [tmp, node.input[1], node.input[2]], [tmp + "_out"], name=node.name)
    where(st, proxy, {})
    padded = st.values.pop(tmp + "_out")
    st.values.pop(tmp)
    assert isinstance(padded, Tensor)
    if padded.source is not None:
        padded.source.names = [f"{n}_padding" for n in padded.source.names]
        padded.source.hint = None
    if (
        len(padded.shape) != len(shape)
        or padded.shape[-1] != shape[-1]
        or padded.shape[-2] not in (1, shape[-2])
        or padded.shape[:-2] != shape[:-2]
    ):
        raise st.fail(
            node, f"the condition {_shape_list(m.layout)} and the causal mask {_shape_list(shape)} do not combine"
        )
    st.add(node, "CausalMask", {"value": value}, [padded], (*padded.shape[:-2], shape[-1], shape[-1]))


def gemm(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Gemm`` of a ``Merged`` view: the ``Dense`` layer ``Gemm`` makes, on the last axis of the
    unmerged tensor (its result stays merged until the ``Reshape`` back)."""
    x = st.input(node, 0)
    if not isinstance(x, Merged):
        _fallback(st, node, attrs_)
        return
    t = x.tensor
    readers = st.readers.get(node.output[0], [])
    if not readers or node.output[0] in st.outputs or any(r.op_type != "Reshape" for r in readers):
        raise st.fail(
            node,
            f"Gemm of the merged batch {_shape(t)} is supported only when Reshape back to (N, ..., units) reads it",
        )
    st.values[node.input[0]] = Tensor(t.source, t.shape[-1:], t.input, t.dtype)
    try:
        _fallback(st, node, attrs_)
    finally:
        st.values[node.input[0]] = x
    out = st.values[node.output[0]]
    assert isinstance(out, Tensor) and out.source is not None
    out.source.shape = (*t.shape[:-1], *out.shape)
    st.values[node.output[0]] = Merged(Tensor(out.source, out.source.shape))


def isnan(st: ImportState, node: Node, attrs_: dict) -> None:
    """``IsNaN`` of a float tensor (the guard after an attention softmax): a ``NaNTest`` for the
    ``Where`` that reads it."""
    x = st.input(node, 0)
    if not isinstance(x, Tensor) or _is_mask(x):
        raise st.fail(node, "IsNaN is supported only of a float run-time tensor")
    readers = st.readers.get(node.output[0], [])
    if not readers or node.output[0] in st.outputs or any(r.op_type != "Where" for r in readers):
        raise st.fail(node, "IsNaN is supported only as the condition of Where(IsNaN(x), number, x)")
    st.alias(node, NaNTest(x))


def and_(st: ImportState, node: Node, attrs_: dict) -> None:
    """``And`` of a run-time condition (an attention mask) and a constant one (a causal mask): the
    condition with the constant kept aside for ``Where``."""
    a, b = st.input(node, 0), st.input(node, 1)
    x, c = (a, b) if _maskable(a) else (b, a)
    if not _maskable(x) or not isinstance(c, np.ndarray):
        raise st.fail(node, "And is supported only of an attention mask and a constant condition")
    m = _mask(x)
    if m.also is not None:
        raise st.fail(node, "And of a mask with two constant conditions is unsupported")
    c = np.asarray(c).astype(bool)
    try:
        full = tuple(int(d) for d in np.broadcast_shapes((1, *m.shape), c.shape))
    except ValueError:
        raise st.fail(node, f"the mask {_shape(m)} and the constant {list(c.shape)} do not broadcast") from None
    if len(full) != len(m.shape) + 1 or full[0] != 1:
        raise st.fail(node, f"And of the mask {_shape(m)} and a constant {list(c.shape)} changes the batch or rank")
    st.alias(node, m.but(dtype="bool", shape=full[1:], also=c))


HANDLERS: dict[str, Callable[[ImportState, Node, dict], None]] = {
    "MatMul": matmul,
    "Softmax": softmax,
    "Gather": gather,
    "Slice": slice_,
    "Unsqueeze": unsqueeze,
    "Reshape": reshape,
    "Expand": expand,
    "Cast": cast,
    "Equal": equal,
    "Not": not_,
    "Where": where,
    "And": and_,
    "Gemm": gemm,
    "Split": split,
    "IsNaN": isnan,
}

__all__ = ["HANDLERS", "KNOWN_VERSIONS", "Mask", "Merged", "NaNTest"]

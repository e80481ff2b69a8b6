"""Constant folding of shape arithmetic (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` as
exporters write ``x.view(x.size(0), -1)``): values known before run time, where the batch size
is the symbol ``BATCH``.

A value is a NumPy array; an integer vector that holds the batch size is an ``object`` array
with ``BATCH`` in it. Arithmetic on ``BATCH`` raises ``TypeError`` (the caller reports it).
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

#: the most elements a folded constant may have (shape arithmetic is tiny; this stops a bomb)
MAX_FOLDED_ELEMENTS = 1 << 24


class _Batch:
    """The batch size: known only at run time."""

    def __repr__(self) -> str:
        return "N"

    def __index__(self) -> int:
        raise TypeError("the batch size is not known before run time")


BATCH = _Batch()


class FoldError(ValueError):
    """A constant expression regnet does not evaluate (the caller names the node)."""


def has_batch(value: np.ndarray) -> bool:
    return value.dtype == object and any(v is BATCH for v in value.ravel())


def shape_of(shape: tuple[int, ...]) -> np.ndarray:
    """``Shape`` of a run-time tensor whose per-sample shape is ``shape``."""
    return np.array([BATCH, *shape], dtype=object)


def _axes(node_attrs: dict, inputs: list, index: int, opset_moved: int, opset: int) -> list[int] | None:
    """Axes given as an attribute (before ``opset_moved``) or as input ``index``."""
    if opset < opset_moved:
        axes = node_attrs.get("axes")
        return None if axes is None else [int(a) for a in axes]
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in np.asarray(inputs[index]).ravel()]
    return None


def _numeric(*values: np.ndarray) -> None:
    if any(has_batch(v) for v in values):
        raise FoldError("arithmetic on the batch size (only passing it through is supported)")


def _gather(attrs, inputs, opset):
    data, idx = inputs[0], np.asarray(inputs[1])
    axis = int(attrs.get("axis", 0))
    if idx.dtype.kind not in "iu":
        raise FoldError("Gather indices must be integers")
    n = data.shape[axis]
    return np.take(data, np.where(idx < 0, idx + n, idx), axis=axis)


def _unsqueeze(attrs, inputs, opset):
    data = inputs[0]
    axes = _axes(attrs, inputs, 1, 13, opset) or []
    rank = data.ndim + len(axes)
    for a in sorted(a + rank if a < 0 else a for a in axes):
        data = np.expand_dims(data, a)
    return data


def _squeeze(attrs, inputs, opset):
    data = inputs[0]
    axes = _axes(attrs, inputs, 1, 13, opset)
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(a + data.ndim if a < 0 else a for a in axes))


def _concat(attrs, inputs, opset):
    parts = [np.asarray(v) for v in inputs]
    if any(p.dtype == object for p in parts):
        parts = [p.astype(object) for p in parts]
    return np.concatenate(parts, axis=int(attrs["axis"]))


def _slice(attrs, inputs, opset):
    data = inputs[0]
    starts, ends = np.asarray(inputs[1]).ravel(), np.asarray(inputs[2]).ravel()
    axes = np.asarray(inputs[3]).ravel() if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
    steps = np.asarray(inputs[4]).ravel() if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts), int)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


def _cast(attrs, inputs, opset):
    dtype = onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"]))
    data = inputs[0]
    if has_batch(data):
        if dtype.kind not in "iu":
            raise FoldError("casting the batch size to a non-integer type")
        return data
    return data.astype(dtype)


def _reshape(attrs, inputs, opset):
    data, shape = inputs[0], [int(d) for d in np.asarray(inputs[1]).ravel()]
    _numeric(np.asarray(inputs[1]))
    shape = [data.shape[i] if d == 0 and not attrs.get("allowzero", 0) else d for i, d in enumerate(shape)]
    return data.reshape(shape)


def _bounded(shape) -> list[int]:
    """``shape`` as ints, refused before anything is allocated when it holds more than
    ``MAX_FOLDED_ELEMENTS`` values (or has a negative dimension)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise FoldError(f"it makes a constant of shape {dims}")
    if math.prod(dims) > MAX_FOLDED_ELEMENTS:
        raise FoldError(f"it makes a constant of {math.prod(dims)} elements (limit {MAX_FOLDED_ELEMENTS})")
    return dims


def _arith(fn):
    def run(attrs, inputs, opset):
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        _numeric(a, b)
        # shape values without the batch size (object arrays) are plain integers
        a, b = (v.astype(np.int64) if v.dtype == object else v for v in (a, b))
        _bounded(np.broadcast_shapes(a.shape, b.shape))
        out = np.asarray(fn(a, b))
        return out.astype(np.result_type(a, b), copy=False)

    return run


def _int_div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        if np.any(b == 0):
            raise FoldError("integer division by zero")
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))  # ONNX truncates
    return np.true_divide(a, b)


def _fill_shape(value):
    """A ConstantOfShape's shape, the batch axis as 1 (zero initial states of a recurrent operator:
    it broadcasts)."""
    shape = np.asarray(value).ravel()
    if has_batch(shape):
        shape = np.array([1 if v is BATCH else v for v in shape], dtype=object)
    _numeric(shape)
    return shape


def _constant_of_shape(attrs, inputs, opset):
    shape = _fill_shape(inputs[0])
    value = attrs.get("value")
    fill = onnx.numpy_helper.to_array(value).ravel() if value is not None else np.zeros(1, np.float32)
    return np.full(_bounded(shape), fill[0], dtype=fill.dtype)


def _equal(attrs, inputs, opset):
    """``Equal`` (the batch size equals only itself: exporters compare shapes with -1)."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    _bounded(np.broadcast_shapes(a.shape, b.shape))
    if a.dtype == object or b.dtype == object:
        a, b = np.broadcast_arrays(a.astype(object), b.astype(object))
        return np.array([x is y if x is BATCH or y is BATCH else x == y for x, y in zip(a.ravel(), b.ravel())]).reshape(
            a.shape
        )
    return np.equal(a, b)


def _where(attrs, inputs, opset):
    cond, x, y = (np.asarray(v) for v in inputs[:3])
    _numeric(cond)
    _bounded(np.broadcast_shapes(cond.shape, x.shape, y.shape))
    out = np.where(cond.astype(bool), x, y)
    return out if out.dtype == object or x.dtype != y.dtype else out.astype(x.dtype, copy=False)


def _expand(attrs, inputs, opset):
    """``Expand`` of a constant; a batch size in the shape is read as 1 (the constant is the same
    for every sample and broadcasts over the batch later, as ConstantOfShape's)."""
    data = np.asarray(inputs[0])
    shape = _bounded(_fill_shape(inputs[1]))
    target = _bounded(np.broadcast_shapes(data.shape, tuple(shape)))
    return np.array(np.broadcast_to(data, target))


def _range_length(inputs: list) -> int:
    start, limit, delta = (np.asarray(v) for v in inputs[:3])
    _numeric(start, limit, delta)
    if any(v.size != 1 for v in (start, limit, delta)):
        raise FoldError("Range takes scalar start, limit and delta")
    if delta.ravel()[0] == 0:
        raise FoldError("Range with a delta of 0")
    return max(int(math.ceil((limit.ravel()[0] - start.ravel()[0]) / delta.ravel()[0])), 0)


def _range(attrs, inputs, opset):
    """``Range(start, limit, delta)`` (positions ``0 .. L-1`` from a known length)."""
    start, limit, delta = (np.asarray(v) for v in inputs[:3])
    _range_length(inputs)
    return np.arange(start.ravel()[0], limit.ravel()[0], delta.ravel()[0]).astype(start.dtype, copy=False)


def _compare(fn):
    def run(attrs, inputs, opset):
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        _numeric(a, b)
        _bounded(np.broadcast_shapes(a.shape, b.shape))
        return fn(a, b)

    return run


def _expand_size(attrs: dict, inputs: list) -> int:
    return math.prod(np.broadcast_shapes(np.shape(inputs[0]), tuple(_bounded(_fill_shape(inputs[1])))))


#: op type -> ``fn(attributes, input values, opset) -> value``
FOLDERS: dict[str, Callable[[dict, list, int], Any]] = {
    "Identity": lambda attrs, inputs, opset: inputs[0],
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Cast": _cast,
    "Reshape": _reshape,
    "Transpose": lambda attrs, inputs, opset: np.transpose(inputs[0], attrs.get("perm")),
    "Add": _arith(np.add),
    "Sub": _arith(np.subtract),
    "Mul": _arith(np.multiply),
    "Div": _arith(_int_div),
    "Neg": lambda attrs, inputs, opset: -np.asarray(inputs[0]),
    "ConstantOfShape": _constant_of_shape,
    "Equal": _equal,
    "Where": _where,
    "Expand": _expand,
    "Not": lambda attrs, inputs, opset: np.logical_not(np.asarray(inputs[0], bool)),
    "Sqrt": lambda attrs, inputs, opset: np.sqrt(np.asarray(inputs[0], np.float64)).astype(np.asarray(inputs[0]).dtype),
    "Range": _range,
    "Pow": _arith(lambda a, b: np.power(a.astype(np.float64), b.astype(np.float64))),
    "Less": _compare(np.less),
    "LessOrEqual": _compare(np.less_equal),
    "Greater": _compare(np.greater),
    "GreaterOrEqual": _compare(np.greater_equal),
    "And": _compare(lambda a, b: np.logical_and(a.astype(bool), b.astype(bool))),
    "Or": _compare(lambda a, b: np.logical_or(a.astype(bool), b.astype(bool))),
    "IsNaN": lambda attrs, inputs, opset: np.isnan(np.asarray(inputs[0], np.float64)),
}


def _size(value: Any) -> int:
    return int(np.asarray(value).size) if value is not None else 0


def _gather_size(attrs: dict, inputs: list) -> int:
    data, idx = np.asarray(inputs[0]), np.asarray(inputs[1])
    axis = int(attrs.get("axis", 0))
    if not -data.ndim <= axis < data.ndim:
        raise FoldError(f"Gather axis {axis} is out of range for rank {data.ndim}")
    rest = math.prod(d for i, d in enumerate(data.shape) if i != axis % data.ndim)
    return rest * idx.size


def _broadcast_size(attrs: dict, inputs: list) -> int:
    return math.prod(np.broadcast_shapes(*(np.shape(v) for v in inputs[:2])))


def _shape_size(attrs: dict, inputs: list) -> int:
    return math.prod(_bounded(_fill_shape(inputs[0])))


#: op type -> an upper bound on the elements of its result, computed from the inputs' shapes before
#: anything is allocated (operators not listed make at most as many as their largest input)
RESULT_SIZE: dict[str, Callable[[dict, list], int]] = {
    "Gather": _gather_size,
    "Concat": lambda attrs, inputs: sum(_size(v) for v in inputs),
    "Add": _broadcast_size,
    "Sub": _broadcast_size,
    "Mul": _broadcast_size,
    "Div": _broadcast_size,
    "ConstantOfShape": _shape_size,
    "Equal": _broadcast_size,
    "Where": lambda attrs, inputs: math.prod(np.broadcast_shapes(*(np.shape(v) for v in inputs[:3]))),
    "Expand": _expand_size,
    "Range": lambda attrs, inputs: _range_length(inputs),
    "Pow": _broadcast_size,
    **{op: _broadcast_size for op in ("Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or")},
}


def result_size(op: str, attrs: dict, inputs: list) -> int:
    """An upper bound on the elements ``fold`` would make, from the shapes alone."""
    bound = RESULT_SIZE.get(op)
    return bound(attrs, inputs) if bound is not None else max((_size(v) for v in inputs), default=0)


def fold(op: str, attrs: dict, inputs: list, opset: int) -> np.ndarray:
    """Evaluate one node on known values; raises ``FoldError`` when it cannot, or when its result
    would hold more than ``MAX_FOLDED_ELEMENTS`` values (checked before anything is allocated)."""
    try:
        size = result_size(op, attrs, inputs)
    except FoldError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise FoldError(f"cannot evaluate it on its constant inputs ({exc})") from None
    if size > MAX_FOLDED_ELEMENTS:
        raise FoldError(f"it makes a constant of {size} elements (limit {MAX_FOLDED_ELEMENTS})")
    try:
        out = FOLDERS[op](attrs, inputs, opset)
    except FoldError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError) as exc:
        raise FoldError(f"cannot evaluate it on its constant inputs ({exc})") from None
    return np.asarray(out) if not isinstance(out, np.ndarray) else out

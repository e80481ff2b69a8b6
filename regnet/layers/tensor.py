"""Generic tensor layers a transformer graph is made of: the matrix product of two activations
(``MatMul``), ``Softmax`` on any axis, taking by constant indices (``Gather``) and slicing
(``Slice``) along a non-batch axis, ``Cast`` (integers such as an attention mask to float32) and
``Where`` (a choice by a condition, e.g. a masked fill of attention scores).

Axes are counted with the batch axis (axis 0, which no layer here touches; negative axes count
from the end), as in Keras.
"""

from typing import Any

import numpy as np

from .. import activations, fields
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from .base import Layer, layer

#: ONNX's ``INT64_MIN``: the ``ends`` of a slice that runs backwards past index 0
_BEFORE_START = -(1 << 63)


def _label(layer_: Layer) -> str:
    kind = type(layer_).__name__
    return f"{kind} '{layer_.name}'" if layer_.name else kind


def _nonzero_axis(_: object, attribute: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (axis 0 is the batch), got {fields.show(value)}", field=attribute.name
        )


def _axis_field(default: Any = -1, doc: str = "") -> Any:
    return fields.field(default, validator=_nonzero_axis, doc=doc, accepts="a non-zero integer")


def resolve_axis(layer_: Layer, axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` (batch included, negative from the end) as a positive axis of a rank-``rank``
    batch; a ``ShapeError`` naming the layer unless it is a non-batch axis."""
    ax = axis + rank if axis < 0 else axis
    if not 1 <= ax < rank:
        raise ShapeError(
            f"{_label(layer_)} {what} {axis} does not fit an input of rank {rank} (batch axis included): expected an "
            f"axis in [1, {rank - 1}] or [-{rank - 1}, -1]",
            field=what,
        )
    return ax


def _padded(shape: tuple, rank: int) -> tuple:
    """``shape`` with leading ones up to ``rank`` axes."""
    return (1,) * (rank - len(shape)) + tuple(shape)


def _summed(g: np.ndarray, view: tuple, shape: tuple) -> np.ndarray:
    """``g`` (the batch axis, then ``len(view)`` axes) summed over the axes where ``view`` has a
    broadcast 1, reshaped to the batch and ``shape``."""
    axes = tuple(i + 1 for i, (a, b) in enumerate(zip(view, g.shape[1:])) if a == 1 and b != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.ascontiguousarray(g.reshape(g.shape[0], *shape))


# -- MatMul -----------------------------------------------------------------------------------------
@layer("MatMul", aliases=("Matmul",))
class MatMul(Layer):
    """The matrix product of two activations, ``a @ b`` per sample, as ``torch.matmul``: ``a`` is
    ``(N, ..., m, k)``, ``b`` is ``(N, ..., k, n)``, the output ``(N, ..., m, n)``; the axes
    before the last two (per sample) broadcast as in NumPy (a sample with fewer axes gets leading
    ones; the batch axis is never broadcast). Attention writes ``scores = q @ k^T`` and
    ``weights @ v`` with it. ``transpose_b`` uses ``b``'s last two axes swapped (``(..., n, k)``).

    >>> import numpy as np
    >>> from regnet.layers import MatMul
    >>> mm = MatMul()
    >>> mm.setup([(2, 3), (3, 1)], np.random.default_rng(0))
    (2, 1)
    >>> mm([np.ones((1, 2, 3), np.float32), np.arange(3, dtype=np.float32).reshape(1, 3, 1)])
    array([[[3.],
            [3.]]], dtype=float32)
    """

    transpose_b: bool = fields.boolean(False, doc="multiply by b with its last two axes swapped (a @ b^T)")

    n_inputs = None
    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_input_shape = [(2, 3), (3, 4)]
    test_cases = [
        {"config": {}, "input_shape": [(2, 4, 3), (2, 3, 5)]},
        {"config": {}, "input_shape": [(2, 1, 4, 3), (3, 3, 2)]},
        {"config": {"transpose_b": True}, "input_shape": [(2, 4, 3), (2, 5, 3)]},
    ]

    def build(self, input_shape, rng):
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise ShapeError(f"{_label(self)} takes exactly two inputs [a, b]", field="inputs")
        a, b = (tuple(s) for s in input_shape)
        if len(a) < 2 or len(b) < 2:
            raise ShapeError(
                f"{_label(self)} multiplies matrices: each input needs rank 3 or more (batch axis included), got "
                f"{shape_text(a)} and {shape_text(b)}",
                field="inputs",
            )
        bk, bn = (b[-1], b[-2]) if self.transpose_b else (b[-2], b[-1])
        if a[-1] != bk:
            raise ShapeError(
                f"{_label(self)}: a {shape_text(a)} has {a[-1]} columns but b {shape_text(b)} has {bk} rows"
                + (" (transpose_b)" if self.transpose_b else ""),
                field="inputs",
            )
        try:
            lead = tuple(int(d) for d in np.broadcast_shapes(a[:-2], b[:-2]))
        except ValueError:
            raise ShapeError(
                f"{_label(self)}: the leading axes of {shape_text(a)} and {shape_text(b)} do not broadcast",
                field="inputs",
            ) from None
        rank = len(lead) + 2
        self._views = (_padded(a, rank), _padded(b, rank))
        return (*lead, a[-2], bn)

    def _operands(self, xs):
        a, b = (x if x.ndim == len(v) + 1 else x.reshape(x.shape[0], *v) for x, v in zip(xs, self._views))
        return a, (np.swapaxes(b, -1, -2) if self.transpose_b else b)

    def forward(self, xs, training=False):
        a, b = self._operands(xs)
        self.cache.ab = (a, b)
        return np.matmul(a, b)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        a, b = self.cache.ab
        da = np.matmul(grad, np.swapaxes(b, -1, -2))
        db = np.matmul(np.swapaxes(a, -1, -2), grad)
        if self.transpose_b:
            db = np.swapaxes(db, -1, -2)
        va, vb = self._views
        return [_summed(da, va, self.input_shape[0]), _summed(db, vb, self.input_shape[1])]

    def to_onnx(self, ctx, inputs):
        """``MatMul`` (ONNX broadcasts from the last axis with the batch: the sample with fewer
        axes gets them after the batch axis first); ``transpose_b`` as a ``Transpose`` of b."""
        rank = len(self.output_shape or ()) + 1
        names = []
        for name, shape in zip(inputs, self.input_shape):
            missing = rank - 1 - len(shape)
            if missing:
                name = ctx.node("Unsqueeze", [name, ctx.constant(np.arange(1, missing + 1), "axes")])
            names.append(name)
        if self.transpose_b:
            names[1] = ctx.node("Transpose", [names[1]], perm=[*range(rank - 2), rank - 1, rank - 2])
        return ctx.node("MatMul", names)


# -- Softmax ----------------------------------------------------------------------------------------
@layer("Softmax")
class Softmax(Layer):
    """The softmax over ``axis`` as a layer (Keras's ``Softmax(axis=-1)``, PyTorch's
    ``nn.Softmax(dim)``): the values along the axis become probabilities that sum to 1.

    >>> import numpy as np
    >>> from regnet.layers import Softmax
    >>> soft = Softmax(axis=1)
    >>> soft.setup((2, 2), np.random.default_rng(0))
    (2, 2)
    >>> soft(np.log(np.array([[[1.0, 1.0], [3.0, 1.0]]], np.float32)))
    array([[[0.25, 0.5 ],
            [0.75, 0.5 ]]], dtype=float32)
    """

    axis: int = _axis_field(-1, doc="the axis the probabilities sum to 1 over (batch included; -1: the last)")

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_input_shape = (3, 4)
    test_cases = [{"config": {"axis": 1}, "input_shape": (3, 2, 2)}, {"config": {"axis": -2}, "input_shape": (4, 3)}]

    def build(self, input_shape, rng):
        self._ax = resolve_axis(self, self.axis, len(input_shape) + 1)
        return tuple(input_shape)

    def forward(self, x, training=False):
        y = activations.softmax(x, self._ax)
        self.cache.y = y
        return y

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        y = self.cache.y
        return y * (grad - np.sum(grad * y, axis=self._ax, keepdims=True))

    def to_onnx(self, ctx, inputs):
        return ctx.node("Softmax", inputs[:1], axis=int(self._ax))


# -- Gather -----------------------------------------------------------------------------------------
def _indices(_: object, attribute: Any, value: Any) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    ok = is_int(value) or (isinstance(value, list) and len(value) >= 1 and all(map(is_int, value)))
    if not ok:
        raise ConfigError(
            f"expected an integer or a non-empty list of integers, got {fields.show(value)}", field=attribute.name
        )


@layer("Gather", aliases=("Take", "IndexSelect"))
class Gather(Layer):
    """Take the entries at constant ``indices`` along a non-batch ``axis`` (NumPy's ``take``,
    PyTorch's ``index_select`` and ``select``): a list of indices keeps the axis (its length
    becomes the number of indices; indices may repeat), one integer drops it, as BERT's and ViT's
    ``x[:, 0]`` (the first token). Negative indices count from the end.

    >>> import numpy as np
    >>> from regnet.layers import Gather
    >>> first = Gather(indices=0, axis=1)
    >>> first.setup((3, 2), np.random.default_rng(0))
    (2,)
    >>> first(np.arange(6, dtype=np.float32).reshape(1, 3, 2))
    array([[0., 1.]], dtype=float32)
    """

    indices: int | list = fields.field(
        doc="the index (drops the axis) or list of indices (keeps it) taken along the axis",
        accepts="an integer or a non-empty list of integers",
        validator=_indices,
        converter=lambda v: list(v) if isinstance(v, tuple) else v,
    )
    axis: int = _axis_field(1, doc="the axis taken along (batch included; 1: the first axis of a sample)")

    #: not config fields: how the conformance kit tests this layer
    test_config = {"indices": 0}
    test_input_shape = (3, 4)
    test_cases = [
        {"config": {"indices": [2, 0, 2], "axis": -1}, "input_shape": (2, 3)},
        {"config": {"indices": -1, "axis": 2}, "input_shape": (2, 3, 2)},
    ]

    def build(self, input_shape, rng):
        ax = resolve_axis(self, self.axis, len(input_shape) + 1)
        n = input_shape[ax - 1]
        idx = [self.indices] if isinstance(self.indices, int) else self.indices
        bad = [i for i in idx if not -n <= i < n]
        if bad:
            raise ShapeError(
                f"{_label(self)} index {bad[0]} is outside axis {self.axis} of length {n} (input "
                f"{shape_text(input_shape)})",
                field="indices",
            )
        self._ax = ax
        self._idx = int(self.indices) % n if isinstance(self.indices, int) else np.array([i % n for i in idx])
        shape = list(input_shape)
        if isinstance(self.indices, int):
            del shape[ax - 1]
        else:
            shape[ax - 1] = len(idx)
        if not shape:
            raise ShapeError(f"{_label(self)} would leave a sample with no axis", field="indices")
        return tuple(shape)

    def forward(self, x, training=False):
        return np.take(x, self._idx, axis=self._ax)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = np.zeros((grad.shape[0], *self.input_shape), grad.dtype)
        where: tuple[Any, ...] = (slice(None),) * self._ax
        if isinstance(self._idx, int):
            dx[(*where, self._idx)] = grad
        else:
            np.add.at(dx, (*where, self._idx), grad)  # repeated indices add up
        return dx

    def to_onnx(self, ctx, inputs):
        idx = np.int64(self._idx) if isinstance(self._idx, int) else self._idx.astype(np.int64)
        return ctx.node("Gather", [inputs[0], ctx.constant(idx, "indices")], axis=int(self._ax))


# -- Slice ------------------------------------------------------------------------------------------
def _optional_int(_: object, attribute: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"expected an integer or null, got {fields.show(value)}", field=attribute.name)


def _step(_: object, attribute: Any, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(f"expected a non-zero integer, got {fields.show(value)}", field=attribute.name)


@layer("Slice", aliases=("Narrow",))
class Slice(Layer):
    """``x[..., start:stop:step, ...]`` along a non-batch ``axis``, as Python slices (null: from the
    start or to the end; negative values count from the end; a negative step runs backwards);
    the axis keeps its place. PyTorch's ``narrow`` and ``x[:, a:b]``.

    >>> import numpy as np
    >>> from regnet.layers import Slice
    >>> part = Slice(axis=-1, start=1, stop=None, step=2)
    >>> part.setup((2, 5), np.random.default_rng(0))
    (2, 2)
    >>> part(np.arange(10, dtype=np.float32).reshape(1, 2, 5))
    array([[[1., 3.],
            [6., 8.]]], dtype=float32)
    """

    axis: int = _axis_field(1, doc="the axis sliced (batch included; 1: the first axis of a sample)")
    start: int | None = fields.field(
        None, doc="the first index kept (null: from the start)", accepts="an integer or null", validator=_optional_int
    )
    stop: int | None = fields.field(
        None,
        doc="the index the slice stops before (null: to the end)",
        accepts="an integer or null",
        validator=_optional_int,
    )
    step: int = fields.field(1, doc="the stride (negative: backwards)", accepts="a non-zero integer", validator=_step)

    #: not config fields: how the conformance kit tests this layer
    test_config = {"start": 1}
    test_input_shape = (4, 3)
    test_cases = [
        {"config": {"axis": -1, "start": 0, "stop": -1, "step": 2}, "input_shape": (2, 5)},
        {"config": {"axis": 2, "step": -1}, "input_shape": (2, 3, 2)},
    ]

    def build(self, input_shape, rng):
        ax = resolve_axis(self, self.axis, len(input_shape) + 1)
        n = input_shape[ax - 1]
        self._ax = ax
        start, stop, step = slice(self.start, self.stop, self.step).indices(n)
        length = len(range(start, stop, step))
        self._slice = slice(start, stop if stop >= 0 else None, step)  # -1 after indices(): past index 0
        if length == 0:
            raise ShapeError(
                f"{_label(self)} [{self.start}:{self.stop}:{self.step}] of axis {self.axis} (length {n}) is empty",
                field="stop",
            )
        shape = list(input_shape)
        shape[ax - 1] = length
        return tuple(shape)

    def _index(self):
        return (slice(None),) * self._ax + (self._slice,)

    def forward(self, x, training=False):
        return x[self._index()]

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = np.zeros((grad.shape[0], *self.input_shape), grad.dtype)
        dx[self._index()] = grad
        return dx

    def to_onnx(self, ctx, inputs):
        start, stop, step = self._slice.start, self._slice.stop, self._slice.step
        if stop is None:  # a backward slice through index 0
            stop = _BEFORE_START
        values = {"starts": [start], "ends": [stop], "axes": [self._ax], "steps": [step]}
        names = [ctx.constant(np.array(v, np.int64), k) for k, v in values.items()]
        return ctx.node("Slice", [inputs[0], *names])


# -- Cast -------------------------------------------------------------------------------------------
@layer("Cast")
class Cast(Layer):
    """Integer (or boolean) values as float32 numbers, e.g. an ``int64`` ``attention_mask`` model
    input used in arithmetic (BERT's additive mask ``(1 - mask) * min``); float inputs pass
    through as float32. The values are numbers, not ids: there is no gradient with respect to
    integer inputs (``backward`` returns zeros), a float input's gradient passes through.
    ``dtype`` is the only target: float32, regnet's activation type.

    >>> import numpy as np
    >>> from regnet.layers import Cast
    >>> cast = Cast()
    >>> cast.setup((3,), np.random.default_rng(0))
    (3,)
    >>> cast(np.array([[1, 0, 2]]))
    array([[1., 0., 2.]], dtype=float32)
    """

    dtype: str = fields.choice("float32", "float32", doc="the dtype of the output (float32)")

    integer_inputs = True  # reads an int64 model input (an attention mask)
    fresh_output = True
    #: not config fields: the conformance kit feeds integers
    test_input_shape = (4,)
    test_input_dtype = "int64"
    test_input_range = (0, 5)
    test_cases = [{"config": {}, "input_shape": (2, 3)}]

    def forward(self, x, training=False):
        x = np.asarray(x)
        self.cache.numbers = x.dtype.kind == "f"
        return np.array(x, np.float32) if x.dtype != np.float32 else x.copy()

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        return grad if self.cache.numbers else np.zeros(grad.shape, grad.dtype)

    def to_onnx(self, ctx, inputs):
        return ctx.node("Cast", inputs[:1], to=1)  # TensorProto.FLOAT


# -- Where ------------------------------------------------------------------------------------------
@layer("Where")
class Where(Layer):
    """``where(condition, x, y)``: ``x`` where the condition is non-zero (true), ``y`` elsewhere;
    the inputs broadcast as in NumPy over the axes of each sample (a sample with fewer axes gets
    leading ones; the batch axis is never broadcast). One branch may be a constant instead of an
    input (``true_value`` or ``false_value``): the inputs are ``[condition, x, y]``, or
    ``[condition, y]`` with ``true_value``, or ``[condition, x]`` with ``false_value``; with both
    the layer takes the condition alone (one input) and makes float32 numbers of it (an additive
    attention mask: ``Where(true_value=0, false_value=-1e9)``). PyTorch's
    ``scores.masked_fill(mask, value)`` is ``Where(true_value=value)`` on ``[mask, scores]``.

    The condition may be an integer (an ``int64`` model input such as an attention mask), a
    boolean or a float array; it gets no gradient (zeros), the branches get the gradient where
    they were chosen.

    >>> import numpy as np
    >>> from regnet.layers import Where
    >>> fill = Where(true_value=-1e9)
    >>> fill.setup([(3,), (2, 3)], np.random.default_rng(0))
    (2, 3)
    >>> fill([np.array([[0, 0, 1]]), np.ones((1, 2, 3), np.float32)])
    array([[[ 1.e+00,  1.e+00, -1.e+09],
            [ 1.e+00,  1.e+00, -1.e+09]]], dtype=float32)
    """

    true_value: float | None = fields.number(
        None, optional=True, doc="the value where the condition holds (null: the input x)"
    )
    false_value: float | None = fields.number(
        None, optional=True, doc="the value where the condition does not hold (null: the input y)"
    )

    n_inputs = None
    integer_inputs = True  # the condition may be an int64 model input (an attention mask)
    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_input_shape = [(2, 3), (2, 3), (2, 3)]
    test_cases = [
        {"config": {"true_value": -5.0}, "input_shape": [(3,), (2, 3)]},
        {"config": {"false_value": 0.5}, "input_shape": [(2, 1), (2, 3)]},
        {"config": {}, "input_shape": [(1, 3), (2, 1), (3,)]},
        {"config": {"true_value": 0.0, "false_value": -5.0}, "input_shape": (2, 3)},
    ]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.true_value is not None and self.false_value is not None:
            self.n_inputs = 1  # type: ignore[misc]  # the condition alone

    def build(self, input_shape, rng):
        want = 1 + (self.true_value is None) + (self.false_value is None)
        if want == 1 and not isinstance(input_shape, list):
            input_shape = [input_shape]
        if not isinstance(input_shape, list) or len(input_shape) != want:
            names = ["condition"] + ["x"] * (self.true_value is None) + ["y"] * (self.false_value is None)
            got = len(input_shape) if isinstance(input_shape, list) else 1
            raise ShapeError(
                f"{_label(self)} takes the inputs [{', '.join(names)}] (true_value {self.true_value}, false_value "
                f"{self.false_value}), got {got}",
                field="inputs",
            )
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        try:
            out = tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            raise ShapeError(
                f"{_label(self)} inputs of shapes {', '.join(shape_text(s) for s in shapes)} do not broadcast together",
                field="inputs",
            ) from None
        self._views = [_padded(s, len(out)) for s in shapes]
        return out

    def forward(self, xs, training=False):
        if self.n_inputs == 1:
            xs = [xs]
        xs = [x if x.ndim == len(v) + 1 else x.reshape(x.shape[0], *v) for x, v in zip(xs, self._views)]
        cond = xs[0] != 0
        dtype = np.result_type(*(x.dtype for x in xs[1:])) if len(xs) > 1 else np.dtype(np.float32)
        rest = iter(xs[1:])
        a = np.asarray(self.true_value, dtype) if self.true_value is not None else next(rest)
        b = np.asarray(self.false_value, dtype) if self.false_value is not None else next(rest)
        self.cache.cond = cond
        return np.where(cond, a, b)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        cond = self.cache.cond
        zero = np.zeros((), grad.dtype)
        shapes = self.input_shape if self.n_inputs is None else [self.input_shape]
        grads = [np.zeros((grad.shape[0], *shapes[0]), grad.dtype)]
        k = 1
        for value, chosen in ((self.true_value, True), (self.false_value, False)):
            if value is None:
                g = np.where(cond, grad, zero) if chosen else np.where(cond, zero, grad)
                grads.append(_summed(np.broadcast_to(g, grad.shape), self._views[k], self.input_shape[k]))
                k += 1
        return grads if self.n_inputs is None else grads[0]

    def to_onnx(self, ctx, inputs):
        """``Where(Cast(condition, bool), x, y)``, a constant branch as an initializer; inputs of
        fewer axes get them after the batch axis (ONNX broadcasts the batch axis too)."""
        rank = len(self.output_shape or ()) + 1
        names = [ctx.node("Cast", [inputs[0]], to=9), *inputs[1:]]  # TensorProto.BOOL: non-zero is true
        for i, shape in enumerate(self.input_shape if self.n_inputs is None else [self.input_shape]):
            missing = rank - 1 - len(shape)
            if missing:
                names[i] = ctx.node("Unsqueeze", [names[i], ctx.constant(np.arange(1, missing + 1), "axes")])
        rest = iter(names[1:])
        x = ctx.constant(np.float32(self.true_value), "true_value") if self.true_value is not None else next(rest)
        y = ctx.constant(np.float32(self.false_value), "false_value") if self.false_value is not None else next(rest)
        return ctx.node("Where", [names[0], x, y])


# -- CausalMask -------------------------------------------------------------------------------------
@layer("CausalMask", aliases=("TriangularMask",))
class CausalMask(Layer):
    """A causal attention mask on the last two axes ``(..., L, L)`` (queries, keys): ``x`` where the
    key does not come after the query (``key <= query``, the lower triangle), ``value``
    elsewhere, as a decoder (GPT-2) masks its attention scores, or (``value=-1e9``, on zeros) an
    additive mask. An input whose second-to-last axis has length 1 (one row for every query, such
    as a padding mask ``(N, 1, 1, L)``) broadcasts to ``(..., L, L)``. The gradient passes where
    ``x`` was kept.

    >>> import numpy as np
    >>> from regnet.layers import CausalMask
    >>> causal = CausalMask(value=-9.0)
    >>> causal.setup((3, 3), np.random.default_rng(0))
    (3, 3)
    >>> causal(np.ones((1, 3, 3), np.float32))
    array([[[ 1., -9., -9.],
            [ 1.,  1., -9.],
            [ 1.,  1.,  1.]]], dtype=float32)
    """

    value: float = fields.number(0.0, doc="the value above the diagonal (keys after the query)")

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_input_shape = (2, 4, 4)
    test_cases = [
        {"config": {"value": -5.0}, "input_shape": (3, 3)},
        {"config": {"value": 0.5}, "input_shape": (2, 1, 4)},
    ]

    def build(self, input_shape, rng):
        shape = tuple(int(d) for d in input_shape)
        if len(shape) < 2 or shape[-2] not in (1, shape[-1]):
            raise ShapeError(
                f"{_label(self)} takes inputs (N, ..., L, L) or (N, ..., 1, L) (queries, keys), got "
                f"{shape_text(shape)}",
                field="input_shape",
            )
        n = shape[-1]
        self._keep = np.tril(np.ones((n, n), bool))
        return (*shape[:-2], n, n)

    def forward(self, x, training=False):
        return np.where(self._keep, x, np.asarray(self.value, x.dtype)).astype(x.dtype, copy=False)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        g = np.where(self._keep, grad, np.zeros((), grad.dtype))
        if self.input_shape[-2] == 1 and g.shape[-2] != 1:
            g = g.sum(axis=-2, keepdims=True)
        return np.ascontiguousarray(g)

    def to_onnx(self, ctx, inputs):
        """``Where(lower triangle, x, value)``; the constant condition broadcasts a row to ``(L, L)``."""
        keep = ctx.constant(self._keep, "causal")
        return ctx.node("Where", [keep, inputs[0], ctx.constant(np.float32(self.value), "value")])


# -- ReplaceNaN -------------------------------------------------------------------------------------
@layer("ReplaceNaN", aliases=("NanToNum",))
class ReplaceNaN(Layer):
    """``x`` with its NaN entries replaced by ``value``, as attention guards its softmax (a row of
    scores all masked to ``-inf`` gives NaN; PyTorch's scaled dot-product attention writes
    ``where(isnan(p), 0, p)``). The gradient passes where ``x`` was kept.

    >>> import numpy as np
    >>> from regnet.layers import ReplaceNaN
    >>> guard = ReplaceNaN()
    >>> guard.setup((3,), np.random.default_rng(0))
    (3,)
    >>> guard(np.array([[0.5, np.nan, 1.0]], np.float32))
    array([[0.5, 0. , 1. ]], dtype=float32)
    """

    value: float = fields.number(0.0, doc="the value that replaces NaN")

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_input_shape = (2, 3)
    test_cases = [{"config": {"value": -1.0}, "input_shape": (4,)}]

    def forward(self, x, training=False):
        nan = np.isnan(x)
        self.cache.nan = nan
        return np.where(nan, np.asarray(self.value, x.dtype), x)

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        return np.where(self.cache.nan, np.zeros((), grad.dtype), grad)

    def to_onnx(self, ctx, inputs):
        nan = ctx.node("IsNaN", inputs[:1])
        return ctx.node("Where", [nan, ctx.constant(np.float32(self.value), "value"), inputs[0]])


__all__ = ["MatMul", "Softmax", "Gather", "Slice", "Cast", "Where", "CausalMask", "ReplaceNaN", "resolve_axis"]

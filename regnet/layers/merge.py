"""Layers with several inputs: the element-wise merges (Add, Subtract, Multiply, Maximum, Minimum,
Average; NumPy broadcasting over the axes of each sample) and Concatenate."""

from typing import ClassVar

import attrs
import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from .base import Layer, layer


@attrs.define(slots=False, eq=False)
class _Merge(Layer):
    n_inputs = None

    def _check_many(self, shapes):
        if not isinstance(shapes, list) or len(shapes) < 2:
            raise ShapeError(f"{_label(self)} needs at least two inputs", field="inputs")


def _label(layer):
    return type(layer).__name__ if layer.name is None else f"{type(layer).__name__} '{layer.name}'"


def _shapes(shapes):
    return ", ".join(shape_text(tuple(s)) for s in shapes)


@attrs.define(slots=False, eq=False)
class _Elementwise(_Merge):
    """An element-wise merge whose inputs broadcast as in NumPy over the axes of each sample (the
    batch axis is never broadcast): ``(C, 1, 1)`` against ``(C, H, W)`` for squeeze-and-excitation,
    ``(W,)`` against ``(C, H, W)`` (the missing leading axes count as 1). The gradient of a
    broadcast input is summed over the axes it was broadcast along."""

    n_exact: ClassVar[int | None] = None

    def build(self, input_shape, rng):
        self._check_many(input_shape)
        if self.n_exact is not None and len(input_shape) != self.n_exact:
            raise ShapeError(
                f"{_label(self)} takes exactly {self.n_exact} inputs, got {len(input_shape)}: {_shapes(input_shape)}",
                field="inputs",
            )
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        try:
            out = tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            raise ShapeError(
                f"{_label(self)} inputs of shapes {_shapes(shapes)} do not broadcast together (each axis of a "
                f"sample must be equal or 1 in every input; the batch axis is not counted)",
                field="inputs",
            ) from None
        self._same = all(s == out for s in shapes)
        # for each input: its shape with the batch axis and leading ones, and the axes it is summed over
        self._views, self._sums = [], []
        for s in shapes:
            padded = (1,) * (len(out) - len(s)) + s
            self._views.append(padded)
            self._sums.append(tuple(i + 1 for i, (a, b) in enumerate(zip(padded, out)) if a == 1 and b != 1))
        return out

    def _inputs(self, xs):
        """The inputs with leading ones where a sample has fewer axes than the output."""
        if self._same:
            return xs
        return [x if x.ndim == len(v) + 1 else x.reshape(x.shape[0], *v) for x, v in zip(xs, self._views)]

    def _reduce(self, grads):
        """Each input's gradient (output-shaped) summed over the axes that input was broadcast along."""
        if self._same:
            return grads
        out = []
        for g, axes, shape in zip(grads, self._sums, self.input_shape):
            if axes:
                g = g.sum(axis=axes, keepdims=True)
            out.append(np.ascontiguousarray(g.reshape(g.shape[0], *shape)))
        return out


@layer("Add")
class Add(_Elementwise):
    """Element-wise sum of two or more inputs (residual connections); the inputs broadcast as in
    NumPy over the axes of each sample.

    >>> import numpy as np
    >>> from regnet.layers import Add
    >>> add = Add()
    >>> add.setup([(2, 3), (2, 1)], np.random.default_rng(0))
    (2, 3)
    >>> add([np.ones((1, 2, 3), np.float32), np.array([[[1.0], [2.0]]], np.float32)])
    array([[[2., 2., 2.],
            [3., 3., 3.]]], dtype=float32)
    """

    activation: str | dict = fields.activation()

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": [(2, 3), (2, 3)]},
        {"config": {"activation": "tanh"}, "input_shape": [(3, 2, 2), (3, 1, 1), (2,)]},
    ]

    def forward(self, xs, training=False):
        xs = self._inputs(xs)
        if self._same:
            out = np.add(xs[0], xs[1])  # a new array in the inputs' memory order
        else:
            out = np.zeros((xs[0].shape[0], *self.output_shape), xs[0].dtype)
            out += xs[0]
            out += xs[1]
        for x in xs[2:]:
            out += x
        return out

    def backward(self, grad, *, need_input_grad=True):
        if self._same:
            return [grad] * len(self.input_shape)
        return self._reduce([grad] * len(self.input_shape))


@layer("Subtract")
class Subtract(_Elementwise):
    """The first input minus the second (exactly two inputs, broadcast as in NumPy over the axes of
    each sample).

    >>> import numpy as np
    >>> from regnet.layers import Subtract
    >>> sub = Subtract()
    >>> sub.setup([(3,), (1,)], np.random.default_rng(0))
    (3,)
    >>> sub([np.array([[1.0, 2.0, 3.0]], np.float32), np.array([[1.0]], np.float32)])
    array([[0., 1., 2.]], dtype=float32)
    """

    activation: str | dict = fields.activation()

    n_exact = 2
    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": [(2, 3), (2, 3)]},
        {"config": {}, "input_shape": [(3, 1, 1), (3, 2, 2)]},
    ]

    def forward(self, xs, training=False):
        a, b = self._inputs(xs)
        return np.subtract(a, b)

    def backward(self, grad, *, need_input_grad=True):
        return self._reduce([grad, -grad])


@layer("Multiply")
class Multiply(_Elementwise):
    """Element-wise product of two or more inputs (gates, squeeze-and-excitation), broadcast as in
    NumPy over the axes of each sample.

    >>> import numpy as np
    >>> from regnet.layers import Multiply
    >>> mul = Multiply()
    >>> mul.setup([(2, 2, 2), (2, 1, 1)], np.random.default_rng(0))
    (2, 2, 2)
    >>> mul([np.ones((1, 2, 2, 2), np.float32), np.array([2.0, 3.0], np.float32).reshape(1, 2, 1, 1)])[0, :, 0, 0]
    array([2., 3.], dtype=float32)
    """

    activation: str | dict = fields.activation()

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": [(2, 3), (2, 3)]},
        {"config": {}, "input_shape": [(3, 2, 2), (3, 1, 1)]},
        {"config": {"activation": "relu"}, "input_shape": [(2, 3), (3,), (2, 1)]},
    ]

    def forward(self, xs, training=False):
        xs = self._inputs(xs)
        self.cache.xs = xs
        out = np.multiply(xs[0], xs[1])
        for x in xs[2:]:
            out = out * x
        return out

    def backward(self, grad, *, need_input_grad=True):
        xs = self.cache.xs
        grads = []
        for i in range(len(xs)):
            g = grad
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g)
        return self._reduce(grads)


@attrs.define(slots=False, eq=False)
class _Extremum(_Elementwise):
    """The element-wise maximum or minimum; the gradient goes to the first input holding it."""

    _pick: ClassVar = staticmethod(np.maximum)

    fresh_output = True

    def forward(self, xs, training=False):
        xs = self._inputs(xs)
        out = type(self)._pick(xs[0], xs[1])
        for x in xs[2:]:
            out = type(self)._pick(out, x)
        self.cache.xs, self.cache.out = xs, out
        return out

    def backward(self, grad, *, need_input_grad=True):
        xs, out = self.cache.xs, self.cache.out
        free = np.ones(out.shape, bool)
        grads = []
        for x in xs:
            hit = (x == out) & free
            free &= ~hit
            grads.append(grad * hit)
        return self._reduce(grads)


@layer("Maximum")
class Maximum(_Extremum):
    """Element-wise maximum of two or more inputs, broadcast as in NumPy over the axes of each
    sample; the gradient goes to the first input holding the maximum.

    >>> import numpy as np
    >>> from regnet.layers import Maximum
    >>> top = Maximum()
    >>> top.setup([(3,), (3,)], np.random.default_rng(0))
    (3,)
    >>> top([np.array([[1.0, 5.0, 3.0]], np.float32), np.array([[2.0, 2.0, 2.0]], np.float32)])
    array([[2., 5., 3.]], dtype=float32)
    """

    activation: str | dict = fields.activation()

    _pick = staticmethod(np.maximum)
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": [(2, 3), (2, 3)]},
        {"config": {}, "input_shape": [(3, 2, 2), (3, 1, 1), (2,)]},
    ]


@layer("Minimum")
class Minimum(_Extremum):
    """Element-wise minimum of two or more inputs, broadcast as in NumPy over the axes of each
    sample; the gradient goes to the first input holding the minimum.

    >>> import numpy as np
    >>> from regnet.layers import Minimum
    >>> low = Minimum()
    >>> low.setup([(3,), (1,)], np.random.default_rng(0))
    (3,)
    >>> low([np.array([[1.0, 5.0, 3.0]], np.float32), np.array([[2.0]], np.float32)])
    array([[1., 2., 2.]], dtype=float32)
    """

    activation: str | dict = fields.activation()

    _pick = staticmethod(np.minimum)
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": [(2, 3), (2, 3)]},
        {"config": {}, "input_shape": [(2, 1, 3), (2, 2, 1)]},
    ]


@layer("Average")
class Average(_Elementwise):
    """Element-wise mean of two or more inputs, broadcast as in NumPy over the axes of each sample.

    >>> import numpy as np
    >>> from regnet.layers import Average
    >>> mean = Average()
    >>> mean.setup([(2,), (2,)], np.random.default_rng(0))
    (2,)
    >>> mean([np.array([[1.0, 2.0]], np.float32), np.array([[3.0, 6.0]], np.float32)])
    array([[2., 4.]], dtype=float32)
    """

    activation: str | dict = fields.activation()

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": [(2, 3), (2, 3), (2, 3)]},
        {"config": {}, "input_shape": [(3, 2, 2), (3, 1, 1)]},
    ]

    def forward(self, xs, training=False):
        xs = self._inputs(xs)
        out = np.add(xs[0], xs[1])
        for x in xs[2:]:
            out = out + x
        out *= np.asarray(1.0 / len(xs), out.dtype)
        return out

    def backward(self, grad, *, need_input_grad=True):
        g = grad * np.asarray(1.0 / len(self.input_shape), grad.dtype)
        return self._reduce([g] * len(self.input_shape))


def _axis(_, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (axis 0 is the batch), got {fields.show(value)}", field=attribute.name
        )


@layer("Concatenate")
class Concatenate(_Merge):
    """Join inputs along ``axis`` (counted with the batch axis; 1 = features/channels).

    >>> import numpy as np
    >>> cat = Concatenate()
    >>> cat.setup([(2, 4, 4), (3, 4, 4)], np.random.default_rng(0))
    (5, 4, 4)
    """

    axis: int = fields.field(
        1,
        validator=_axis,
        doc="the axis to join along, counted with the batch axis (1: channels); negative from the end",
        accepts="a non-zero integer",
    )
    activation: str | dict = fields.activation()

    def build(self, input_shape, rng):
        self._check_many(input_shape)
        rank = len(input_shape[0]) + 1
        ax = self.axis if self.axis > 0 else rank + self.axis
        if not 1 <= ax < rank or any(len(s) + 1 != rank for s in input_shape):
            raise ShapeError(
                f"Concatenate axis {self.axis} does not fit inputs {[list(s) for s in input_shape]}", field="axis"
            )
        others = {tuple(d for i, d in enumerate(s) if i != ax - 1) for s in input_shape}
        if len(others) != 1:
            raise ShapeError(
                f"Concatenate needs inputs equal except on axis {self.axis}, got {[list(s) for s in input_shape]}",
                field="inputs",
            )
        self._ax = ax
        out = list(input_shape[0])
        out[ax - 1] = sum(s[ax - 1] for s in input_shape)
        self._splits = np.cumsum([s[ax - 1] for s in input_shape])[:-1]
        return tuple(out)

    fresh_output = True

    def forward(self, xs, training=False):
        return np.concatenate(xs, axis=self._ax)

    def backward(self, grad, *, need_input_grad=True):
        return np.split(grad, self._splits, axis=self._ax)

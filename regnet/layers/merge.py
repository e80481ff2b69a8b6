"""Layers with several inputs: Add and Concatenate."""

import attrs
import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from .base import Layer, layer


@attrs.define(slots=False, eq=False)
class _Merge(Layer):
    n_inputs = None

    def _check_many(self, shapes):
        if not isinstance(shapes, list) or len(shapes) < 2:
            raise ShapeError(f"{type(self).__name__} needs at least two inputs", field="inputs")


@layer("Add")
class Add(_Merge):
    """Element-wise sum of inputs of one shape (residual connections)."""

    activation: str | dict = fields.activation()

    def build(self, input_shape, rng):
        self._check_many(input_shape)
        first = tuple(input_shape[0])
        for s in input_shape[1:]:
            if tuple(s) != first:
                raise ShapeError(f"Add needs inputs of one shape, got {[list(s) for s in input_shape]}", field="inputs")
        return first

    fresh_output = True

    def forward(self, xs, training=False):
        out = np.add(xs[0], xs[1])  # a new array in the inputs' memory order
        for x in xs[2:]:
            out += x
        return out

    def backward(self, grad, *, need_input_grad=True):
        return [grad] * len(self.input_shape)


def _axis(_, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (axis 0 is the batch), got {fields.show(value)}", field=attribute.name
        )


@layer("Concatenate")
class Concatenate(_Merge):
    """Join inputs along ``axis`` (counted with the batch axis; 1 = features/channels)."""

    axis: int = attrs.field(default=1, validator=_axis)
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

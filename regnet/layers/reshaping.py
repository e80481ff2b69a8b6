"""Layers that move or select axes: Permute and SliceChannels."""

import numpy as np

from .. import fields
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from .base import Layer, layer


def _check_dims(_, attribute, value):
    ok = (
        isinstance(value, tuple)
        and len(value) >= 1
        and all(isinstance(a, int) and not isinstance(a, bool) for a in value)
        and sorted(value) == list(range(1, len(value) + 1))
    )
    if not ok:
        raise ConfigError(
            f"expected a permutation of 1..n (the axes of a sample, 1-based; the batch axis stays), got "
            f"{fields.show(value)}",
            field=attribute.name,
        )


@layer("Permute")
class Permute(Layer):
    """Reorder the axes of each sample: output axis ``i`` is input axis ``dims[i - 1]`` (1-based, the
    batch axis excluded, as in Keras). ``dims=[2, 3, 1]`` makes an NCHW batch channels-last
    (NHWC) and ``dims=[3, 1, 2]`` makes it NCHW again (PyTorch's ``permute(0, 2, 3, 1)``).

    >>> import numpy as np
    >>> from regnet.layers import Permute
    >>> permute = Permute(dims=[2, 1])
    >>> permute.setup((2, 3), np.random.default_rng(0))
    (3, 2)
    >>> permute(np.arange(6, dtype=np.float32).reshape(1, 2, 3))
    array([[[0., 3.],
            [1., 4.],
            [2., 5.]]], dtype=float32)
    """

    dims: tuple = fields.field(
        doc="the input axis of each output axis (1-based, the batch axis excluded)",
        accepts="a permutation of 1..n",
        validator=_check_dims,
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
    )

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"dims": [2, 1]}, "input_shape": (3, 4)},
        {"config": {"dims": [2, 3, 1]}, "input_shape": (2, 3, 4)},
        {"config": {"dims": [1, 3, 2, 4]}, "input_shape": (2, 2, 3, 2)},
    ]

    def build(self, input_shape, rng):
        if len(self.dims) != len(input_shape):
            raise ShapeError(
                f"Permute dims {list(self.dims)} do not fit input {shape_text(tuple(input_shape))}: a sample has "
                f"{len(input_shape)} axes",
                field="dims",
            )
        self._perm = (0, *self.dims)
        self._inverse = tuple(int(i) for i in np.argsort(self._perm))
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, x, training=False):
        return x.transpose(self._perm)

    def backward(self, grad, *, need_input_grad=True):
        return grad.transpose(self._inverse) if need_input_grad else None


@layer("SliceChannels")
class SliceChannels(Layer):
    """Channels ``start`` to ``stop`` (``stop`` excluded) of axis 1: half of a channel split (ShuffleNet
    writes ``x.chunk(2, dim=1)``; ONNX ``Split`` and ``Slice`` on the channels import as these).

    >>> import numpy as np
    >>> from regnet.layers import SliceChannels
    >>> part = SliceChannels(start=1, stop=3)
    >>> part.setup((4,), np.random.default_rng(0))
    (2,)
    >>> part(np.array([[0.0, 1.0, 2.0, 3.0]], np.float32))
    array([[1., 2.]], dtype=float32)
    """

    start: int = fields.integer(min=0, doc="the first channel kept")
    stop: int = fields.integer(min=1, doc="one past the last channel kept")

    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"start": 0, "stop": 2}, "input_shape": (4, 2, 2)},
        {"config": {"start": 1, "stop": 4}, "input_shape": (5,)},
    ]

    def build(self, input_shape, rng):
        c = input_shape[0]
        if not self.start < self.stop <= c:
            raise ShapeError(
                f"SliceChannels [{self.start}, {self.stop}) does not fit input {shape_text(tuple(input_shape))} "
                f"({c} channels; start < stop <= channels)",
                field="stop",
            )
        return (self.stop - self.start, *input_shape[1:])

    def forward(self, x, training=False):
        return x[:, self.start : self.stop]

    def backward(self, grad, *, need_input_grad=True):
        if not need_input_grad:
            return None
        dx = np.zeros((grad.shape[0], *self.input_shape), grad.dtype)
        dx[:, self.start : self.stop] = grad
        return dx

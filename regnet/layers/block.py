"""Composite layers: a registered layer type defined as a small graph of other layers.

A block declares its fields like any layer and writes ``graph(x)``: the layers it is made of,
called on the symbolic input ``x`` (the functional API). Its backward pass is the inner graph's,
so a block needs no hand-written gradient::

    >>> import numpy as np
    >>> from regnet import fields
    >>> from regnet import Block
    >>> from regnet.layers import Add, Dense, layer
    >>> @layer("ExampleResidual")
    ... class ExampleResidual(Block):
    ...     '''``x + Dense(Dense(x))``: a residual pair of dense layers.'''
    ...     hidden: int = fields.integer(8, min=1, doc="the width of the inner layer")
    ...
    ...     def graph(self, x):
    ...         h = Dense(self.hidden, activation="relu")(x)
    ...         return Add()([x, Dense(x.shape[-1])(h)])
    >>> block = ExampleResidual(hidden=4)
    >>> block.setup((3,), np.random.default_rng(0))
    (3,)
    >>> sorted(block.params)
    ['dense_1.bias', 'dense_1.kernel', 'dense_2.bias', 'dense_2.kernel']
    >>> block(np.ones((2, 3), np.float32)).shape
    (2, 3)
    >>> block.get_config()
    {'type': 'ExampleResidual', 'hidden': 4}
    >>> from regnet import registry; registry.layers.unregister("ExampleResidual")

In a spec the block is one entry (``{"type": "ExampleResidual", "hidden": 4}``); the file stores
its fields and its weights, named ``<inner layer>.<tensor>`` (``dense_1.kernel``) under the
block's name. The inner layers are built from the block's fields each time, so a saved file needs
the same registered block to load, like any other layer type.
"""

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from .. import functional
from ..model import Model
from .base import Layer, Shape

#: joins an inner layer's name and its tensor's name (``/`` separates layer and tensor in files)
SEPARATOR = "."


class _Inner(MutableMapping):
    """A block's ``params``, ``grads`` or ``buffers``: a live view of its inner layers' tensors
    under ``<layer>.<tensor>`` names; assigning an entry assigns it in the inner layer (the
    conformance kit's float64 copies, a loaded file's arrays reach the layer that computes)."""

    def __init__(self, stores: dict[str, tuple[dict, str]]) -> None:
        self._stores = stores

    def __getitem__(self, key: str) -> np.ndarray:
        store, inner = self._stores[key]
        return store[inner]

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        store, inner = self._stores[key]
        store[inner] = value

    def __delitem__(self, key: str) -> None:
        raise TypeError("a block's tensors are its inner layers': they cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._stores)

    def __len__(self) -> int:
        return len(self._stores)


class Block(Layer):
    """Base class of composite layers: subclasses write ``graph(x)`` (see the module docstring)."""

    def graph(self, x: Any) -> Any:
        """The block's output, from layers called on the symbolic input ``x`` (``x.shape`` is a
        sample's shape without the batch axis)."""
        raise NotImplementedError

    def build(self, input_shape: Any, rng: np.random.Generator) -> Shape:
        x = functional.Input(input_shape)
        # the model draws the inner weights from the block's generator: one seed, one model
        self.inner = Model(x, self.graph(x), seed=rng)
        self.batch_independent = all(layer.batch_independent for layer in self.inner.layers)
        views = []
        for kind in ("params", "grads", "buffers"):
            stores = {}
            for node in self.inner.nodes:
                store = getattr(node.layer, kind)
                for key in store:
                    stores[f"{node.name}{SEPARATOR}{key}"] = (store, key)
            views.append(_Inner(stores))
        self.params, self.grads, self.buffers = views  # type: ignore[assignment]
        return tuple(self.inner.output_shape)

    def forward(self, x: Any, training: bool = False) -> Any:
        return self.inner.forward(x, training=training)

    def backward(self, grad: np.ndarray, *, need_input_grad: bool = True) -> Any:
        return self.inner.backward(grad, input_grad=need_input_grad)

    def release(self) -> None:
        super().release()
        inner = self.__dict__.get("inner")
        if inner is not None:
            inner.release()

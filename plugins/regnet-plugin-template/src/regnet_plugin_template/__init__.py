"""A regnet plugin with one layer, its ONNX import handler and one pretrained zoo model, all
declared as entry points in pyproject.toml."""

from pathlib import Path

import numpy as np

from regnet import fields
from regnet.layers import Layer, layer
from regnet.layers.base import require_rank

#: the ``regnet.zoo`` entry point: a zoo manifest shipped as package data (its paths are relative to it)
ZOO_MANIFEST = Path(__file__).resolve().parent / "zoo" / "manifest.json"


# the entry point (pyproject.toml) registers the class, naming this distribution: register=False
@layer("ScaleShift", register=False)
class ScaleShift(Layer):
    """``y = x * scale + shift`` with one learned ``scale`` and ``shift`` per feature (axis 1:
    the units of a dense input, the channels of an NCHW image)."""

    test_cases = [  # what the conformance kit runs (input shapes exclude the batch axis)
        {"config": {}, "input_shape": (5,)},
        {"config": {"activation": "relu", "initial_scale": 0.5}, "input_shape": (3, 4, 4)},
    ]

    initial_scale: float = fields.number(1.0)
    activation: str | dict = fields.activation()

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (1, 3))
        c = input_shape[0]
        self.add_weight("scale", (c,), {"type": "constant", "value": self.initial_scale}, rng)
        self.add_weight("shift", (c,), "zeros", rng)
        self._axes = (0,) if len(input_shape) == 1 else (0, 2, 3)
        self._bshape = (1, c) if len(input_shape) == 1 else (1, c, 1, 1)
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.cache.x = x  # what backward needs (release() drops it)
        return x * self.params["scale"].reshape(self._bshape) + self.params["shift"].reshape(self._bshape)

    def to_onnx(self, ctx, inputs):
        """Optional: how ``regnet.onnx.export`` writes this layer with ONNX operators. ``ctx.weight``
        adds a weight as an initializer (here reshaped to broadcast over axis 1), ``ctx.node`` adds
        a node and returns its output's name. The exporter adds the activation afterwards."""
        shape = self._bshape[1:]
        scale = ctx.weight("scale", self.params["scale"].reshape(shape))
        shift = ctx.weight("shift", self.params["shift"].reshape(shape))
        return ctx.node("Add", [ctx.node("Mul", [inputs[0], scale]), shift])

    def backward(self, grad, *, need_input_grad=True):
        self.grads["scale"][...] = np.sum(grad * self.cache.x, axis=self._axes)
        self.grads["shift"][...] = np.sum(grad, axis=self._axes)
        return grad * self.params["scale"].reshape(self._bshape)


def scale_shift_from_onnx(st, node, attrs):
    """Optional: the ONNX import handler of the operator ``com.example::ScaleShift(X, scale, shift)``
    (entry point in the group ``regnet.onnx_import``), for files that other tools write with an
    operator of their own domain. A ``ScaleShift`` that ``regnet.onnx.export`` wrote needs no
    handler: ``to_onnx`` above is enough for it to come back as itself.

    ``st`` is the import state: ``st.tensor``/``st.const`` read the node's inputs, ``st.fail``
    makes the error naming the node, ``st.add`` makes the layer. Return
    ``regnet.onnx.NOT_MINE`` instead (before calling ``st.add``) to leave a node to regnet."""
    x = st.tensor(node, 0)
    if len(x.shape) not in (1, 3):
        raise st.fail(node, f"ScaleShift takes (C,) or (C, H, W) samples, not {list(x.shape)}")
    c = x.shape[0]
    weights = {"scale": st.const(node, 1, "scale"), "shift": st.const(node, 2, "shift")}
    for name, value in weights.items():
        if value.size != c:
            raise st.fail(node, f"{name} has {value.size} values for {c} channels")
        weights[name] = value.reshape(c)
    st.add(node, "ScaleShift", {}, [x], x.shape, weights, weight_inputs=(1, 2))

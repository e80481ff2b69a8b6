"""Squareplus: a smooth ReLU written with a square root only (So, "Squareplus: A Softplus-Like
Algebraic Rectifier", 2021)."""

import numpy as np

from regnet import fields
from regnet.activations import Activation, activation


@activation("squareplus", register=False)  # the entry point registers it
class Squareplus(Activation):
    """``y = (x + sqrt(x**2 + b)) / 2``; ``dy/dx = (1 + x / sqrt(x**2 + b)) / 2``. ``b = 0`` is
    ReLU; larger ``b`` rounds the corner at 0 (``b = 4`` is close to softplus)."""

    b: float = fields.number(4.0, min=0.0, min_open=True, doc="how round the corner at 0 is (ReLU as b -> 0)")

    def forward(self, x):
        b = np.asarray(self.b, x.dtype)
        return 0.5 * (x + np.sqrt(x * x + b))

    def backward(self, grad, x, y):
        b = np.asarray(self.b, x.dtype)
        return grad * (0.5 * (1 + x / np.sqrt(x * x + b)))

    def to_onnx(self, ctx, x):
        """ONNX lowering (``regnet.onnx.export``): ``0.5 * (x + Sqrt(x*x + b))``."""
        square = ctx.node("Mul", [x, x])
        root = ctx.node("Sqrt", [ctx.node("Add", [square, ctx.constant(np.float32(self.b), "squareplus_b")])])
        return ctx.node("Mul", [ctx.node("Add", [x, root]), ctx.constant(np.float32(0.5), "squareplus_half")])

"""Smooth self-gated activations: swish (SiLU when ``beta = 1``) and mish."""

import numpy as np

from regnet import fields
from regnet.activations import Activation, activation, sigmoid


@activation("swish", register=False)  # the entry point registers it
class Swish(Activation):
    """``y = x * sigmoid(beta * x)``; ``dy/dx = s + beta * x * s * (1 - s)`` with ``s = sigmoid(beta x)``."""

    beta: float = fields.number(1.0, min=0.0)

    def forward(self, x):
        return x * sigmoid(x * np.asarray(self.beta, x.dtype))

    def backward(self, grad, x, y):
        b = np.asarray(self.beta, x.dtype)
        s = sigmoid(x * b)
        return grad * (s + b * x * s * (1 - s))

    def to_onnx(self, ctx, x):
        """ONNX lowering (``regnet.onnx.export``): ``Mul(x, Sigmoid(beta * x))``."""
        z = x if self.beta == 1.0 else ctx.node("Mul", [x, ctx.constant(np.float32(self.beta), "swish_beta")])
        return ctx.node("Mul", [x, ctx.node("Sigmoid", [z])])


@activation("mish", register=False)
class Mish(Activation):
    """``y = x * tanh(softplus(x))``; ``dy/dx = t + x * (1 - t**2) * sigmoid(x)`` with ``t = tanh(softplus(x))``."""

    def forward(self, x):
        return x * np.tanh(np.logaddexp(np.zeros((), x.dtype), x))

    def backward(self, grad, x, y):
        t = np.tanh(np.logaddexp(np.zeros((), x.dtype), x))
        return grad * (t + x * (1 - t * t) * sigmoid(x))

    def to_onnx(self, ctx, x):
        """ONNX lowering (``regnet.onnx.export``): ``Mul(x, Tanh(Softplus(x)))``."""
        return ctx.node("Mul", [x, ctx.node("Tanh", [ctx.node("Softplus", [x])])])

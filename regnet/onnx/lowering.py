"""How each built-in layer and activation is written with standard ONNX operators.

Each entry takes ``(ctx, component, ...)``: a layer's lowering receives the list of its input
tensor names and returns its output (before the layer's activation, which the exporter adds);
an activation's lowering receives one tensor name and returns one.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import activations as act
from ..layers import (
    Activation,
    Add,
    AvgPool2D,
    BatchNorm,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPool2D,
    Reshape,
)
from ..ops import windows
from .builder import LoweringContext
from .sequence import LAYERS as SEQUENCE_LAYERS

#: the opset from which ONNX has ``Gelu`` (with ``approximate="tanh"``)
GELU_OPSET = 20


def onnx_pads(layer: Any, kernel: tuple, stride: tuple) -> list[int]:
    """ONNX ``pads`` (``[top, left, bottom, right]``) of a sliding-window layer, Keras 'same' included."""
    _, h, w = layer.input_shape
    top, bottom = windows.padding_amounts(layer.padding, h, kernel[0], stride[0])
    left, right = windows.padding_amounts(layer.padding, w, kernel[1], stride[1])
    return [top, left, bottom, right]


def dense(ctx: LoweringContext, layer: Dense, inputs: list[str]) -> str:
    kernel = ctx.weight("kernel")
    bias = [ctx.weight("bias")] if layer.use_bias else []
    if len(layer.input_shape) == 1:  # (N, in) @ (in, units): Gemm takes the kernel as it is
        return ctx.node("Gemm", [inputs[0], kernel, *bias])
    y = ctx.node("MatMul", [inputs[0], kernel])  # over the last axis of a higher-rank input
    return ctx.node("Add", [y, *bias]) if bias else y


def conv2d(ctx: LoweringContext, layer: Conv2D, inputs: list[str]) -> str:
    bias = [ctx.weight("bias")] if layer.use_bias else []
    return ctx.node(
        "Conv",
        [inputs[0], ctx.weight("kernel"), *bias],
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        pads=onnx_pads(layer, layer.kernel_size, layer.strides),
    )


def max_pool2d(ctx: LoweringContext, layer: MaxPool2D, inputs: list[str]) -> str:
    return ctx.node(
        "MaxPool",
        inputs[:1],
        kernel_shape=list(layer.pool_size),
        strides=list(layer.stride),
        pads=onnx_pads(layer, layer.pool_size, layer.stride),
    )


def avg_pool2d(ctx: LoweringContext, layer: AvgPool2D, inputs: list[str]) -> str:
    return ctx.node(
        "AveragePool",
        inputs[:1],
        kernel_shape=list(layer.pool_size),
        strides=list(layer.stride),
        pads=onnx_pads(layer, layer.pool_size, layer.stride),
        count_include_pad=0,  # regnet averages over the real inputs of each window only
    )


def global_average_pooling2d(ctx: LoweringContext, layer: GlobalAveragePooling2D, inputs: list[str]) -> str:
    y = ctx.node("GlobalAveragePool", inputs[:1])  # (N, C, 1, 1)
    return y if layer.keepdims else ctx.node("Flatten", [y], axis=1)


def batch_norm(ctx: LoweringContext, layer: BatchNorm, inputs: list[str]) -> str:
    c = layer.input_shape[0]
    scale = ctx.weight("gamma") if layer.scale else ctx.constant(np.ones(c, np.float32), "gamma")
    shift = ctx.weight("beta") if layer.center else ctx.constant(np.zeros(c, np.float32), "beta")
    return ctx.node(
        "BatchNormalization",
        [inputs[0], scale, shift, ctx.weight("moving_mean"), ctx.weight("moving_variance")],
        epsilon=float(layer.epsilon),
        momentum=float(layer.momentum),  # ONNX's momentum has regnet's (Keras's) meaning
    )


def flatten(ctx: LoweringContext, layer: Flatten, inputs: list[str]) -> str:
    return ctx.node("Flatten", inputs[:1], axis=1)


def reshape(ctx: LoweringContext, layer: Reshape, inputs: list[str]) -> str:
    shape = ctx.constant(np.array([0, *layer.target_shape], np.int64), "shape")  # 0: keep the batch size
    return ctx.node("Reshape", [inputs[0], shape])


def dropout(ctx: LoweringContext, layer: Dropout, inputs: list[str]) -> str:
    # Dropout in inference mode is the identity; the rate is kept so the file says what it was
    return ctx.node("Dropout", [inputs[0], ctx.constant(np.float32(layer.rate), "ratio")])


def activation_layer(ctx: LoweringContext, layer: Activation, inputs: list[str]) -> str:
    return inputs[0]  # the exporter adds the activation itself


def add(ctx: LoweringContext, layer: Add, inputs: list[str]) -> str:
    return ctx.node("Add" if len(inputs) == 2 else "Sum", inputs)


def concatenate(ctx: LoweringContext, layer: Concatenate, inputs: list[str]) -> str:
    return ctx.node("Concat", inputs, axis=int(layer.axis))


LAYERS: dict[type, Callable[..., str]] = {
    Dense: dense,
    Conv2D: conv2d,
    MaxPool2D: max_pool2d,
    AvgPool2D: avg_pool2d,
    GlobalAveragePooling2D: global_average_pooling2d,
    BatchNorm: batch_norm,
    Flatten: flatten,
    Reshape: reshape,
    Dropout: dropout,
    Activation: activation_layer,
    Add: add,
    Concatenate: concatenate,
}
LAYERS.update(SEQUENCE_LAYERS)  # SimpleRNN, LSTM, GRU, Bidirectional, MultiHeadAttention (``sequence``)


def gelu(ctx: LoweringContext, fn: act.GELU, x: str) -> str:
    """regnet's GELU is the tanh approximation: ``Gelu(approximate="tanh")`` from opset 20, else
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` written out."""
    if ctx.opset >= GELU_OPSET:
        return ctx.node("Gelu", [x], approximate="tanh")
    cube = ctx.node("Mul", [ctx.node("Mul", [x, x]), x])
    inner = ctx.node("Add", [x, ctx.node("Mul", [cube, ctx.constant(np.float32(0.044715), "gelu_k")])])
    t = ctx.node("Tanh", [ctx.node("Mul", [inner, ctx.constant(np.float32(math.sqrt(2 / math.pi)), "gelu_c")])])
    half_x = ctx.node("Mul", [x, ctx.constant(np.float32(0.5), "gelu_half")])
    return ctx.node("Mul", [half_x, ctx.node("Add", [t, ctx.constant(np.float32(1.0), "gelu_one")])])


ACTIVATIONS: dict[type, Callable[..., str]] = {
    act.ReLU: lambda ctx, fn, x: ctx.node("Relu", [x]),
    act.LeakyReLU: lambda ctx, fn, x: ctx.node("LeakyRelu", [x], alpha=float(fn.alpha)),
    act.ELU: lambda ctx, fn, x: ctx.node("Elu", [x], alpha=float(fn.alpha)),
    act.SELU: lambda ctx, fn, x: ctx.node("Selu", [x], alpha=fn.ALPHA, gamma=fn.SCALE),
    act.Tanh: lambda ctx, fn, x: ctx.node("Tanh", [x]),
    act.Sigmoid: lambda ctx, fn, x: ctx.node("Sigmoid", [x]),
    act.Softmax: lambda ctx, fn, x: ctx.node("Softmax", [x], axis=int(fn.axis)),
    act.GELU: gelu,
    act.Linear: lambda ctx, fn, x: x,
}

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
    Average,
    AvgPool2D,
    BatchNorm,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GroupNormalization,
    LayerNormalization,
    Maximum,
    MaxPool2D,
    Minimum,
    Multiply,
    Permute,
    PReLU,
    Rescaling,
    Reshape,
    SliceChannels,
    SpatialDropout2D,
    Subtract,
)
from ..ops import windows
from .builder import LoweringContext

#: the opset from which ONNX has ``Gelu`` (with ``approximate="tanh"``)
GELU_OPSET = 20
#: the opset from which ONNX has ``LayerNormalization``
LAYER_NORM_OPSET = 17
#: the opset from which ``ReduceMean`` takes its axes as an input
REDUCE_AXES_INPUT_OPSET = 18


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


def dropout(ctx: LoweringContext, layer: Dropout | SpatialDropout2D, inputs: list[str]) -> str:
    # Dropout in inference mode is the identity; the rate is kept so the file says what it was
    return ctx.node("Dropout", [inputs[0], ctx.constant(np.float32(layer.rate), "ratio")])


def activation_layer(ctx: LoweringContext, layer: Activation, inputs: list[str]) -> str:
    return inputs[0]  # the exporter adds the activation itself


def _reduce_mean(ctx: LoweringContext, x: str, axes: list[int]) -> str:
    if ctx.opset >= REDUCE_AXES_INPUT_OPSET:
        return ctx.node("ReduceMean", [x, ctx.constant(np.array(axes, np.int64), "axes")], keepdims=1)
    return ctx.node("ReduceMean", [x], axes=list(axes), keepdims=1)


def _normalized(ctx: LoweringContext, x: str, axes: list[int], epsilon: float) -> str:
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes``, written out with ReduceMean."""
    d = ctx.node("Sub", [x, _reduce_mean(ctx, x, axes)])
    var = _reduce_mean(ctx, ctx.node("Mul", [d, d]), axes)
    std = ctx.node("Sqrt", [ctx.node("Add", [var, ctx.constant(np.float32(epsilon), "epsilon")])])
    return ctx.node("Div", [d, std])


def _affine(ctx: LoweringContext, layer: Any, y: str) -> str:
    """``y * gamma + beta`` with the weights shaped to broadcast over a sample."""
    shape = layer._bshape[1:]
    if layer.scale:
        y = ctx.node("Mul", [y, ctx.weight("gamma", layer.params["gamma"].reshape(shape))])
    if layer.center:
        y = ctx.node("Add", [y, ctx.weight("beta", layer.params["beta"].reshape(shape))])
    return y


def layer_normalization(ctx: LoweringContext, layer: LayerNormalization, inputs: list[str]) -> str:
    """``LayerNormalization`` from opset 17 when the axes are the last ones, else written out."""
    axes, rank = list(layer._axes), len(layer.input_shape) + 1
    if ctx.opset < LAYER_NORM_OPSET or axes != list(range(axes[0], rank)):
        return _affine(ctx, layer, _normalized(ctx, inputs[0], axes, layer.epsilon))
    shape = layer._pshape
    scale = ctx.weight("gamma") if layer.scale else ctx.constant(np.ones(shape, np.float32), "gamma")
    bias = [ctx.weight("beta")] if layer.center else []
    return ctx.node("LayerNormalization", [inputs[0], scale, *bias], axis=axes[0], epsilon=float(layer.epsilon))


def group_normalization(ctx: LoweringContext, layer: GroupNormalization, inputs: list[str]) -> str:
    """Channels on axis 1: ``Reshape (N, G, -1) -> InstanceNormalization -> Reshape -> Mul -> Add``
    (what PyTorch writes for ``GroupNorm``; any opset); another axis: written out."""
    back = ctx.constant(np.array([0, *layer.input_shape], np.int64), "shape")
    if layer._ax == 1:
        groups = int(layer.groups)
        grouped = ctx.node("Reshape", [inputs[0], ctx.constant(np.array([0, groups, -1], np.int64), "groups")])
        ones, zeros = np.ones(groups, np.float32), np.zeros(groups, np.float32)
        y = ctx.node(
            "InstanceNormalization",
            [grouped, ctx.constant(ones, "group_scale"), ctx.constant(zeros, "group_bias")],
            epsilon=float(layer.epsilon),
        )
    else:
        grouped = ctx.node("Reshape", [inputs[0], ctx.constant(np.array([0, *layer._grouped], np.int64), "groups")])
        y = _normalized(ctx, grouped, list(layer._axes), layer.epsilon)
    return _affine(ctx, layer, ctx.node("Reshape", [y, back]))


def prelu(ctx: LoweringContext, layer: PReLU, inputs: list[str]) -> str:
    return ctx.node("PRelu", [inputs[0], ctx.weight("alpha")])


def rescaling(ctx: LoweringContext, layer: Rescaling, inputs: list[str]) -> str:
    y = ctx.node("Mul", [inputs[0], ctx.constant(np.float32(layer.scale), "scale")])
    return ctx.node("Add", [y, ctx.constant(np.float32(layer.offset), "offset")]) if layer.offset else y


def permute(ctx: LoweringContext, layer: Permute, inputs: list[str]) -> str:
    return ctx.node("Transpose", inputs[:1], perm=[0, *layer.dims])


def slice_channels(ctx: LoweringContext, layer: SliceChannels, inputs: list[str]) -> str:
    starts, ends = ctx.constant(np.array([layer.start]), "starts"), ctx.constant(np.array([layer.stop]), "ends")
    return ctx.node("Slice", [inputs[0], starts, ends, ctx.constant(np.array([1]), "axes")])


def _broadcast_inputs(ctx: LoweringContext, layer: Any, inputs: list[str]) -> list[str]:
    """The inputs with axes of length 1 after the batch where a sample has fewer axes than the
    output, so that ONNX's broadcasting (from the last axis, the batch included) is regnet's."""
    rank = len(layer.output_shape)
    out = []
    for name, shape in zip(inputs, layer.input_shape):
        missing = rank - len(shape)
        if missing:
            name = ctx.node("Unsqueeze", [name, ctx.constant(np.arange(1, missing + 1), "axes")])
        out.append(name)
    return out


def add(ctx: LoweringContext, layer: Add, inputs: list[str]) -> str:
    inputs = _broadcast_inputs(ctx, layer, inputs)
    return ctx.node("Add" if len(inputs) == 2 else "Sum", inputs)


def subtract(ctx: LoweringContext, layer: Subtract, inputs: list[str]) -> str:
    return ctx.node("Sub", _broadcast_inputs(ctx, layer, inputs))


def multiply(ctx: LoweringContext, layer: Multiply, inputs: list[str]) -> str:
    inputs = _broadcast_inputs(ctx, layer, inputs)
    y = inputs[0]
    for x in inputs[1:]:
        y = ctx.node("Mul", [y, x])
    return y


def _variadic(op: str) -> Callable[..., str]:
    def lower(ctx: LoweringContext, layer: Any, inputs: list[str]) -> str:
        return ctx.node(op, _broadcast_inputs(ctx, layer, inputs))

    return lower


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
    SpatialDropout2D: dropout,
    Activation: activation_layer,
    Add: add,
    Concatenate: concatenate,
    LayerNormalization: layer_normalization,
    GroupNormalization: group_normalization,
    PReLU: prelu,
    Rescaling: rescaling,
    Permute: permute,
    SliceChannels: slice_channels,
    Subtract: subtract,
    Multiply: multiply,
    Maximum: _variadic("Max"),
    Minimum: _variadic("Min"),
    Average: _variadic("Mean"),
}


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

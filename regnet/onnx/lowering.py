"""How each built-in layer and activation is written with standard ONNX operators.

Each entry takes ``(ctx, component, ...)``: a layer's lowering receives the list of its input
tensor names and returns its output (before the layer's activation, which the exporter adds);
an activation's lowering receives one tensor name and returns one.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

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
    embedding,
)
from ..layers import conv1d as seq
from ..ops import windows
from .builder import LoweringContext

#: the opset from which ONNX has ``Gelu`` (exact, or ``approximate="tanh"``)
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


# -- sequences: (N, C, L) windows, embeddings -------------------------------------------------------
def embedding_lookup(ctx: LoweringContext, layer: embedding.Embedding, inputs: list[str]) -> str:
    """``Gather`` of the table's rows; the ids are cast to int64 first (the model input is float32
    today; the Cast is a no-op on int64 ids)."""
    ids = ctx.node("Cast", inputs[:1], to=onnx.TensorProto.INT64)
    return ctx.node("Gather", [ctx.weight("embeddings"), ids], axis=0)


def position_embedding(ctx: LoweringContext, layer: embedding.PositionEmbedding, inputs: list[str]) -> str:
    """``x + table[:L]``: the rows the model reads, as one initializer (``<layer>/embeddings``)."""
    length = layer.input_shape[0]
    return ctx.node("Add", [inputs[0], ctx.weight("embeddings", layer.params["embeddings"][:length])])


def _pads_1d(layer: Any, k: int, stride: int, dilation: int = 1) -> list[int]:
    """ONNX ``pads`` (``[before, after]``) of a 1-D window; 'causal' pads before only."""
    span = dilation * (k - 1) + 1
    if layer.padding == "causal":
        return [span - 1, 0]
    return list(windows.padding_amounts(layer.padding, layer.input_shape[1], span, stride))


def conv1d(ctx: LoweringContext, layer: seq.Conv1D, inputs: list[str]) -> str:
    bias = [ctx.weight("bias")] if layer.use_bias else []
    return ctx.node(
        "Conv",
        [inputs[0], ctx.weight("kernel"), *bias],
        kernel_shape=[layer.kernel_size],
        strides=[layer.strides],
        dilations=[layer.dilation_rate],
        group=layer.groups,
        pads=_pads_1d(layer, layer.kernel_size, layer.strides, layer.dilation_rate),
    )


def max_pooling1d(ctx: LoweringContext, layer: seq.MaxPooling1D, inputs: list[str]) -> str:
    return ctx.node(
        "MaxPool",
        inputs[:1],
        kernel_shape=[layer.pool_size],
        strides=[layer.stride],
        pads=_pads_1d(layer, layer.pool_size, layer.stride),
    )


def average_pooling1d(ctx: LoweringContext, layer: seq.AveragePooling1D, inputs: list[str]) -> str:
    return ctx.node(
        "AveragePool",
        inputs[:1],
        kernel_shape=[layer.pool_size],
        strides=[layer.stride],
        pads=_pads_1d(layer, layer.pool_size, layer.stride),
        count_include_pad=0,
    )


def _global_pool_1d(op: str) -> Callable[..., str]:
    """(N, C, L): the global pool and, without ``keepdims``, a Flatten; (N, L, C)
    (``channels_last``): ReduceMean / ReduceMax over axis 1."""
    reduce = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}[op]

    def lower(ctx: LoweringContext, layer: Any, inputs: list[str]) -> str:
        if layer.data_format == "channels_last":
            keep = int(layer.keepdims)
            if ctx.opset >= 18:  # the axes are an input from opset 18
                return ctx.node(reduce, [inputs[0], ctx.constant(np.array([1], np.int64), "axes")], keepdims=keep)
            return ctx.node(reduce, inputs[:1], axes=[1], keepdims=keep)
        y = ctx.node(op, inputs[:1])  # (N, C, 1)
        return y if layer.keepdims else ctx.node("Flatten", [y], axis=1)

    return lower


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
    embedding.Embedding: embedding_lookup,
    embedding.PositionEmbedding: position_embedding,
    seq.Conv1D: conv1d,
    seq.MaxPooling1D: max_pooling1d,
    seq.AveragePooling1D: average_pooling1d,
    seq.GlobalAveragePooling1D: _global_pool_1d("GlobalAveragePool"),
    seq.GlobalMaxPooling1D: _global_pool_1d("GlobalMaxPool"),
}


def gelu(ctx: LoweringContext, fn: act.GELU, x: str) -> str:
    """``Gelu`` from opset 20 (``approximate="tanh"`` for the tanh form), else written out: the
    exact form as ``x * 0.5 * (1 + erf(x / sqrt 2))`` (the pattern PyTorch writes), the tanh form
    as ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    if ctx.opset >= GELU_OPSET:
        return ctx.node("Gelu", [x], approximate="tanh") if fn.approximate else ctx.node("Gelu", [x])
    if not fn.approximate:
        scaled = ctx.node("Div", [x, ctx.constant(np.float32(math.sqrt(2)), "gelu_sqrt2")])
        one_plus = ctx.node("Add", [ctx.node("Erf", [scaled]), ctx.constant(np.float32(1.0), "gelu_one")])
        return ctx.node("Mul", [ctx.node("Mul", [x, one_plus]), ctx.constant(np.float32(0.5), "gelu_half")])
    cube = ctx.node("Mul", [ctx.node("Mul", [x, x]), x])
    inner = ctx.node("Add", [x, ctx.node("Mul", [cube, ctx.constant(np.float32(0.044715), "gelu_k")])])
    t = ctx.node("Tanh", [ctx.node("Mul", [inner, ctx.constant(np.float32(math.sqrt(2 / math.pi)), "gelu_c")])])
    half_x = ctx.node("Mul", [x, ctx.constant(np.float32(0.5), "gelu_half")])
    return ctx.node("Mul", [half_x, ctx.node("Add", [t, ctx.constant(np.float32(1.0), "gelu_one")])])


#: the opset from which ONNX has ``HardSwish``
HARD_SWISH_OPSET = 14
#: the opset from which ONNX has ``Mish``
MISH_OPSET = 18


def relu6(ctx: LoweringContext, fn: act.ReLU6, x: str) -> str:
    """``Clip(x, 0, 6)``, as PyTorch writes ``ReLU6``."""
    return ctx.node("Clip", [x, ctx.constant(np.float32(0.0), "relu6_min"), ctx.constant(np.float32(6.0), "relu6_max")])


def hard_sigmoid(ctx: LoweringContext, x: str) -> str:
    return ctx.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)


def hard_swish(ctx: LoweringContext, fn: act.HardSwish, x: str) -> str:
    """``HardSwish`` from opset 14, else ``Mul(x, HardSigmoid(x))``."""
    if ctx.opset >= HARD_SWISH_OPSET:
        return ctx.node("HardSwish", [x])
    return ctx.node("Mul", [x, hard_sigmoid(ctx, x)])


def mish(ctx: LoweringContext, fn: act.Mish, x: str) -> str:
    """``Mish`` from opset 18, else ``Mul(x, Tanh(Softplus(x)))`` (as PyTorch writes it)."""
    if ctx.opset >= MISH_OPSET:
        return ctx.node("Mish", [x])
    return ctx.node("Mul", [x, ctx.node("Tanh", [ctx.node("Softplus", [x])])])


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
    act.ReLU6: relu6,
    act.SiLU: lambda ctx, fn, x: ctx.node("Mul", [x, ctx.node("Sigmoid", [x])]),
    act.HardSigmoid: lambda ctx, fn, x: hard_sigmoid(ctx, x),
    act.HardSwish: hard_swish,
    act.Mish: mish,
    act.Softplus: lambda ctx, fn, x: ctx.node("Softplus", [x]),
    act.Softsign: lambda ctx, fn, x: ctx.node("Softsign", [x]),
    act.Exponential: lambda ctx, fn, x: ctx.node("Exp", [x]),
    act.LogSoftmax: lambda ctx, fn, x: ctx.node("LogSoftmax", [x], axis=int(fn.axis)),
}

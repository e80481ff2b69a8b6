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
    Average,
    AvgPool2D,
    BatchNorm,
    Concatenate,
    Conv2D,
    Conv2DTranspose,
    Cropping2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
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
    SeparableConv2D,
    SliceChannels,
    SpatialDropout2D,
    Subtract,
    UpSampling2D,
    ZeroPadding2D,
    embedding,
)
from ..layers import conv1d as seq
from ..ops import grouped, windows
from .builder import LoweringContext
from .sequence import LAYERS as SEQUENCE_LAYERS

#: the opset from which ONNX has ``Gelu`` (exact, or ``approximate="tanh"``)
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


def _conv(ctx: LoweringContext, layer: Any, x: str, kernel: str, bias: list[str], groups: int) -> str:
    """A ``Conv`` node of ``layer``'s window (dilated, grouped: attributes written only when not 1)."""
    extra: dict[str, Any] = {}
    dilation = tuple(getattr(layer, "dilation_rate", (1, 1)))
    if dilation != (1, 1):
        extra["dilations"] = list(dilation)
    if groups != 1:
        extra["group"] = groups
    keff = grouped.effective(layer.kernel_size, dilation)
    return ctx.node(
        "Conv",
        [x, kernel, *bias],
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        pads=onnx_pads(layer, keff, layer.strides),
        **extra,
    )


def conv2d(ctx: LoweringContext, layer: Conv2D, inputs: list[str]) -> str:
    bias = [ctx.weight("bias")] if layer.use_bias else []
    return _conv(ctx, layer, inputs[0], ctx.weight("kernel"), bias, layer.groups)


def depthwise_conv2d(ctx: LoweringContext, layer: DepthwiseConv2D, inputs: list[str]) -> str:
    bias = [ctx.weight("bias")] if layer.use_bias else []
    return _conv(ctx, layer, inputs[0], ctx.weight("kernel"), bias, layer.input_shape[0])


def separable_conv2d(ctx: LoweringContext, layer: SeparableConv2D, inputs: list[str]) -> str:
    depthwise = _conv(ctx, layer, inputs[0], ctx.weight("depthwise_kernel"), [], layer.input_shape[0])
    bias = [ctx.weight("bias")] if layer.use_bias else []
    return ctx.node("Conv", [depthwise, ctx.weight("pointwise_kernel"), *bias], kernel_shape=[1, 1])


def conv2d_transpose(ctx: LoweringContext, layer: Conv2DTranspose, inputs: list[str]) -> str:
    bias = [ctx.weight("bias")] if layer.use_bias else []
    _, h, w = layer.input_shape
    top, bottom, left, right = layer._pads
    keff = grouped.effective(layer.kernel_size, layer.dilation_rate)
    # ONNX: out = stride * (in - 1) + output_padding + keff - pad_begin - pad_end
    extra = [
        out + before + after - (s * (n - 1) + k)
        for out, before, after, s, n, k in zip(
            (layer.output_shape or ())[1:], (top, left), (bottom, right), layer.strides, (h, w), keff
        )
    ]
    attributes: dict[str, Any] = {"output_padding": extra} if any(extra) else {}
    if tuple(layer.dilation_rate) != (1, 1):
        attributes["dilations"] = list(layer.dilation_rate)
    if layer.groups != 1:
        attributes["group"] = layer.groups
    return ctx.node(
        "ConvTranspose",
        [inputs[0], ctx.weight("kernel"), *bias],
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        pads=[top, left, bottom, right],
        **attributes,
    )


def _pool_pads(layer: Any) -> list[int]:
    """ONNX ``pads`` of a pooling layer, the part of ``ceil_mode`` windows beyond the input and
    its padding included (padding that no maximum takes and no average counts): written so,
    every ONNX version computes PyTorch's ``ceil_mode``, its rule for the last window included."""
    top, bottom, left, right = layer._pads
    return [top, left, bottom, right]


def max_pool2d(ctx: LoweringContext, layer: MaxPool2D, inputs: list[str]) -> str:
    return ctx.node(
        "MaxPool", inputs[:1], kernel_shape=list(layer.pool_size), strides=list(layer.stride), pads=_pool_pads(layer)
    )


def avg_pool2d(ctx: LoweringContext, layer: AvgPool2D, inputs: list[str]) -> str:
    x, pads = inputs[0], _pool_pads(layer)
    explicit = onnx_pads(layer, layer.pool_size, layer.stride)
    include = layer.count_include_pad and any(explicit)
    if include and pads != explicit:
        # counted padding and uncounted ceil_mode overhang: the padding as zeros of a Pad first
        top, left, bottom, right = explicit
        x = ctx.node("Pad", [x, ctx.constant(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "pads")])
        pads = [p - e for p, e in zip(pads, explicit)]
        include = False
    return ctx.node(
        "AveragePool",
        [x],
        kernel_shape=list(layer.pool_size),
        strides=list(layer.stride),
        pads=pads,
        count_include_pad=int(include),  # ONNX's meaning is PyTorch's
    )


def global_max_pooling2d(ctx: LoweringContext, layer: GlobalMaxPooling2D, inputs: list[str]) -> str:
    y = ctx.node("GlobalMaxPool", inputs[:1])  # (N, C, 1, 1)
    return y if layer.keepdims else ctx.node("Flatten", [y], axis=1)


def upsampling2d(ctx: LoweringContext, layer: UpSampling2D, inputs: list[str]) -> str:
    scales = ctx.constant(np.array([1, 1, *layer.size], np.float32), "scales")
    mode: dict[str, Any]
    if layer.interpolation == "bilinear":
        mode = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:
        mode = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    return ctx.node("Resize", [inputs[0], "", scales], **mode)


def zero_padding2d(ctx: LoweringContext, layer: ZeroPadding2D, inputs: list[str]) -> str:
    (top, bottom), (left, right) = layer.padding
    pads = ctx.constant(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), "pads")
    return ctx.node("Pad", [inputs[0], pads], mode="constant")


def cropping2d(ctx: LoweringContext, layer: Cropping2D, inputs: list[str]) -> str:
    (top, bottom), (left, right) = layer.cropping
    _, h, w = layer.input_shape
    starts = ctx.constant(np.array([top, left], np.int64), "starts")
    ends = ctx.constant(np.array([h - bottom, w - right], np.int64), "ends")
    axes = ctx.constant(np.array([2, 3], np.int64), "axes")
    return ctx.node("Slice", [inputs[0], starts, ends, axes])


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


def class_token(ctx: LoweringContext, layer: embedding.ClassToken, inputs: list[str]) -> str:
    """``Concat([Expand(tokens, (N, k, D)), x], axis=1)``: the ``(1, k, D)`` tokens broadcast to
    the batch size read from ``Shape(x)``."""
    tokens = layer.params["tokens"]
    batch = ctx.node(
        "Slice",
        [ctx.node("Shape", inputs[:1]), ctx.constant(np.array([0]), "start"), ctx.constant(np.array([1]), "end")],
    )
    shape = ctx.node("Concat", [batch, ctx.constant(np.array(tokens.shape), "token_shape")], axis=0)
    expanded = ctx.node("Expand", [ctx.weight("tokens", tokens[None]), shape])
    return ctx.node("Concat", [expanded, inputs[0]], axis=1)


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
    DepthwiseConv2D: depthwise_conv2d,
    SeparableConv2D: separable_conv2d,
    Conv2DTranspose: conv2d_transpose,
    MaxPool2D: max_pool2d,
    AvgPool2D: avg_pool2d,
    GlobalAveragePooling2D: global_average_pooling2d,
    GlobalMaxPooling2D: global_max_pooling2d,
    UpSampling2D: upsampling2d,
    ZeroPadding2D: zero_padding2d,
    Cropping2D: cropping2d,
    BatchNorm: batch_norm,
    Flatten: flatten,
    Reshape: reshape,
    Dropout: dropout,
    SpatialDropout2D: dropout,
    Activation: activation_layer,
    Add: add,
    Concatenate: concatenate,
    embedding.Embedding: embedding_lookup,
    embedding.PositionEmbedding: position_embedding,
    embedding.ClassToken: class_token,
    seq.Conv1D: conv1d,
    seq.MaxPooling1D: max_pooling1d,
    seq.AveragePooling1D: average_pooling1d,
    seq.GlobalAveragePooling1D: _global_pool_1d("GlobalAveragePool"),
    seq.GlobalMaxPooling1D: _global_pool_1d("GlobalMaxPool"),
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
LAYERS.update(SEQUENCE_LAYERS)  # SimpleRNN, LSTM, GRU, Bidirectional, MultiHeadAttention (``sequence``)


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

"""ONNX lowerings of the sequence layers: SimpleRNN, LSTM and GRU as ONNX's ``RNN``, ``LSTM`` and
``GRU`` operators (time-major, so with a ``Transpose`` on either side), Bidirectional as one
operator with ``direction="bidirectional"`` (its merge modes other than concat as one
``ReduceSum``/``ReduceProd``/``ReduceMean`` over the direction axis), MultiHeadAttention written out with ``MatMul``,
``Reshape``, ``Transpose`` and ``Softmax``.

Gate orders: regnet's (Keras's) LSTM kernel is ``i, f, c, o``, ONNX's ``W`` is ``i, o, f, c``;
the GRU's ``z, r, h`` is ONNX's own order, its ``reset_after`` form is ``linear_before_reset=1``.
A layer with ``use_mask`` is not exported (ONNX's ``sequence_lens`` describes only padding at
the end, and the model has one input).
"""

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import activations, registry
from ..layers.attention import MASKED_SCORE, MultiHeadAttention
from ..layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from .builder import LoweringContext
from .errors import OnnxExportError

#: regnet activation name -> the name in the activations attribute of ONNX's recurrent operators
RECURRENT_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}
#: ONNX's recurrent operator of each layer type
OPS = {SimpleRNN: "RNN", LSTM: "LSTM", GRU: "GRU"}
#: Keras's LSTM gate blocks i, f, c, o in ONNX's order i, o, f, c
LSTM_TO_ONNX = [0, 3, 1, 2]
#: an end for Slice that reaches past the start of any axis (reversing with step -1)
REVERSE_END = -(2**63) + 1


def _activation_name(ctx: LoweringContext, spec_: Any, field: str) -> str:
    fn = activations.get(spec_)
    name = registry.registered_name(fn)
    cfg = {k: v for k, v in fn.get_config().items() if k != "type"}
    if name not in RECURRENT_ACTIVATIONS or cfg:
        raise OnnxExportError(
            f"{field} {name!r} has no ONNX recurrent form (ONNX's operators take {', '.join(RECURRENT_ACTIVATIONS)})",
            layer=f"'{ctx.name}'",
            field=field,
        )
    return RECURRENT_ACTIVATIONS[name]


def _blocks(a: np.ndarray, order: list[int], units: int) -> np.ndarray:
    """The gate blocks of the last axis of ``a`` in ``order``."""
    return np.concatenate([a[..., g * units : (g + 1) * units] for g in order], axis=-1)


def onnx_weights(layer: Any, weights: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """ONNX's ``W`` ``(G units, D)``, ``R`` ``(G units, units)`` and ``B`` ``(2 G units,)`` (or
    ``None``) of one direction from the layer's weights."""
    u = layer.units
    k, rk = weights["kernel"], weights["recurrent_kernel"]
    bias = weights.get("bias")
    if isinstance(layer, LSTM):
        k, rk = _blocks(k, LSTM_TO_ONNX, u), _blocks(rk, LSTM_TO_ONNX, u)
        bias = None if bias is None else _blocks(bias, LSTM_TO_ONNX, u)
    if bias is not None:
        bias = bias.reshape(-1) if isinstance(layer, GRU) else np.concatenate([bias, np.zeros_like(bias)])
    return k.T, rk.T, bias


def _attributes(ctx: LoweringContext, layer: Any, direction: str) -> dict:
    act = _activation_name(ctx, layer.activation, "activation")
    attributes: dict[str, Any] = {"hidden_size": int(layer.units), "direction": direction}
    if isinstance(layer, SimpleRNN):
        attributes["activations"] = [act] * (2 if direction == "bidirectional" else 1)
        return attributes
    gate = _activation_name(ctx, layer.recurrent_activation, "recurrent_activation")
    per_direction = [gate, act, act] if isinstance(layer, LSTM) else [gate, act]
    attributes["activations"] = per_direction * (2 if direction == "bidirectional" else 1)
    if isinstance(layer, GRU):
        attributes["linear_before_reset"] = 1
    return attributes


def _no_mask(ctx: LoweringContext, layer: Any) -> None:
    if layer.use_mask:
        raise OnnxExportError(
            "a recurrent layer with use_mask is not exported (ONNX's sequence_lens cannot express any mask)",
            layer=f"'{ctx.name}'",
            field="use_mask",
        )


def _run(ctx: LoweringContext, layer: Any, x: str, directions: list[tuple[str, Any]], direction: str):
    """The ONNX operator over ``x`` (N, L, D): ``(Y (L, dirs, N, u), Y_h (dirs, N, u))``."""
    parts = [
        onnx_weights(layer, {k[len(p) :]: v for k, v in ctx.layer.weights.items() if k.startswith(p)})
        for p, _ in directions
    ]
    w = ctx.weight("W", np.stack([p[0] for p in parts]))
    r = ctx.weight("R", np.stack([p[1] for p in parts]))
    b = [ctx.weight("B", np.stack([p[2] for p in parts if p[2] is not None]))] if layer.use_bias else []
    xt = ctx.node("Transpose", [x], perm=[1, 0, 2])  # time-major (L, N, D)
    outputs = 3 if isinstance(layer, LSTM) else 2
    out = ctx.node(OPS[type(layer)], [xt, w, r, *b], outputs=outputs, **_attributes(ctx, layer, direction))
    # the layer's config on the operator too (the exporter puts it on the layer's last node): the
    # importer reads it as a hint for what the graph leaves open (initializers)
    ctx.graph.nodes[-1].doc_string = json.dumps({"name": ctx.name, **ctx.layer.get_config()})
    return out[0], out[1]


def _axes(ctx: LoweringContext, *axes: int) -> str:
    return ctx.constant(np.array(axes, np.int64), "axes")


def _batch_major(ctx: LoweringContext, y: str) -> str:
    return ctx.node("Transpose", [y], perm=[1, 0, 2])


def recurrent(ctx: LoweringContext, layer: Any, inputs: list[str]) -> str:
    _no_mask(ctx, layer)
    direction = "reverse" if layer.go_backwards else "forward"
    y, y_h = _run(ctx, layer, inputs[0], [("", layer)], direction)
    if not layer.return_sequences:
        return ctx.node("Squeeze", [y_h, _axes(ctx, 0)])
    y = ctx.node("Squeeze", [y, _axes(ctx, 1)])  # (L, N, u), in input order
    if layer.go_backwards:  # Keras's order: the step that ran first comes first
        y = ctx.node(
            "Slice",
            [y, _axes(ctx, -1), ctx.constant(np.array([REVERSE_END], np.int64), "end"), _axes(ctx, 0), _axes(ctx, -1)],
        )
    return _batch_major(ctx, y)


def bidirectional(ctx: LoweringContext, layer: Bidirectional, inputs: list[str]) -> str:
    inner = layer.forward_layer
    _no_mask(ctx, inner)
    if inner.go_backwards:
        raise OnnxExportError(
            "Bidirectional around a layer with go_backwards is not exported", layer=f"'{ctx.name}'", field="layer"
        )
    y, y_h = _run(ctx, inner, inputs[0], [("forward.", inner), ("backward.", inner)], "bidirectional")
    seq = inner.return_sequences
    value, axis = (y, 1) if seq else (y_h, 0)  # the direction axis
    if layer.merge_mode == "concat":
        if seq:  # (L, 2, N, u) -> (L, N, 2, u) -> (L, N, 2u): forward then backward features
            flat = ctx.node("Transpose", [y], perm=[0, 2, 1, 3])
            flat = ctx.node("Reshape", [flat, ctx.constant(np.array([0, 0, -1], np.int64), "shape")])
            return _batch_major(ctx, flat)
        both = ctx.node("Transpose", [y_h], perm=[1, 0, 2])  # (N, 2, u)
        return ctx.node("Reshape", [both, ctx.constant(np.array([0, -1], np.int64), "shape")])
    # sum, mul, ave: one reduction over the direction axis
    op = {"sum": "ReduceSum", "mul": "ReduceProd", "ave": "ReduceMean"}[layer.merge_mode]
    if op == "ReduceSum" or ctx.opset >= 18:  # axes as an input
        merged = ctx.node(op, [value, _axes(ctx, axis)], keepdims=0)
    else:
        merged = ctx.node(op, [value], axes=[axis], keepdims=0)
    return _batch_major(ctx, merged) if seq else merged


# -- attention ---------------------------------------------------------------------------------------


def _heads(ctx: LoweringContext, layer: MultiHeadAttention, x: str, which: str) -> str:
    """``x`` (N, L, D) projected and split into heads: (N, L, H, d)."""
    kernel = layer.params[f"{which}_kernel"]
    y = ctx.node("MatMul", [x, ctx.weight(f"{which}_kernel", kernel.reshape(kernel.shape[0], -1))])
    if layer.use_bias:
        y = ctx.node("Add", [y, ctx.weight(f"{which}_bias", layer.params[f"{which}_bias"].reshape(-1))])
    shape = np.array([0, 0, kernel.shape[1], kernel.shape[2]], np.int64)
    return ctx.node("Reshape", [y, ctx.constant(shape, "shape")])


def multi_head_attention(ctx: LoweringContext, layer: MultiHeadAttention, inputs: list[str]) -> str:
    data = inputs[:-1] if layer.use_attention_mask else inputs
    query, value = data[0], data[1]
    key = data[2] if len(data) == 3 else value
    lq = layer.input_shape[0][0]
    lk = layer.input_shape[1][0]
    q = ctx.node("Transpose", [_heads(ctx, layer, query, "query")], perm=[0, 2, 1, 3])  # (N, H, Lq, kd)
    q = ctx.node("Mul", [q, ctx.constant(np.float32(1 / math.sqrt(layer.key_dim)), "scale")])
    k = ctx.node("Transpose", [_heads(ctx, layer, key, "key")], perm=[0, 2, 3, 1])  # (N, H, kd, Lk)
    v = ctx.node("Transpose", [_heads(ctx, layer, value, "value")], perm=[0, 2, 1, 3])  # (N, H, Lk, vd)
    scores = ctx.node("MatMul", [q, k])
    mask = None
    if layer.use_attention_mask:
        m = ctx.node("Greater", [inputs[-1], ctx.constant(np.float32(0.5), "threshold")])
        m = ctx.node("Cast", [m], to=1)  # float
        axes = (1, 2) if len(layer.input_shape[-1]) == 1 else (1,)
        mask = ctx.node("Unsqueeze", [m, _axes(ctx, *axes)])  # (N, 1, Lq or 1, Lk)
    if layer.use_causal_mask:
        causal = ctx.constant(np.tril(np.ones((lq, lk), np.float32))[None, None], "causal_mask")
        mask = causal if mask is None else ctx.node("Mul", [mask, causal])
    if mask is None:
        weights = ctx.node("Softmax", [scores], axis=-1)
    else:  # masked scores far below the rest; a row with no key left gets zero weights
        shift = ctx.node(
            "Mul",
            [
                ctx.node("Sub", [mask, ctx.constant(np.float32(1), "one")]),
                ctx.constant(np.float32(-MASKED_SCORE), "big"),
            ],
        )
        weights = ctx.node("Softmax", [ctx.node("Add", [scores, shift])], axis=-1)
        weights = ctx.node("Mul", [weights, mask])
    heads = ctx.node("Transpose", [ctx.node("MatMul", [weights, v])], perm=[0, 2, 1, 3])  # (N, Lq, H, vd)
    merged = ctx.node("Reshape", [heads, ctx.constant(np.array([0, 0, -1], np.int64), "shape")])
    out_kernel = layer.params["output_kernel"]
    y = ctx.node("MatMul", [merged, ctx.weight("output_kernel", out_kernel.reshape(-1, out_kernel.shape[-1]))])
    if layer.use_bias:
        y = ctx.node("Add", [y, ctx.weight("output_bias")])
    return y


LAYERS: dict[type, Callable[..., str]] = {
    SimpleRNN: recurrent,
    LSTM: recurrent,
    GRU: recurrent,
    Bidirectional: bidirectional,
    MultiHeadAttention: multi_head_attention,
}

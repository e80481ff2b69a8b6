"""How each supported ONNX operator becomes regnet layers (the import table).

Each handler takes ``(state, node, attrs)`` and records its outputs in ``state``: a new layer, an
activation folded into the layer before, a bias folded into a MatMul/Conv, or an alias.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from .. import activations, layers
from ..errors import RegnetError
from ..ops import windows
from ..text import show
from .folding import BATCH
from .graph import Entry, ImportState, Tensor, float32_value, hint_of

Node = onnx.NodeProto


def _ints(value, default):
    return [int(v) for v in (default if value is None else value)]


def _auto_pads(st: ImportState, node: Node, attrs: dict, hw: tuple, kernel: list, strides: list) -> list[int]:
    """``[top, left, bottom, right]`` from ``pads`` or ``auto_pad``."""
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode == "NOTSET":
        pads = _ints(attrs.get("pads"), [0, 0, 0, 0])
        if len(pads) != 4 or min(pads) < 0:
            raise st.fail(node, f"pads {pads} are not four non-negative integers")
        return pads
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode == "SAME_UPPER":  # the extra padding goes at the end, as in Keras 'same'
        (t, b), (le, r) = (windows.padding_amounts("same", n, k, s) for n, k, s in zip(hw, kernel, strides))
        return [t, le, b, r]
    raise st.fail(node, f"auto_pad={mode} is unsupported (regnet pads as NOTSET, VALID or SAME_UPPER)")


def _padding(st: ImportState, node: Node, pads: list[int], hw: tuple, kernel: list, strides: list, *, pool: bool):
    """regnet's spelling of ONNX pads: 'valid', an integer (the same on every side) or 'same'."""
    top, left, bottom, right = pads
    same = [windows.padding_amounts("same", n, k, s) for n, k, s in zip(hw, kernel, strides)]
    if not any(pads):
        return "valid"
    if top == left == bottom == right:
        if pool and 2 * top > min(kernel):
            raise st.fail(node, f"pads {pads} exceed half the window {kernel}, which regnet's pooling refuses")
        return top
    if [(top, bottom), (left, right)] == same:
        return "same"
    raise st.fail(
        node,
        f"pads {pads} (top, left, bottom, right) are unsupported: regnet pads every side alike or as Keras "
        f"'same' (which here would be {[same[0][0], same[1][0], same[0][1], same[1][1]]})",
    )


def _require_ones(st: ImportState, node: Node, attrs: dict, name: str, what: str) -> None:
    value = attrs.get(name)
    if value is not None and any(int(v) != 1 for v in value):
        raise st.fail(node, f"{name} {list(value)} are unsupported ({what})")


def _image(st: ImportState, node: Node, what: str = "X") -> Tensor:
    x = st.tensor(node, 0, what)
    if len(x.shape) != 3:
        raise st.fail(node, f"only 2-D windows over (N, C, H, W) inputs are supported; the input is {['N', *x.shape]}")
    return x


def _unused_outputs(st: ImportState, node: Node, what: str) -> None:
    for name in node.output[1:]:
        if name and st.consumers[name]:
            raise st.fail(node, f"its output {show(name)} ({what}) is used; regnet computes only the first output")


# -- layers with weights ----------------------------------------------------------------------------
def gemm(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "A")
    if len(x.shape) != 1:
        raise st.fail(node, f"A must be a (batch, features) matrix; it is {['N', *x.shape]}")
    if attrs.get("transA", 0):
        raise st.fail(node, "transA=1 is unsupported (A must be the batch of inputs)")
    b = st.const(node, 1, "B")
    if b.ndim != 2:
        raise st.fail(node, f"B must be a matrix, it has shape {list(b.shape)}")
    kernel = b.T if attrs.get("transB", 0) else b
    if kernel.shape[0] != x.shape[0]:
        raise st.fail(node, f"B of shape {list(b.shape)} does not fit inputs of {x.shape[0]} features")
    kernel = kernel * np.float32(attrs.get("alpha", 1.0))
    units = kernel.shape[1]
    weights = {"kernel": kernel}
    c = st.optional_const(node, 2, "C")
    if c is not None:
        c = c * np.float32(attrs.get("beta", 1.0))
        if c.size == 1:
            c = np.full(units, c.ravel()[0], np.float32)
        elif c.size != units or c.shape[-1] != units:
            raise st.fail(node, f"C of shape {list(c.shape)} is not a bias of {units} units")
        weights["bias"] = c.reshape(units)
    config = {"units": units} if c is not None else {"units": units, "use_bias": False}
    st.add(node, "Dense", config, [x], (units,), weights, weight_inputs=(1, 2))


def matmul(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "A")
    w = st.const(node, 1, "B")
    if w.ndim != 2 or w.shape[0] != x.shape[-1]:
        raise st.fail(
            node, f"B of shape {list(w.shape)} is not a (features, units) matrix for inputs {['N', *x.shape]}"
        )
    shape = (*x.shape[:-1], w.shape[1])
    st.add(node, "Dense", {"units": w.shape[1], "use_bias": False}, [x], shape, {"kernel": w}, weight_inputs=(1,))


def _dilations(st: ImportState, node: Node, attrs: dict) -> list[int]:
    dilation = _ints(attrs.get("dilations"), [1, 1])
    if len(dilation) != 2 or min(dilation) < 1:
        raise st.fail(node, f"dilations {dilation} are not two positive integers")
    return dilation


def _effective(kernel: list, dilation: list) -> list[int]:
    return [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]


def conv(st: ImportState, node: Node, attrs: dict) -> None:
    x = _image(st, node)
    w = st.const(node, 1, "W")
    if w.ndim != 4:
        raise st.fail(node, f"only 2-D convolutions are supported; W has shape {list(w.shape)}")
    c, h, wd = x.shape
    group = int(attrs.get("group", 1))
    filters = int(w.shape[0])
    if group < 1 or c % group or filters % group or w.shape[1] * group != c:
        raise st.fail(node, f"W of shape {list(w.shape)} with group={group} does not fit {c} input channels")
    kernel = [int(w.shape[2]), int(w.shape[3])]
    if "kernel_shape" in attrs and _ints(attrs["kernel_shape"], []) != kernel:
        raise st.fail(node, f"kernel_shape {list(attrs['kernel_shape'])} disagrees with W of shape {list(w.shape)}")
    dilation = _dilations(st, node, attrs)
    keff = _effective(kernel, dilation)
    strides = _ints(attrs.get("strides"), [1, 1])
    pads = _auto_pads(st, node, attrs, (h, wd), keff, strides)
    padding = _padding(st, node, pads, (h, wd), keff, strides, pool=False)
    out = _out_hw(st, node, (h, wd), keff, strides, pads)
    bias = st.optional_const(node, 2, "B")
    if _separable(st, node, x, w, bias, kernel, strides, pads, dilation, group):
        return
    weights = {"kernel": w}
    if bias is not None:
        weights["bias"] = bias.reshape(-1)
    config: dict = {"kernel_size": kernel, "strides": strides, "padding": padding}
    if dilation != [1, 1]:
        config["dilation_rate"] = dilation
    if bias is None:
        config["use_bias"] = False
    hint = hint_type(node)
    if group == c and (c > 1 or hint == "DepthwiseConv2D") and hint != "Conv2D":  # one group per channel
        if filters != c:
            config["depth_multiplier"] = filters // c
        type_name = "DepthwiseConv2D"
    else:
        config = {"filters": filters, **config, **({"groups": group} if group != 1 else {})}
        type_name = "Conv2D"
    geometry = {"hw": (h, wd), "kernel": keff, "strides": strides, "pads": pads}
    st.add(node, type_name, config, [x], (filters, *out), weights, weight_inputs=(1, 2), geometry=geometry)


def _separable(st: ImportState, node: Node, x: Tensor, w, bias, kernel, strides, pads, dilation, group) -> bool:
    """Fold a 1x1 Conv that regnet wrote as a SeparableConv2D's pointwise half into the depthwise
    convolution before it (bias-free, linear, read only here): one SeparableConv2D again."""
    src = x.source
    if hint_type(node) != "SeparableConv2D" or src is None or not st.sole_consumer(node.input[0]):
        return False
    plain = kernel == [1, 1] and strides == [1, 1] and not any(pads) and dilation == [1, 1] and group == 1
    depthwise = src.type in ("DepthwiseConv2D", "Conv2D") and src.weights["kernel"].shape[1] == 1
    if not (plain and depthwise and src.config.get("use_bias") is False and src.config.get("activation") is None):
        return False
    m = src.weights["kernel"].shape[0]
    channels = (
        m // src.config.get("depth_multiplier", 1) if src.type == "DepthwiseConv2D" else src.config.get("groups", 1)
    )
    config = {"filters": int(w.shape[0]), **{k: v for k, v in src.config.items() if k not in ("filters", "groups")}}
    if m != channels:
        config["depth_multiplier"] = m // channels
    weights = {"depthwise_kernel": src.weights["kernel"], "pointwise_kernel": w}
    if bias is None:
        config["use_bias"] = False
    else:
        del config["use_bias"]
        weights["bias"] = bias.reshape(-1)
    src.type, src.config, src.shape, src.hint = (
        "SeparableConv2D",
        config,
        (int(w.shape[0]), *x.shape[1:]),
        hint_of(node),
    )
    src.weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    name = (src.hint or {}).get("name")
    if isinstance(name, str):
        src.names.insert(0, name)
    st.pass_through(node, Tensor(src, src.shape))
    return True


def conv_transpose(st: ImportState, node: Node, attrs: dict) -> None:
    x = _image(st, node)
    w = st.const(node, 1, "W")
    if w.ndim != 4:
        raise st.fail(node, f"only 2-D transposed convolutions are supported; W has shape {list(w.shape)}")
    c, h, wd = x.shape
    group = int(attrs.get("group", 1))
    if group < 1 or w.shape[0] != c or c % group:
        raise st.fail(node, f"W of shape {list(w.shape)} with group={group} does not fit {c} input channels")
    if "output_shape" in attrs:
        raise st.fail(node, "output_shape is unsupported (regnet reads pads and output_padding)")
    mode = attrs.get("auto_pad", b"NOTSET")
    if (mode.decode() if isinstance(mode, bytes) else str(mode)) not in ("NOTSET", "VALID"):
        raise st.fail(node, f"auto_pad={mode!r} is unsupported (regnet reads explicit pads)")
    kernel = [int(w.shape[2]), int(w.shape[3])]
    dilation = _dilations(st, node, attrs)
    strides = _ints(attrs.get("strides"), [1, 1])
    pads = _ints(attrs.get("pads"), [0, 0, 0, 0]) if mode in (b"NOTSET", "NOTSET") else [0, 0, 0, 0]
    extra = _ints(attrs.get("output_padding"), [0, 0])
    if len(pads) != 4 or min(pads) < 0 or len(extra) != 2 or min(extra) < 0:
        raise st.fail(node, f"pads {pads} and output_padding {extra} are not non-negative integers per axis")
    keff = _effective(kernel, dilation)
    out = [
        s * (n - 1) + e + k - p0 - p1 for s, n, e, k, p0, p1 in zip(strides, (h, wd), extra, keff, pads[:2], pads[2:])
    ]
    filters = int(w.shape[1]) * group
    base: dict[str, Any] = {
        "filters": filters,
        "kernel_size": kernel,
        "strides": strides,
        "dilation_rate": dilation,
        "groups": group,
    }
    candidates: list[dict[str, Any]] = [{"padding": "same"}]
    if pads[0] == pads[1] == pads[2] == pads[3]:
        candidates.insert(0, {"padding": pads[0] or "valid", "output_padding": extra})
    hint = hint_of(node) or {}
    if hint.get("type") == "Conv2DTranspose":  # the exporter's spelling first (checked like the others)
        candidates.insert(0, {"padding": hint.get("padding"), "output_padding": hint.get("output_padding", [0, 0])})
    found: dict[str, Any] | None = None
    for cand in candidates:  # the regnet spelling whose output window is ONNX's
        try:
            layer = layers.Conv2DTranspose(**base, **cand)
            layer.setup((c, h, wd), np.random.default_rng(0))
        except (RegnetError, TypeError, ValueError):
            continue
        top, _, left, _ = layer._pads
        if list(layer.output_shape or ())[1:] == out and [top, left] == pads[:2]:
            found = cand
            break
    if found is None:
        raise st.fail(
            node,
            f"pads {pads} with output_padding {extra} are unsupported: regnet pads every side alike (output_padding "
            f"below strides) or as Keras 'same'",
        )
    config = {**base, **found}
    for key, default in (("dilation_rate", [1, 1]), ("groups", 1), ("output_padding", [0, 0])):
        if config.get(key, default) == default:
            config.pop(key, None)
    weights = {"kernel": w}
    bias = st.optional_const(node, 2, "B")
    if bias is None:
        config["use_bias"] = False
    else:
        weights["bias"] = bias.reshape(-1)
    st.add(node, "Conv2DTranspose", config, [x], (filters, *out), weights, weight_inputs=(1, 2))


def _out_hw(st: ImportState, node: Node, hw: tuple, kernel: list, strides: list, pads: list, ceil: bool = False):
    top, left, bottom, right = pads
    spans = [(hw[0] + top + bottom - kernel[0], strides[0]), (hw[1] + left + right - kernel[1], strides[1])]
    if any(span < 0 for span, _ in spans):
        raise st.fail(node, f"the window {kernel} does not fit the input {list(hw)} with pads {pads}")
    floor = [span // s + 1 for span, s in spans]
    if ceil and [math.ceil(span / s) + 1 for span, s in spans] != floor:
        raise st.fail(node, "ceil_mode=1 is unsupported (here it changes the output size; regnet rounds down)")
    return floor


def batch_normalization(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "X")
    if len(x.shape) not in (1, 3):
        raise st.fail(node, f"only (N, C) and (N, C, H, W) inputs are supported; the input is {['N', *x.shape]}")
    if attrs.get("training_mode", 0):
        raise st.fail(node, "training_mode=1 is unsupported (regnet imports the inference form)")
    _unused_outputs(st, node, "training statistics")
    c = x.shape[0]
    weights = {}
    for i, (name, what) in enumerate(
        [("gamma", "scale"), ("beta", "B"), ("moving_mean", "input_mean"), ("moving_variance", "input_var")], 1
    ):
        value = st.const(node, i, what)
        if value.size != c:
            raise st.fail(node, f"{what} of shape {list(value.shape)} does not fit {c} channels")
        weights[name] = value.reshape(c)
    config = {
        "epsilon": float32_value(attrs.get("epsilon", 1e-5)),
        "momentum": float32_value(attrs.get("momentum", 0.9)),
    }
    st.add(node, "BatchNorm", config, [x], x.shape, weights, weight_inputs=(1,))


# -- windows without weights ------------------------------------------------------------------------
def _pool_config(st: ImportState, node: Node, type_name: str, shape: tuple, kernel, strides, pads, ceil, include):
    """The regnet config (``padding``, ``ceil_mode``, ``count_include_pad``) whose windows are
    ONNX's ``pads`` (``[top, left, bottom, right]``), or ``None``. Asymmetric pads may be the
    padding of ``ceil_mode`` windows (as regnet writes them): the candidates are checked by
    building the layer."""
    top, left, bottom, right = pads
    c, h, w = shape
    same = [windows.padding_amounts("same", n, k, s) for n, k, s in zip((h, w), kernel, strides)]
    options = []
    if top == left == bottom == right:
        options += [(top or "valid", ceil)]
    if [(top, bottom), (left, right)] == same:
        options += [("same", ceil)]
    if top == left and not ceil:
        options += [(top or "valid", True)]
    hint = hint_of(node) or {}
    if hint.get("type") == type_name and hint.get("ceil_mode") is True:  # the same windows either way: as written
        options.sort(key=lambda option: not option[1])
    for padding, ceil_mode in options:
        config = {"pool_size": kernel, "padding": padding}
        if strides != kernel:
            config["strides"] = strides
        if ceil_mode:
            config["ceil_mode"] = True
        if type_name == "AvgPool2D" and include:
            config["count_include_pad"] = True
        try:
            layer: Any = layers.create({"type": type_name, **config})
            layer.setup(shape, np.random.default_rng(0))
        except RegnetError:
            continue
        mine = layer._pads if ceil_mode and not ceil else layer._explicit_pads
        if list(mine) == [top, bottom, left, right]:
            if (
                hint.get("type") == type_name
                and hint.get("count_include_pad") is True
                and not any(layer._explicit_pads)
            ):
                config["count_include_pad"] = True  # no padding to count: the same means either way
            return config, list(layer._out_hw)
    return None


def _pool(type_name: str):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = _image(st, node)
        _unused_outputs(st, node, "argmax indices")
        kernel = _ints(attrs.get("kernel_shape"), [])
        if len(kernel) != 2:
            raise st.fail(node, f"only 2-D pooling is supported; kernel_shape is {kernel}")
        _require_ones(st, node, attrs, "dilations", "regnet's pooling is not dilated")
        c, h, w = x.shape
        strides = _ints(attrs.get("strides"), [1, 1])
        pads = _auto_pads(st, node, attrs, (h, w), kernel, strides)
        ceil = bool(attrs.get("ceil_mode", 0))
        include = type_name == "AvgPool2D" and bool(attrs.get("count_include_pad", 0))
        if type_name == "AvgPool2D" and _padded_average(st, node, x, kernel, strides, pads, ceil):
            return
        found = _pool_config(st, node, type_name, x.shape, kernel, strides, pads, ceil, include)
        if found is None:
            _padding(st, node, pads, (h, w), kernel, strides, pool=True)  # raises the reason
            raise st.fail(node, f"pads {pads} do not fit the window {kernel} with strides {strides}")
        config, out = found
        geometry = {"hw": (h, w), "kernel": kernel, "strides": strides, "pads": pads}
        st.add(node, type_name, config, [x], (c, *out), geometry=geometry)

    return handler


def _padded_average(st: ImportState, node: Node, x: Tensor, kernel, strides, pads, ceil) -> bool:
    """An AveragePool that regnet wrote after a Pad (its counted padding, before the uncounted
    ``ceil_mode`` overhang): one AvgPool2D with ``count_include_pad`` again."""
    src, hint = x.source, hint_of(node) or {}
    if hint.get("type") != "AvgPool2D" or not hint.get("count_include_pad") or ceil:
        return False
    if src is None or src.type != "ZeroPadding2D" or not st.sole_consumer(node.input[0]):
        return False
    (t, b), (le, r) = src.config["padding"]
    c, hp, wp = x.shape
    shape = (c, hp - t - b, wp - le - r)
    found = _pool_config(
        st,
        node,
        "AvgPool2D",
        shape,
        kernel,
        strides,
        [t + pads[0], le + pads[1], b + pads[2], r + pads[3]],
        False,
        True,
    )
    if found is None or found[0].get("ceil_mode") is not True:
        return False
    src.type, src.config, src.shape, src.hint = "AvgPool2D", found[0], (c, *found[1]), hint
    if isinstance(hint.get("name"), str):
        src.names.insert(0, hint["name"])
    src.geometry = {}
    st.pass_through(node, Tensor(src, src.shape))
    return True


def _global_pool(type_name: str):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = _image(st, node)
        c, h, w = x.shape
        if type_name == "MaxPool2D":
            st.add(node, "GlobalMaxPooling2D", {"keepdims": True}, [x], (c, 1, 1))
            return
        if type_name == "AvgPool2D" and hint_type(node) == "GlobalAveragePooling2D":  # keepdims
            st.add(node, "GlobalAveragePooling2D", {"keepdims": True}, [x], (c, 1, 1))
            return
        geometry = {"hw": (h, w), "kernel": [h, w], "strides": [h, w], "pads": [0, 0, 0, 0]}
        st.add(node, type_name, {"pool_size": [h, w]}, [x], (c, 1, 1), geometry=geometry)

    return handler


# -- sequences: 1-D windows over (N, C, L), embeddings -------------------------------------------------
def _sequence_pads(st: ImportState, node: Node, attrs: dict, length: int, span: int, stride: int) -> list[int]:
    """``[before, after]`` from ``pads`` or ``auto_pad`` of a 1-D window covering ``span`` positions."""
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode == "NOTSET":
        pads = _ints(attrs.get("pads"), [0, 0])
        if len(pads) != 2 or min(pads) < 0:
            raise st.fail(node, f"pads {pads} are not two non-negative integers")
        return pads
    if mode == "VALID":
        return [0, 0]
    if mode == "SAME_UPPER":
        return list(windows.padding_amounts("same", length, span, stride))
    raise st.fail(node, f"auto_pad={mode} is unsupported (regnet pads as NOTSET, VALID or SAME_UPPER)")


def _sequence_padding(
    st: ImportState, node: Node, pads: list[int], length: int, span: int, stride: int, *, causal: bool
) -> str | int:
    """regnet's spelling of 1-D pads: 'valid', an integer, 'same' or (Conv1D) 'causal'; the
    exporter's hint picks among the spellings that pad alike."""
    before, after = pads
    options: list = []
    if before == after:
        options += ["valid", 0] if before == 0 else [before]
    if (before, after) == windows.padding_amounts("same", length, span, stride):
        options.append("same")
    if causal and (before, after) == (span - 1, 0):
        options.append("causal")
    if not options:
        what = "alike at both ends or as Keras 'same'" + (" or 'causal' (before only)" if causal else "")
        raise st.fail(node, f"pads {pads} (before, after) are unsupported: regnet pads {what}")
    theirs = (hint_of(node) or {}).get("padding")
    if isinstance(theirs, (str, int)) and not isinstance(theirs, bool) and theirs in options:
        return theirs
    return options[0]


def _sequence(st: ImportState, node: Node, what: str = "X") -> Tensor:
    x = st.tensor(node, 0, what)
    if len(x.shape) != 2:
        raise st.fail(node, f"a 1-D window needs an (N, C, L) input; the input is {['N', *x.shape]}")
    return x


def _fits(st: ImportState, node: Node, length: int, span: int, stride: int, pads: list[int], ceil: bool) -> int:
    total = length + sum(pads) - span
    if total < 0:
        raise st.fail(node, f"the window of {span} positions does not fit the input of {length} with pads {pads}")
    if ceil and math.ceil(total / stride) != total // stride:
        raise st.fail(node, "ceil_mode=1 is unsupported (here it changes the output size; regnet rounds down)")
    return total // stride + 1


def conv1d(st: ImportState, node: Node, attrs: dict) -> None:
    x = _sequence(st, node)
    w = st.const(node, 1, "W")
    c, length = x.shape
    group = int(attrs.get("group", 1))
    if w.ndim != 3 or group < 1 or c % group or w.shape[0] % group or w.shape[1] * group != c:
        raise st.fail(node, f"W of shape {list(w.shape)} with group={group} does not fit {c} input channels")
    k = int(w.shape[2])
    if "kernel_shape" in attrs and _ints(attrs["kernel_shape"], []) != [k]:
        raise st.fail(node, f"kernel_shape {list(attrs['kernel_shape'])} disagrees with W of shape {list(w.shape)}")
    (stride,), (dilation,) = _ints(attrs.get("strides"), [1]), _ints(attrs.get("dilations"), [1])
    span = dilation * (k - 1) + 1
    pads = _sequence_pads(st, node, attrs, length, span, stride)
    padding = _sequence_padding(st, node, pads, length, span, stride, causal=True)
    out = _fits(st, node, length, span, stride, pads, False)
    weights = {"kernel": w}
    bias = st.optional_const(node, 2, "B")
    if bias is not None:
        weights["bias"] = bias.reshape(-1)
    config = {"filters": int(w.shape[0]), "kernel_size": k, "strides": stride, "padding": padding}
    config.update(dilation_rate=dilation, groups=group)
    if bias is None:
        config["use_bias"] = False
    st.add(node, "Conv1D", config, [x], (int(w.shape[0]), out), weights, weight_inputs=(1, 2))


def _pool_1d(type_name: str):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = _sequence(st, node)
        _unused_outputs(st, node, "argmax indices")
        _require_ones(st, node, attrs, "dilations", "regnet's pooling is not dilated")
        (k,), (stride,) = _ints(attrs.get("kernel_shape"), [0]), _ints(attrs.get("strides"), [1])
        c, length = x.shape
        pads = _sequence_pads(st, node, attrs, length, k, stride)
        if type_name == "AveragePooling1D" and attrs.get("count_include_pad", 0) and any(pads):
            raise st.fail(node, "count_include_pad=1 with padding is unsupported (regnet averages real inputs only)")
        if 2 * max(pads) > k:
            raise st.fail(node, f"pads {pads} exceed half the window {k}, which regnet's pooling refuses")
        padding = _sequence_padding(st, node, pads, length, k, stride, causal=False)
        out = _fits(st, node, length, k, stride, pads, bool(attrs.get("ceil_mode", 0)))
        config = {"pool_size": k, "padding": padding}
        if stride != k or (hint_of(node) or {}).get("strides") == stride:
            config["strides"] = stride
        st.add(node, type_name, config, [x], (c, out))

    return handler


def _global_pool_1d(type_name: str):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = _sequence(st, node)
        st.add(node, type_name, {"keepdims": True}, [x], (x.shape[0], 1))

    return handler


def _reduce_1d(type_name: str):
    """ReduceMean / ReduceMax over the length axis of (N, C, L) (PyTorch's ``x.mean(-1)``) or of
    (N, L, C) (axis 1: ``data_format="channels_last"``, Keras's layout)."""

    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = _sequence(st, node, "data")
        axes = attrs.get("axes") if st.opset < 18 else None
        if st.opset >= 18 and len(node.input) > 1 and node.input[1]:
            axes = st.int_const(node, 1, "axes").ravel()
        if axes is None or [int(a) % 3 for a in axes] not in ([2], [1]):
            raise st.fail(
                node, f"axes {None if axes is None else list(axes)} are unsupported (regnet reduces axis 2 or 1)"
            )
        keep = bool(attrs.get("keepdims", 1))
        config: dict = {"keepdims": True} if keep else {}
        if [int(a) % 3 for a in axes] == [1]:
            config["data_format"] = "channels_last"
            c = x.shape[1]
            st.add(node, type_name, config, [x], (1, c) if keep else (c,))
            return
        c = x.shape[0]
        st.add(node, type_name, config, [x], (c, 1) if keep else (c,))

    return handler


def _by_rank(image: Callable, sequence: Callable) -> Callable:
    """The 2-D handler for (N, C, H, W) inputs, the 1-D one for (N, C, L)."""

    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = st.input(node, 0)
        return (sequence if isinstance(x, Tensor) and len(x.shape) == 2 else image)(st, node, attrs)

    return handler


def cast(st: ImportState, node: Node, attrs: dict) -> None:
    """A float tensor cast to float32, or to integers that only index an embedding (``Gather``)."""
    x = st.tensor(node, 0)
    to = int(attrs.get("to", 0))
    if to == onnx.TensorProto.FLOAT:
        st.pass_through(node, x)
        return
    readers = st.readers.get(node.output[0], [])
    lookups = [n for n in readers if n.op_type == "Gather" and list(n.input[1:2]) == [node.output[0]]]
    if to in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and readers and len(lookups) == len(readers):
        st.pass_through(node, x)  # Embedding takes whole-number float ids as they are
        return
    raise st.fail(node, "a cast at run time is supported only to float32, or to integer ids read by a Gather")


def gather(st: ImportState, node: Node, attrs: dict) -> None:
    """``Gather(table, ids)``: an Embedding (the ids computed from the model input)."""
    table = st.const(node, 0, "data")
    ids = st.tensor(node, 1, "indices")
    if table.ndim != 2 or int(attrs.get("axis", 0)) != 0:
        raise st.fail(node, f"only row look-ups (axis 0) in a 2-D table are supported; data is {list(table.shape)}")
    config = {"input_dim": int(table.shape[0]), "output_dim": int(table.shape[1])}
    mask = (hint_of(node) or {}).get("mask_zero")
    if mask is True:  # records a mask only: computes the same
        config["mask_zero"] = True
    st.add(node, "Embedding", config, [ids], (*ids.shape, int(table.shape[1])), {"embeddings": table}, (0,))


def _position_table(st: ImportState, x: Tensor, name: str, c: np.ndarray) -> bool:
    """Whether ``x + c`` is a PositionEmbedding: an (L, D) table on (N, L, D) that is not the bias
    of the layer before."""
    if len(x.shape) != 2 or c.shape[-2:] != x.shape or c.ndim > 3 or (c.ndim == 3 and c.shape[0] != 1):
        return False
    return x.source is None or not _takes_bias(st, x.source, name, c, x.shape)


# -- shapes -----------------------------------------------------------------------------------------
def flatten(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0)
    rank = len(x.shape) + 1
    axis = int(attrs.get("axis", 1))
    if (axis + rank if axis < 0 else axis) != 1:
        raise st.fail(node, f"axis={axis} is unsupported (regnet flattens each sample: axis 1)")
    src = x.source
    pooled = ("GlobalAveragePooling1D", "GlobalMaxPooling1D")
    if (
        src is not None
        and src.type in pooled
        and hint_type(node) in (None, src.type)
        and st.sole_consumer(node.input[0])
    ):
        # GlobalAveragePool + Flatten (not regnet's own Flatten layer): one layer without keepdims
        src.config.pop("keepdims", None)
        src.shape, src.hint = x.shape[:1], hint_of(node)
        name = (src.hint or {}).get("name")
        if isinstance(name, str):
            src.names.insert(0, name)
        st.pass_through(node, Tensor(src, src.shape))
        return
    if src is not None and hint_type(node) == "GlobalAveragePooling2D" and _whole_average(st, node, src):
        # regnet writes GlobalAveragePooling2D as GlobalAveragePool + Flatten: one layer again
        src.type, src.config, src.shape, src.hint, src.geometry = "GlobalAveragePooling2D", {}, x.shape[:1], None, {}
        name = (hint_of(node) or {}).get("name")
        if isinstance(name, str):
            src.names.insert(0, name)
        st.pass_through(node, Tensor(src, src.shape))
        return
    if (
        src is not None
        and hint_type(node) == "GlobalMaxPooling2D"
        and src.type == "GlobalMaxPooling2D"
        and st.sole_consumer(node.input[0])
    ):
        src.config, src.shape = {}, x.shape[:1]  # GlobalMaxPool + Flatten: one layer again
        st.pass_through(node, Tensor(src, src.shape))
        return
    st.add(node, "Flatten", {}, [x], (math.prod(x.shape),))


def _whole_average(st: ImportState, node: Node, src) -> bool:
    """True when ``src`` averages whole images (a GlobalAveragePool) and feeds only ``node``."""
    return (
        src is not None
        and src.type == "AvgPool2D"
        and src.shape[1:] == (1, 1)
        and src.config.get("pool_size") == list(src.geometry.get("hw", ()))
        and not any(src.geometry.get("pads", ()))  # padded windows average fewer values
        and st.sole_consumer(node.input[0])
    )


def reshape(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    target = list(st.int_const(node, 1, "shape").ravel())
    allowzero = bool(attrs.get("allowzero", 0))
    if not target:
        raise st.fail(node, "the target shape is empty")
    first, rest = target[0], target[1:]
    size = math.prod(x.shape)
    if any(d is BATCH for d in rest):
        raise st.fail(node, f"the target shape {target} moves the batch size off axis 0")
    if allowzero and 0 in rest:
        raise st.fail(node, "allowzero=1 with a 0 in the target shape is unsupported")
    rest = [int(x.shape[i]) if (d == 0 and i < len(x.shape)) else int(d) for i, d in enumerate(rest)]
    if 0 in rest or any(d < -1 for d in rest) or rest.count(-1) > 1:
        raise st.fail(node, f"the target shape {target} is not supported")
    if first is BATCH or (first == 0 and not allowzero) or (st.batch is not None and first == st.batch):
        pass
    elif first == -1 and -1 not in rest and math.prod(rest) == size:
        pass
    else:
        raise st.fail(node, f"the target shape {target} does not keep the batch size on axis 0")
    known = math.prod(d for d in rest if d != -1)
    if (-1 in rest and (known == 0 or size % known)) or (-1 not in rest and known != size):
        raise st.fail(node, f"cannot reshape {['N', *x.shape]} into {target}")
    shape = tuple(size // known if d == -1 else d for d in rest)
    hint = hint_type(node)
    if len(shape) == 1 and hint != "Reshape":
        st.add(node, "Flatten", {}, [x], shape)
    else:
        st.add(node, "Reshape", {"target_shape": rest}, [x], shape)


def hint_type(node: Node) -> str | None:
    """The regnet layer type the exporter recorded on ``node``, if any."""
    hint = hint_of(node)
    return hint.get("type") if hint else None


# -- resampling, padding and cropping --------------------------------------------------------------
def _text(attrs: dict, name: str, default: str) -> str:
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _nearest_source(mode: str, rounding: str, n: int, scale: int) -> np.ndarray | None:
    """The input pixel ONNX's nearest Resize reads for each output pixel (``None``: a mode
    regnet does not evaluate)."""
    o = np.arange(n * scale, dtype=np.float64)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        x = (o + 0.5) / scale - 0.5 if n * scale > 1 or mode == "half_pixel" else np.zeros_like(o)
    elif mode == "asymmetric":
        x = o / scale
    elif mode == "tf_half_pixel_for_nn":
        x = (o + 0.5) / scale
    elif mode == "align_corners":
        x = o * (n - 1) / (n * scale - 1) if n * scale > 1 else np.zeros_like(o)
    else:
        return None
    rounders: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "round_prefer_floor": lambda v: np.ceil(v - 0.5),
        "round_prefer_ceil": lambda v: np.floor(v + 0.5),
        "floor": np.floor,
        "ceil": np.ceil,
    }
    pick = rounders.get(rounding)
    return None if pick is None else np.clip(pick(x), 0, n - 1).astype(np.int64)


def resize(st: ImportState, node: Node, attrs: dict) -> None:
    x = _image(st, node)
    c, h, w = x.shape
    scales = st.input(node, 2)
    sizes = st.input(node, 3)
    if isinstance(scales, Tensor) or isinstance(sizes, Tensor):
        raise st.fail(node, "scales and sizes must be constants (or constant shape arithmetic)")
    axes = attrs.get("axes")
    axes = [int(a) % 4 for a in axes] if axes is not None else [0, 1, 2, 3]
    full: dict[int, float | None] = {0: 1, 1: 1, 2: None, 3: None}
    if scales is not None and np.asarray(scales).size:
        for a, v in zip(axes, np.asarray(scales, np.float64).ravel()):
            full[a] = v
    elif sizes is not None and np.asarray(sizes).size:
        dims = {0: "N", 1: c, 2: h, 3: w}
        for a, v in zip(axes, np.asarray(sizes).ravel()):
            if a == 0:
                continue  # the batch size (the symbol N, or a number)
            full[a] = int(v) / dims[a]
        if _text(attrs, "keep_aspect_ratio_policy", "stretch") != "stretch" and full[2] != full[3]:
            raise st.fail(node, "keep_aspect_ratio_policy other than 'stretch' is unsupported")
    else:
        raise st.fail(node, "neither scales nor sizes is given")
    factors = [full[2], full[3]]
    if full[1] != 1 or any(f is None or f < 1 or f != int(f) for f in factors) or (full[0] not in (1, None)):
        raise st.fail(
            node, f"scales {[full[a] for a in range(4)]} are unsupported: regnet upsamples height and width by integers"
        )
    sh, sw = int(factors[0] or 1), int(factors[1] or 1)
    mode, coords = _text(attrs, "mode", "nearest"), _text(attrs, "coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        rounding = _text(attrs, "nearest_mode", "round_prefer_floor")
        for n, f in ((h, sh), (w, sw)):
            src = _nearest_source(coords, rounding, n, f)
            if src is None or not np.array_equal(src, np.arange(n * f) // f):
                raise st.fail(
                    node,
                    f"nearest Resize with coordinate_transformation_mode={coords!r}, nearest_mode={rounding!r} does "
                    f"not repeat pixels here (regnet's nearest upsampling)",
                )
        interpolation = "nearest"
    elif mode == "linear":
        if coords not in ("half_pixel", "pytorch_half_pixel") and not (sh == sw == 1):
            raise st.fail(
                node,
                f"linear Resize with coordinate_transformation_mode={coords!r} is unsupported (regnet's bilinear "
                f"upsampling is half_pixel: PyTorch's align_corners=False)",
            )
        interpolation = "bilinear"
    else:
        raise st.fail(node, f"mode={mode!r} is unsupported (regnet upsamples 'nearest' or 'linear')")
    config = {"size": [sh, sw], **({"interpolation": "bilinear"} if interpolation == "bilinear" else {})}
    st.add(node, "UpSampling2D", config, [x], (c, h * sh, w * sw))


def pad(st: ImportState, node: Node, attrs: dict) -> None:
    x = _image(st, node, "data")
    mode = _text(attrs, "mode", "constant")
    if mode != "constant":
        raise st.fail(node, f"mode={mode!r} is unsupported (regnet pads with zeros)")
    raw = attrs.get("pads") if st.opset < 11 else st.int_const(node, 1, "pads")
    amounts = [int(v) for v in np.asarray(raw).ravel()]
    axes = [0, 1, 2, 3]
    if st.input(node, 3) is not None:
        axes = [int(a) % 4 for a in st.int_const(node, 3, "axes").ravel()]
    if len(amounts) != 2 * len(axes):
        raise st.fail(node, f"pads {amounts} do not fit {len(axes)} axes")
    before, after = dict.fromkeys(range(4), 0), dict.fromkeys(range(4), 0)
    for a, b, e in zip(axes, amounts[: len(axes)], amounts[len(axes) :]):
        before[a], after[a] = b, e
    value = st.input(node, 2)
    if value is not None and (isinstance(value, Tensor) or np.any(np.asarray(value, np.float64) != 0)):
        raise st.fail(node, "only zero padding is supported (constant_value must be 0)")
    if any((before[a], after[a]) != (0, 0) for a in (0, 1)):
        raise st.fail(node, f"pads {amounts} pad the batch or channel axis; regnet pads height and width only")
    sides = ((before[2], after[2]), (before[3], after[3]))
    c, h, w = x.shape
    flat = [v for side in sides for v in side]
    if min(flat) >= 0:
        shape = (c, h + sum(sides[0]), w + sum(sides[1]))
        st.add(node, "ZeroPadding2D", {"padding": [list(p) for p in sides]}, [x], shape)
    elif max(flat) <= 0:
        _crop(st, node, x, tuple((-a, -b) for a, b in sides))
    else:
        raise st.fail(node, f"pads {amounts} both pad and crop; regnet does one or the other")


def _crop(st: ImportState, node: Node, x: Tensor, sides: tuple) -> None:
    """Cropping of ``sides`` ``((top, bottom), (left, right))``, merged into a Cropping2D just
    before (an exporter writes one Slice per axis) unless the node is regnet's own."""
    c, h, w = x.shape
    (t, b), (le, r) = sides
    if t + b >= h or le + r >= w:
        raise st.fail(node, f"cropping {[list(p) for p in sides]} leaves nothing of {['N', *x.shape]}")
    src = x.source
    if hint_of(node) is None and src is not None and src.type == "Cropping2D" and src.hint is None:
        if st.sole_consumer(node.input[0]):
            (t0, b0), (l0, r0) = src.config["cropping"]
            src.config = {"cropping": [[t0 + t, b0 + b], [l0 + le, r0 + r]]}
            src.shape = (c, h - t - b, w - le - r)
            st.pass_through(node, Tensor(src, src.shape))
            return
    st.add(node, "Cropping2D", {"cropping": [list(p) for p in sides]}, [x], (c, h - t - b, w - le - r))


def slice_(st: ImportState, node: Node, attrs: dict) -> None:
    """Slices of the height and width (step 1): cropping."""
    x = st.tensor(node, 0, "data")
    if len(x.shape) != 3:
        raise st.fail(node, f"only slices of (N, C, H, W) images are supported; the input is {['N', *x.shape]}")
    starts = [int(v) for v in st.int_const(node, 1, "starts").ravel()]
    ends = [int(v) for v in st.int_const(node, 2, "ends").ravel()]
    axes = list(range(len(starts)))
    if st.input(node, 3) is not None:
        axes = [int(a) for a in st.int_const(node, 3, "axes").ravel()]
    steps = [1] * len(starts)
    if st.input(node, 4) is not None:
        steps = [int(v) for v in st.int_const(node, 4, "steps").ravel()]
    sides = {2: [0, 0], 3: [0, 0]}
    dims = {2: x.shape[1], 3: x.shape[2]}
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= 4
        if axis not in (2, 3) or step != 1:
            raise st.fail(node, f"slicing axis {axis} with step {step} is unsupported (regnet crops height and width)")
        n = dims[axis]
        start = min(max(start + n if start < 0 else start, 0), n)
        end = min(max(end + n if end < 0 else end, 0), n)
        sides[axis] = [start, n - end]
    _crop(st, node, x, (tuple(sides[2]), tuple(sides[3])))


# -- constants as biases (the merges are in vocab_handlers) -----------------------------------------
def _bias(st: ImportState, node: Node, x: Tensor, name: str, c: np.ndarray) -> None:
    """``layer(x) + c`` as the bias of a MatMul (Dense) or bias-free Conv just before."""
    src = x.source
    if src is None or not _takes_bias(st, src, name, c, x.shape):
        raise st.fail(
            node,
            f"adding a constant of shape {list(c.shape)} is supported only as the bias of the MatMul or "
            f"bias-free Conv just before",
        )
    n = x.shape[0] if src.type == "Conv2D" else x.shape[-1]
    del src.config["use_bias"]
    src.weights["bias"] = np.ascontiguousarray(c.reshape(n), dtype=np.float32)
    hint = hint_of(node)
    if hint is not None:  # regnet writes a Dense on (N, ..., in) as MatMul + Add: the hint is on the Add
        src.hint = hint
        if isinstance(hint.get("name"), str):
            src.names.insert(0, hint["name"])
    st.pass_through(node, Tensor(src, x.shape), source=name)


def _takes_bias(st: ImportState, src: Entry, name: str, c: np.ndarray, shape: tuple) -> bool:
    """Whether ``c`` can be the bias of ``src`` (whose output ``name`` of per-sample ``shape`` feeds only the Add)."""
    if src.type not in ("Dense", "Conv2D") or src.config.get("use_bias") is not False:
        return False
    if src.config.get("activation") not in (None, "linear") or not st.sole_consumer(name):
        return False
    if src.type == "Dense":
        n = shape[-1]
        return c.size == n and c.shape[-1:] == (n,) and c.ndim <= len(shape) + 1
    n = shape[0]  # Conv2D: a (C, 1, 1) or (1, C, 1, 1) constant
    return c.size == n and 3 <= c.ndim <= 4 and c.shape[-3:] == (n, 1, 1)


def concat(st: ImportState, node: Node, attrs: dict) -> None:
    xs = [st.tensor(node, i) for i in range(len(node.input))]
    rank = len(xs[0].shape) + 1
    axis = int(attrs["axis"])
    ax = axis + rank if axis < 0 else axis
    if ax == 0 or not 0 < ax < rank:
        raise st.fail(node, f"axis={axis} is unsupported (regnet never concatenates along the batch axis)")
    others = {tuple(d for i, d in enumerate(x.shape) if i != ax - 1) for x in xs}
    if len(others) != 1 or any(len(x.shape) + 1 != rank for x in xs):
        raise st.fail(node, f"inputs of shapes {[['N', *x.shape] for x in xs]} differ off axis {axis}")
    shape = list(xs[0].shape)
    shape[ax - 1] = sum(x.shape[ax - 1] for x in xs)
    if len(xs) == 1:
        st.pass_through(node, xs[0])
        return
    st.add(node, "Concatenate", {"axis": axis}, xs, tuple(shape))


# -- pass-through -----------------------------------------------------------------------------------
def identity(st: ImportState, node: Node, attrs: dict) -> None:
    if hint_type(node) == "Activation":  # regnet's Activation layer with a linear activation
        st.activation(node, "linear")
        return
    st.pass_through(node, st.tensor(node, 0))


def dropout(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    _unused_outputs(st, node, "the dropout mask")
    if st.opset < 12:
        ratio = float(attrs.get("ratio", 0.5))
    else:
        r = st.input(node, 1)
        if isinstance(r, Tensor):
            raise st.fail(node, "the ratio is computed at run time; regnet needs a constant")
        ratio = 0.5 if r is None else float(np.asarray(r).ravel()[0])
        mode = st.input(node, 2)
        if isinstance(mode, Tensor) or (mode is not None and bool(np.asarray(mode).ravel()[0])):
            raise st.fail(node, "training_mode is not a constant false (regnet imports the inference form)")
    if not 0.0 <= ratio < 1.0:
        raise st.fail(node, f"ratio {ratio} is outside [0, 1), which regnet's Dropout refuses")
    spatial = hint_type(node) == "SpatialDropout2D" and len(x.shape) == 3  # whole channels in training
    st.add(node, "SpatialDropout2D" if spatial else "Dropout", {"rate": float32_value(ratio)}, [x], x.shape)


# -- activations ------------------------------------------------------------------------------------
def _activation(name: str, **params: Callable[[dict], float]):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        values = {k: float32_value(get(attrs)) for k, get in params.items()}
        st.activation(node, spec_of(name, values))

    return handler


def spec_of(name: str, values: dict) -> str | dict:
    """``"elu"`` when every value is the default, else ``{"type": "elu", "alpha": 0.5}``."""
    defaults = activations.get(name).get_config()
    extra = {k: v for k, v in values.items() if float32_value(defaults.get(k, math.nan)) != v}
    return {"type": name, **extra} if extra else name


def selu(st: ImportState, node: Node, attrs: dict) -> None:
    alpha, gamma = (
        float(attrs.get("alpha", 1.67326319217681884765625)),
        float(attrs.get("gamma", 1.05070102214813232421875)),
    )
    ref = activations.SELU
    if not (math.isclose(alpha, ref.ALPHA, rel_tol=1e-6) and math.isclose(gamma, ref.SCALE, rel_tol=1e-6)):
        raise st.fail(node, f"alpha={alpha}, gamma={gamma} are unsupported (regnet's selu has the standard constants)")
    st.activation(node, "selu")


def _softmax_like(name: str):
    """``Softmax`` or ``LogSoftmax`` over one axis (from opset 13; before, over the last axis only)."""

    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        x = st.tensor(node, 0)
        rank = len(x.shape) + 1
        axis = int(attrs.get("axis", -1 if st.opset >= 13 else 1))
        ax = axis + rank if axis < 0 else axis
        if ax == 0:
            raise st.fail(node, "axis=0 (the batch axis) is unsupported")
        if st.opset < 13 and ax != rank - 1:
            raise st.fail(
                node, f"{node.op_type} before opset 13 with axis={axis} on a rank-{rank} input is unsupported"
            )
        st.activation(node, name if ax == rank - 1 else {"type": name, "axis": axis})

    return handler


softmax = _softmax_like("softmax")


def gelu(st: ImportState, node: Node, attrs: dict) -> None:
    mode = attrs.get("approximate", b"none")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("none", "tanh"):
        raise st.fail(node, f"approximate='{mode}' is unsupported (expected 'none' or 'tanh')")
    st.activation(node, "gelu" if mode == "none" else {"type": "gelu", "approximate": True})


def _clip_bound(st: ImportState, node: Node, index: int, what: str) -> float | None:
    value = st.input(node, index)
    if value is None:
        return None
    if isinstance(value, Tensor):
        raise st.fail(node, f"{what} (input {index}) is computed at run time; regnet needs a constant")
    if value.size != 1:
        raise st.fail(node, f"{what} (input {index}) has shape {list(value.shape)}; expected a scalar")
    return float(value.ravel()[0])


def clip(st: ImportState, node: Node, attrs: dict) -> None:
    """``Clip(x, 0, 6)`` is relu6 (PyTorch's ReLU6), ``Clip(x, 0)`` relu; other bounds are refused."""
    lo, hi = _clip_bound(st, node, 1, "min"), _clip_bound(st, node, 2, "max")
    if lo == 0.0 and hi == 6.0:
        st.activation(node, "relu6")
    elif lo == 0.0 and hi is None:
        st.activation(node, "relu")
    else:
        raise st.fail(node, f"Clip to [{lo}, {hi}] is unsupported (regnet reads [0, 6] as relu6 and [0, none] as relu)")


def hard_sigmoid(st: ImportState, node: Node, attrs: dict) -> None:
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if not (math.isclose(alpha, 1 / 6, rel_tol=1e-6) and math.isclose(beta, 0.5, rel_tol=1e-6)):
        raise st.fail(
            node, f"alpha={alpha}, beta={beta} are unsupported (regnet's hard_sigmoid is relu6(x + 3) / 6: 1/6 and 0.5)"
        )
    st.activation(node, "hard_sigmoid")


def swish(st: ImportState, node: Node, attrs: dict) -> None:
    alpha = float(attrs.get("alpha", 1.0))
    if alpha != 1.0:
        raise st.fail(node, f"alpha={alpha} is unsupported (regnet's silu is x * sigmoid(x): alpha 1)")
    st.activation(node, "silu")


HANDLERS: dict[str, Callable[[ImportState, Node, dict], None]] = {
    "Gemm": gemm,
    "MatMul": matmul,
    "Conv": _by_rank(conv, conv1d),
    "ConvTranspose": conv_transpose,
    "BatchNormalization": batch_normalization,
    "MaxPool": _by_rank(_pool("MaxPool2D"), _pool_1d("MaxPooling1D")),
    "AveragePool": _by_rank(_pool("AvgPool2D"), _pool_1d("AveragePooling1D")),
    "GlobalMaxPool": _by_rank(_global_pool("MaxPool2D"), _global_pool_1d("GlobalMaxPooling1D")),
    "GlobalAveragePool": _by_rank(_global_pool("AvgPool2D"), _global_pool_1d("GlobalAveragePooling1D")),
    "ReduceMean": _reduce_1d("GlobalAveragePooling1D"),
    "ReduceMax": _reduce_1d("GlobalMaxPooling1D"),
    "Gather": gather,
    "Cast": cast,
    "Resize": resize,
    "Pad": pad,
    "Slice": slice_,
    "Flatten": flatten,
    "Reshape": reshape,
    "Concat": concat,
    "Identity": identity,
    "Dropout": dropout,
    "Relu": _activation("relu"),
    "LeakyRelu": _activation("leaky_relu", alpha=lambda a: a.get("alpha", 0.01)),
    "Elu": _activation("elu", alpha=lambda a: a.get("alpha", 1.0)),
    "Selu": selu,
    "Tanh": _activation("tanh"),
    "Sigmoid": _activation("sigmoid"),
    "Softmax": softmax,
    "Gelu": gelu,
    "LogSoftmax": _softmax_like("log_softmax"),
    "Clip": clip,
    "HardSigmoid": hard_sigmoid,
    "HardSwish": _activation("hard_swish"),
    "Swish": swish,
    "Mish": _activation("mish"),
    "Softplus": _activation("softplus"),
    "Softsign": _activation("softsign"),
    "Exp": _activation("exponential"),
}

"""Import handlers for normalisation (LayerNormalization, GroupNormalization, InstanceNormalization),
PRelu, the element-wise merges of activations with broadcasting (Add, Sum, Sub, Mul, Max, Min,
Mean), constants folded into the layer before (Mul, Add, Sub, Div by a constant: a scale or shift
of its weights, else a ``Rescaling``), and the shape operators on activations (Transpose, Split,
Slice, ReduceMean, Unsqueeze, Squeeze). Each takes ``(state, node, attrs)`` like those of
``handlers``; ``HANDLERS`` maps operator types to them."""

from collections.abc import Callable

import numpy as np
import onnx

from . import handlers
from .folding import BATCH
from .graph import Entry, ImportState, Tensor, float32_value, hint_of
from .handlers import _bias, _position_table, _takes_bias, _unused_outputs

Node = onnx.NodeProto


def _shape(x: Tensor) -> list:
    return ["N", *x.shape]


def _axis(st: ImportState, node: Node, axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` of a rank-``rank`` tensor (batch included) as a positive axis; never the batch."""
    ax = axis + rank if axis < 0 else axis
    if not 1 <= ax < rank:
        raise st.fail(node, f"{what}={axis} is unsupported on a rank-{rank} input (the batch axis stays)")
    return ax


def _axes_of(st: ImportState, node: Node, attrs: dict, index: int, moved: int) -> list[int] | None:
    """Axes from the attribute (before opset ``moved``) or the constant input ``index``."""
    if st.opset < moved or "axes" in attrs:
        value = attrs.get("axes")
        return None if value is None else [int(a) for a in value]
    if index < len(node.input) and node.input[index]:
        return [int(a) for a in st.int_const(node, index, "axes").ravel()]
    return None


# -- normalisation ----------------------------------------------------------------------------------
def layer_normalization(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "X")
    _unused_outputs(st, node, "the mean and inverse standard deviation")
    rank = len(x.shape) + 1
    if "axes" in attrs:  # the written-out form (norm_patterns): the axes reduced over
        axes = sorted({_axis(st, node, int(a), rank, "axes") for a in attrs["axes"]})
        if len(axes) != len(attrs["axes"]):
            raise st.fail(node, f"axes {list(attrs['axes'])} repeat an axis")
    else:
        first = _axis(st, node, int(attrs.get("axis", -1)), rank)
        axes = list(range(first, rank))
    shape = tuple(x.shape[a - 1] for a in axes)
    weights = {"gamma": np.ones(shape, np.float32), "beta": np.zeros(shape, np.float32)}
    for i, (name, what) in enumerate([("gamma", "Scale"), ("beta", "B")], 1):
        value = st.optional_const(node, i, what)
        if value is not None:
            try:
                weights[name] = np.broadcast_to(value, shape).copy()
            except ValueError:
                message = f"{what} of shape {list(value.shape)} does not fit normalised axes {list(shape)}"
                raise st.fail(node, message) from None
    single = len(axes) == 1
    config = {
        "axis": (axes[0] - rank if axes[0] == rank - 1 else axes[0]) if single else [a for a in axes],
        "epsilon": float32_value(attrs.get("epsilon", 1e-5)),
    }
    st.add(node, "LayerNormalization", config, [x], x.shape, weights, weight_inputs=(1, 2))


def _per_channel(st: ImportState, node: Node, value: np.ndarray, n: int, what: str) -> np.ndarray:
    if value.size != n:
        raise st.fail(node, f"{what} of shape {list(value.shape)} does not fit {n} channels or groups")
    return value.reshape(n)


def group_normalization(st: ImportState, node: Node, attrs: dict) -> None:
    """``GroupNormalization`` (18: per-group scale and bias; 21: per channel) and the synthetic node
    of ``norm_patterns`` (a fourth input: the shape reshaped back to; per-group scale and bias)."""
    x = st.tensor(node, 0, "X")
    if len(x.shape) < 1:
        raise st.fail(node, f"the input {_shape(x)} has no channel axis")
    c, groups = x.shape[0], int(attrs.get("num_groups", 0))
    synthetic = len(node.input) > 3
    if synthetic:
        back = list(st.int_const(node, 3, "shape").ravel())
        if len(back) != len(x.shape) + 1 or back[0] not in (0, BATCH) or [int(d) for d in back[1:]] != list(x.shape):
            raise st.fail(node, f"the shape {back} reshaped back to is not the input's {_shape(x)}")
    if groups < 1 or c % groups:
        raise st.fail(node, f"num_groups={groups} does not divide the {c} channels")
    per_group = synthetic or st.opset < 21
    n = groups if per_group else c
    scale = _per_channel(st, node, st.const(node, 1, "scale"), n, "scale")
    bias = _per_channel(st, node, st.const(node, 2, "bias"), n, "bias")
    if per_group:
        scale, bias = np.repeat(scale, c // groups), np.repeat(bias, c // groups)
    config = {"groups": groups, "epsilon": float32_value(attrs.get("epsilon", 1e-5))}
    st.add(node, "GroupNormalization", config, [x], x.shape, {"gamma": scale, "beta": bias}, weight_inputs=(1, 2))


def instance_normalization(st: ImportState, node: Node, attrs: dict) -> None:
    """Instance normalisation is group normalisation with one group per channel."""
    x = st.tensor(node, 0, "input")
    if len(x.shape) < 2:
        raise st.fail(node, f"the input {_shape(x)} has no axis to normalise over besides the channels")
    c = x.shape[0]
    weights = {
        "gamma": _per_channel(st, node, st.const(node, 1, "scale"), c, "scale"),
        "beta": _per_channel(st, node, st.const(node, 2, "B"), c, "B"),
    }
    config = {"groups": c, "epsilon": float32_value(attrs.get("epsilon", 1e-5))}
    st.add(node, "GroupNormalization", config, [x], x.shape, weights, weight_inputs=(1, 2))


def prelu(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "X")
    slope = st.const(node, 1, "slope")
    rank = len(x.shape)
    if slope.ndim > rank + 1 or (slope.ndim == rank + 1 and slope.shape[0] != 1):
        raise st.fail(node, f"slope of shape {list(slope.shape)} varies over the batch of inputs {_shape(x)}")
    padded = (1,) * (rank - min(slope.ndim, rank)) + tuple(slope.shape[-rank:] if slope.ndim else ())
    if any(p not in (1, d) for p, d in zip(padded, x.shape)):
        raise st.fail(node, f"slope of shape {list(slope.shape)} does not broadcast to inputs {_shape(x)}")
    shared = [i + 1 for i, (p, d) in enumerate(zip(padded, x.shape)) if p == 1 and d != 1]
    config = {"shared_axes": shared} if shared else {}
    st.add(node, "PReLU", config, [x], x.shape, {"alpha": slope.reshape(padded)}, weight_inputs=(1,))


# -- merges of activations --------------------------------------------------------------------------
def _broadcast(st: ImportState, node: Node, xs: list[Tensor]) -> tuple:
    ranks = {len(x.shape) for x in xs}
    if len(ranks) != 1:
        raise st.fail(
            node,
            f"inputs of shapes {[_shape(x) for x in xs]} have different ranks: ONNX would broadcast the batch axis "
            f"against another, which regnet does not",
        )
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*(x.shape for x in xs)))
    except ValueError:
        raise st.fail(node, f"inputs of shapes {[_shape(x) for x in xs]} do not broadcast together") from None


def _merge(type_name: str):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        xs = [st.tensor(node, i) for i in range(len(node.input))]
        if len(xs) == 1:
            st.pass_through(node, xs[0])
            return
        st.add(node, type_name, {}, xs, _broadcast(st, node, xs))

    return handler


def _constant_operand(st: ImportState, node: Node) -> tuple[Tensor, int, np.ndarray] | None:
    """``(tensor, its input index, the constant)`` for a binary node of a tensor and a constant."""
    a, b = st.input(node, 0), st.input(node, 1)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return None
    x, index = (a, 0) if isinstance(a, Tensor) else (b, 1)
    if not isinstance(x, Tensor):
        raise st.fail(node, "both inputs are constants here, yet the node was not folded")
    return x, index, st.const(node, 1 - index, "the constant operand")


def _per_sample(st: ImportState, node: Node, c: np.ndarray, x: Tensor) -> np.ndarray:
    """The constant seen with the per-sample rank of ``x`` (leading ones added; no batch axis)."""
    rank = len(x.shape)
    if c.ndim > rank + 1 or (c.ndim == rank + 1 and c.shape[0] != 1):
        raise st.fail(node, f"a constant of shape {list(c.shape)} varies over the batch of inputs {_shape(x)}")
    c = c.reshape(c.shape[1:]) if c.ndim == rank + 1 else c
    c = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if any(a not in (1, d) for a, d in zip(c.shape, x.shape)):
        raise st.fail(node, f"a constant of shape {list(c.shape)} does not broadcast to inputs {_shape(x)}")
    return c


def _channel_vector(entry: Entry, c: np.ndarray) -> tuple[str, np.ndarray] | None:
    """``(weight layout, per-output vector)`` when the per-sample constant ``c`` varies only along
    the axis on which ``entry`` has one weight per output (None when it cannot take it)."""
    shape = entry.shape
    if entry.type == "Dense":
        axis = len(shape) - 1
    elif entry.type in ("Conv2D", "BatchNorm"):
        axis = 0
    elif entry.type == "GroupNormalization":
        ax = int(entry.config.get("axis", 1))
        axis = (ax + len(shape) + 1 if ax < 0 else ax) - 1
    elif entry.type == "LayerNormalization":
        return ("norm", c) if "gamma" in entry.weights else None
    else:
        return None
    if any(d != 1 for i, d in enumerate(c.shape) if i != axis):
        return None
    return "channel", np.broadcast_to(c.reshape(-1), (shape[axis],)).astype(np.float32)


def _foldable(st: ImportState, x: Tensor, name: str) -> bool:
    src = x.source
    return (
        src is not None
        and st.sole_consumer(name)
        and src.config.get("activation") in (None, "linear")
        and src.type in ("Dense", "Conv2D", "BatchNorm", "GroupNormalization", "LayerNormalization")
    )


def _norm_view(entry: Entry, c: np.ndarray, weight: str) -> np.ndarray | None:
    """A LayerNormalization weight combined with ``c`` (per sample), or None when ``c`` varies off
    the normalised axes."""
    axis = entry.config.get("axis", -1)
    rank = len(entry.shape) + 1
    axes = sorted(a + rank if a < 0 else a for a in (axis if isinstance(axis, list) else [axis]))
    if any(d != 1 for i, d in enumerate(c.shape) if i + 1 not in axes):
        return None
    return c.reshape([entry.shape[a - 1] if c.shape[a - 1] != 1 else 1 for a in axes])


def _absorb(st: ImportState, node: Node, x: Tensor, name: str, c: np.ndarray, *, scale: bool) -> bool:
    """Fold ``x * c`` (``scale``) or ``x + c`` into the weights of the layer making ``x``, or of the
    layer before a Permute making ``x`` (ConvNeXt's layer scale after its channels-last MLP)."""
    src = x.source
    if src is not None and src.type == "Permute" and st.sole_consumer(name):
        inner = st.producer(name)
        if inner is None or inner.op_type != "Transpose":
            return False
        inner_x = st.values.get(inner.input[0])
        if not isinstance(inner_x, Tensor) or inner_x.source is not src.inputs[0]:
            return False
        order = np.argsort([d - 1 for d in src.config["dims"]])
        if not _fold_weights(st, inner_x, inner.input[0], np.transpose(c, order), scale=scale):
            return False
        st.pass_through(node, Tensor(src, x.shape), source=name)
        return True
    if not _fold_weights(st, x, name, c, scale=scale):
        return False
    assert src is not None
    _take_hint(src, node)
    st.pass_through(node, Tensor(src, x.shape), source=name)
    return True


def _fold_weights(st: ImportState, x: Tensor, name: str, c: np.ndarray, *, scale: bool) -> bool:
    """Fold the per-sample constant ``c`` (a scale, else a shift) into the weights of the layer
    making ``x`` (read only by the node at hand): whether it could."""
    src = x.source
    if src is None or not _foldable(st, x, name):
        return False
    found = _channel_vector(src, c)
    if found is None:
        return False
    kind, v = found
    w = src.weights
    if kind == "norm":
        cn = _norm_view(src, c, "gamma")
        if cn is None:
            return False
        if scale:
            w["gamma"] = np.ascontiguousarray(w["gamma"] * cn, np.float32)
            w["beta"] = np.ascontiguousarray(w["beta"] * cn, np.float32)
        else:
            w["beta"] = np.ascontiguousarray(w["beta"] + cn, np.float32)
    elif src.type in ("Dense", "Conv2D"):
        if scale:
            w["kernel"] = np.ascontiguousarray(
                w["kernel"] * (v if src.type == "Dense" else v.reshape(-1, 1, 1, 1)), np.float32
            )
            if "bias" in w:
                w["bias"] = w["bias"] * v
        elif "bias" in w:
            w["bias"] = w["bias"] + v
        else:
            return False  # a bias-free layer takes its bias through handlers._bias
    else:  # BatchNorm, GroupNormalization: one gamma and beta per channel
        if "gamma" not in w or "beta" not in w:
            return False
        if scale:
            w["gamma"], w["beta"] = w["gamma"] * v, w["beta"] * v
        else:
            w["beta"] = w["beta"] + v
    return True


def _take_hint(src: Entry, node: Node) -> None:
    """regnet writes a layer's scale and shift last: the config hint is on that node."""
    hint = hint_of(node)
    if hint is not None:
        src.hint = hint
        if isinstance(hint.get("name"), str):
            src.names.insert(0, hint["name"])


def _rescale(st: ImportState, node: Node, x: Tensor, name: str, scale: float, offset: float) -> None:
    """``x * scale + offset`` with numbers: merged into a ``Rescaling`` just before, else a new one."""
    src = x.source
    if src is not None and src.type == "Rescaling" and st.sole_consumer(name):
        s, o = src.config["scale"], src.config.get("offset", 0.0)
        src.config["scale"] = float32_value(s * scale)
        src.config["offset"] = float32_value(o * scale + offset)
        if not src.config["offset"]:
            del src.config["offset"]
        _take_hint(src, node)
        st.pass_through(node, Tensor(src, x.shape), source=name)
        return
    config = {"scale": float32_value(scale)}
    if offset:
        config["offset"] = float32_value(offset)
    st.add(node, "Rescaling", config, [x], x.shape)


def _with_constant(st: ImportState, node: Node, x: Tensor, index: int, c: np.ndarray, op: str) -> None:
    """``x op c`` (or ``c op x``) for ``op`` in Add, Sub, Mul, Div."""
    name = node.input[index]
    cs = _per_sample(st, node, c, x)
    if op == "Sub" and index == 1:  # c - x = -x + c: only as numbers
        if cs.size != 1:
            raise st.fail(
                node, f"subtracting inputs {_shape(x)} from a constant of shape {list(c.shape)} is unsupported"
            )
        _rescale(st, node, x, name, -1.0, float(cs.ravel()[0]))
        return
    if op == "Div" and index == 1:
        raise st.fail(node, "dividing a constant by the inputs is unsupported (regnet has no reciprocal layer)")
    if op == "Sub":
        cs, op = -cs, "Add"
    if op == "Div":
        if np.any(cs == 0):
            raise st.fail(node, "division by a constant that holds zeros")
        cs, op = (1.0 / cs).astype(np.float32), "Mul"
    scale = op == "Mul"
    if op == "Add" and _position_table(st, x, name, c):  # a learned (L, D) table on (N, L, D)
        weights = {"embeddings": c.reshape(x.shape)}
        st.add(node, "PositionEmbedding", {"sequence_length": x.shape[0]}, [x], x.shape, weights, (index,))
        return
    if not scale and x.source is not None and _takes_bias(st, x.source, name, c, x.shape):
        _bias(st, node, x, name, c)  # the bias of a bias-free MatMul or Conv
        return
    if cs.size == 1:
        value = float(cs.ravel()[0])
        _rescale(st, node, x, name, value if scale else 1.0, 0.0 if scale else value)
        return
    if _absorb(st, node, x, name, cs, scale=scale):
        return
    what, role = ("multiplying by", "a scale of the weights") if scale else ("adding", "the bias")
    raise st.fail(
        node,
        f"{what} a constant of shape {list(c.shape)} is supported only as {role} of the MatMul, Conv or "
        f"normalisation just before (one value per output, no activation between, feeding only this node) "
        f"or as one number (a Rescaling)",
    )


def _binary(type_name: str | None, op: str):
    def handler(st: ImportState, node: Node, attrs: dict) -> None:
        found = _constant_operand(st, node)
        if found is not None:
            _with_constant(st, node, *found, op)
            return
        if type_name is None:
            raise st.fail(node, f"{op} of two computed tensors is unsupported (regnet has no such layer)")
        a, b = st.tensor(node, 0), st.tensor(node, 1)
        shape = _broadcast(st, node, [a, b])
        src = a.source
        if (
            type_name == "Multiply"
            and src is not None
            and src.type == "Multiply"
            and src.hint is None  # regnet writes a Multiply of n inputs as n - 1 Mul nodes, the last with a hint
            and "activation" not in src.config
            and st.sole_consumer(node.input[0])
        ):
            src.inputs.append(b.source)
            src.shape = shape
            hint = hint_of(node)
            if hint is not None:
                src.hint = hint
                if isinstance(hint.get("name"), str):
                    src.names.insert(0, hint["name"])
            st.pass_through(node, Tensor(src, shape))
            return
        st.add(node, type_name, {}, [a, b], shape)

    return handler


# -- shapes -----------------------------------------------------------------------------------------
def transpose(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    rank = len(x.shape) + 1
    perm = [int(p) for p in attrs.get("perm", range(rank - 1, -1, -1))]
    if sorted(perm) != list(range(rank)) or perm[0] != 0:
        raise st.fail(node, f"perm={perm} is unsupported: regnet keeps the batch on axis 0")
    if perm == list(range(rank)):
        st.pass_through(node, x)
        return
    st.add(node, "Permute", {"dims": perm[1:]}, [x], tuple(x.shape[p - 1] for p in perm[1:]))


def _channels(st: ImportState, node: Node, x: Tensor, axis: int) -> int:
    rank = len(x.shape) + 1
    if _axis(st, node, axis, rank) != 1:
        raise st.fail(node, f"axis={axis} is unsupported (regnet splits and slices the channels: axis 1)")
    return x.shape[0]


def _slice_channels(st: ImportState, node: Node, x: Tensor, start: int, stop: int, out: int) -> None:
    """Output ``out`` of ``node`` is channels ``[start, stop)`` of ``x``."""
    name = node.output[out]
    if start == 0 and stop == x.shape[0]:  # the whole input: the output is the input itself
        st.consumers[name] += st.consumers[node.input[0]] - 1
        st.values[name] = x
        return
    first = node.output[0]
    saved = st.values.get(first)
    entry = st.add(node, "SliceChannels", {"start": start, "stop": stop}, [x], (stop - start, *x.shape[1:]))
    if out:
        st.values[name] = st.values.pop(first)
        if saved is not None:
            st.values[first] = saved
        entry.names = [n for n in entry.names[:-1]] + [f"{entry.names[-1]}_{out}"]


def split(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "input")
    c = _channels(st, node, x, int(attrs.get("axis", 0)))
    k = len(node.output)
    if st.opset < 13 and "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    elif st.opset >= 13 and len(node.input) > 1 and node.input[1]:
        sizes = [int(s) for s in st.int_const(node, 1, "split").ravel()]
    else:
        parts = int(attrs.get("num_outputs", k))
        step = -(-c // parts)
        sizes = [min(step, c - i * step) for i in range(parts)]
    if len(sizes) != k or sum(sizes) != c or min(sizes) < 1:
        raise st.fail(node, f"split sizes {sizes} do not cut {c} channels into {k} outputs")
    start = 0
    for out, size in enumerate(sizes):
        _slice_channels(st, node, x, start, start + size, out)
        start += size


def slice_(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    starts = [int(v) for v in st.int_const(node, 1, "starts").ravel()]
    ends = [int(v) for v in st.int_const(node, 2, "ends").ravel()]
    axes = [int(v) for v in st.int_const(node, 3, "axes").ravel()] if st.input(node, 3) is not None else [0]
    if len(x.shape) == 3 and all(a % 4 in (2, 3) for a in axes):  # height and width: cropping
        handlers.slice_(st, node, attrs)
        return
    steps = [int(v) for v in st.int_const(node, 4, "steps").ravel()] if st.input(node, 4) is not None else [1]
    if len(starts) != 1 or len(ends) != 1 or len(axes) != 1 or steps != [1]:
        raise st.fail(node, f"starts {starts}, ends {ends}, axes {axes}, steps {steps}: regnet slices one axis, step 1")
    c = _channels(st, node, x, axes[0])
    start, stop = (max(0, min(c, v + c if v < 0 else v)) for v in (starts[0], ends[0]))
    if stop <= start:
        raise st.fail(node, f"the slice [{starts[0]}, {ends[0]}) of {c} channels is empty")
    _slice_channels(st, node, x, start, stop, 0)


def reduce_mean(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    if len(x.shape) == 2:  # (N, C, L): over the length, a 1-D global pooling
        handlers.HANDLERS["ReduceMean"](st, node, attrs)
        return
    axes = _axes_of(st, node, attrs, 1, 18)
    rank = len(x.shape) + 1
    spatial = axes is not None and rank == 4 and sorted(a + rank if a < 0 else a for a in axes) == [2, 3]
    if not spatial:
        raise st.fail(
            node,
            f"axes={axes} on inputs {_shape(x)} are unsupported (regnet averages (N, C, H, W) over H and W: "
            f"GlobalAveragePooling2D)",
        )
    keep = bool(attrs.get("keepdims", 1))
    c = x.shape[0]
    st.add(node, "GlobalAveragePooling2D", {"keepdims": True} if keep else {}, [x], (c, 1, 1) if keep else (c,))


def _reshaped(st: ImportState, node: Node, x: Tensor, shape: tuple) -> None:
    if shape == x.shape:
        st.pass_through(node, x)
        return
    st.add(node, "Reshape", {"target_shape": list(shape)}, [x], shape)


#: the operators whose regnet layers broadcast a sample of fewer axes by itself
MERGES = frozenset(["Add", "Sum", "Sub", "Mul", "Max", "Min", "Mean"])


def unsqueeze(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    axes = _axes_of(st, node, attrs, 1, 13) or []
    rank = len(x.shape) + 1 + len(axes)
    where = sorted(a + rank if a < 0 else a for a in axes)
    if not axes or len(set(where)) != len(where) or min(where) < 1 or max(where) >= rank:
        raise st.fail(node, f"axes={axes} are unsupported (regnet keeps the batch on axis 0)")
    out = node.output[0]
    if (
        where == list(range(1, len(where) + 1))
        and out not in st.outputs
        and {n.op_type for n in st.readers.get(out, [])} <= MERGES
    ):
        # leading axes for an element-wise merge (as regnet writes one of inputs of different ranks):
        # the merge layer broadcasts the sample as it is
        st.pass_through(node, Tensor(x.source, (1,) * len(where) + tuple(x.shape)))
        return
    shape = list(x.shape)
    for a in where:
        shape.insert(a - 1, 1)
    _reshaped(st, node, x, tuple(shape))


def squeeze(st: ImportState, node: Node, attrs: dict) -> None:
    x = st.tensor(node, 0, "data")
    rank = len(x.shape) + 1
    axes = _axes_of(st, node, attrs, 1, 13)
    where = (
        [i + 1 for i, d in enumerate(x.shape) if d == 1] if axes is None else [a + rank if a < 0 else a for a in axes]
    )
    if any(not 1 <= a < rank or x.shape[a - 1] != 1 for a in where):
        raise st.fail(node, f"axes={axes} are unsupported on inputs {_shape(x)} (the batch axis stays)")
    shape = tuple(d for i, d in enumerate(x.shape) if i + 1 not in where)
    if not shape:
        raise st.fail(node, f"squeezing inputs {_shape(x)} leaves the batch axis alone")
    _reshaped(st, node, x, shape)


HANDLERS: dict[str, Callable[[ImportState, Node, dict], None]] = {
    "LayerNormalization": layer_normalization,
    "GroupNormalization": group_normalization,
    "InstanceNormalization": instance_normalization,
    "PRelu": prelu,
    "Add": _binary("Add", "Add"),
    "Sum": _merge("Add"),
    "Sub": _binary("Subtract", "Sub"),
    "Mul": _binary("Multiply", "Mul"),
    "Div": _binary(None, "Div"),
    "Max": _merge("Maximum"),
    "Min": _merge("Minimum"),
    "Mean": _merge("Average"),
    "Transpose": transpose,
    "Split": split,
    "Slice": slice_,
    "ReduceMean": reduce_mean,
    "Unsqueeze": unsqueeze,
    "Squeeze": squeeze,
}

__all__ = ["HANDLERS"]

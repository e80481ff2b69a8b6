"""Importing ONNX's recurrent operators (``RNN``, ``LSTM``, ``GRU``) as regnet's SimpleRNN, LSTM,
GRU and Bidirectional, with the time-major plumbing exporters write around them.

ONNX's recurrent operators read ``X`` time-major ``(L, N, D)`` (``layout=0``) and write ``Y``
``(L, directions, N, units)`` and ``Y_h`` ``(directions, N, units)``; PyTorch (``batch_first``)
writes ``Transpose`` before, and ``Squeeze`` / ``Transpose`` / ``Reshape`` after. While a tensor is
in one of these forms it is a ``Sequence``: regnet's batch-major tensor and the form it is seen in.
With ``layout=1`` (batch-major) ``Y`` is ``(N, L, directions, units)`` (``NLDU``) and ``Y_h``
``(N, directions, units)`` (``NDU``): ``Squeeze`` of the direction axis or ``Reshape`` to
``(N, L, 2 units)`` / ``(N, 2 units)`` give the regnet tensor. Only the forms that lead back to a
batch-major tensor are followed:

* ``LNF``: time-major ``(L, N, F)``; ``Transpose(perm=[1, 0, 2])`` from and to batch-major;
* ``LDNU``: ``Y``; ``Squeeze(axes=[1])`` (one direction) gives ``LNF``,
  ``Transpose(perm=[0, 2, 1, 3])`` gives ``LNDU``, which ``Reshape`` to ``(L, N, 2 units)`` makes
  ``LNF`` (forward then backward features, as Bidirectional's concat);
* ``DNU``: ``Y_h``; ``Squeeze(axes=[0])`` or ``Gather`` of index 0 (one direction) gives the
  batch-major ``(N, units)``,
  ``Transpose(perm=[1, 0, 2])`` then ``Reshape`` to ``(N, 2 units)`` the concat of both.

Initial states must be absent or zero (PyTorch writes zeros of the batch size); peepholes,
``clip``, ``input_forget``, ``sequence_lens`` and activations other than Tanh, Sigmoid and Relu
are refused. A ``reverse`` operator's ``Y`` is in input order, regnet's go_backwards output is
reversed: it is read back through a ``Slice`` that reverses the time axis (as regnet exports it).
"""

from typing import Any

import attrs
import numpy as np
import onnx

from .. import layers, registry
from ..errors import RegnetError
from . import handlers, vocab_handlers
from .folding import BATCH
from .graph import ImportState, Tensor, hint_of
from .sequence import LSTM_TO_ONNX, RECURRENT_ACTIVATIONS

Node = onnx.NodeProto

#: ONNX activation name -> regnet's
ACTIVATIONS = {v: k for k, v in RECURRENT_ACTIVATIONS.items()}
#: ONNX's LSTM gate blocks (i, o, f, c) in Keras's order (i, f, c, o)
ONNX_TO_LSTM = [int(i) for i in np.argsort(LSTM_TO_ONNX)]
TYPES = {"RNN": "SimpleRNN", "LSTM": "LSTM", "GRU": "GRU"}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


@attrs.define(eq=False)
class Sequence:
    """A run-time tensor seen in a time-major form (see the module docstring): ``tensor`` is the
    batch-major regnet tensor it is a view of."""

    tensor: Tensor
    form: str
    directions: int = 1
    reversed: bool = False  # time runs backwards relative to the regnet tensor (go_backwards with Y)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is(value: Any, *options: Any) -> bool:
    return any(value is o if o is BATCH else (value is not BATCH and int(value) == o) for o in options)


def _axes(st: ImportState, node: Node, attrs_: dict) -> list[int]:
    if st.opset < 13:
        return [int(a) for a in attrs_.get("axes", [])]
    if len(node.input) < 2 or not node.input[1]:
        return []
    return [int(a) for a in np.asarray(st.int_const(node, 1, "axes")).ravel()]


def transpose(st: ImportState, node: Node, attrs_: dict) -> None:
    x = st.input(node, 0)
    perm = [int(p) for p in attrs_.get("perm", [])]
    if isinstance(x, Tensor) and len(x.shape) == 2 and perm == [1, 0, 2]:
        st.alias(node, Sequence(x, "LNF"))
    elif isinstance(x, Sequence) and x.form == "LNF" and not x.reversed and perm == [1, 0, 2]:
        st.alias(node, x.tensor)
    elif isinstance(x, Sequence) and x.form == "LDNU" and perm == [0, 2, 1, 3]:
        st.alias(node, Sequence(x.tensor, "LNDU", x.directions, x.reversed))
    elif isinstance(x, Sequence) and x.form == "DNU" and perm == [1, 0, 2]:
        st.alias(node, Sequence(x.tensor, "NDU", x.directions))
    elif not isinstance(x, Sequence) and "Transpose" in general():
        general()["Transpose"](st, node, attrs_)  # the general Transpose (Permute)
    else:
        form = x.form if isinstance(x, Sequence) else "a batch-major tensor"
        raise st.fail(
            node,
            f"perm {perm} on {form} is unsupported: regnet transposes run-time tensors only between the batch-major "
            f"and time-major forms of a sequence around recurrent operators",
        )


def squeeze(st: ImportState, node: Node, attrs_: dict) -> None:
    x = st.input(node, 0)
    axes = _axes(st, node, attrs_)
    if (
        isinstance(x, Sequence)
        and x.directions == 1
        and (x.form, axes) in (("NLDU", [2]), ("NLDU", [-2]), ("NDU", [1]), ("NDU", [-2]))
    ):
        st.alias(node, x.tensor)  # layout 1: batch-major already
    elif isinstance(x, Sequence) and x.directions == 1 and x.form == "LDNU" and axes in ([1], [-3]):
        st.alias(node, Sequence(x.tensor, "LNF", 1, x.reversed))
    elif isinstance(x, Sequence) and x.directions == 1 and x.form == "DNU" and axes in ([0], [-3]):
        st.alias(node, x.tensor)
    else:
        raise st.fail(node, f"squeezing axes {axes} of a run-time tensor is supported only on a recurrent output")


def reshape(st: ImportState, node: Node, attrs_: dict) -> None:
    x = st.input(node, 0)
    target = list(np.asarray(st.int_const(node, 1, "shape")).ravel())
    steps, width = x.tensor.shape[0], x.tensor.shape[-1]
    if (
        x.form == "LNDU"
        and len(target) == 3
        and _is(target[0], 0, steps)
        and _is(target[1], 0, BATCH, -1)
        and _is(target[2], -1, width)
        and not (_is(target[1], -1) and _is(target[2], -1))
    ):
        st.alias(node, Sequence(x.tensor, "LNF", 1, x.reversed))
    elif (
        x.form == "NLDU"
        and len(target) == 3
        and _is(target[0], 0, BATCH, -1)
        and _is(target[1], 0, steps)
        and _is(target[2], -1, width)
        and not (_is(target[0], -1) and _is(target[2], -1))
    ):
        st.alias(node, x.tensor)
    elif x.form == "NDU" and len(target) == 2 and _is(target[0], 0, BATCH, -1) and _is(target[1], -1, width):
        if _is(target[0], -1) and _is(target[1], -1):
            raise st.fail(node, f"the target shape {target} is ambiguous")
        st.alias(node, x.tensor)
    else:
        raise st.fail(node, f"reshaping a recurrent output ({x.form}) to {target} is unsupported")


def _activations(st: ImportState, node: Node, attrs_: dict, op: str, directions: int) -> list[str]:
    names = [_text(a) for a in attrs_.get("activations", [])] or DEFAULT_ACTIVATIONS[op] * directions
    per = len(DEFAULT_ACTIVATIONS[op])
    if len(names) != per * directions or (directions == 2 and names[:per] != names[per:]):
        raise st.fail(node, f"activations {names} are unsupported (one set, the same for both directions)")
    if "activation_alpha" in attrs_ or "activation_beta" in attrs_:
        raise st.fail(node, "activation_alpha / activation_beta are unsupported")
    bad = [a for a in names if a not in ACTIVATIONS]
    if bad:
        raise st.fail(node, f"activations {bad} are unsupported (regnet imports {', '.join(ACTIVATIONS)})")
    return [ACTIVATIONS[a] for a in names[:per]]


def _zero_state(st: ImportState, node: Node, index: int, what: str) -> None:
    value = st.input(node, index)
    if value is None:
        return
    if not isinstance(value, np.ndarray) or value.dtype == object or np.any(value != 0):
        raise st.fail(node, f"{what} (input {index}) must be absent or zeros (regnet's states start at zero)")


def _blocks(a: np.ndarray, order: list[int], units: int) -> np.ndarray:
    return np.concatenate([a[..., g * units : (g + 1) * units] for g in order], axis=-1)


def _regnet_weights(op: str, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, u: int) -> dict:
    """regnet's weights of one direction from ONNX's ``W`` ``(G u, D)``, ``R``, ``B`` ``(2 G u,)``."""
    kernel, recurrent = w.T, r.T
    if op == "LSTM":
        kernel, recurrent = _blocks(kernel, ONNX_TO_LSTM, u), _blocks(recurrent, ONNX_TO_LSTM, u)
    weights = {"kernel": kernel, "recurrent_kernel": recurrent}
    if b is not None:
        wb, rb = b[: GATES[op] * u], b[GATES[op] * u :]
        if op == "GRU":
            weights["bias"] = np.stack([wb, rb])
        else:
            bias = wb + rb
            weights["bias"] = _blocks(bias, ONNX_TO_LSTM, u) if op == "LSTM" else bias
    return weights


#: the fields that decide what a recurrent layer computes (the rest are initial values)
COMPUTING = ("units", "activation", "recurrent_activation", "use_bias", "return_sequences", "go_backwards", "use_mask")


def _inner_config(type_name: str, config: dict, hint: dict | None) -> dict:
    """Bidirectional's ``layer``: the regnet exporter's (from the hint) when it computes the same,
    else the fields that differ from their defaults."""
    mine = layers.create({"type": type_name, **config})
    theirs = hint.get("layer") if hint and hint.get("type") == "Bidirectional" else None
    if isinstance(theirs, dict) and theirs.get("type") == type_name:
        try:
            other = layers.create(dict(theirs))
        except RegnetError:
            other = None
        if other is not None and all(
            registry.to_plain(getattr(mine, k, None)) == registry.to_plain(getattr(other, k, None)) for k in COMPUTING
        ):
            return dict(theirs)
    defaults = layers.create({"type": type_name, "units": config["units"]}).get_config()
    return {k: v for k, v in mine.get_config().items() if k in ("type", "units") or v != defaults.get(k)}


def recurrent(st: ImportState, node: Node, attrs_: dict) -> None:
    op = node.op_type
    layout = int(attrs_.get("layout", 0))
    x = st.input(node, 0)
    if layout == 0 and isinstance(x, Sequence) and x.form == "LNF" and not x.reversed:
        source = x.tensor
    elif layout == 1 and isinstance(x, Tensor) and len(x.shape) == 2:
        source = x
    else:
        raise st.fail(
            node, "X must be a sequence: (L, N, D) with layout 0 (after a Transpose), (N, L, D) with layout 1"
        )
    direction = _text(attrs_.get("direction", "forward"))
    directions = 2 if direction == "bidirectional" else 1
    u = int(attrs_.get("hidden_size", 0))
    gates = GATES[op]
    w, r = st.const(node, 1, "W"), st.const(node, 2, "R")
    features = source.shape[-1]
    if u < 1 or w.shape != (directions, gates * u, features) or r.shape != (directions, gates * u, u):
        raise st.fail(node, f"W {list(w.shape)} and R {list(r.shape)} do not fit hidden_size {u} and {features} inputs")
    b = st.optional_const(node, 3, "B")
    if b is not None and b.shape != (directions, 2 * gates * u):
        raise st.fail(node, f"B of shape {list(b.shape)} does not fit hidden_size {u}")
    if st.input(node, 4) is not None:
        raise st.fail(node, "sequence_lens is unsupported (every sequence is read whole)")
    _zero_state(st, node, 5, "initial_h")
    if op == "LSTM":
        _zero_state(st, node, 6, "initial_c")
        if st.input(node, 7) is not None:
            raise st.fail(node, "peepholes (input P) are unsupported")
        if int(attrs_.get("input_forget", 0)):
            raise st.fail(node, "input_forget=1 is unsupported")
    if "clip" in attrs_:
        raise st.fail(node, "clip is unsupported")
    if op == "GRU" and int(attrs_.get("linear_before_reset", 0)) != 1:
        raise st.fail(node, "linear_before_reset=0 is unsupported (regnet's GRU is the reset_after form: 1)")
    acts = _activations(st, node, attrs_, op, directions)
    used = [bool(i < len(node.output) and node.output[i] and st.consumers[node.output[i]]) for i in range(3)]
    if used[2]:
        raise st.fail(node, "its output Y_c (the last cell state) is used; regnet's LSTM returns the hidden state")
    if used[0] and used[1]:
        raise st.fail(node, "both Y and Y_h are used; a regnet recurrent layer returns one of them")
    sequences = not used[1]
    if direction not in ("forward", "reverse", "bidirectional"):
        raise st.fail(node, f"direction {direction!r} is unknown")
    config: dict[str, Any] = {"units": u, "activation": acts[-1]}
    if op != "RNN":
        config["recurrent_activation"] = acts[0]
    if sequences:
        config["return_sequences"] = True
    if direction == "reverse":
        config["go_backwards"] = True
    if b is None:
        config["use_bias"] = False
    hint = hint_of(node)
    if directions == 1 and hint and hint.get("type") == TYPES[op] and "unit_forget_bias" in hint:
        config["unit_forget_bias"] = hint["unit_forget_bias"]  # an initial value only: the graph cannot say
    parts = [_regnet_weights(op, w[d], r[d], None if b is None else b[d], u) for d in range(directions)]
    width = directions * u
    shape = (source.shape[0], width) if sequences else (width,)
    if directions == 1:
        entry = st.add(node, TYPES[op], config, [source], shape, parts[0], weight_inputs=(1, 2, 3))
    else:
        weights = {f"{p}.{k}": v for p, part in zip(("forward", "backward"), parts) for k, v in part.items()}
        bi = {"layer": _inner_config(TYPES[op], config, hint)}
        entry = st.add(node, "Bidirectional", bi, [source], shape, weights, weight_inputs=(1, 2, 3))
    out = Tensor(entry, entry.shape)
    # ONNX's reverse direction writes Y in input order; regnet's go_backwards output runs backwards
    y_form, h_form = ("LDNU", "DNU") if layout == 0 else ("NLDU", "NDU")
    if layout == 1 and direction == "reverse" and sequences:
        raise st.fail(node, "direction='reverse' with layout=1 and Y used is unsupported")
    st.values[node.output[0]] = Sequence(out, y_form, directions, direction == "reverse")
    if len(node.output) > 1 and node.output[1]:
        st.values[node.output[1]] = Sequence(out, h_form, directions)


def slice_(st: ImportState, node: Node, attrs_: dict) -> None:
    """A reversal of the time axis (``Slice`` with step -1 over the whole axis 0) of a time-major
    sequence: regnet's export of go_backwards with ``return_sequences`` writes it."""
    x = st.input(node, 0)
    if not isinstance(x, Sequence) or x.form != "LNF" or len(node.input) < 5:
        raise st.fail(node, "slicing a run-time tensor is supported only as the time reversal of a recurrent output")
    steps = x.tensor.shape[0]
    starts, ends, axes, step = (
        np.asarray(st.int_const(node, i, w)).ravel() for i, w in enumerate(("starts", "ends", "axes", "steps"), 1)
    )
    whole = len(starts) == 1 and int(starts[0]) in (-1, steps - 1) and int(ends[0]) <= -steps - 1
    if not (whole and list(axes) in ([0], [-3]) and list(step) == [-1]):
        raise st.fail(node, "slicing a run-time tensor is supported only as the time reversal of a recurrent output")
    st.alias(node, Sequence(x.tensor, "LNF", 1, not x.reversed))


def gather(st: ImportState, node: Node, attrs_: dict) -> None:
    """``Y_h[0]`` of one direction (PyTorch's ``h_n[0]`` or ``h_n[-1]``): the last state ``(N, units)``."""
    x = st.input(node, 0)
    index = st.input(node, 1)
    if (
        isinstance(x, Sequence)
        and x.form == "DNU"
        and x.directions == 1
        and int(attrs_.get("axis", 0)) in (0, -3)
        and isinstance(index, np.ndarray)
        and index.dtype.kind in "iu"
        and index.ndim == 0
        and int(index) in (0, -1)
    ):
        st.alias(node, x.tensor)
        return
    raise st.fail(
        node, "Gather on a run-time tensor is supported only as the last state of a one-direction recurrent operator"
    )


#: ONNX reduction over the direction axis -> Bidirectional's merge_mode
REDUCTIONS = {"ReduceSum": "sum", "ReduceProd": "mul", "ReduceMean": "ave"}


def reduce(st: ImportState, node: Node, attrs_: dict) -> None:
    """Bidirectional's sum, mul or ave: a reduction over the direction axis of ``Y`` or ``Y_h``."""
    x = st.input(node, 0)
    if node.op_type == "ReduceSum" and st.opset >= 13 or st.opset >= 18:
        axes = _axes(st, node, {})
    else:
        axes = [int(a) for a in attrs_.get("axes", [])]
    form = getattr(x, "form", "")
    axis = {"LDNU": 1, "DNU": 0, "NLDU": 2, "NDU": 1}.get(form, None)
    entry = x.tensor.source if isinstance(x, Sequence) else None
    if (
        entry is None
        or x.directions != 2
        or axis is None
        or axes not in ([axis], [axis - (4 if form in ("LDNU", "NLDU") else 3)])
        or int(attrs_.get("keepdims", 1))
        or entry.config.get("merge_mode", "concat") != "concat"
        or not st.sole_consumer(node.input[0])
    ):
        raise st.fail(
            node, f"{node.op_type} on a run-time tensor is supported only over the directions of a recurrent operator"
        )
    entry.config["merge_mode"] = REDUCTIONS[node.op_type]
    entry.shape = (*entry.shape[:-1], entry.shape[-1] // 2)
    out = Tensor(entry, entry.shape)
    st.alias(node, Sequence(out, "LNF") if form == "LDNU" else out)


def general() -> dict:
    """The import table without the sequence handlers: ``handlers`` and ``vocab_handlers``."""
    return {**handlers.HANDLERS, **vocab_handlers.HANDLERS}


def _or_general(handler):
    """``handler`` for a ``Sequence`` (or what only it reads); any other input goes to the general
    table's handler of the operator when it has one (``general()``, read at call time)."""

    def dispatch(st: ImportState, node: Node, attrs_: dict) -> None:
        other = general().get(node.op_type)
        if other is not None and not isinstance(st.input(node, 0), Sequence):
            other(st, node, attrs_)
        else:
            handler(st, node, attrs_)

    dispatch.__doc__ = handler.__doc__
    return dispatch


HANDLERS = {
    "RNN": recurrent,
    "LSTM": recurrent,
    "GRU": recurrent,
    **{
        op: _or_general(fn)
        for op, fn in {
            **dict.fromkeys(REDUCTIONS, reduce),
            "Gather": gather,
            "Slice": slice_,
            "Squeeze": squeeze,
            "Reshape": reshape,
        }.items()
    },
    "Transpose": transpose,  # the batch-major <-> time-major transposes of a sequence come here first
}

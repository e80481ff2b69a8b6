"""Recurrent layers over sequences ``(N, L, D)`` (batch, time, features): SimpleRNN, LSTM, GRU
and the Bidirectional wrapper.

The forward pass loops over time steps only; each step is one vectorised batch operation: the
input projections of all steps are one product computed before the loop (``x @ kernel``), and
a step adds one ``(N, units) @ (units, gates * units)`` product with every gate fused. Backward
through time is exact; the recurrent kernel's gradient is one product over all steps after the
loop.

Masks
-----
With ``use_mask`` the layer takes two inputs, ``[x, mask]``: ``mask`` is ``(N, L)``, a step is
valid where its value is above 0.5 (1) and skipped where it is not (0). At a skipped step the
states and the output keep their previous values (as in Keras; zeros before the first valid
step). The mask gets a zero gradient.

Weights and PyTorch
-------------------
Weights are stored as Keras stores them: ``kernel`` ``(D, G * units)``, ``recurrent_kernel``
``(units, G * units)``, gate blocks side by side, and ``bias``:

* ``LSTM``: gates ``i, f, c, o`` (PyTorch's ``i, f, g, o``: the same order):
  ``weight_ih_l0 = kernel.T``, ``weight_hh_l0 = recurrent_kernel.T``, ``bias`` ``(4 units,)`` is
  ``bias_ih_l0 + bias_hh_l0``.
* ``GRU``: gates ``z, r, h`` (update, reset, candidate), PyTorch's are ``r, z, n``: swap the first
  two blocks. The GRU is the ``reset_after`` form (Keras's default, PyTorch's formula,
  ``h~ = act(x W_h + b_xh + r * (h W_rh + b_rh))``), with ``bias`` ``(2, 3 units)``: row 0 the
  input bias (``bias_ih_l0``), row 1 the recurrent bias (``bias_hh_l0``).
* ``SimpleRNN``: ``weight_ih_l0 = kernel.T``, ``weight_hh_l0 = recurrent_kernel.T``, ``bias`` is
  ``bias_ih_l0 + bias_hh_l0``.

``Bidirectional`` names its weights ``forward.<name>`` and ``backward.<name>``.
"""

from typing import Any

import attrs
import numpy as np

from .. import activations as _activations
from .. import fields
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from .base import Layer, create, layer

#: a mask value above this counts as 1 (a valid step, a key attended to)
MASK_THRESHOLD = 0.5


def mask_of(mask: np.ndarray, dtype: Any) -> np.ndarray:
    """A 0/1 array of ``dtype`` from a mask of any numbers (above 0.5: 1)."""
    return (np.asarray(mask) > MASK_THRESHOLD).astype(dtype)


def _sequence_shape(owner: Layer, input_shape: Any, use_mask: bool) -> tuple[tuple[int, ...], tuple | None]:
    """``(x shape, mask shape or None)``, checked: ``(L, D)`` and, with a mask, ``(L,)``."""
    name = type(owner).__name__
    if use_mask:
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise ShapeError(f"{name} with use_mask takes two inputs, [x, mask]", field="inputs")
        x_shape, m_shape = (tuple(s) for s in input_shape)
        if len(x_shape) != 2 or m_shape != x_shape[:1]:
            raise ShapeError(
                f"{name} with use_mask expects x (N, L, D) and mask (N, L), got {shape_text(x_shape)} and "
                f"{shape_text(m_shape)}",
                field="inputs",
            )
        return x_shape, m_shape
    if isinstance(input_shape, list):
        raise ShapeError(f"{name} takes one input (set use_mask for [x, mask])", field="inputs")
    x_shape = tuple(input_shape)
    if len(x_shape) != 2:
        raise ShapeError(
            f"{name} expects a rank-3 input (N, L, D) (batch axis included), got shape {shape_text(x_shape)}",
            field="inputs",
        )
    return x_shape, None


@attrs.define(slots=False, eq=False)
class _Recurrent(Layer):
    """The loop over time shared by the recurrent cells (``GATES`` blocks per step)."""

    units: int = fields.integer(min=1, doc="the size of the state (and of each output step)")
    activation: str | dict = fields.component("activations", "tanh", doc="the activation of the state candidate")
    use_bias: bool = fields.boolean(True, doc="whether the layer adds biases")
    return_sequences: bool = fields.boolean(
        False, doc="return the output of every step (N, L, units) rather than the last (N, units)"
    )
    go_backwards: bool = fields.boolean(
        False, doc="process the sequence from its end (the output sequence is then in reversed order, as Keras's)"
    )
    kernel_initializer: str | dict = fields.initializer("glorot_uniform", doc="initializer of the input kernel")
    recurrent_initializer: str | dict = fields.initializer(
        "glorot_uniform", doc="initializer of the recurrent kernel (Keras: orthogonal, from the regnet-extras plugin)"
    )
    bias_initializer: str | dict = fields.initializer("zeros", doc="initializer of the bias")
    use_mask: bool = fields.boolean(
        False, doc="take a second input, a (N, L) mask of valid steps (1: valid, 0: keep the previous state)"
    )

    GATES = 1
    test_input_shape = (4, 3)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # ``activation`` acts inside the cell, not on the output: the base class must not apply it
        self.cell_activation = _activations.get(self.activation)
        self.activation_fn = None
        if self.use_mask:
            self.n_inputs = None  # type: ignore[misc]

    # -- building -------------------------------------------------------------------------------
    def build(self, input_shape, rng):
        (steps, features), _ = _sequence_shape(self, input_shape, self.use_mask)
        width = self.GATES * self.units
        self.add_weight("kernel", (features, width), self.kernel_initializer, rng)
        self.add_weight("recurrent_kernel", (self.units, width), self.recurrent_initializer, rng)
        if self.use_bias:
            self._add_bias(rng)
        return (steps, self.units) if self.return_sequences else (self.units,)

    def _add_bias(self, rng):
        self.add_weight("bias", (self.GATES * self.units,), self.bias_initializer, rng)

    def _input_bias(self):
        return self.params["bias"] if self.use_bias else None

    # -- the loop -------------------------------------------------------------------------------
    def forward(self, x, training=False):
        if self.use_mask:
            x, mask = x
            mask = mask_of(mask, x.dtype)
        else:
            mask = None
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        n, steps, _ = x.shape
        proj = x @ self.params["kernel"]  # (N, L, G units): every step's input projection at once
        bias = self._input_bias()
        if bias is not None:
            proj += bias
        proj = np.ascontiguousarray(proj.transpose(1, 0, 2))  # (L, N, G units): one step is contiguous
        states = self._zero_states(n, x.dtype)
        hs = np.empty((steps + 1, n, self.units), x.dtype)  # h before each step, and after the last
        hs[0] = states[0]
        saved = []
        for t in range(steps):
            new, keep = self._step(proj[t], states)
            if mask is not None:
                m = mask[:, t, None]
                new = tuple(m * a + (1 - m) * b for a, b in zip(new, states))
            states = new
            hs[t + 1] = states[0]
            saved.append(keep)
        self.cache.x, self.cache.mask, self.cache.hs, self.cache.saved = x, mask, hs, saved
        if self.return_sequences:
            return np.ascontiguousarray(hs[1:].transpose(1, 0, 2))
        return hs[-1].copy()

    def backward(self, grad, *, need_input_grad=True):
        x, mask, hs, saved = self.cache.x, self.cache.mask, self.cache.hs, self.cache.saved
        n, steps, features = x.shape
        width = self.GATES * self.units
        rk = self.params["recurrent_kernel"]
        d_proj = np.empty((steps, n, width), grad.dtype)  # gradient of the input projections
        d_inner = np.empty((steps, n, width), grad.dtype)  # gradient of h_prev @ recurrent_kernel
        d_states = [np.zeros((n, self.units), grad.dtype) for _ in self._zero_states(1, grad.dtype)]
        seq_grad = grad.transpose(1, 0, 2) if self.return_sequences else None
        if not self.return_sequences:
            d_states[0] = d_states[0] + grad
        for t in range(steps - 1, -1, -1):
            if seq_grad is not None:
                d_states[0] = d_states[0] + seq_grad[t]
            if mask is not None:
                m = mask[:, t, None]
                carried = [(1 - m) * d for d in d_states]
                d_states = [m * d for d in d_states]
            dp, di, d_prev = self._step_backward(d_states, saved[t], hs[t])
            d_proj[t], d_inner[t] = dp, di
            d_prev[0] = d_prev[0] + di @ rk.T
            if mask is not None:
                d_prev = [a + b for a, b in zip(d_prev, carried)]
            d_states = d_prev
        flat_proj = d_proj.reshape(steps * n, width)
        xt = x.transpose(1, 0, 2).reshape(steps * n, features)  # the same (t, n) order as d_proj
        np.matmul(xt.T, flat_proj, out=self.grads["kernel"])
        np.matmul(
            hs[:-1].reshape(steps * n, self.units).T,
            d_inner.reshape(steps * n, width),
            out=self.grads["recurrent_kernel"],
        )
        if self.use_bias:
            self._bias_grads(flat_proj, d_inner.reshape(steps * n, width))
        if not need_input_grad:
            return None
        dx = (d_proj @ self.params["kernel"].T).transpose(1, 0, 2)
        if self.go_backwards:
            dx = dx[:, ::-1]
        dx = np.ascontiguousarray(dx)
        if self.use_mask:
            return [dx, np.zeros((n, steps), grad.dtype)]
        return dx

    def _bias_grads(self, d_proj, d_inner):
        np.sum(d_proj, axis=0, out=self.grads["bias"])

    # -- the cell (subclasses) ------------------------------------------------------------------
    def _zero_states(self, n, dtype):
        return (np.zeros((n, self.units), dtype),)

    def _step(self, proj, states):
        """``(new states, what backward needs)`` of one step from its input projection."""
        raise NotImplementedError

    def _step_backward(self, d_states, keep, h_prev):
        """``(d proj, d inner, [d previous states])`` of one step; ``inner`` is
        ``h_prev @ recurrent_kernel``, whose gradient the caller turns into ``d h_prev``."""
        raise NotImplementedError


@layer("SimpleRNN", aliases=("RNN",))
class SimpleRNN(_Recurrent):
    """A fully connected recurrent layer: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    >>> import numpy as np
    >>> from regnet.layers import SimpleRNN
    >>> rnn = SimpleRNN(units=2, return_sequences=True, kernel_initializer="ones", recurrent_initializer="zeros")
    >>> rnn.setup((3, 1), np.random.default_rng(0))
    (3, 2)
    >>> rnn(np.array([[[0.5], [0.0], [-1.0]]], np.float32)).round(3)
    array([[[ 0.462,  0.462],
            [ 0.   ,  0.   ],
            [-0.762, -0.762]]], dtype=float32)
    """

    test_cases = [
        {"config": {"units": 3}},
        {"config": {"units": 2, "return_sequences": True}},
        {"config": {"units": 2, "return_sequences": True, "go_backwards": True}},
        {"config": {"units": 2, "go_backwards": True, "use_mask": True}, "input_shape": [(4, 3), (4,)]},
        {"config": {"units": 2, "return_sequences": True, "use_mask": True}, "input_shape": [(5, 2), (5,)]},
        {"config": {"units": 2, "activation": "relu", "use_bias": False, "return_sequences": True}},
    ]

    def _step(self, proj, states):
        z = proj + states[0] @ self.params["recurrent_kernel"]
        h = self.cell_activation.forward(z)
        return (h,), (z, h)

    def _step_backward(self, d_states, keep, h_prev):
        z, h = keep
        dz = self.cell_activation.backward(d_states[0], z, h)
        return dz, dz, [np.zeros_like(d_states[0])]


@layer("LSTM")
class LSTM(_Recurrent):
    """Long short-term memory (Keras's LSTM; gates ``i, f, c, o``, PyTorch's ``i, f, g, o``).

    >>> import numpy as np
    >>> from regnet.layers import LSTM
    >>> lstm = LSTM(units=3)
    >>> lstm.setup((4, 2), np.random.default_rng(0))
    (3,)
    >>> lstm(np.ones((1, 4, 2), np.float32)).shape
    (1, 3)
    """

    recurrent_activation: str | dict = fields.component(
        "activations", "sigmoid", doc="the activation of the gates (input, forget, output)"
    )
    unit_forget_bias: bool = fields.boolean(True, doc="add 1 to the forget gate's initial bias (as Keras)")

    GATES = 4
    test_cases = [
        {"config": {"units": 3}},
        {"config": {"units": 2, "return_sequences": True}},
        {"config": {"units": 2, "return_sequences": True, "go_backwards": True}},
        {"config": {"units": 2, "go_backwards": True, "use_mask": True}, "input_shape": [(4, 3), (4,)]},
        {"config": {"units": 2, "return_sequences": True, "use_mask": True}, "input_shape": [(5, 2), (5,)]},
        {"config": {"units": 2, "activation": "relu", "recurrent_activation": "tanh", "use_bias": False}},
    ]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.gate_activation = _activations.get(self.recurrent_activation)

    def _add_bias(self, rng):
        bias = self.add_weight("bias", (4 * self.units,), self.bias_initializer, rng)
        if self.unit_forget_bias:
            bias[self.units : 2 * self.units] += 1

    def _zero_states(self, n, dtype):
        return (np.zeros((n, self.units), dtype), np.zeros((n, self.units), dtype))

    def _step(self, proj, states):
        h_prev, c_prev = states
        u = self.units
        z = proj + h_prev @ self.params["recurrent_kernel"]
        zi, zf, zc, zo = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
        gates = self.gate_activation.forward(np.concatenate([zi, zf, zo], axis=1))
        i, f, o = gates[:, :u], gates[:, u : 2 * u], gates[:, 2 * u :]
        g = self.cell_activation.forward(zc)
        c = f * c_prev + i * g
        tc = self.cell_activation.forward(c)
        return (o * tc, c), (z, gates, g, c, tc, c_prev)

    def _step_backward(self, d_states, keep, h_prev):
        dh, dc = d_states
        z, gates, g, c, tc, c_prev = keep
        u = self.units
        i, f, o = gates[:, :u], gates[:, u : 2 * u], gates[:, 2 * u :]
        dc = dc + self.cell_activation.backward(dh * o, c, tc)
        d_gates = np.concatenate([dc * g, dc * c_prev, dh * tc], axis=1)
        zg = np.concatenate([z[:, :u], z[:, u : 2 * u], z[:, 3 * u :]], axis=1)
        dzg = self.gate_activation.backward(d_gates, zg, gates)
        dzc = self.cell_activation.backward(dc * i, z[:, 2 * u : 3 * u], g)
        dz = np.concatenate([dzg[:, : 2 * u], dzc, dzg[:, 2 * u :]], axis=1)
        return dz, dz, [np.zeros_like(dh), dc * f]


@layer("GRU")
class GRU(_Recurrent):
    """Gated recurrent unit, the ``reset_after`` form (Keras's default and PyTorch's formula):
    gates ``z, r, h`` (PyTorch's ``r, z, n``), ``bias`` ``(2, 3 units)`` (input and recurrent).

    >>> import numpy as np
    >>> from regnet.layers import GRU
    >>> gru = GRU(units=3, return_sequences=True)
    >>> gru.setup((4, 2), np.random.default_rng(0))
    (4, 3)
    >>> gru(np.ones((1, 4, 2), np.float32)).shape
    (1, 4, 3)
    """

    recurrent_activation: str | dict = fields.component(
        "activations", "sigmoid", doc="the activation of the update and reset gates"
    )

    GATES = 3
    test_cases = [
        {"config": {"units": 3}},
        {"config": {"units": 2, "return_sequences": True}},
        {"config": {"units": 2, "return_sequences": True, "go_backwards": True}},
        {"config": {"units": 2, "go_backwards": True, "use_mask": True}, "input_shape": [(4, 3), (4,)]},
        {"config": {"units": 2, "return_sequences": True, "use_mask": True}, "input_shape": [(5, 2), (5,)]},
        {"config": {"units": 2, "use_bias": False, "return_sequences": True, "go_backwards": True}},
    ]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.gate_activation = _activations.get(self.recurrent_activation)

    def _add_bias(self, rng):
        self.add_weight("bias", (2, 3 * self.units), self.bias_initializer, rng)

    def _input_bias(self):
        return self.params["bias"][0] if self.use_bias else None

    def _step(self, proj, states):
        (h_prev,) = states
        u = self.units
        inner = h_prev @ self.params["recurrent_kernel"]
        if self.use_bias:
            inner += self.params["bias"][1]
        zr = proj[:, : 2 * u] + inner[:, : 2 * u]
        gates = self.gate_activation.forward(zr)
        z, r = gates[:, :u], gates[:, u:]
        pre = proj[:, 2 * u :] + r * inner[:, 2 * u :]
        hh = self.cell_activation.forward(pre)
        h = z * h_prev + (1 - z) * hh
        return (h,), (zr, gates, inner[:, 2 * u :], pre, hh)

    def _step_backward(self, d_states, keep, h_prev):
        (dh,) = d_states
        zr, gates, inner_h, pre, hh = keep
        u = self.units
        z, r = gates[:, :u], gates[:, u:]
        d_pre = self.cell_activation.backward(dh * (1 - z), pre, hh)
        d_gates = np.concatenate([dh * (h_prev - hh), d_pre * inner_h], axis=1)
        d_zr = self.gate_activation.backward(d_gates, zr, gates)
        d_proj = np.concatenate([d_zr, d_pre], axis=1)
        d_inner = np.concatenate([d_zr, d_pre * r], axis=1)
        return d_proj, d_inner, [dh * z]

    def _bias_grads(self, d_proj, d_inner):
        g = self.grads["bias"]
        np.sum(d_proj, axis=0, out=g[0])
        np.sum(d_inner, axis=0, out=g[1])


# -- Bidirectional -----------------------------------------------------------------------------------

RECURRENT = ("SimpleRNN", "LSTM", "GRU")


def _recurrent_config(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ConfigError(f"expected a layer config {{'type': ...}}, got {fields.show(value)}", field=attribute.name)
    try:
        made = create(value)
    except ConfigError as exc:
        sub = attribute.name if exc.field is None else f"{attribute.name}.{exc.field}"
        raise ConfigError(getattr(exc, "message", str(exc)), field=sub) from exc
    if not isinstance(made, _Recurrent):
        raise ConfigError(
            f"expected a recurrent layer ({', '.join(RECURRENT)}), got type {fields.show(value['type'])}",
            field=attribute.name,
        )


MERGE_MODES = ("concat", "sum", "mul", "ave")


@layer("Bidirectional")
class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence in both directions and merges the two outputs.

    The backward copy runs with ``go_backwards`` flipped; with ``return_sequences`` its output is
    reversed back into time order before the merge, as Keras does. With ``use_mask`` (set on the
    inner layer) the wrapper takes ``[x, mask]`` and, with ``return_sequences``, masked steps
    output zeros (as Keras's Bidirectional). Weights: ``forward.<name>`` and ``backward.<name>``.

    >>> import numpy as np
    >>> from regnet.layers import Bidirectional
    >>> bi = Bidirectional(layer={"type": "LSTM", "units": 2, "return_sequences": True})
    >>> bi.setup((5, 3), np.random.default_rng(0))
    (5, 4)
    >>> sorted(bi.params)[:2]
    ['backward.bias', 'backward.kernel']
    """

    layer: dict = fields.field(
        doc="the recurrent layer's config ({'type': 'LSTM', ...})",
        accepts="a recurrent layer config",
        validator=_recurrent_config,
    )
    merge_mode: str = fields.choice("concat", *MERGE_MODES, doc="how the two directions' outputs are merged")

    test_input_shape = (4, 3)
    test_cases = [
        {"config": {"layer": {"type": "LSTM", "units": 2, "return_sequences": True}}},
        {"config": {"layer": {"type": "GRU", "units": 2}, "merge_mode": "sum"}},
        {"config": {"layer": {"type": "SimpleRNN", "units": 2, "return_sequences": True}, "merge_mode": "mul"}},
        {
            "config": {
                "layer": {"type": "LSTM", "units": 2, "return_sequences": True, "use_mask": True},
                "merge_mode": "ave",
            },
            "input_shape": [(4, 3), (4,)],
        },
        {"config": {"layer": {"type": "GRU", "units": 2, "use_mask": True}}, "input_shape": [(4, 3), (4,)]},
    ]

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        config = {k: v for k, v in self.layer.items() if k != "name"}
        self.forward_layer: _Recurrent = create(dict(config))  # type: ignore[assignment]  # checked by the field
        flipped = {**config, "go_backwards": not self.forward_layer.go_backwards}
        self.backward_layer: _Recurrent = create(flipped)  # type: ignore[assignment]
        if self.forward_layer.use_mask:
            self.n_inputs = None  # type: ignore[misc]

    @property
    def _subs(self):
        return (("forward", self.forward_layer), ("backward", self.backward_layer))

    def build(self, input_shape, rng):
        for prefix, sub in self._subs:
            out = sub.setup(input_shape, rng)
            for k in sub.params:
                self.params[f"{prefix}.{k}"] = sub.params[k]
                self.grads[f"{prefix}.{k}"] = sub.grads[k]
        if self.merge_mode == "concat":
            return (*out[:-1], 2 * out[-1])
        return out

    def _sync(self):
        """Point the inner layers at this layer's tensors (the model or a check may replace them)."""
        for prefix, sub in self._subs:
            for k in sub.params:
                sub.params[k] = self.params[f"{prefix}.{k}"]
                sub.grads[k] = self.grads[f"{prefix}.{k}"]

    def forward(self, x, training=False):
        self._sync()
        seq = self.forward_layer.return_sequences
        a = self.forward_layer(x, training)
        b = self.backward_layer(x, training)
        if seq:
            b = b[:, ::-1]
        mask = None
        if self.forward_layer.use_mask and seq:
            mask = mask_of(x[1], a.dtype)[:, :, None]
            a, b = a * mask, b * mask
        self.cache.ab, self.cache.mask = (a, b), mask
        if self.merge_mode == "concat":
            return np.concatenate([a, b], axis=-1)
        if self.merge_mode == "sum":
            return a + b
        if self.merge_mode == "mul":
            return a * b
        return (a + b) * np.asarray(0.5, a.dtype)

    def backward(self, grad, *, need_input_grad=True):
        self._sync()
        a, b = self.cache.ab
        if self.merge_mode == "concat":
            u = a.shape[-1]
            da, db = grad[..., :u], grad[..., u:]
        elif self.merge_mode == "sum":
            da, db = grad, grad
        elif self.merge_mode == "mul":
            da, db = grad * b, grad * a
        else:
            da = db = grad * np.asarray(0.5, grad.dtype)
        if self.cache.mask is not None:
            da, db = da * self.cache.mask, db * self.cache.mask
        if self.forward_layer.return_sequences:
            db = db[:, ::-1]
        ga = self.forward_layer.call_backward(np.ascontiguousarray(da), need_input_grad=need_input_grad)
        gb = self.backward_layer.call_backward(np.ascontiguousarray(db), need_input_grad=need_input_grad)
        if not need_input_grad:
            return None
        if self.forward_layer.use_mask:
            return [ga[0] + gb[0], ga[1] + gb[1]]
        return ga + gb

    def release(self) -> None:
        super().release()
        for _, sub in getattr(self, "_subs", ()):
            sub.release()

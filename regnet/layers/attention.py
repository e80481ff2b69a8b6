"""Multi-head attention over sequences ``(N, L, D)``, batched over heads (no loop over heads or
samples).

Inputs, as a merge layer's list: ``[query, value]`` or ``[query, value, key]`` (``key`` defaults
to ``value``), and with ``use_attention_mask`` a last input ``attention_mask``: ``(N, Lq, Lk)``
or ``(N, Lk)`` (the same for every query), a key is attended to where the mask is above 0.5 (1)
and not where it is not (0). ``use_causal_mask`` lets query ``i`` attend to keys ``j <= i`` only
(Keras's lower-triangular mask, combined with the attention mask). A query whose keys are all
masked attends to nothing: its attention weights are all zero (so its output is the output bias),
never NaN.

Weights are Keras's (dense kernels with a head axis): ``query_kernel`` ``(Dq, H, key_dim)``,
``key_kernel`` ``(Dk, H, key_dim)``, ``value_kernel`` ``(Dv, H, value_dim)``, ``output_kernel``
``(H, value_dim, Do)``, biases ``query_bias`` ``(H, key_dim)``, ``key_bias``, ``value_bias`` and
``output_bias`` ``(Do,)``. Keras's field ``output_shape`` is ``output_dim`` here (an integer: the
name ``output_shape`` is the layer contract's built output shape).

PyTorch's ``nn.MultiheadAttention`` (``embed_dim = H * key_dim``,
``value_dim = key_dim``) maps as ``in_proj_weight = concat([query_kernel.reshape(Dq, -1).T,
key_kernel.reshape(Dk, -1).T, value_kernel.reshape(Dv, -1).T])``, ``in_proj_bias`` the three
biases flattened and concatenated, ``out_proj.weight = output_kernel.reshape(-1, Do).T`` and
``out_proj.bias = output_bias`` (head ``h`` is rows ``h * key_dim`` to ``(h + 1) * key_dim`` in
both).
"""

import math
from typing import Any

import attrs
import numpy as np

from .. import activations, fields, sharding
from ..errors import ConfigError, ShapeError
from ..text import shape as shape_text
from .base import Layer, layer
from .recurrent import mask_of

#: added to the scores of masked keys before the softmax (their weights underflow to 0)
MASKED_SCORE = -1e9


def _optional_size(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= fields.MAX_SIZE:
        raise ConfigError(f"expected an integer >= 1 or null, got {fields.show(value)}", field=attribute.name)


def _rate(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ConfigError(f"expected a number in [0, 1), got {fields.show(value)}", field=attribute.name)


@layer("MultiHeadAttention", aliases=("MultiheadAttention",))
class MultiHeadAttention(Layer):
    """Scaled dot-product attention with ``num_heads`` heads (Keras's MultiHeadAttention).

    >>> import numpy as np
    >>> from regnet.layers import MultiHeadAttention
    >>> mha = MultiHeadAttention(num_heads=2, key_dim=3, use_causal_mask=True)
    >>> mha.setup([(4, 5), (4, 5)], np.random.default_rng(0))
    (4, 5)
    >>> x = np.ones((1, 4, 5), np.float32)
    >>> mha([x, x]).shape
    (1, 4, 5)
    """

    num_heads: int = fields.integer(min=1, doc="the number of attention heads")
    key_dim: int = fields.integer(min=1, doc="the size of each head's query and key")
    value_dim: int | None = fields.field(
        None,
        doc="the size of each head's value (null: key_dim)",
        accepts="an integer >= 1 or null",
        validator=_optional_size,
    )
    dropout: float = fields.field(
        0.0,
        doc="the dropout rate on the attention weights in training",
        accepts="a number in [0, 1)",
        validator=_rate,
        converter=lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool) else v,
    )
    use_bias: bool = fields.boolean(True, doc="whether the projections add biases")
    output_dim: int | None = fields.field(
        None,
        doc="the size of the output's last axis (null: the query's; Keras's output_shape)",
        accepts="an integer >= 1 or null",
        validator=_optional_size,
    )
    kernel_initializer: str | dict = fields.initializer("glorot_uniform", doc="initializer of the kernels")
    bias_initializer: str | dict = fields.initializer("zeros", doc="initializer of the biases")
    use_causal_mask: bool = fields.boolean(False, doc="let query i attend to keys j <= i only")
    use_attention_mask: bool = fields.boolean(
        False, doc="take a last input, an attention mask (N, Lq, Lk) or (N, Lk) of 1 (attend) and 0"
    )

    n_inputs = None
    test_input_shape = [(4, 5), (3, 5)]
    test_cases = [
        {"config": {"num_heads": 2, "key_dim": 3}},
        {"config": {"num_heads": 2, "key_dim": 2, "use_causal_mask": True}, "input_shape": [(4, 3), (4, 3)]},
        {
            "config": {"num_heads": 3, "key_dim": 2, "value_dim": 3, "output_dim": 4, "use_bias": False},
            "input_shape": [(4, 5), (3, 2), (3, 6)],
        },
        {"config": {"num_heads": 2, "key_dim": 2, "use_attention_mask": True}, "input_shape": [(3, 4), (5, 4), (3, 5)]},
        {
            "config": {"num_heads": 1, "key_dim": 3, "use_attention_mask": True, "use_causal_mask": True},
            "input_shape": [(4, 3), (4, 3), (4, 2), (4,)],
        },
        {"config": {"num_heads": 2, "key_dim": 2, "dropout": 0.3}, "input_shape": [(3, 4), (3, 4)]},
    ]

    @property
    def _value_dim(self) -> int:
        return self.key_dim if self.value_dim is None else self.value_dim

    # -- building -------------------------------------------------------------------------------
    def build(self, input_shape, rng):
        n_data = self._split_shapes(input_shape)
        q_shape, v_shape = n_data[0], n_data[1]
        k_shape = n_data[2] if len(n_data) == 3 else v_shape
        lq, lk = q_shape[0], v_shape[0]
        if self.use_attention_mask:
            m = tuple(input_shape[-1])
            if m not in ((lq, lk), (lk,)):
                raise ShapeError(
                    f"MultiHeadAttention's attention mask must be (N, {lq}, {lk}) or (N, {lk}), got {shape_text(m)}",
                    field="inputs",
                )
        self._rng = rng
        h, kd, vd = self.num_heads, self.key_dim, self._value_dim
        out = q_shape[-1] if self.output_dim is None else self.output_dim
        self._kernel("query_kernel", (q_shape[-1], h, kd), rng)
        self._kernel("key_kernel", (k_shape[-1], h, kd), rng)
        self._kernel("value_kernel", (v_shape[-1], h, vd), rng)
        self._kernel("output_kernel", (h, vd, out), rng)
        if self.use_bias:
            self.add_weight("query_bias", (h, kd), self.bias_initializer, rng)
            self.add_weight("key_bias", (h, kd), self.bias_initializer, rng)
            self.add_weight("value_bias", (h, vd), self.bias_initializer, rng)
            self.add_weight("output_bias", (out,), self.bias_initializer, rng)
        self._has_key = len(n_data) == 3
        return (lq, out)

    def _split_shapes(self, input_shape):
        """The shapes of query, value (and key), checked: each ``(L, D)``."""
        extra = 1 if self.use_attention_mask else 0
        if not isinstance(input_shape, list) or not 2 + extra <= len(input_shape) <= 3 + extra:
            want = "[query, value(, key)" + (", attention_mask]" if extra else "]")
            raise ShapeError(f"MultiHeadAttention takes the inputs {want}", field="inputs")
        data = [tuple(s) for s in input_shape[: len(input_shape) - extra]]
        for s in data:
            if len(s) != 2:
                raise ShapeError(
                    f"MultiHeadAttention expects rank-3 inputs (N, L, D) (batch axis included), got {shape_text(s)}",
                    field="inputs",
                )
        if len(data) == 3 and data[2][0] != data[1][0]:
            raise ShapeError(
                f"MultiHeadAttention needs key and value of one length, got {shape_text(data[2])} and "
                f"{shape_text(data[1])}",
                field="inputs",
            )
        return data

    def _kernel(self, name, shape, rng):
        """A kernel drawn as the dense matrix it acts as (its fans), stored with its head axes."""
        rows = shape[0] if name != "output_kernel" else shape[0] * shape[1]
        flat = self.add_weight(name, (rows, math.prod(shape) // rows), self.kernel_initializer, rng)
        self.params[name] = flat.reshape(shape)
        self.grads[name] = np.zeros(shape, np.float32)

    # -- the passes -----------------------------------------------------------------------------
    def _project(self, x, which):
        """``x (N, L, D)`` through ``<which>_kernel`` as ``(N, H, L, d)``."""
        w = self.params[f"{which}_kernel"]
        y = x @ w.reshape(w.shape[0], -1)
        if self.use_bias:
            y += self.params[f"{which}_bias"].reshape(-1)
        n, length = x.shape[:2]
        return y.reshape(n, length, w.shape[1], w.shape[2]).transpose(0, 2, 1, 3)

    def _mask(self, xs, lq, lk, dtype):
        """The 0/1 mask ``(N or 1, 1, Lq, Lk)``, or ``None`` when nothing is masked."""
        mask = None
        if self.use_attention_mask:
            m = mask_of(xs[-1], dtype)
            mask = m[:, None, None, :] if m.ndim == 2 else m[:, None]
        if self.use_causal_mask:
            causal = np.tril(np.ones((lq, lk), dtype))[None, None]
            mask = causal if mask is None else mask * causal
        return mask

    def forward(self, xs, training=False):
        data = xs[:-1] if self.use_attention_mask else xs
        query, value = data[0], data[1]
        key = data[2] if self._has_key else value
        dtype = query.dtype
        q = self._project(query, "query") * np.asarray(1 / math.sqrt(self.key_dim), dtype)
        k = self._project(key, "key")
        v = self._project(value, "value")
        scores = q @ k.transpose(0, 1, 3, 2)  # (N, H, Lq, Lk)
        mask = self._mask(xs, query.shape[1], key.shape[1], dtype)
        if mask is None:
            weights = soft = activations.softmax(scores, -1)
        else:
            soft = activations.softmax(scores + (mask - 1) * np.asarray(-MASKED_SCORE, dtype), -1)
            weights = soft * mask  # a fully masked row: all zero
        keep = None
        if training and self.dropout > 0:
            keep = self._dropout_mask(weights.shape, dtype)
            weights = weights * keep
        heads = weights @ v  # (N, H, Lq, vd)
        n, h, lq, vd = heads.shape
        merged = heads.transpose(0, 2, 1, 3).reshape(n, lq, h * vd)
        wo = self.params["output_kernel"]
        y = merged @ wo.reshape(h * vd, -1)
        if self.use_bias:
            y += self.params["output_bias"]
        self.cache.__dict__.update(
            inputs=(query, key, value), q=q, k=k, v=v, soft=soft, mask=mask, keep=keep, weights=weights, merged=merged
        )
        return y

    def _dropout_mask(self, shape, dtype):
        keep = 1.0 - self.dropout
        shard = sharding.current()  # data-parallel: draw for the global batch, keep this shard's rows
        if shard is None:
            draw = self._rng.random(shape, dtype=np.float32)
        else:
            draw = self._rng.random((shard.total, *shape[1:]), dtype=np.float32)[shard.start : shard.stop]
        return ((draw < keep) * (1 / keep)).astype(dtype)

    def backward(self, grad, *, need_input_grad=True):
        c = self.cache
        query, key, value = c.inputs
        n, lq, out = grad.shape
        h, kd = self.num_heads, self.key_dim
        vd = self._value_dim
        wo = self.params["output_kernel"].reshape(h * vd, out)
        g2 = grad.reshape(-1, out)
        self.grads["output_kernel"][...] = (c.merged.reshape(-1, h * vd).T @ g2).reshape(h, vd, out)
        if self.use_bias:
            np.sum(g2, axis=0, out=self.grads["output_bias"])
        d_heads = (grad @ wo.T).reshape(n, lq, h, vd).transpose(0, 2, 1, 3)
        d_weights = d_heads @ c.v.transpose(0, 1, 3, 2)
        d_v = c.weights.transpose(0, 1, 3, 2) @ d_heads
        if c.keep is not None:
            d_weights = d_weights * c.keep
        if c.mask is not None:
            d_weights = d_weights * c.mask
        soft = c.soft
        d_scores = soft * (d_weights - np.sum(d_weights * soft, axis=-1, keepdims=True))
        d_q = (d_scores @ c.k) * np.asarray(1 / math.sqrt(kd), grad.dtype)
        d_k = d_scores.transpose(0, 1, 3, 2) @ c.q
        dx_q = self._project_backward(query, d_q, "query", need_input_grad)
        dx_k = self._project_backward(key, d_k, "key", need_input_grad)
        dx_v = self._project_backward(value, d_v, "value", need_input_grad)
        if not need_input_grad:
            return None
        grads = [dx_q, dx_v, dx_k] if self._has_key else [dx_q, dx_v + dx_k]
        if self.use_attention_mask:
            grads.append(np.zeros((n, *self.input_shape[-1]), grad.dtype))
        return grads

    def _project_backward(self, x, d, which, need_input_grad):
        """Parameter gradients of ``_project`` from ``d`` ``(N, H, L, d)``; the input gradient."""
        w = self.params[f"{which}_kernel"]
        n, length = x.shape[:2]
        d2 = d.transpose(0, 2, 1, 3).reshape(n * length, -1)
        self.grads[f"{which}_kernel"][...] = (x.reshape(n * length, -1).T @ d2).reshape(w.shape)
        if self.use_bias:
            self.grads[f"{which}_bias"][...] = d2.sum(axis=0).reshape(w.shape[1:])
        if not need_input_grad:
            return None
        return (d2 @ w.reshape(w.shape[0], -1).T).reshape(x.shape)

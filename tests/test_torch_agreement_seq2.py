"""Sequence layers against PyTorch: SimpleRNN, LSTM, GRU (nn.RNN/nn.LSTM/nn.GRU and their cells
with regnet's weights mapped), Bidirectional (bidirectional=True) and MultiHeadAttention
(F.multi_head_attention_forward); forward, input and weight gradients (tests/torch_agreement.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.func import functional_call  # noqa: E402

from tests.torch_agreement import layer_agrees  # noqa: E402

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

F = torch.nn.functional
N, L, D = 3, 5, 4


def _gru_blocks(w, u):
    """Keras's z, r, h gate blocks (last axis) as PyTorch's r, z, n."""
    return torch.cat([w[..., u : 2 * u], w[..., :u], w[..., 2 * u :]], dim=-1)


def torch_params(kind, w, u, prefix="", suffix="_l0"):
    """PyTorch's parameters of an RNN/LSTM/GRU (or cell with ``suffix=""``) from regnet's weights."""
    k, rk = w[prefix + "kernel"], w[prefix + "recurrent_kernel"]
    bias = w.get(prefix + "bias")
    if kind == "GRU":
        k, rk = _gru_blocks(k, u), _gru_blocks(rk, u)
        b_ih, b_hh = (None, None) if bias is None else (_gru_blocks(bias[0], u), _gru_blocks(bias[1], u))
    else:
        b_ih, b_hh = bias, None if bias is None else torch.zeros_like(bias)
    params = {f"weight_ih{suffix}": k.T, f"weight_hh{suffix}": rk.T}
    if bias is not None:
        params.update({f"bias_ih{suffix}": b_ih, f"bias_hh{suffix}": b_hh})
    return params


def module(kind, u, bias=True, activation="tanh", bidirectional=False):
    if kind == "SimpleRNN":
        return nn.RNN(D, u, batch_first=True, bias=bias, nonlinearity=activation, bidirectional=bidirectional)
    return getattr(nn, kind)(D, u, batch_first=True, bias=bias, bidirectional=bidirectional)


def recurrent_fn(kind, config):
    u = config["units"]

    def run(x, w):
        mod = module(kind, u, config.get("use_bias", True), config.get("activation", "tanh"))
        if config.get("go_backwards"):
            x = torch.flip(x, [1])
        y, _ = functional_call(mod, torch_params(kind, w, u), (x,))
        return y if config.get("return_sequences") else y[:, -1]

    return run


CONFIGS = [
    {"units": 3},
    {"units": 2, "return_sequences": True},
    {"units": 3, "go_backwards": True},
    {"units": 2, "return_sequences": True, "go_backwards": True, "use_bias": False},
]


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_recurrent_layer_agrees_with_torch(kind, config):
    cfg = {"type": kind, **config, "bias_initializer": {"type": "variance_scaling"}}
    layer_agrees(cfg, (L, D), recurrent_fn(kind, config))


def test_simple_rnn_with_relu_agrees_with_torch():
    config = {"units": 3, "activation": "relu", "return_sequences": True}
    layer_agrees({"type": "RNN", **config}, (L, D), recurrent_fn("SimpleRNN", config))


def cell_loop_fn(kind, config):
    """PyTorch's cell stepped over time; a masked step keeps the previous states (Keras's rule)."""
    u = config["units"]

    def run(xs, w):
        x, mask = xs
        m = (mask > 0.5).to(x.dtype)
        if config.get("go_backwards"):
            x, m = torch.flip(x, [1]), torch.flip(m, [1])
        cell = {"SimpleRNN": nn.RNNCell, "LSTM": nn.LSTMCell, "GRU": nn.GRUCell}[kind](D, u)
        params = torch_params(kind, w, u, suffix="")
        h = torch.zeros(x.shape[0], u)
        c = torch.zeros(x.shape[0], u)
        outs = []
        for t in range(x.shape[1]):
            mt = m[:, t, None]
            if kind == "LSTM":
                h_new, c_new = functional_call(cell, params, (x[:, t], (h, c)))
                c = mt * c_new + (1 - mt) * c
            else:
                h_new = functional_call(cell, params, (x[:, t], h))
            h = mt * h_new + (1 - mt) * h
            outs.append(h)
        return torch.stack(outs, 1) if config.get("return_sequences") else h

    return run


def masked_inputs(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, L, D)).astype(np.float32)
    mask = (rng.random((N, L)) < 0.6).astype(np.int64)
    mask[0] = [1, 1, 1, 0, 0]  # padding at the end
    mask[1, 0] = 0  # a skipped first step
    return [x, mask]


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("config", [{"units": 3, "return_sequences": True}, {"units": 2, "go_backwards": True}])
def test_masked_recurrent_layer_agrees_with_torch_cells(kind, config):
    cfg = {"type": kind, **config, "use_mask": True, "bias_initializer": {"type": "variance_scaling"}}
    layer_agrees(cfg, [(L, D), (L,)], cell_loop_fn(kind, config), x=masked_inputs())


def bidirectional_fn(kind, config, merge_mode):
    u = config["units"]

    def run(x, w):
        mod = module(kind, u, bidirectional=True)
        params = torch_params(kind, w, u, "forward.")
        params.update(torch_params(kind, w, u, "backward.", "_l0_reverse"))
        y, h = functional_call(mod, params, (x,))
        if kind == "LSTM":
            h = h[0]
        if config.get("return_sequences"):
            a, b = y[..., :u], y[..., u:]
        else:
            a, b = h[0], h[1]
        return {"concat": lambda: torch.cat([a, b], -1), "sum": lambda: a + b, "mul": lambda: a * b}.get(
            merge_mode, lambda: (a + b) / 2
        )()

    return run


@pytest.mark.parametrize(
    ("kind", "config", "merge_mode"),
    [
        ("LSTM", {"units": 3, "return_sequences": True}, "concat"),
        ("GRU", {"units": 2}, "concat"),
        ("SimpleRNN", {"units": 2, "return_sequences": True}, "sum"),
        ("GRU", {"units": 3, "return_sequences": True}, "mul"),
        ("LSTM", {"units": 2}, "ave"),
    ],
)
def test_bidirectional_agrees_with_torch(kind, config, merge_mode):
    inner = {"type": kind, **config, "bias_initializer": {"type": "variance_scaling"}}
    layer_agrees(
        {"type": "Bidirectional", "layer": inner, "merge_mode": merge_mode},
        (L, D),
        bidirectional_fn(kind, config, merge_mode),
    )


# -- attention ------------------------------------------------------------------------------------


def mha_fn(heads, key_dim, *, has_key=False, causal=False, mask_kind=None):
    embed = heads * key_dim

    def run(xs, w):
        q, v = xs[0], xs[1]
        k = xs[2] if has_key else v
        rows = {
            name: w[f"{name}_kernel"].reshape(w[f"{name}_kernel"].shape[0], -1).T for name in ("query", "key", "value")
        }
        bias = torch.cat([w[f"{name}_bias"].reshape(-1) for name in ("query", "key", "value")])
        lq, lk = q.shape[1], k.shape[1]
        allowed = torch.ones(q.shape[0], lq, lk, dtype=torch.bool)
        if mask_kind is not None:
            m = xs[-1] > 0.5
            allowed = allowed & (m[:, None, :] if m.dim() == 2 else m)
        if causal:
            allowed = allowed & torch.tril(torch.ones(lq, lk, dtype=torch.bool))
        attn_mask = (~allowed).repeat_interleave(heads, dim=0)  # (N * heads, Lq, Lk): True = masked
        y, _ = F.multi_head_attention_forward(
            q.transpose(0, 1),
            k.transpose(0, 1),
            v.transpose(0, 1),
            embed,
            heads,
            None,
            bias,
            None,
            None,
            False,
            0.0,
            w["output_kernel"].reshape(embed, -1).T,
            w["output_bias"],
            training=False,
            need_weights=False,
            attn_mask=attn_mask,
            use_separate_proj_weight=True,
            q_proj_weight=rows["query"],
            k_proj_weight=rows["key"],
            v_proj_weight=rows["value"],
        )
        return y.transpose(0, 1)

    return run


MHA_BIAS = {"bias_initializer": {"type": "variance_scaling"}}


def test_self_attention_agrees_with_torch():
    layer_agrees(
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 3, **MHA_BIAS}, [(5, 6), (5, 6)], mha_fn(2, 3)
    )


def test_cross_attention_with_key_agrees_with_torch():
    config = {"type": "MultiHeadAttention", "num_heads": 3, "key_dim": 2, **MHA_BIAS}
    layer_agrees(config, [(4, 6), (5, 3), (5, 7)], mha_fn(3, 2, has_key=True))


def test_causal_attention_agrees_with_torch():
    config = {"type": "MultiheadAttention", "num_heads": 2, "key_dim": 2, "use_causal_mask": True, **MHA_BIAS}
    layer_agrees(config, [(5, 4), (5, 4)], mha_fn(2, 2, causal=True))


@pytest.mark.parametrize("full", [False, True])
def test_masked_attention_agrees_with_torch(full):
    rng = np.random.default_rng(3)
    q, v = rng.standard_normal((N, 4, 4)).astype(np.float32), rng.standard_normal((N, 5, 4)).astype(np.float32)
    mask = (rng.random((N, 4, 5) if full else (N, 5)) < 0.5).astype(np.int64)
    mask[..., 1] = 1  # every query sees a key: PyTorch gives NaN for a fully masked row
    config = {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2, "use_attention_mask": True, **MHA_BIAS}
    layer_agrees(config, [(4, 4), (5, 4), mask.shape[1:]], mha_fn(2, 2, mask_kind="mask"), x=[q, v, mask])


def test_a_wrong_reference_is_caught():
    """The harness fails when the reference differs (an LSTM checked against a GRU's mapping), so
    the tests above can fail."""
    config = {"units": 2, "return_sequences": True}
    with pytest.raises(Exception):
        layer_agrees({"type": "LSTM", **config}, (L, D), recurrent_fn("GRU", config))

"""ONNX for the first vocabulary round's activations: each lowers to standard operators at every
opset (their own operator where the opset has it), runs in onnxruntime as in regnet and comes back
as itself; and small PyTorch models with each activation (``torch.onnx.export``, opset 17) import
into regnet with the activation folded into the layer before, predicting what torch predicts."""

import json
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from tests.torch_agreement import torch_onnx_bytes  # noqa: E402

TOLERANCE = 1e-5

#: activation config -> the operators its lowering uses at opsets (13, 17, 18, 20)
LOWERED = {
    "relu6": [{"Clip"}] * 4,
    "silu": [{"Sigmoid", "Mul"}] * 4,
    "hard_sigmoid": [{"HardSigmoid"}] * 4,
    "hard_swish": [{"HardSigmoid", "Mul"}, {"HardSwish"}, {"HardSwish"}, {"HardSwish"}],
    "mish": [{"Softplus", "Tanh", "Mul"}, {"Softplus", "Tanh", "Mul"}, {"Mish"}, {"Mish"}],
    "softplus": [{"Softplus"}] * 4,
    "softsign": [{"Softsign"}] * 4,
    "exponential": [{"Exp"}] * 4,
    "log_softmax": [{"LogSoftmax"}] * 4,
    "gelu": [{"Div", "Erf", "Add", "Mul"}] * 3 + [{"Gelu"}],
    "gelu_tanh": [{"Mul", "Add", "Tanh"}] * 3 + [{"Gelu"}],
}
OPSETS = (13, 17, 18, 20)


def run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _config(name):
    return {"type": "gelu", "approximate": True} if name == "gelu_tanh" else name


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", list(LOWERED))
def test_lowering_runs_in_onnxruntime_and_imports_back(name, opset):
    spec = {
        "input_shape": [3, 5],
        "layers": [
            {"type": "Dense", "units": 4, "activation": _config(name)},
            {"type": "Activation", "activation": _config(name)},
        ],
    }
    model = regnet.Model.from_spec(spec, seed=2)
    scale = 1.0 if name == "exponential" else 3.0  # exp(exp(x)) stays finite
    x = (scale * np.random.default_rng(0).normal(size=(6, 3, 5))).astype(np.float32)
    proto = ronnx.to_proto(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node} - {"MatMul", "Add", "Identity"}
    assert ops == LOWERED[name][OPSETS.index(opset)] - {"Add"}
    want = model.predict(x)
    np.testing.assert_allclose(run_onnx(proto, x), want, rtol=TOLERANCE, atol=TOLERANCE)
    back = ronnx.from_proto(proto)
    assert [layer.get_config()["activation"] for layer in back.layers] == [_config(name)] * 2
    np.testing.assert_array_equal(back.predict(x), want)


def test_log_softmax_over_the_channel_axis_round_trips():
    spec = {
        "input_shape": [3, 2, 2],
        "layers": [{"type": "Activation", "activation": {"type": "log_softmax", "axis": 1}}],
    }
    model = regnet.Model.from_spec(spec)
    x = np.random.default_rng(1).normal(size=(4, 3, 2, 2)).astype(np.float32)
    proto = ronnx.to_proto(model)
    assert float(np.abs(run_onnx(proto, x) - model.predict(x)).max()) <= TOLERANCE
    assert ronnx.from_proto(proto).layers[0].get_config()["activation"] == {"type": "log_softmax", "axis": 1}


# -- PyTorch's exports ------------------------------------------------------------------------------
torch = pytest.importorskip("torch", reason="the PyTorch import tests need torch==2.13.0")
from torch import nn  # noqa: E402


class Gated(nn.Module):
    """``x * sigmoid(x)`` written out (PyTorch's SiLU exports the same pattern)."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


#: torch module factory -> the activation regnet reads
TORCH_ACTIVATIONS = {
    "ReLU6": (nn.ReLU6, "relu6"),
    "SiLU": (nn.SiLU, "silu"),
    "x*sigmoid(x)": (Gated, "silu"),
    "Hardsigmoid": (nn.Hardsigmoid, "hard_sigmoid"),
    "Hardswish": (nn.Hardswish, "hard_swish"),
    "Mish": (nn.Mish, "mish"),
    "Softplus": (nn.Softplus, "softplus"),
    "Softsign": (nn.Softsign, "softsign"),
    "exp": (Exp, "exponential"),
    "LogSoftmax": (lambda: nn.LogSoftmax(dim=1), "log_softmax"),
    "GELU": (nn.GELU, "gelu"),
    "GELU-tanh": (lambda: nn.GELU(approximate="tanh"), {"type": "gelu", "approximate": True}),
}


def torch_export(net, x, opset=17):
    return onnx.load_from_string(torch_onnx_bytes(net, x, opset))


@pytest.mark.parametrize("label", list(TORCH_ACTIVATIONS))
def test_torch_activation_after_a_linear_layer_imports(label):
    make, expected = TORCH_ACTIVATIONS[label]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), make(), nn.Linear(4, 3), make()).eval()
    x = (2 * np.random.default_rng(0).normal(size=(7, 5))).astype(np.float32)
    proto = torch_export(net, x)
    model = ronnx.from_proto(proto)
    assert [layer.get_config()["type"] for layer in model.layers] == ["Dense", "Dense"]  # folded in
    assert [layer.get_config()["activation"] for layer in model.layers] == [expected, expected]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, run_onnx(proto, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("label", ["ReLU6", "Hardswish", "GELU", "x*sigmoid(x)", "Mish", "Softsign"])
def test_torch_activation_after_a_convolution_imports(label):
    make, expected = TORCH_ACTIVATIONS[label]
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), make(), nn.Flatten(), nn.Linear(48, 2)).eval()
    x = np.random.default_rng(1).normal(size=(3, 2, 4, 4)).astype(np.float32)
    model = ronnx.from_proto(torch_export(net, x))
    assert model.layers[0].get_config()["activation"] == expected
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-4)


def test_a_shared_gate_is_not_a_pattern():
    """``x * sigmoid(x)`` whose sigmoid feeds another node too is not silu: the Mul of two
    computed tensors stays refused rather than silently rewritten."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            z = self.fc(x)
            s = torch.sigmoid(z)
            return z * s + s

    x = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)
    net = Shared().eval()
    model = ronnx.from_proto(torch_export(net, x))
    types = [layer["type"] for layer in model.to_spec()["layers"]]
    assert "Multiply" in types and "silu" not in json.dumps(model.to_spec())
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)


# -- hand-written graphs ----------------------------------------------------------------------------
def _graph(nodes, consts, opset=17):
    weights = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    weights.append(numpy_helper.from_array(np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32), "w"))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"], name="fc"), *nodes],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=weights,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    return proto


def test_erf_gelu_in_other_orders_and_the_swish_operator():
    x = np.linspace(-4, 4, 24, dtype=np.float32).reshape(6, 4)
    half_first = _graph(
        [
            helper.make_node("Mul", ["z", "half"], ["hz"]),
            helper.make_node("Mul", ["inv_sqrt2", "z"], ["s"]),
            helper.make_node("Erf", ["s"], ["e"]),
            helper.make_node("Add", ["one", "e"], ["a"]),
            helper.make_node("Mul", ["a", "hz"], ["y"]),
        ],
        {"half": 0.5, "inv_sqrt2": 1 / math.sqrt(2), "one": 1.0},
    )
    model = ronnx.from_proto(half_first)
    assert model.layers[0].get_config()["activation"] == "gelu"
    np.testing.assert_allclose(model.predict(x), run_onnx(half_first, x), rtol=1e-5, atol=1e-6)
    wrong_constant = _graph(
        [
            helper.make_node("Div", ["z", "c"], ["s"]),
            helper.make_node("Erf", ["s"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"]),
            helper.make_node("Mul", ["z", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ],
        {"half": 0.5, "c": 2.0, "one": 1.0},
    )
    with pytest.raises(ronnx.OnnxImportError, match="Div"):  # not a GELU: refused, not rewritten
        ronnx.from_proto(wrong_constant)
    swish = _graph([helper.make_node("Swish", ["z"], ["y"], name="sw")], {}, opset=24)
    assert ronnx.from_proto(swish).layers[0].get_config()["activation"] == "silu"
    clip_relu = _graph([helper.make_node("Clip", ["z", "lo"], ["y"])], {"lo": 0.0})
    assert ronnx.from_proto(clip_relu).layers[0].get_config()["activation"] == "relu"

"""Sequence layers and ONNX: SimpleRNN, LSTM, GRU, Bidirectional and MultiHeadAttention exported
and run in onnxruntime; PyTorch's nn.LSTM (two layers), bidirectional nn.GRU and nn.RNN
(``torch.onnx.export``, opset 17) imported and predicting what torch predicts; regnet's own
export imported back; what cannot be written or read is refused by name."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet.onnx import OnnxExportError, OnnxImportError  # noqa: E402
from tests.torch_agreement import torch_onnx_bytes  # noqa: E402

TOLERANCE = 1e-5
SHAPE = [6, 4]  # (L, D)


def run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: x})[0]


def data(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def model(layers, seed=1):
    return regnet.Model.from_spec({"input_shape": SHAPE, "layers": layers}, seed=seed)


BIAS = {"bias_initializer": {"type": "variance_scaling"}}
RECURRENT = [
    {"type": "LSTM", "units": 3, **BIAS},
    {"type": "LSTM", "units": 3, "return_sequences": True, "go_backwards": True, **BIAS},
    {"type": "GRU", "units": 3, "return_sequences": True, **BIAS},
    {"type": "GRU", "units": 2, "go_backwards": True},
    {"type": "SimpleRNN", "units": 3, "activation": "relu", "return_sequences": True, **BIAS},
    {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2, "return_sequences": True, **BIAS}},
    {"type": "Bidirectional", "layer": {"type": "GRU", "units": 2, **BIAS}, "merge_mode": "sum"},
    {
        "type": "Bidirectional",
        "layer": {"type": "SimpleRNN", "units": 2, "return_sequences": True},
        "merge_mode": "ave",
    },
    {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 2, **BIAS}, "merge_mode": "mul"},
]


def _id(cfg):
    inner = cfg.get("layer", {})
    return "-".join(str(v) for v in (cfg["type"], inner.get("type", ""), cfg.get("merge_mode", "")) if v) + (
        "-seq" if cfg.get("return_sequences") or inner.get("return_sequences") else ""
    )


@pytest.mark.parametrize("opset", [ronnx.MIN_OPSET, ronnx.DEFAULT_OPSET])
@pytest.mark.parametrize("config", RECURRENT, ids=_id)
def test_recurrent_export_matches_onnxruntime(config, opset):
    m = model([config, {"type": "Dense", "units": 2}])
    proto = ronnx.to_proto(m, opset)
    ops = {n.op_type for n in proto.graph.node}
    inner = config.get("layer", config)["type"]
    assert {"SimpleRNN": "RNN"}.get(inner, inner) in ops
    x = data()
    assert float(np.abs(run_onnx(proto, x) - m.predict(x)).max()) <= TOLERANCE


@pytest.mark.parametrize("config", [c for c in RECURRENT if c.get("merge_mode", "concat") == "concat"], ids=_id)
def test_recurrent_export_imports_back(config):
    m = model([config])
    back = ronnx.from_proto(ronnx.to_proto(m))
    assert [la["type"] for la in back.to_spec()["layers"]] == [config["type"]]
    x = data()
    np.testing.assert_allclose(back.predict(x), m.predict(x), atol=TOLERANCE)


def attention_graph(**options):
    """Self-attention on the model input (fed twice), a key from a Dense, a mask from a Dense."""
    with_key = options.pop("with_key", False)
    mha = {"type": "MultiHeadAttention", "name": "mha", "num_heads": 2, "key_dim": 3, **BIAS, **options}
    inputs = ["input", "input"]
    layers = []
    if options.get("use_attention_mask"):
        layers.append({"type": "Dense", "name": "mask", "units": SHAPE[0], "inputs": "input"})
    if with_key:
        layers.append({"type": "Dense", "name": "key", "units": 5, "inputs": "input"})
        inputs.append("key")
    if options.get("use_attention_mask"):
        inputs.append("mask")
    return model([*layers, {**mha, "inputs": inputs}, {"type": "Flatten"}])


@pytest.mark.parametrize("opset", [ronnx.MIN_OPSET, ronnx.DEFAULT_OPSET, 21])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use_causal_mask": True},
        {"use_attention_mask": True, "value_dim": 2, "output_dim": 3},
        {"use_attention_mask": True, "use_causal_mask": True, "with_key": True, "use_bias": False},
    ],
    ids=["self", "causal", "mask", "causal-mask-key"],
)
def test_attention_export_matches_onnxruntime(options, opset):
    m = attention_graph(**dict(options))
    proto = ronnx.to_proto(m, opset)
    assert {"MatMul", "Softmax", "Transpose", "Reshape"} <= {n.op_type for n in proto.graph.node}
    x = data(seed=2)
    assert float(np.abs(run_onnx(proto, x) - m.predict(x)).max()) <= TOLERANCE


def test_attention_model_trains_and_fully_masked_rows_stay_finite():
    m = attention_graph(use_attention_mask=True, use_causal_mask=True)
    x = data(32, seed=3)
    y = np.random.default_rng(4).integers(0, 2, len(x))
    net = regnet.Model.from_spec(
        {
            "input_shape": SHAPE,
            "layers": [*m.to_spec()["layers"], {"type": "Dense", "units": 2, "activation": "softmax"}],
        },
        seed=0,
    )
    net.compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.01}, metrics=[])
    before = net.evaluate(x, y)["loss"]
    net.fit(x, y, epochs=5, batch_size=8, verbose=0, seed=0)
    after = net.evaluate(x, y)["loss"]
    assert np.isfinite(after) and after < before


def test_recurrent_model_trains():
    net = model([{"type": "LSTM", "units": 4}, {"type": "Dense", "units": 2, "activation": "softmax"}])
    x = data(32, seed=5)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    net.compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.05}, metrics=[])
    before = net.evaluate(x, y)["loss"]
    net.fit(x, y, epochs=5, batch_size=8, verbose=0, seed=0)
    assert net.evaluate(x, y)["loss"] < before


def test_masked_recurrent_layer_is_refused_by_name():
    m = model(
        [
            {"type": "Dense", "name": "mask_source", "units": 1},
            {"type": "Flatten", "name": "mask"},
            {"type": "GRU", "name": "gru", "units": 2, "use_mask": True, "inputs": ["input", "mask"]},
        ]
    )
    with pytest.raises(OnnxExportError, match="use_mask") as info:
        ronnx.to_proto(m)
    assert "gru" in str(info.value)


# -- PyTorch's export -----------------------------------------------------------------------------

torch = pytest.importorskip("torch", reason="the PyTorch import tests need torch")
nn = torch.nn


class Recurrent(nn.Module):
    def __init__(self, kind):
        super().__init__()
        d, u = SHAPE[1], 5
        self.rnn = {
            "lstm2": lambda: nn.LSTM(d, u, num_layers=2, batch_first=True),
            "bigru": lambda: nn.GRU(d, u, bidirectional=True, batch_first=True),
            "rnn": lambda: nn.RNN(d, u, batch_first=True),
            "rnn-relu": lambda: nn.RNN(d, u, nonlinearity="relu", batch_first=True),
            "bilstm2": lambda: nn.LSTM(d, u, num_layers=2, bidirectional=True, batch_first=True),
        }[kind]()
        self.head = nn.Linear(2 * u if kind.startswith("bi") else u, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def torch_export(net, x):
    return onnx.load_from_string(torch_onnx_bytes(net, x))


@pytest.mark.parametrize(
    ("kind", "types"),
    [
        ("lstm2", ["LSTM", "LSTM", "Dense"]),
        ("bigru", ["Bidirectional", "Dense"]),
        ("rnn", ["SimpleRNN", "Dense"]),
        ("rnn-relu", ["SimpleRNN", "Dense"]),
        ("bilstm2", ["Bidirectional", "Bidirectional", "Dense"]),
    ],
)
def test_torch_recurrent_export_imports_and_predicts_the_same(kind, types):
    torch.manual_seed(0)
    net = Recurrent(kind).eval()
    x = data(7, seed=6)
    proto = torch_export(net, x)
    assert {"LSTM", "GRU", "RNN"} & {n.op_type for n in proto.graph.node}
    m = ronnx.from_proto(proto)
    assert [la["type"] for la in m.to_spec()["layers"]] == types
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert float(np.abs(m.predict(x) - want).max()) <= 1e-4


class LastState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(SHAPE[1], 3, batch_first=True)

    def forward(self, x):
        _, h = self.rnn(x)
        return h[0]  # (N, units): the last state


def test_torch_last_state_imports_as_return_sequences_false():
    torch.manual_seed(1)
    net = LastState().eval()
    x = data(4, seed=7)
    m = ronnx.from_proto(torch_export(net, x))
    (layer,) = m.to_spec()["layers"]
    assert layer["type"] == "GRU" and not layer.get("return_sequences", False)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert float(np.abs(m.predict(x) - want).max()) <= 1e-4


def test_recurrent_state_input_and_cell_output_are_refused():
    class CellState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(SHAPE[1], 3, batch_first=True)

        def forward(self, x):
            _, (h, c) = self.rnn(x)
            return c[0]

    proto = torch_export(CellState().eval(), data(2))
    with pytest.raises(OnnxImportError, match="Y_c"):
        ronnx.from_proto(proto)


# -- hand-written graphs ----------------------------------------------------------------------------


def lstm_graph(layout=1, **extra_inputs):
    """One LSTM over the input (N, L, D), its Y_h squeezed: batch-major with ``layout=1``, else
    after a Transpose to time-major (onnxruntime runs layout 0 only). ``extra_inputs``: ``i4``
    (sequence_lens), ``i5`` (initial_h) as constants."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(8)
    d, u = SHAPE[1], 3
    inits = [
        numpy_helper.from_array(rng.standard_normal((1, 4 * u, d)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((1, 4 * u, u)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.standard_normal((1, 8 * u)).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([layout], np.int64), "axes"),  # the direction axis of Y_h
    ]
    inputs = ["x" if layout else "xt", "W", "R", "B", "", "", ""]
    for index, value in extra_inputs.items():
        inits.append(numpy_helper.from_array(value, index))
        inputs[int(index[1:])] = index
    nodes = [] if layout else [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2])]
    nodes += [
        helper.make_node("LSTM", inputs, ["Y", "Y_h"], hidden_size=u, layout=layout),
        helper.make_node("Squeeze", ["Y_h", "axes"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", u])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_hand_written_lstm_with_layout_1_imports_and_matches_onnxruntime():
    proto = lstm_graph()
    m = ronnx.from_proto(proto)
    (layer,) = m.to_spec()["layers"]
    assert layer["type"] == "LSTM" and not layer["return_sequences"]
    x = data(seed=9)
    np.testing.assert_allclose(m.predict(x), run_onnx(lstm_graph(layout=0), x), atol=TOLERANCE)
    np.testing.assert_array_equal(ronnx.from_proto(lstm_graph(layout=0)).predict(x), m.predict(x))


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"i4": np.full((1,), SHAPE[0], np.int32)}, "sequence_lens"),
        ({"i5": np.ones((1, 1, 3), np.float32)}, "initial_h"),
        ({"i5": np.zeros((1, 1, 3), np.float32)}, None),  # zeros: the same as none
    ],
    ids=["sequence_lens", "initial_h", "zero_initial_h"],
)
def test_recurrent_inputs_regnet_cannot_represent_are_refused(extra, words):
    if words is None:
        assert ronnx.from_proto(lstm_graph(layout=0, **extra)).to_spec()["layers"][0]["type"] == "LSTM"
        return
    with pytest.raises(OnnxImportError, match=words):
        ronnx.from_proto(lstm_graph(layout=0, **extra))


def test_a_time_major_view_read_by_another_operator_is_refused_by_name():
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]), helper.make_node("Relu", ["t"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [SHAPE[0], "N", SHAPE[1]])],
    )
    with pytest.raises(OnnxImportError, match=r"\(Relu\).*time-major view"):
        ronnx.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))

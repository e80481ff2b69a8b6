"""Sequence layers and ONNX: regnet's export run in onnxruntime, the Embedding lowering on int64 ids,
round trips, and PyTorch's exports of Conv1d, the 1-D pools, the global pools and embeddings imported."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")

from onnx import helper  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet import layers  # noqa: E402
from regnet.onnx import lowering  # noqa: E402
from regnet.onnx.builder import GraphBuilder, LoweringContext  # noqa: E402
from tests.torch_agreement import torch_onnx_bytes  # noqa: E402

TOLERANCE = 1e-5


def run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: x})[0]


SEQUENCE_MODEL = {
    "input_shape": [12],
    "layers": [
        {"type": "Embedding", "name": "tokens", "input_dim": 20, "output_dim": 6, "mask_zero": True},
        {"type": "PositionEmbedding", "name": "positions", "sequence_length": 12},
        {"type": "Reshape", "name": "channels", "target_shape": [6, 12]},
        {
            "type": "Conv1D",
            "name": "causal",
            "filters": 8,
            "kernel_size": 3,
            "padding": "causal",
            "dilation_rate": 2,
            "groups": 2,
            "activation": "relu",
        },
        {"type": "Conv1D", "name": "strided", "filters": 8, "kernel_size": 4, "strides": 2, "padding": "same"},
        {"type": "MaxPooling1D", "name": "max", "pool_size": 3, "strides": 1, "padding": "same"},
        {"type": "AveragePooling1D", "name": "avg", "pool_size": 2, "padding": "valid"},
        {"type": "GlobalMaxPooling1D", "name": "gmax", "keepdims": True},
        {"type": "Flatten", "name": "flat"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


def ids(n, shape, high, seed=0):
    return np.random.default_rng(seed).integers(0, high, size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("opset", [ronnx.DEFAULT_OPSET, 21])
def test_sequence_model_exports_and_round_trips(opset, tmp_path):
    model = regnet.Model.from_spec(SEQUENCE_MODEL, seed=3)
    x = ids(7, (12,), 20)
    proto = ronnx.to_proto(model, opset)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Cast", "Gather", "Conv", "MaxPool", "AveragePool", "GlobalMaxPool"} <= ops
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    assert (attrs["pads"], attrs["dilations"], attrs["group"]) == ([4, 0], [2], 2)
    assert float(np.abs(run_onnx(proto, x) - model.predict(x)).max()) <= TOLERANCE
    back = ronnx.load(ronnx.export(model, tmp_path / "seq.onnx", opset))
    assert back.to_spec() == model.to_spec()
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_global_average_pooling_1d_exports_and_imports_both_ways():
    for keepdims in (False, True):
        spec = {
            "input_shape": [3, 5],
            "layers": [{"type": "GlobalAveragePooling1D", "name": "pool", "keepdims": keepdims}],
        }
        model = regnet.Model.from_spec(spec)
        x = np.random.default_rng(0).normal(size=(4, 3, 5)).astype(np.float32)
        proto = ronnx.to_proto(model)
        assert [n.op_type for n in proto.graph.node][0] == "GlobalAveragePool"
        assert float(np.abs(run_onnx(proto, x) - model.predict(x)).max()) <= TOLERANCE
        back = ronnx.from_proto(proto)
        assert [layer.registered_name for layer in back.layers] == ["GlobalAveragePooling1D"]
        assert back.to_spec() == model.to_spec()  # the name too


def test_embedding_lowering_reads_int64_ids():
    """The exporter writes float32 model inputs; the Embedding lowering itself on an int64 graph
    input, built with the exporter's builder and run in onnxruntime."""
    layer = layers.create({"type": "Embedding", "input_dim": 9, "output_dim": 4})
    layer.setup((2, 3), np.random.default_rng(0))
    graph = GraphBuilder(ronnx.DEFAULT_OPSET)
    graph.claim("ids")
    out = lowering.embedding_lookup(LoweringContext(graph, "emb", layer), layer, ["ids"])
    g = helper.make_graph(
        graph.nodes,
        "embedding",
        [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["N", 2, 3])],
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["N", 2, 3, 4])],
        initializer=graph.initializers,
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", ronnx.DEFAULT_OPSET)])
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(1).integers(0, 9, size=(5, 2, 3))
    np.testing.assert_array_equal(run_onnx(proto, x), layer(x))


def test_position_embedding_longer_than_the_input_imports_the_rows_it_reads():
    spec = {"input_shape": [3, 2], "layers": [{"type": "PositionEmbedding", "sequence_length": 8}]}
    model = regnet.Model.from_spec(spec, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    proto = ronnx.to_proto(model)
    assert float(np.abs(run_onnx(proto, x) - model.predict(x)).max()) <= TOLERANCE
    back = ronnx.from_proto(proto)
    assert back.layers[0].sequence_length == 3
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def _proto(nodes, input_shape, output_shape, initializers=(), opset=17):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", *output_shape])],
        initializer=list(initializers),
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_import_refuses_what_the_1d_layers_cannot_compute():
    w = onnx.numpy_helper.from_array(np.ones((2, 3, 3), np.float32), "w")
    uneven = _proto([helper.make_node("Conv", ["x", "w"], ["y"], pads=[2, 1])], [3, 6], [2, 7], [w])
    with pytest.raises(ronnx.OnnxImportError, match=r"pads \[2, 1\].*unsupported"):
        ronnx.from_proto(uneven)
    cast = _proto(
        [helper.make_node("Cast", ["x"], ["i"], to=onnx.TensorProto.INT64), helper.make_node("Relu", ["i"], ["r"])]
        + [helper.make_node("Cast", ["r"], ["y"], to=onnx.TensorProto.FLOAT)],
        [3, 6],
        [3, 6],
    )
    with pytest.raises(ronnx.OnnxImportError, match="integer ids read by a Gather"):
        ronnx.from_proto(cast)
    # over both axes at once (axis 2 alone is the (N, C, L) pooling, axis 1 alone the channels_last one)
    reduce = _proto([helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 2], keepdims=0)], [3, 6], [])
    with pytest.raises(ronnx.OnnxImportError, match="axes"):
        ronnx.from_proto(reduce)


# -- PyTorch's exports --------------------------------------------------------------------------------
torch = pytest.importorskip("torch", reason="the PyTorch import tests need torch==2.13.0")
nn = torch.nn


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def torch_export(net, x, opset=17):
    return torch_onnx_bytes(net, x, opset)


def _nets():
    yield "conv-padded-dilated-grouped", lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2)
    yield "conv-same", lambda: nn.Sequential(nn.Conv1d(4, 6, 3, padding="same"), nn.ReLU())
    yield "conv-depthwise-no-bias", lambda: nn.Conv1d(4, 4, 5, groups=4, bias=False)
    yield "maxpool", lambda: nn.MaxPool1d(3, 2, padding=1)
    yield "avgpool-padded", lambda: nn.AvgPool1d(3, 2, padding=1, count_include_pad=False)
    yield "avgpool", lambda: nn.AvgPool1d(2)
    yield "adaptive-avg", lambda: nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())
    yield "adaptive-avg-keepdims", lambda: nn.AdaptiveAvgPool1d(1)
    yield "adaptive-max", lambda: nn.Sequential(nn.AdaptiveMaxPool1d(1), nn.Flatten())
    yield "mean", lambda: Lambda(lambda x: x.mean(-1))
    yield "amax-keepdims", lambda: Lambda(lambda x: x.amax(2, keepdim=True))
    yield (
        "stack",
        lambda: nn.Sequential(
            nn.Conv1d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(8, 8, 3, groups=2), nn.Tanh()
        ),
    )


NETS = dict(_nets())


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("name", list(NETS))
def test_torch_sequence_export_imports_and_predicts_the_same(name, opset):
    torch.manual_seed(0)
    net = NETS[name]().eval()
    x = np.random.default_rng(0).normal(size=(5, 4, 10)).astype(np.float32)
    model = ronnx.from_proto(onnx.load_from_string(torch_export(net, x, opset)))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = model.predict(x)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-4


class Lookup(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4)

    def forward(self, x):
        return self.emb(x.long())


def test_torch_embedding_of_float_ids_imports_as_embedding():
    """``nn.Embedding`` on ids given as floats (a float32 model input): Cast + Gather."""
    torch.manual_seed(0)
    net = Lookup().eval()
    x = ids(6, (5,), 11)
    model = ronnx.from_proto(onnx.load_from_string(torch_export(net, x)))
    assert [layer.registered_name for layer in model.layers] == ["Embedding"]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), want, atol=1e-6)


class TextClassifier(nn.Module):
    """Embedding + Conv1d text classifier on int64 token ids (a course's first text model)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.conv = nn.Conv1d(16, 24, 3, padding=1)
        self.head = nn.Linear(24, 4)

    def forward(self, ids):
        x = self.emb(ids).transpose(1, 2)  # (N, 16, L)
        x = torch.relu(self.conv(x))
        return self.head(x.amax(dim=2))


@pytest.mark.parametrize("opset", [13, 17])
def test_torch_embedding_conv1d_text_classifier_on_int64_ids(opset):
    """An int64 ``input_ids`` graph input (Gather, Transpose, Conv, ReduceMax, Gemm) imports with its
    integer input and predicts what onnxruntime and torch predict."""
    import io

    torch.manual_seed(0)
    net = TextClassifier().eval()
    tokens = np.random.default_rng(3).integers(0, 50, size=(6, 12)).astype(np.int64)
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.from_numpy(tokens),),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=["input_ids"],
        output_names=["y"],
        dynamic_axes={"input_ids": {0: "N"}},
    )
    model = ronnx.from_proto(onnx.load_from_string(buffer.getvalue()))
    assert model.to_spec()["inputs"][0]["dtype"] == "int64"
    got = model.predict(tokens)
    want = ort.InferenceSession(buffer.getvalue()).run(None, {"input_ids": tokens})[0]
    assert float(np.abs(got - want).max()) <= 1e-4 * float(np.abs(want).max())
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(tokens)).numpy(), rtol=1e-5, atol=1e-5)

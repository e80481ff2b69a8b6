"""ONNX import of attention: PyTorch's ``nn.MultiheadAttention`` (``batch_first`` or not, causal
masks, cross-attention with ``kdim``/``vdim``) and ``nn.TransformerEncoder`` (relu, gelu,
``norm_first``, a classifier head) exported by ``torch.onnx.export`` (TorchScript exporter) read as
MultiHeadAttention layers that predict what onnxruntime and torch predict; regnet's own export read
back as the same layer; what the pattern does not cover refused by name."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")
torch = pytest.importorskip("torch", reason="the PyTorch references need torch")

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet.onnx import OnnxImportError, attention_import  # noqa: E402
from tests.torch_agreement import torch_onnx_bytes  # noqa: E402

TOLERANCE = 1e-4  # relative to the output's largest absolute value
E, HEADS, L = 8, 2, 5


def data(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, L, E)).astype(np.float32)


class Attention(torch.nn.Module):
    """``nn.MultiheadAttention`` on the input (self-attention) or on it and a projection of it."""

    def __init__(self, batch_first=True, mask=None, need_weights=False, cross=False, **options):
        super().__init__()
        kdim = {"kdim": 6, "vdim": 6} if cross else {}
        self.mha = torch.nn.MultiheadAttention(E, HEADS, batch_first=batch_first, **kdim, **options)
        self.key = torch.nn.Linear(E, 6) if cross else None
        self.batch_first, self.mask, self.need_weights = batch_first, mask, need_weights

    def forward(self, x):
        mask = None
        if self.mask == "float":
            mask = torch.nn.Transformer.generate_square_subsequent_mask(L)
        elif self.mask == "bool":
            mask = torch.ones(L, L, dtype=torch.bool).triu(1)
        elif self.mask == "additive":
            mask = torch.arange(L * L, dtype=torch.float32).reshape(L, L) / 10
        kv = self.key(x) if self.key is not None else x
        if not self.batch_first:
            x, kv = x.transpose(0, 1), kv.transpose(0, 1)
        y = self.mha(x, kv, kv, attn_mask=mask, need_weights=self.need_weights)[0]
        return y if self.batch_first else y.transpose(0, 1)


class Encoder(torch.nn.Module):
    """Two ``nn.TransformerEncoderLayer`` (batch_first) and optionally a head: the mean over the
    sequence and a Linear."""

    def __init__(self, activation="relu", norm_first=False, head=False):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(
            E, HEADS, 16, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
        )
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(E, 3) if head else None

    def forward(self, x):
        y = self.encoder(x)
        return self.head(y.mean(dim=1)) if self.head is not None else y


def imported(net, x):
    """``net`` exported by torch and imported by regnet, checked against onnxruntime and torch."""
    torch.manual_seed(0)
    net.eval()
    data_ = torch_onnx_bytes(net, x)
    model = ronnx.from_proto(onnx.load_from_string(data_))
    got = model.predict(x)
    session = ort.InferenceSession(data_, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want_torch = net(torch.from_numpy(x)).numpy()
    for want in (session.run(None, {"x": x})[0], want_torch):
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= TOLERANCE * float(np.abs(want).max())
    return model


def attention_layers(model):
    return [layer for layer in model.layers if type(layer).__name__ == "MultiHeadAttention"]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"batch_first": False},
        {"mask": "float"},
        {"mask": "bool", "batch_first": False},
        {"need_weights": True},
        {"cross": True},
        {"bias": False},
    ],
    ids=["self", "time-major", "causal", "causal-bool-time-major", "need-weights", "kdim-vdim", "no-bias"],
)
def test_multihead_attention_imports_as_one_layer(options):
    torch.manual_seed(1)
    net = Attention(**options)
    model = imported(net, data())
    (layer,) = attention_layers(model)
    assert (layer.num_heads, layer.key_dim, layer.value_dim) == (HEADS, E // HEADS, None)
    assert layer.use_causal_mask == (options.get("mask") is not None)
    assert layer.use_bias == options.get("bias", True)
    types = [type(la).__name__ for la in model.layers]
    assert types == (["Dense", "MultiHeadAttention"] if options.get("cross") else ["MultiHeadAttention"])


def test_packed_weights_map_to_the_heads():
    torch.manual_seed(2)
    net = Attention()
    (layer,) = attention_layers(imported(net, data()))
    w = net.mha.in_proj_weight.detach().numpy()
    b = net.mha.in_proj_bias.detach().numpy()
    hd = E // HEADS
    for k, role in enumerate(("query", "key", "value")):
        rows = slice(k * E, (k + 1) * E)
        np.testing.assert_array_equal(layer.params[f"{role}_kernel"], w[rows].T.reshape(E, HEADS, hd))
        np.testing.assert_array_equal(layer.params[f"{role}_bias"], b[rows].reshape(HEADS, hd))
    wo = net.mha.out_proj.weight.detach().numpy()
    np.testing.assert_array_equal(layer.params["output_kernel"], wo.T.reshape(HEADS, hd, E))


@pytest.mark.parametrize(
    "activation, norm_first, head", [("relu", False, False), ("gelu", True, False), ("gelu", False, True)]
)
def test_transformer_encoder_imports(activation, norm_first, head):
    torch.manual_seed(3)
    model = imported(Encoder(activation, norm_first, head), data())
    types = [type(la).__name__ for la in model.layers]
    assert types.count("MultiHeadAttention") == 2
    assert types.count("LayerNormalization") == 4
    if head:
        assert types[-2:] == ["GlobalAveragePooling1D", "Dense"]


def regnet_attention(**options):
    layers = []
    inputs = ["input", "input"]
    if options.pop("with_key", False):
        layers.append({"type": "Dense", "name": "key", "units": 3})
        inputs = ["input", "input", "key"]
    if options.get("use_attention_mask"):
        layers.append({"type": "Dense", "name": "mask", "units": L, "inputs": "input"})
        inputs.append("mask")
    mha = {"type": "MultiHeadAttention", "name": "mha", "num_heads": 2, "key_dim": 3, "inputs": inputs, **options}
    spec = {"input_shape": [L, 4], "layers": [*layers, mha, {"type": "Dense", "units": 2}]}
    return regnet.Model.from_spec(spec, seed=4)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use_causal_mask": True, "dropout": 0.2},
        {"use_attention_mask": True, "value_dim": 2, "output_dim": 5},
        {"use_attention_mask": True, "use_causal_mask": True, "with_key": True, "use_bias": False},
    ],
    ids=["self", "causal", "mask", "causal-mask-key"],
)
def test_regnet_export_imports_back_as_the_same_layer(options):
    model = regnet_attention(**dict(options))
    back = ronnx.from_proto(ronnx.to_proto(model))
    assert back.to_spec() == model.to_spec()
    x = np.random.default_rng(5).standard_normal((4, L, 4)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_only_the_time_major_region_or_regnet_export_is_claimed():
    """A batch-first attention graph without regnet's config (as other exporters write it) is left
    to the general operator handlers, which read it as the tensor layers it is written with."""
    model = regnet_attention()
    proto = ronnx.to_proto(model)
    nodes = list(proto.graph.node)
    for node in nodes:
        node.doc_string = ""
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    _, made = attention_import.rewrite(nodes, weights.get, {"input"}, set(weights), {proto.graph.output[0].name})
    assert made == set()
    imported = ronnx.from_proto(proto)
    types = {layer["type"] for layer in imported.to_spec()["layers"]}
    assert "MultiHeadAttention" not in types and "MatMul" in types
    x = np.random.default_rng(1).standard_normal((3, L, 4)).astype(np.float32)
    np.testing.assert_allclose(imported.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def torch_proto(net, x=None):
    torch.manual_seed(0)
    net.eval()
    return onnx.load_from_string(torch_onnx_bytes(net, data() if x is None else x))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"add_bias_kv": True}, "add_bias_kv"),
        ({"add_zero_attn": True}, "add_zero_attn"),
        ({"mask": "additive"}, "other than the causal one"),
    ],
    ids=["add_bias_kv", "add_zero_attn", "additive-mask"],
)
def test_what_the_pattern_does_not_cover_is_refused_by_name(options, message):
    torch.manual_seed(6)
    with pytest.raises(OnnxImportError, match=message) as err:
        ronnx.from_proto(torch_proto(Attention(**options)))
    assert err.value.op == attention_import.REGION_OP and err.value.node.startswith("/mha/")


class Unsupported(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(E, HEADS, batch_first=True)
        self.kind = kind

    def forward(self, x):
        if self.kind == "key_padding_mask":
            return self.mha(x, x, x, key_padding_mask=x[..., 0] > 0, need_weights=False)[0]
        y, weights = self.mha(x, x, x)
        return y + weights.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "kind, message", [("key_padding_mask", "key_padding_mask"), ("weights", "attention weights read outside")]
)
def test_pytorch_attention_the_region_cannot_replace_is_refused_at_its_softmax(kind, message):
    with pytest.raises(OnnxImportError, match=message) as err:
        ronnx.from_proto(torch_proto(Unsupported(kind)))
    assert err.value.op == "Softmax" and err.value.node == "/mha/Softmax"


def test_dropout_in_training_mode_is_refused():
    proto = torch_proto(Attention())
    graph = proto.graph
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    (apply,) = [n for n in graph.node if softmax.output[0] in n.input]
    ratio = onnx.helper.make_tensor("ratio", onnx.TensorProto.FLOAT, [], [0.1])
    training = onnx.helper.make_tensor("training", onnx.TensorProto.BOOL, [], [True])
    graph.initializer.extend([ratio, training])
    dropout = onnx.helper.make_node("Dropout", [softmax.output[0], "ratio", "training"], ["dropped"], name="/mha/Drop")
    apply.input[0] = "dropped"
    at = list(graph.node).index(apply)
    graph.node.insert(at, dropout)
    with pytest.raises(OnnxImportError, match="training mode"):
        ronnx.from_proto(proto)
    training.int32_data[:] = [0]  # inference mode: the Dropout passes its input through
    graph.initializer[-1].CopyFrom(training)
    x = data()
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": x})[0]
    got = ronnx.from_proto(proto).predict(x)
    assert float(np.abs(got - want).max()) <= TOLERANCE * float(np.abs(want).max())

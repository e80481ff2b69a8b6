"""ONNX import of normalisation, PReLU, element-wise merges and channel shuffles: small PyTorch
models exported with ``torch.onnx.export`` (dynamo=False, opset 17) predict what torch predicts,
and hand-built graphs (layer normalisation written out, GroupNormalization, Split, ReduceMean)
predict what onnxruntime does."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")

from onnx import helper, numpy_helper  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet.errors import ShapeError  # noqa: E402
from tests.torch_agreement import torch_onnx_bytes  # noqa: E402

TOLERANCE = 1e-4


def _types(model):
    return [type(n.layer).__name__ for n in model.nodes]


# -- PyTorch exports ------------------------------------------------------------------------------
def _torch_nets():
    torch = pytest.importorskip("torch", reason="the PyTorch import tests need torch")
    nn = torch.nn

    class SqueezeExcitation(nn.Module):
        def __init__(self, c=8, r=4):
            super().__init__()
            self.conv = nn.Conv2d(3, c, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(self.pool(x)))))

    class ConvNeXtBlock(nn.Module):
        """Channels-last LayerNorm between two permutes, point-wise MLP, layer scale, residual."""

        def __init__(self, c=8):
            super().__init__()
            self.stem, self.conv = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
            self.norm = nn.LayerNorm(c, eps=1e-6)
            self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
            self.gamma = nn.Parameter(torch.linspace(0.2, 1.0, c))

        def forward(self, x):
            x = self.stem(x)
            y = self.conv(x).permute(0, 2, 3, 1)
            y = self.pw2(torch.relu(self.pw1(self.norm(y))))
            return x + (self.gamma * y).permute(0, 3, 1, 2)

    class ShuffleBlock(nn.Module):
        """ShuffleNetV2's unit: a channel split, one branch convolved, concatenated, shuffled."""

        def __init__(self, c=8):
            super().__init__()
            self.stem, self.branch = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c // 2, c // 2, 3, padding=1)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, torch.relu(self.branch(b))], dim=1)
            n, c, h, w = out.shape
            return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    class GroupNorms(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.gn, self.inorm = nn.GroupNorm(4, 8), nn.GroupNorm(8, 8)  # the second is instance norm

        def forward(self, x):
            return self.inorm(torch.relu(self.gn(self.conv(x))))

    class PReLUs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.p1 = nn.Conv2d(3, 4, 3), nn.PReLU(4)  # one slope per channel
            self.fc, self.p2 = nn.Linear(4 * 4 * 4, 5), nn.PReLU()  # one slope

        def forward(self, x):
            return self.p2(self.fc(torch.flatten(self.p1(self.conv(x)), 1)))

    class Merges(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

        def forward(self, x):
            a, b = self.a(x), self.b(x)
            m = torch.maximum(a, b) - torch.minimum(a, b.mean(dim=(2, 3), keepdim=True))
            pooled = a.mean(dim=(2, 3)).unsqueeze(-1).unsqueeze(-1)
            return (m * a.mean(dim=(2, 3), keepdim=True) / 2.0 - 1.0) * 3.0 + pooled

    return torch, {
        "se": (SqueezeExcitation, {"Multiply"}),
        "convnext": (ConvNeXtBlock, {"Permute", "LayerNormalization", "Add"}),
        "shuffle": (ShuffleBlock, {"SliceChannels", "Permute", "Concatenate"}),
        "groupnorm": (GroupNorms, {"GroupNormalization"}),
        "prelu": (PReLUs, {"PReLU"}),
        "merges": (Merges, {"Maximum", "Minimum", "Subtract", "Multiply", "GlobalAveragePooling2D", "Rescaling"}),
    }


def _export(torch, net, x):
    return torch_onnx_bytes(net, x)


def _build(torch, cls):
    torch.manual_seed(0)
    net = cls()
    with torch.no_grad():  # affine weights and slopes away from their initial values
        for m in net.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.1, 0.4)
    return net.eval()


NAMES = ["se", "convnext", "shuffle", "groupnorm", "prelu", "merges"]


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_imports_and_predicts_the_same(name, tmp_path):
    torch, nets = _torch_nets()
    cls, expected_layers = nets[name]
    net = _build(torch, cls)
    x = np.random.default_rng(0).standard_normal((5, 3, 6, 6)).astype(np.float32)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(_export(torch, net, x))
    model = ronnx.load(path)
    assert expected_layers <= set(_types(model)), _types(model)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert float(np.abs(model.predict(x) - want).max()) <= TOLERANCE


@pytest.mark.parametrize("name", ["se", "convnext", "groupnorm"])
def test_imported_model_trains_saves_and_exports_again(name, tmp_path):
    torch, nets = _torch_nets()
    net = _build(torch, nets[name][0])
    x = np.random.default_rng(0).standard_normal((16, 3, 6, 6)).astype(np.float32)
    model = ronnx.from_proto(onnx.load_from_string(_export(torch, net, x)))
    y = np.random.default_rng(1).standard_normal(model.predict(x[:1]).shape[1:]).astype(np.float32)
    y = np.broadcast_to(y, (16, *y.shape)).copy()
    model.compile(loss="mean_squared_error", optimizer={"type": "SGD", "learning_rate": 0.05}, metrics=[])
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=0)
    assert model.evaluate(x, y)["loss"] < before
    regnet.save(model, tmp_path / "m.h5")
    again = regnet.load(tmp_path / "m.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    proto = ronnx.to_proto(model)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert float(np.abs(got - model.predict(x)).max()) <= 1e-5


# -- hand-built graphs ----------------------------------------------------------------------------
def _model(nodes, shape, inits=(), opset=17, out_shape=None):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape or ["N", "out"])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto, full_check=out_shape is not None)
    return proto


def _matches_onnxruntime(proto, x, atol=1e-5):
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    model = ronnx.from_proto(proto)
    np.testing.assert_allclose(model.predict(x), want, atol=atol)
    return model


def _reduce_mean(name, x, out, axes, opset):
    if opset >= 18:
        return helper.make_node("ReduceMean", [x, "axes"], [out], name=name, keepdims=1)
    return helper.make_node("ReduceMean", [x], [out], name=name, axes=axes, keepdims=1)


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("square", ["Pow", "Mul"])
@pytest.mark.parametrize("axes, shape", [([-1], [4, 6]), ([2, 3], [3, 2, 5])])
def test_written_out_layer_norm_is_one_layer(opset, square, axes, shape):
    """What exporters before opset 17 write for LayerNorm: ReduceMean, Sub, Pow, ReduceMean, Add,
    Sqrt, Div, then the scale (Mul) and shift (Add)."""
    rng = np.random.default_rng(0)
    normalized = [shape[a - 1 if a > 0 else a] for a in axes]
    nodes = [
        _reduce_mean("mean", "x", "m", axes, opset),
        helper.make_node("Sub", ["x", "m"], ["d"], name="sub"),
        helper.make_node("Pow", ["d", "two"], ["sq"], name="pow")
        if square == "Pow"
        else helper.make_node("Mul", ["d", "d"], ["sq"], name="mul"),
        _reduce_mean("var", "sq", "v", axes, opset),
        helper.make_node("Add", ["v", "eps"], ["ve"], name="add_eps"),
        helper.make_node("Sqrt", ["ve"], ["s"], name="sqrt"),
        helper.make_node("Div", ["d", "s"], ["n"], name="div"),
        helper.make_node("Mul", ["n", "gamma"], ["g"], name="scale"),
        helper.make_node("Add", ["g", "beta"], ["y"], name="shift"),
    ]
    inits = [
        ("two", np.float32(2.0)),
        ("eps", np.float32(1e-5)),
        ("gamma", rng.uniform(0.5, 1.5, normalized).astype(np.float32)),
        ("beta", rng.uniform(-0.5, 0.5, normalized).astype(np.float32)),
        ("axes", np.array(axes, np.int64)),
    ]
    proto = _model(nodes, ["N", *shape], inits, opset, ["N", *shape])
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    model = _matches_onnxruntime(proto, x)
    assert _types(model) == ["LayerNormalization"]


def test_layer_normalization_operator_with_several_axes():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], name="ln", axis=2, epsilon=1e-4)]
    inits = [
        ("scale", rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32)),
        ("bias", rng.normal(size=(3, 4)).astype(np.float32)),
    ]
    proto = _model(nodes, ["N", 2, 3, 4], inits, 17, ["N", 2, 3, 4])
    model = _matches_onnxruntime(proto, rng.normal(size=(2, 2, 3, 4)).astype(np.float32))
    assert model.nodes[0].layer.axis == (2, 3)


def test_group_normalization_operator():
    """GroupNormalization-21: one scale and bias per channel (the checker refuses the deprecated -18)."""
    rng = np.random.default_rng(0)
    n, opset = 6, 21
    nodes = [
        helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], name="gn", num_groups=2, epsilon=1e-3)
    ]
    inits = [("scale", rng.uniform(0.5, 1.5, n).astype(np.float32)), ("bias", rng.normal(size=n).astype(np.float32))]
    proto = _model(nodes, ["N", 6, 3, 3], inits, opset, ["N", 6, 3, 3])
    x = rng.normal(size=(2, 6, 3, 3)).astype(np.float32)
    model = ronnx.from_proto(proto)
    assert _types(model) == ["GroupNormalization"]
    want = x.reshape(2, 2, -1)
    want = ((want - want.mean(axis=2, keepdims=True)) / np.sqrt(want.var(axis=2, keepdims=True) + 1e-3)).reshape(
        x.shape
    )
    scale, bias = (np.repeat(v, 6 // n) for v in (inits[0][1], inits[1][1]))
    want = want * scale.reshape(1, 6, 1, 1) + bias.reshape(1, 6, 1, 1)
    np.testing.assert_allclose(model.predict(x), want, atol=1e-5)


def test_instance_normalization_prelu_split_and_reduce_mean():
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("InstanceNormalization", ["x", "s", "b"], ["i"], name="inorm", epsilon=1e-5),
        helper.make_node("PRelu", ["i", "slope"], ["p"], name="prelu"),
        helper.make_node("Split", ["p", "sizes"], ["p1", "p2", "p3"], name="split", axis=1),
        helper.make_node("ReduceMean", ["p3"], ["r"], name="mean", axes=[2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["r", "ax"], ["ru"], name="unsq"),
        helper.make_node("Transpose", ["ru"], ["rt"], name="t", perm=[0, 1, 3, 2]),
        helper.make_node("Mul", ["p1", "rt"], ["m"], name="gate"),
        helper.make_node("Concat", ["m", "p2"], ["y"], name="cat", axis=1),
    ]
    inits = [
        ("s", rng.uniform(0.5, 1.5, 6).astype(np.float32)),
        ("b", rng.normal(size=6).astype(np.float32)),
        ("slope", rng.uniform(0, 0.5, (6, 1, 1)).astype(np.float32)),
        ("sizes", np.array([2, 3, 1], np.int64)),
        ("ax", np.array([2, 3], np.int64)),
    ]
    proto = _model(nodes, ["N", 6, 3, 4], inits, 17, ["N", 5, 3, 4])
    model = _matches_onnxruntime(proto, rng.normal(size=(3, 6, 3, 4)).astype(np.float32))
    assert {"GroupNormalization", "PReLU", "SliceChannels", "GlobalAveragePooling2D", "Multiply"} <= set(_types(model))


@pytest.mark.parametrize(
    "nodes, inits, fragment",
    [
        ([helper.make_node("Div", ["x", "x"], ["y"], name="ratio")], [], "Div of two computed tensors is unsupported"),
        ([helper.make_node("Transpose", ["x"], ["y"], name="t", perm=[1, 0, 2, 3])], [], "keeps the batch on axis 0"),
        ([helper.make_node("ReduceMean", ["x"], ["y"], name="m", axes=[1], keepdims=1)], [], "GlobalAveragePooling2D"),
        ([helper.make_node("Split", ["x"], ["y", "z"], name="s", axis=0)], [], "the batch axis stays"),
        (
            [helper.make_node("Mul", ["x", "c"], ["y"], name="m")],
            [("c", np.ones((4, 1, 1), np.float32))],
            "only as a scale of the weights",
        ),
    ],
)
def test_unsupported_forms_are_refused_naming_the_node(nodes, inits, fragment):
    proto = _model(nodes, ["N", 4, 2, 2], inits, 17, None)
    with pytest.raises(ronnx.OnnxImportError) as err:
        ronnx.from_proto(proto)
    assert fragment in str(err.value) and f"'{nodes[0].name}'" in str(err.value), str(err.value)


# -- shape errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, fragments",
    [
        ({"type": "Multiply", "name": "gate"}, ["Multiply 'gate'", "(N, 3, 4)", "(N, 5)", "do not broadcast"]),
        ({"type": "Subtract"}, ["Subtract", "exactly 2 inputs", "(N, 3, 4)"]),
    ],
)
def test_merge_shape_errors_name_the_layer_and_the_shapes(spec, fragments):
    layer = regnet.layers.create(spec)
    shapes = [(3, 4), (5,)] if spec["type"] == "Multiply" else [(3, 4), (3, 4), (3, 4)]
    with pytest.raises(ShapeError) as err:
        layer.setup(shapes, np.random.default_rng(0))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


@pytest.mark.parametrize("opset", [13, 16, 18])
@pytest.mark.parametrize(
    "layer, shape",
    [
        ({"type": "LayerNormalization", "axis": -1}, [4, 6]),
        ({"type": "LayerNormalization", "axis": [1, 3], "center": False}, [3, 2, 4]),
        ({"type": "GroupNormalization", "groups": 2}, [4, 3, 3]),
        ({"type": "GroupNormalization", "groups": 2, "axis": -1}, [3, 4]),
    ],
)
def test_normalisation_written_out_before_opset_17_matches_onnxruntime(layer, shape, opset):
    """Before opset 17 (and for GroupNormalization always) the lowering writes the normalisation
    out; ReduceMean takes its axes as an attribute before opset 18 and as an input from it."""
    model = regnet.Model.from_spec({"input_shape": shape, "layers": [layer]}, seed=0)
    for node in model.nodes:
        for value in node.layer.params.values():
            value += np.random.default_rng(1).normal(0, 0.3, value.shape).astype(np.float32)
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    proto = ronnx.to_proto(model, opset)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert float(np.abs(got - model.predict(x)).max()) <= 1e-5
    if (
        layer.get("axis") != -1 or layer["type"] == "LayerNormalization"
    ):  # written out GroupNorm off axis 1: export only
        back = ronnx.from_proto(proto)
        assert _types(back) == [layer["type"]]
        np.testing.assert_allclose(back.predict(x), model.predict(x), atol=1e-6)

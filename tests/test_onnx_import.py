"""ONNX -> regnet: regnet's own files come back as the same spec (up to names) with identical
predictions; hand-written graphs in the patterns other exporters use import and match
onnxruntime; an imported model trains and saves like any other."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet import zoo  # noqa: E402
from regnet.testing import component_cases  # noqa: E402

TOLERANCE = 1e-5


def run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def without_names(spec):
    """The spec with layer names replaced by their positions (``inputs`` too)."""
    index = {layer["name"]: i for i, layer in enumerate(spec["layers"])}
    index["input"] = "input"
    layers = []
    for layer in spec["layers"]:
        layer = {k: v for k, v in layer.items() if k != "name"}
        if "inputs" in layer:
            layer["inputs"] = [index[s] for s in layer["inputs"]]
        layers.append(layer)
    return {**{k: v for k, v in spec.items() if k not in ("layers", "name")}, "layers": layers}


def round_trip(model, opset=ronnx.DEFAULT_OPSET):
    back = ronnx.from_proto(ronnx.to_proto(model, opset))
    assert without_names(back.to_spec()) == without_names(model.to_spec())
    return back


def sample_input(model, n, seed=0):
    """A float32 batch for ``model``: token ids (whole numbers) where the first layer declares an
    integer test input (Embedding), else standard normal values."""
    rng = np.random.default_rng(seed)
    first = model.layers[0]
    if getattr(first, "test_input_dtype", None):
        return rng.integers(*first.test_input_range, size=(n, *model.input_shape)).astype(np.float32)
    return rng.normal(size=(n, *model.input_shape)).astype(np.float32)


def randomise_buffers(model, seed=2):
    rng = np.random.default_rng(seed)
    for node in model.nodes:
        for value in node.layer.buffers.values():
            value[...] = rng.uniform(0.5, 1.5, value.shape)


def _round_trips(config):
    """False for what is exported but not imported: MultiHeadAttention (attention graphs are not
    imported yet) and recurrent layers with a mask input (not exported: tests/test_onnx_seq2.py)."""
    inner = config.get("layer") if isinstance(config.get("layer"), dict) else config
    return config["type"] != "MultiHeadAttention" and not inner.get("use_mask")


def _specs():
    for case in component_cases("regnet", kinds=("layers", "activations"), extra=True):
        if case.kind == "layers" and not _round_trips(case.config):
            continue
        if case.kind == "layers":
            shape = case.options.get("input_shape") or regnet.testing.default_input_shape(case.config)
            if isinstance(shape, list):
                names = [f"branch{i}" for i in range(len(shape))]
                # each branch reshapes the input into the shape the merge layer wants
                size = int(np.prod(shape[0]))
                layers = [
                    {"type": "Dense", "name": n, "units": int(np.prod(s)), "inputs": "input"}
                    for n, s in zip(names, shape)
                ]
                layers += [
                    {"type": "Reshape", "name": f"{n}_r", "target_shape": list(s), "inputs": n}
                    for n, s in zip(names, shape)
                ]
                layers.append({**case.config, "inputs": [f"{n}_r" for n in names]})
                yield pytest.param({"input_shape": [size], "layers": layers}, id=case.id)
                continue
            spec = {"input_shape": list(shape), "layers": [case.config]}
        else:
            spec = {"input_shape": [3, 4, 5], "layers": [{"type": "Activation", "activation": case.config}]}
        yield pytest.param(spec, id=case.id)


@pytest.mark.parametrize("opset", [ronnx.DEFAULT_OPSET, 21])
@pytest.mark.parametrize("spec", list(_specs()))
def test_builtin_configuration_round_trips(spec, opset):
    model = regnet.Model.from_spec(spec, seed=1)
    randomise_buffers(model)
    back = round_trip(model, opset)
    x = sample_input(model, 5)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    for key, value in model.state_dict().items():  # the weights come back under the same names
        np.testing.assert_array_equal(back.state_dict()[key], value)


# the shipped models: a model from a zoo plugin may use the plugin's layers, which import cannot rebuild
@pytest.mark.parametrize("name", [n for n in zoo.list() if zoo.info(n)["provider"]["distribution"] == "regnet"])
def test_zoo_model_round_trips(name, tmp_path):
    model = zoo.load(name)
    path = ronnx.export(model, tmp_path / "m.onnx")
    back = ronnx.load(path)
    x = np.random.default_rng(0).random((64, *model.input_shape), dtype=np.float32)
    if any(type(layer).__name__ == "MultiHeadAttention" for layer in model.layers):
        # attention imports as the operators it is written with (MatMul, Softmax, ...), not as one layer
        assert "MatMul" in {type(layer).__name__ for layer in back.layers}
        np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)
        return
    assert back.to_spec() == model.to_spec()  # the exporter keeps the names: even those agree
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_spelling_hints_never_change_what_is_computed():
    """The exporter's doc_string hints choose between equivalent spellings only: a lying hint is ignored."""
    model = regnet.Model.from_spec(
        {
            "input_shape": [2, 6, 6],
            "layers": [{"type": "Conv2D", "name": "c", "filters": 2, "kernel_size": 3, "padding": 1}],
        }
    )
    proto = ronnx.to_proto(model)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert '"padding": 1' in conv.doc_string
    conv.doc_string = conv.doc_string.replace('"padding": 1', '"padding": "valid"').replace(
        '"filters": 2', '"filters": 7'
    )
    back = ronnx.from_proto(proto)
    layer = back.to_spec()["layers"][0]
    assert (layer["padding"], layer["filters"]) == (1, 2)
    conv.doc_string = conv.doc_string.replace('"padding": "valid"', '"padding": "same"')  # same pads here: adopted
    assert ronnx.from_proto(proto).to_spec()["layers"][0]["padding"] == "same"
    conv.doc_string = "{not json"
    assert ronnx.from_proto(proto).to_spec()["layers"][0]["padding"] == 1


def test_imported_model_fine_tunes_saves_and_reloads(tmp_path):
    model = zoo.load("mlp-moons")
    back = ronnx.load(ronnx.export(model, tmp_path / "moons.onnx"))
    (x, y), _ = regnet.datasets.sources.load("moons:n=256,noise=0.3,seed=3")
    back.compile("categorical_crossentropy", {"type": "sgd", "learning_rate": 0.05}, metrics=["accuracy"])
    before = back.evaluate(x, y)["loss"]
    kernel = back.get_layer("hidden1").params["kernel"].copy()
    back.fit(x, y, epochs=3, batch_size=32, verbose=0, seed=0)
    assert back.evaluate(x, y)["loss"] < before
    assert not np.array_equal(kernel, back.get_layer("hidden1").params["kernel"])
    regnet.save(back, tmp_path / "tuned.h5")
    again = regnet.load(tmp_path / "tuned.h5")
    np.testing.assert_array_equal(again.predict(x), back.predict(x))


# -- hand-written graphs: the patterns other exporters write ---------------------------------------
def make_model(nodes, inputs, output, initializers=(), opset=17, batch="N"):
    """A checked ModelProto from plain pieces: ``inputs`` maps names to shapes without the batch,
    ``output`` is ``(name, rank)``."""
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, *s]) for n, s in inputs.items()]
    name, rank = output
    out = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])]
    graph = helper.make_graph(nodes, "handmade", ins, out, initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="handmade")
    proto.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def weights(*shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)


def assert_matches(proto, shape, batch=4):
    model = ronnx.from_proto(proto)
    x = np.random.default_rng(9).normal(size=(batch, *shape)).astype(np.float32)
    diff = np.abs(model.predict(x) - run_onnx(proto, x)).max()
    assert diff <= TOLERANCE, diff
    return model


def test_gemm_with_transposed_weights_alpha_and_beta():
    proto = make_model(
        [
            helper.make_node(
                "Gemm", ["x", "fc.weight", "fc.bias"], ["h"], name="/fc/Gemm", transB=1, alpha=0.5, beta=2.0
            ),
            helper.make_node("Relu", ["h"], ["r"], name="/relu/Relu"),
            helper.make_node("Gemm", ["r", "out.weight"], ["y"], name="/out/Gemm"),
            helper.make_node("Softmax", ["y"], ["p"], name="/Softmax", axis=1),
        ],
        {"x": [6]},
        ("p", 2),
        [("fc.weight", weights(5, 6)), ("fc.bias", weights(5, seed=1)), ("out.weight", weights(5, 3, seed=2))],
    )
    model = assert_matches(proto, [6])
    layers = model.to_spec()["layers"]
    assert [(la["type"], la["name"], la["activation"], la["use_bias"]) for la in layers] == [
        ("Dense", "fc", "relu", True),
        ("Dense", "out", "softmax", False),
    ]


def test_matmul_add_conv_bias_sum_global_pool_and_same_upper():
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", auto_pad="SAME_UPPER", strides=[2, 2]),
            helper.make_node("Add", ["c", "b"], ["cb"], name="conv_bias"),
            helper.make_node("Elu", ["cb"], ["e"], name="elu", alpha=0.5),
            helper.make_node("Conv", ["e", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
            helper.make_node("Sum", ["e", "c2", "e"], ["s"], name="sum"),
            helper.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
            helper.make_node("Flatten", ["g"], ["f"], name="flat"),
            helper.make_node("MatMul", ["f", "m"], ["mm"], name="mm"),
            helper.make_node("Add", ["mb", "mm"], ["y"], name="mm_bias"),
        ],
        {"x": [2, 8, 8]},
        ("y", 2),
        [
            ("w", weights(3, 2, 3, 3)),
            ("b", weights(3, 1, 1, seed=1)),
            ("w2", weights(3, 3, 3, 3, seed=2)),
            ("b2", weights(3, seed=3)),
            ("m", weights(3, 4, seed=4)),
            ("mb", weights(4, seed=5)),
        ],
    )
    model = assert_matches(proto, [2, 8, 8])
    types = [
        (la["type"], la.get("padding"), la.get("use_bias"), la.get("activation")) for la in model.to_spec()["layers"]
    ]
    assert types == [
        ("Conv2D", "same", True, {"type": "elu", "alpha": 0.5}),
        ("Conv2D", 1, True, "linear"),
        ("Add", None, None, "linear"),
        ("AvgPool2D", "valid", None, None),
        ("Flatten", None, None, None),
        ("Dense", None, True, "linear"),
    ]


def test_shape_arithmetic_feeding_reshape_is_folded():
    """``x.view(x.size(0), -1)`` as the TorchScript exporter writes it (opset 11: Unsqueeze axes as
    an attribute), then a Reshape of a constant shape and a Dropout with its ratio attribute."""
    const = lambda name, value: helper.make_node(
        "Constant", [], [name], name=f"{name}_node", value=numpy_helper.from_array(np.asarray(value), name)
    )
    proto = make_model(
        [
            helper.make_node("MaxPool", ["x"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Shape", ["p"], ["shape"], name="/Shape"),
            const("zero", np.array(0, np.int64)),
            helper.make_node("Gather", ["shape", "zero"], ["n"], name="/Gather", axis=0),
            helper.make_node("Unsqueeze", ["n"], ["n1"], name="/Unsqueeze", axes=[0]),
            const("minus_one", np.array([-1], np.int64)),
            helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="/Concat", axis=0),
            helper.make_node("Reshape", ["p", "target"], ["flat"], name="/Reshape"),
            helper.make_node("Dropout", ["flat"], ["d"], name="/drop/Dropout", ratio=0.3),
            const("rows", np.array([0, 3, 4], np.int64)),
            helper.make_node("Reshape", ["d", "rows"], ["r"], name="/Reshape_1"),
            helper.make_node("Softmax", ["r"], ["y"], name="/Softmax", axis=2),
        ],
        {"x": [3, 4, 4]},
        ("y", 3),
        opset=11,
    )
    model = assert_matches(proto, [3, 4, 4])
    layers = model.to_spec()["layers"]
    assert [la["type"] for la in layers] == ["MaxPool2D", "Flatten", "Dropout", "Reshape", "Activation"]
    assert layers[2]["rate"] == 0.3 and layers[3]["target_shape"] == [3, 4] and layers[4]["activation"] == "softmax"


def test_activation_after_a_layer_without_an_activation_field_is_its_own_layer():
    proto = make_model(
        [
            helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[1, 1]),
            helper.make_node("Tanh", ["p"], ["t"], name="t"),
            helper.make_node("Sigmoid", ["t"], ["s"], name="s"),
            helper.make_node("Identity", ["s"], ["y"], name="id"),
        ],
        {"x": [1, 3, 3]},
        ("y", 4),
    )
    model = assert_matches(proto, [1, 3, 3])
    assert [(la["type"], la.get("activation")) for la in model.to_spec()["layers"]] == [
        ("MaxPool2D", None),
        ("Activation", "tanh"),
        ("Activation", "sigmoid"),
    ]


def test_fixed_batch_size_and_initializers_listed_as_inputs():
    """Older exporters list weights among the graph inputs and may fix the batch size."""
    proto = make_model(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], {"x": [3]}, ("y", 2), [("w", weights(3, 2))], batch=1
    )
    proto.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2]))
    model = ronnx.from_proto(proto)
    x = weights(5, 3, seed=7)
    np.testing.assert_allclose(model.predict(x), x @ weights(3, 2), rtol=1e-6)


#: spellings the graph alone leaves open: 'same' that equals an integer padding, explicit strides
#: equal to the pool size, BatchNorm without scale and shift, a bias-free Dense over a rank-3
#: input (MatMul alone), softmax over a middle axis, negative axes, initializers
SPELLINGS = {
    "format": "regnet.model",
    "version": 1,
    "name": "spellings",
    "input_shape": [2, 8, 8],
    "layers": [
        {
            "type": "Conv2D",
            "name": "c",
            "filters": 3,
            "kernel_size": 3,
            "padding": "same",
            "kernel_initializer": "lecun_normal",
        },
        {"type": "BatchNorm", "name": "bn", "center": False, "scale": False, "momentum": 0.9, "epsilon": 1e-5},
        {"type": "MaxPool2D", "name": "mp", "pool_size": 2, "strides": 2},
        {"type": "AvgPool2D", "name": "ap", "pool_size": 3, "strides": 1, "padding": "same", "inputs": "bn"},
        {"type": "MaxPool2D", "name": "mp2", "pool_size": 2, "inputs": "ap"},
        {"type": "Concatenate", "name": "cat", "axis": -3, "inputs": ["mp", "mp2"]},
        {"type": "Reshape", "name": "rows", "target_shape": [-1, 16]},
        {"type": "Dense", "name": "proj", "units": 4, "use_bias": False, "activation": {"type": "softmax", "axis": 1}},
        {"type": "Activation", "name": "act", "activation": "selu"},
        {"type": "Flatten", "name": "flat"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "sigmoid", "bias_initializer": "ones"},
    ],
}


@pytest.mark.parametrize("opset", [ronnx.MIN_OPSET, 21])
def test_graph_round_trips_with_its_spellings(opset, tmp_path):
    model = regnet.Model.from_spec(SPELLINGS, seed=0)
    randomise_buffers(model)
    back = ronnx.load(ronnx.export(model, tmp_path / "g.onnx", opset=opset))
    assert back.to_spec() == model.to_spec()
    x = np.random.default_rng(3).normal(size=(5, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert max(np.abs(run_onnx(ronnx.to_proto(model, opset), x) - model.predict(x)).ravel()) <= TOLERANCE


@pytest.mark.parametrize("name", ["my layer é", "N", "x.y-z_1", "名前"])
def test_any_name_regnet_accepts_comes_back_as_it_was(name):
    """The exporter records each layer's name; the importer keeps it when regnet's grammar accepts
    it (and sanitises only names from other exporters' node paths)."""
    spec = {"input_shape": [4], "layers": [{"type": "Dense", "name": name, "units": 3}, {"type": "Dense", "units": 2}]}
    model = regnet.Model.from_spec(spec, seed=0)
    back = ronnx.from_proto(ronnx.to_proto(model))
    assert [n.name for n in back.nodes] == [n.name for n in model.nodes]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.mark.parametrize("op", ["Mul", "Add", "Div"])
def test_per_channel_constant_after_a_permute_folds_into_the_layer_before(op):
    """ConvNeXt's block tail: a channels-last MatMul + Add, a Transpose back to (N, C, H, W), then
    ``Mul`` by a ``(C, 1, 1)`` layer scale: folded into the Dense's weights through the Permute."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_last", perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["t", "w"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "b"], ["mb"], name="fc_bias"),
        helper.make_node("Transpose", ["mb"], ["back"], name="to_first", perm=[0, 3, 1, 2]),
        helper.make_node(op, ["back", "scale"], ["s"], name="layer_scale"),
        helper.make_node("Add", ["s", "x"], ["y"], name="residual"),
    ]
    scale = np.abs(weights(4, 1, 1, seed=3)) + 0.5
    proto = make_model(
        nodes, {"x": [4, 3, 5]}, ("y", 4), [("w", weights(4, 4)), ("b", weights(4, seed=1)), ("scale", scale)]
    )
    model = assert_matches(proto, [4, 3, 5])
    assert [la["type"] for la in model.to_spec()["layers"]] == ["Permute", "Dense", "Permute", "Add"]


def test_per_channel_constant_after_a_shared_permute_is_refused():
    """The Permute's output also feeds another node: the scale cannot move into the layer before."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_last", perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["t", "w"], ["m"], name="fc"),
        helper.make_node("Transpose", ["m"], ["back"], name="to_first", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["back", "scale"], ["s"], name="layer_scale"),
        helper.make_node("Add", ["s", "back"], ["y"], name="residual"),
    ]
    proto = make_model(nodes, {"x": [4, 3, 5]}, ("y", 4), [("w", weights(4, 4)), ("scale", weights(4, 1, 1))])
    with pytest.raises(ronnx.OnnxImportError, match="layer_scale"):
        ronnx.from_proto(proto)

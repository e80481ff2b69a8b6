"""regnet-extras through ONNX import: an RMSNorm exported by regnet comes back as itself; without
the exporter's hints the Mul pattern handler reads it; the standard RMSNormalization and
onnxruntime's com.microsoft::SkipSimplifiedLayerNormalization import and agree with onnxruntime;
every Mul that is not the pattern is declined to regnet's own handler."""

import numpy as np
import pytest

regnet_extras = pytest.importorskip("regnet_extras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet import registry  # noqa: E402

SPECS = [
    *(
        {"input_shape": list(c["input_shape"]), "layers": [{"type": "RMSNorm", **c["config"]}]}
        for c in regnet_extras.RMSNorm.test_cases
    ),
    {
        "input_shape": [6],
        "layers": [{"type": "Dense", "units": 4}, {"type": "RMSNorm", "epsilon": 0.1}, {"type": "Dense", "units": 2}],
    },
]


def random_model(spec):
    model = regnet.Model.from_spec(spec, seed=0)
    rng = np.random.default_rng(1)
    for value in model.state_dict().values():
        value[...] = rng.uniform(0.5, 1.5, value.shape)
    return model


def sample(shape, n=5, seed=2):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def run_onnx(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(layer["type"] for layer in s["layers"]))
def test_rms_norm_round_trips_through_onnx(spec, opset):
    model = random_model(spec)
    back = ronnx.from_proto(ronnx.to_proto(model, opset))
    assert back.to_spec() == model.to_spec()
    x = sample(model.input_shape)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert registry.layers.provider("RMSNorm").distribution == "regnet-extras"


@pytest.mark.parametrize("opset", [13, 17])
def test_squareplus_round_trips_through_onnx(opset):
    """A built-in layer with the plugin's activation comes back through the hint too."""
    spec = {
        "input_shape": [2, 5, 5],
        "layers": [
            {"type": "Conv2D", "filters": 3, "kernel_size": 2, "activation": "squareplus"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": {"type": "squareplus", "b": 0.5}},
        ],
    }
    model = random_model(spec)
    back = ronnx.from_proto(ronnx.to_proto(model, opset))
    assert back.to_spec() == model.to_spec()
    x = sample(model.input_shape)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(layer["type"] for layer in s["layers"]))
def test_rms_norm_without_hints_is_read_by_the_mul_pattern_handler(spec, opset):
    model = random_model(spec)
    proto = ronnx.to_proto(model, opset)
    for node in proto.graph.node:
        node.doc_string = ""  # as optimisers and other tools leave it
    back = ronnx.from_proto(proto)
    assert [layer["type"] for layer in back.to_spec()["layers"]] == [layer["type"] for layer in spec["layers"]]
    x = sample(model.input_shape)
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)


def test_mul_nodes_that_are_not_the_pattern_are_declined():
    """x * x feeding no ReduceMean, and a Mul of two branches: regnet's own Multiply reads them."""
    spec = {
        "input_shape": [4],
        "layers": [
            {"type": "Dense", "name": "d", "units": 3},
            {"type": "Multiply", "name": "square", "inputs": ["d", "d"]},
            {"type": "Dense", "name": "e", "units": 3, "inputs": ["input"]},
            {"type": "Multiply", "name": "both", "inputs": ["square", "e"]},
        ],
    }
    model = random_model(spec)
    back = ronnx.from_proto(ronnx.to_proto(model))
    assert back.to_spec() == model.to_spec()
    x = sample(model.input_shape)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])


def test_the_standard_rms_normalization_imports_and_agrees_with_onnxruntime():
    gamma = np.random.default_rng(3).uniform(0.5, 1.5, 5).astype(np.float32)
    node = helper.make_node("RMSNormalization", ["x", "gamma"], ["y"], name="rms", axis=-1, epsilon=1e-3)
    graph = helper.make_graph(
        [node], "g", [_value("x", (3, 5))], [_value("y", (3, 5))], [numpy_helper.from_array(gamma, "gamma")]
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    back = ronnx.from_proto(proto)
    assert back.to_spec()["layers"] == [
        {"type": "RMSNorm", "name": "rms", "axis": -1, "epsilon": 0.001, "scale": True, "activation": "linear"}
    ]
    x = sample((3, 5))
    np.testing.assert_allclose(back.predict(x), run_onnx(proto, {"x": x}), rtol=1e-5, atol=1e-6)


def test_a_custom_domain_operator_of_onnxruntime_imports_and_agrees_with_it():
    gamma = np.random.default_rng(3).uniform(0.5, 1.5, 5).astype(np.float32)
    node = helper.make_node(
        "SkipSimplifiedLayerNormalization",
        ["x", "skip", "gamma"],
        ["y"],
        name="rms",
        domain="com.microsoft",
        epsilon=1e-4,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [_value("x", (3, 5)), _value("skip", (3, 5))],
        [_value("y", (3, 5))],
        [numpy_helper.from_array(gamma, "gamma")],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    back = ronnx.from_proto(proto)
    assert [layer["type"] for layer in back.to_spec()["layers"]] == ["Add", "RMSNorm"]
    x, skip = sample((3, 5)), sample((3, 5), seed=4)
    np.testing.assert_allclose(
        back.predict({"x": x, "skip": skip}), run_onnx(proto, {"x": x, "skip": skip}), rtol=1e-5, atol=1e-6
    )


def test_what_rms_norm_cannot_take_is_refused_naming_the_handler():
    gamma = np.ones(15, np.float32)  # normalising the last two axes together
    node = helper.make_node("RMSNormalization", ["x", "gamma"], ["y"], name="rms", axis=1)
    graph = helper.make_graph(
        [node],
        "g",
        [_value("x", (3, 5))],
        [_value("y", (3, 5))],
        [numpy_helper.from_array(gamma.reshape(3, 5), "gamma")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    with pytest.raises(ronnx.OnnxImportError, match="last axis.*regnet-extras"):
        ronnx.from_proto(proto)

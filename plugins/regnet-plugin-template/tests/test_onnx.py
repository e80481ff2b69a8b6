"""ONNX: ScaleShift exports (its ``to_onnx``) and comes back as itself; the import handler reads
the operator ``com.example::ScaleShift``."""

import numpy as np
import pytest

pytest.importorskip("regnet_plugin_template")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from regnet_plugin_template import ScaleShift  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402


@pytest.mark.parametrize("case", ScaleShift.test_cases, ids=lambda c: str(c["input_shape"]))
def test_round_trip(case):
    spec = {"input_shape": list(case["input_shape"]), "layers": [{"type": "ScaleShift", **case["config"]}]}
    model = regnet.Model.from_spec(spec, seed=0)
    rng = np.random.default_rng(0)
    for value in model.state_dict().values():
        value[...] = rng.standard_normal(value.shape)
    back = ronnx.from_proto(ronnx.to_proto(model))
    assert back.to_spec() == model.to_spec()
    x = rng.standard_normal((4, *case["input_shape"])).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_the_import_handler_reads_its_operator():
    rng = np.random.default_rng(1)
    scale, shift = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    node = helper.make_node("ScaleShift", ["x", "scale", "shift"], ["y"], name="ss", domain="com.example")
    shape = ["N", 3, 4, 4]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model = ronnx.from_proto(proto)
    assert [type(layer) for layer in model.layers] == [ScaleShift]
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), x * scale[:, None, None] + shift[:, None, None], rtol=1e-6)

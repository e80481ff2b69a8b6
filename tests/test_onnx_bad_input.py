"""Bad ONNX input: what regnet cannot represent is refused naming the node, the operator and what
is unsupported; malformed, truncated, oversized files and external data outside the model's
folder are refused as files. Nothing is ever half-imported."""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import regnet.onnx as ronnx  # noqa: E402
from regnet import zoo  # noqa: E402
from regnet.errors import FileFormatError, RegnetError  # noqa: E402


def make(nodes, input_shape, initializers=(), *, opset=17, out="y", dtype=TensorProto.FLOAT, extra_opsets=()):
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers]
    graph = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("x", dtype, input_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", "k"])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, v) for d, v in extra_opsets]]
    proto = helper.make_model(graph, opset_imports=opsets)
    proto.ir_version = helper.find_min_ir_version_for(opsets[:1])
    return proto


def w(*shape, dtype=np.float32):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def refused(proto, *fragments):
    with pytest.raises(ronnx.OnnxImportError) as err:
        ronnx.from_proto(proto)
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))
    return err.value


IMAGE = ["N", 2, 5, 5]


def conv(**attrs):
    return make([helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv", **attrs)], IMAGE, [("w", w(3, 2, 3, 3))])


def pool(op="MaxPool", **attrs):
    return make([helper.make_node(op, ["x"], ["y"], name="the_pool", **attrs)], IMAGE)


@pytest.mark.parametrize(
    ("proto", "fragments"),
    [
        (conv(dilations=[0, 1]), ["'the_conv' (Conv)", "dilations [0, 1] are not two positive integers"]),
        (
            make([helper.make_node("Conv", ["x", "w"], ["y"], name="g", group=3)], IMAGE, [("w", w(3, 1, 3, 3))]),
            ["'g' (Conv)", "group=3 does not fit 2 input channels"],
        ),
        (conv(pads=[1, 0, 0, 0]), ["'the_conv' (Conv)", "pads [1, 0, 0, 0]", "unsupported"]),
        (conv(auto_pad="SAME_LOWER"), ["auto_pad=SAME_LOWER is unsupported"]),
        (
            pool(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 1, 0, 0], ceil_mode=1),
            ["'the_pool' (MaxPool)", "pads [0, 1, 0, 0]", "unsupported"],
        ),
        (
            make(
                [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="t", output_shape=[7, 7])],
                IMAGE,
                [("w", w(2, 3, 3, 3))],
            ),
            ["'t' (ConvTranspose)", "output_shape is unsupported"],
        ),
        (
            make(
                [helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", mode="cubic")],
                IMAGE,
                [("s", np.array([1, 1, 2, 2], np.float32))],
            ),
            ["'r' (Resize)", "mode='cubic' is unsupported"],
        ),
        (
            make(
                [helper.make_node("Pad", ["x", "p"], ["y"], name="p", mode="edge")],
                IMAGE,
                [("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))],
            ),
            ["'p' (Pad)", "mode='edge' is unsupported"],
        ),
        (
            make(
                [helper.make_node("Pad", ["x", "p"], ["y"], name="p")],
                IMAGE,
                [("p", np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64))],
            ),
            ["'p' (Pad)", "pad the batch or channel axis"],
        ),
        (pool(kernel_shape=[3, 3], dilations=[2, 2]), ["dilations [2, 2] are unsupported"]),
        (
            make([helper.make_node("Flatten", ["x"], ["y"], name="f", axis=2)], IMAGE),
            ["'f' (Flatten)", "axis=2 is unsupported"],
        ),
        (
            make([helper.make_node("Concat", ["x", "x"], ["y"], name="c", axis=0)], IMAGE),
            ["'c' (Concat)", "axis=0 is unsupported"],
        ),
        (
            make([helper.make_node("Softmax", ["x"], ["y"], name="s", axis=0)], ["N", 4]),
            ["'s' (Softmax)", "axis=0"],
        ),
        (
            make([helper.make_node("Gelu", ["x"], ["y"], name="odd_gelu", approximate="sigmoid")], ["N", 4], opset=20),
            ["'odd_gelu' (Gelu)", "approximate='sigmoid' is unsupported"],
        ),
        (
            make(
                [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")],
                ["N", 4],
                [("lo", np.float32(-1.0)), ("hi", np.float32(1.0))],
            ),
            ["'clip' (Clip)", "[-1.0, 1.0] is unsupported", "relu6"],
        ),
        (
            make([helper.make_node("HardSigmoid", ["x"], ["y"], name="hs")], ["N", 4]),
            ["'hs' (HardSigmoid)", "alpha=0.2", "relu6(x + 3) / 6"],
        ),
        (
            make([helper.make_node("Swish", ["x"], ["y"], name="sw", alpha=2.0)], ["N", 4], opset=24),
            ["'sw' (Swish)", "alpha=2.0 is unsupported"],
        ),
        (
            make([helper.make_node("LogSoftmax", ["x"], ["y"], name="ls", axis=0)], ["N", 4]),
            ["'ls' (LogSoftmax)", "axis=0"],
        ),
        (
            make([helper.make_node("Selu", ["x"], ["y"], name="s", alpha=2.0)], ["N", 4]),
            ["'s' (Selu)", "alpha=2.0"],
        ),
        (
            make(
                [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1)],
                ["N", 3],
                [("s", w(3)), ("b", w(3)), ("m", w(3)), ("v", np.ones(3, np.float32))],
            ),
            ["'bn' (BatchNormalization)", "training_mode=1 is unsupported"],
        ),
        (
            make(
                [helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="d")],
                ["N", 3],
                [("r", np.array(0.5, np.float32)), ("t", np.array(True))],
            ),
            ["'d' (Dropout)", "training_mode"],
        ),
        (
            make([helper.make_node("Erf", ["x"], ["y"], name="erf1")], ["N", 4]),
            ["'erf1' (Erf)", "operator Erf is unsupported", "Gemm"],
        ),
        (
            make(
                [helper.make_node("Secret", ["x"], ["y"], name="custom", domain="com.example")],
                ["N", 4],
                extra_opsets=[("com.example", 1)],
            ),
            ["'custom' (Secret)", "domain 'com.example' are unsupported"],
        ),
        (make([helper.make_node("Relu", ["x"], ["y"], name="r")], ["N", 4], opset=10), ["opset 10 is unsupported"]),
        (
            make([helper.make_node("Relu", ["x"], ["y"], name="r")], ["N", 4], dtype=TensorProto.DOUBLE),
            ["graph input 'x'", "DOUBLE", "float32"],
        ),
        (
            make(
                [helper.make_node("Gemm", ["x", "b"], ["y"], name="half")], ["N", 4], [("b", w(4, 2, dtype=np.float16))]
            ),
            ["'half' (Gemm)", "dtype float16", "float32"],
        ),
        (make([helper.make_node("Relu", ["x"], ["y"], name="r")], ["N", "C", 4, 4]), ["dimension 1 is dynamic ('C')"]),
        (
            make([helper.make_node("MatMul", ["x", "x"], ["y"], name="xx")], ["N", 4]),
            ["'xx' (MatMul)", "rank, 3 or more"],
        ),
        (
            make(
                [
                    helper.make_node("Relu", ["x"], ["r"], name="r"),
                    helper.make_node("Add", ["r", "c"], ["y"], name="plus"),
                ],
                ["N", 4],
                [("c", w(4))],
            ),
            ["'plus' (Add)", "only as the bias"],
        ),
        (
            make(
                [
                    helper.make_node("Gemm", ["x", "b"], ["h"], name="fc"),
                    helper.make_node("Add", ["h", "x"], ["y"], name="a"),
                ],
                ["N", 4],
                [("b", w(4, 2))],
            ),
            ["'a' (Add)", "do not broadcast together"],
        ),
        (
            make(
                [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                ["N", 2, 4],
                [("s", np.array([-1, 2], np.int64))],
            ),
            ["'rs' (Reshape)", "does not keep the batch size"],
        ),
        (make([helper.make_node("Identity", ["x"], ["y"], name="i")], ["N", 4]), ["is the input or a constant"]),
    ],
)
def test_unsupported_graph_is_refused_naming_node_op_and_what(proto, fragments):
    err = refused(proto, *fragments)
    assert isinstance(err, RegnetError)


def test_several_inputs_import_and_several_outputs_are_refused():
    proto = make([helper.make_node("Add", ["x", "z"], ["y"], name="a")], ["N", 4])
    proto.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]))
    model = ronnx.from_proto(proto)  # several inputs are the model's inputs, named as in the graph
    assert model.input_names == ["x", "z"]
    x, z = np.arange(8, dtype=np.float32).reshape(2, 4), np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(model.predict({"x": x, "z": z}), x + z)
    proto = make([helper.make_node("Relu", ["x"], ["y"], name="r")], ["N", 4])
    proto.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]))
    refused(proto, "does not depend on its input 'z'")
    proto = make(
        [helper.make_node("Relu", ["x"], ["y"], name="r"), helper.make_node("Tanh", ["x"], ["t"], name="t")], ["N", 4]
    )
    proto.graph.output.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 4]))
    refused(proto, "one output")


def test_shape_arithmetic_on_the_batch_size_is_refused():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Mul", ["s", "two"], ["s2"], name="double_it"),
        helper.make_node("Reshape", ["x", "s2"], ["y"], name="rs"),
    ]
    refused(make(nodes, ["N", 4], [("two", np.array([2, 1], np.int64))]), "'double_it' (Mul)", "batch size")


# -- files --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "lenet.onnx"
    ronnx.export(zoo.load("lenet5-mnist"), path)
    return path


def test_malformed_empty_and_missing_files_are_refused(tmp_path):
    cases = {
        "garbage.onnx": b"\xff\xfe this is not protobuf \x00\x01" * 10,
        "empty.onnx": b"",
        "text.onnx": b"hello world\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FileFormatError, match=name):
            ronnx.load(tmp_path / name)
    with pytest.raises(FileFormatError, match="No such file"):
        ronnx.load(tmp_path / "absent.onnx")
    with pytest.raises(FileFormatError, match="not a regular file"):
        ronnx.load(tmp_path)


def test_truncated_files_are_refused(good_file, tmp_path):
    data = good_file.read_bytes()
    cuts = sorted({1, 2, 10, 100, len(data) // 3, len(data) // 2, len(data) - 1000, len(data) - 40, len(data) - 3})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises(RegnetError) as err:
            ronnx.load(path)
        assert isinstance(err.value, FileFormatError), (cut, err.value)


def test_files_over_the_size_limit_are_refused(good_file):
    with pytest.raises(FileFormatError, match=r"over the limit of 1000"):
        ronnx.load(good_file, max_bytes=1000)
    assert ronnx.load(good_file, max_bytes=os.path.getsize(good_file)).count_params() == 61_706


def _external(tmp_path, name="model.onnx", location="weights.bin"):
    """The LeNet-5 export with every weight in the external file ``location``."""
    proto = ronnx.to_proto(zoo.load("lenet5-mnist"))
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    onnx.save_model(
        proto,
        str(folder / name),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    model = onnx.load(str(folder / name), load_external_data=False)
    return folder, model


def _point_at(model, location, folder, name="model.onnx"):
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    (folder / name).write_bytes(model.SerializeToString())
    return folder / name


def test_external_data_inside_the_models_folder_loads(tmp_path):
    folder, _ = _external(tmp_path)
    model = ronnx.load(folder / "model.onnx")
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x), zoo.load("lenet5-mnist").predict(x))


def test_external_data_outside_the_models_folder_is_refused(tmp_path):
    folder, model = _external(tmp_path)
    (tmp_path / "secret.bin").write_bytes((folder / "weights.bin").read_bytes())
    for location in ("../secret.bin", str(tmp_path / "secret.bin"), "sub/../../secret.bin"):
        path = _point_at(model, location, folder)
        with pytest.raises(FileFormatError, match="outside the model's folder"):
            ronnx.load(path)
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")
    with pytest.raises(FileFormatError, match="resolves outside the model's folder"):
        ronnx.load(_point_at(model, "link.bin", folder))
    with pytest.raises(FileFormatError, match="external file, which needs the model's path"):
        ronnx.from_proto(model)


def test_external_data_beyond_its_file_is_refused(tmp_path):
    folder, model = _external(tmp_path)
    (folder / "short.bin").write_bytes(b"\x00" * 16)
    with pytest.raises(FileFormatError, match="asks for bytes"):
        ronnx.load(_point_at(model, "short.bin", folder))


def test_invalid_graph_is_refused_by_the_checker(tmp_path):
    proto = make([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], ["N", 4])
    path = tmp_path / "dangling.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(FileFormatError, match="not a valid ONNX model"):
        ronnx.load(path)


def test_weight_bytes_that_do_not_match_the_shape_are_refused():
    proto = make([helper.make_node("Gemm", ["x", "b"], ["y"], name="fc")], ["N", 4], [("b", w(4, 2))])
    proto.graph.initializer[0].raw_data = proto.graph.initializer[0].raw_data[:-4]
    with pytest.raises(RegnetError, match="raw_data size|bytes of data for shape"):
        ronnx.from_proto(proto)


# -- found by review: a pass-through node, a padded average, a constant bomb --------------------------
def _dense_graph(middle, head):
    """``x -> Gemm (fc) -> middle -> head``, then ``Add(head, fc)``: the Gemm's output has two readers."""
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["f"], name="fc"), *middle, head]
    nodes.append(helper.make_node("Add", [head.output[0], "f"], ["y"], name="add"))
    return make(nodes, ["N", 4], [("W", w(4, 4)), ("b", w(4))])


@pytest.mark.parametrize(
    "middle",
    [
        [helper.make_node("Identity", ["f"], ["a"], name="id")],
        [helper.make_node("Concat", ["f"], ["a"], name="cat", axis=1)],
        [helper.make_node("Sum", ["f"], ["a"], name="sum")],
    ],
    ids=["Identity", "Concat of one", "Sum of one"],
)
def test_an_activation_after_a_pass_through_node_is_not_folded_into_a_shared_layer(middle):
    """``fc``'s output is read by the Add too: the activation must stay a layer of its own."""
    ort = pytest.importorskip("onnxruntime")
    proto = _dense_graph(middle, helper.make_node("Relu", ["a"], ["r"], name="relu"))
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    model = ronnx.from_proto(proto)
    np.testing.assert_allclose(model.predict(x), want, atol=1e-5)
    assert model.nodes[0].layer.activation == "linear"


def test_a_bias_after_an_identity_on_a_shared_matmul_is_refused_not_folded():
    proto = make(
        [
            helper.make_node("MatMul", ["x", "W"], ["f"], name="mm"),
            helper.make_node("Identity", ["f"], ["a"], name="id"),
            helper.make_node("Add", ["a", "b"], ["c"], name="bias"),
            helper.make_node("Add", ["c", "f"], ["y"], name="add"),
        ],
        ["N", 4],
        [("W", w(4, 4)), ("b", w(4))],
    )
    refused(proto, "'bias' (Add)", "only as the bias")


def test_a_padded_average_pool_stays_an_average_pool_whatever_the_hint_says():
    """A Flatten hinted as regnet's GlobalAveragePooling2D after a *padded* whole-image average:
    the padding makes it another computation, so the hint must not turn it into one layer."""
    ort = pytest.importorskip("onnxruntime")
    nodes = [
        helper.make_node("AveragePool", ["x"], ["p"], name="pool", kernel_shape=[4, 4], strides=[4, 4], pads=[1] * 4),
        helper.make_node("Flatten", ["p"], ["y"], name="flat", axis=1),
    ]
    nodes[1].doc_string = '{"type": "GlobalAveragePooling2D", "name": "gap"}'
    proto = make(nodes, ["N", 2, 4, 4])
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 4)).astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    model = ronnx.from_proto(proto)
    assert [type(n.layer).__name__ for n in model.nodes] == ["AvgPool2D", "Flatten"]
    np.testing.assert_allclose(model.predict(x), want, atol=1e-6)


@pytest.mark.parametrize("shape", [[1 << 40], [1 << 13, 1 << 13], [-3, 4]])
def test_a_constant_of_shape_bomb_is_refused_before_allocating(shape):
    value = numpy_helper.from_array(np.array([1.0], np.float32))
    proto = make(
        [
            helper.make_node("MatMul", ["x", "W"], ["f"], name="mm"),
            helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos", value=value),
            helper.make_node("Add", ["f", "c"], ["y"], name="add"),
        ],
        ["N", 4],
        [("W", w(4, 4)), ("s", np.array(shape, np.int64))],
    )
    refused(proto, "'cos' (ConstantOfShape)", "it makes a constant of")

"""regnet -> ONNX: every zoo model, every built-in layer and activation configuration, a graph with
Add and Concatenate and the plugin components run in onnxruntime as they run in regnet, and the
files pass the full ONNX check."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime: pip install 'regnet[onnx]'")

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet import zoo  # noqa: E402
from regnet.datasets import sources  # noqa: E402
from regnet.testing import component_cases, plugin_distribution  # noqa: E402

TOLERANCE = 1e-5
OPSETS = (ronnx.MIN_OPSET, ronnx.DEFAULT_OPSET, 21)  # 21: GELU as an ONNX Gelu node
#: the opsets where the built-in lowerings differ (GELU written out below opset 20)
LOWERING_OPSETS = (ronnx.DEFAULT_OPSET, 21)


def run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: x})[0]


def check_file(path):
    """The written file passes the full check and is what to_proto describes."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def sample_input(model, n, seed=0):
    """A float32 batch for ``model``: token ids (whole numbers) where the first layer declares an
    integer test input (Embedding), else standard normal values."""
    rng = np.random.default_rng(seed)
    first = model.layers[0]
    if getattr(first, "test_input_dtype", None):
        return rng.integers(*first.test_input_range, size=(n, *model.input_shape)).astype(np.float32)
    return rng.normal(size=(n, *model.input_shape)).astype(np.float32)


def randomise_buffers(model, seed=2):
    """Running statistics other than 0 and 1, so BatchNorm's inference form is really exercised."""
    rng = np.random.default_rng(seed)
    for node in model.nodes:
        for value in node.layer.buffers.values():
            value[...] = rng.uniform(0.5, 1.5, value.shape)


def max_diff(model, proto, x):
    return float(np.abs(run_onnx(proto, x) - model.predict(x)).max())


@pytest.mark.parametrize("name", zoo.list())
def test_zoo_model_matches_onnxruntime(name, tmp_path):
    model = zoo.load(name)
    _, (x, _) = sources.load("mnist-sample" if zoo.info(name)["dataset"] == "mnist" else zoo.info(name)["dataset"])
    x = x[:500]
    path = tmp_path / f"{name}.onnx"
    assert ronnx.export(model, path) == os.fspath(path)
    proto = check_file(path)
    probabilities = run_onnx(proto, x)
    diff = float(np.abs(probabilities - model.predict(x)).max())
    print(f"{name}: max abs diff vs onnxruntime {diff:.3g} on {len(x)} test samples")
    assert diff <= TOLERANCE
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)  # probabilities, as predict gives them


def _single_layer_cases():
    for case in component_cases("regnet", kinds=("layers", "activations"), extra=True):
        if case.kind == "layers":
            shape = case.options.get("input_shape") or regnet.testing.default_input_shape(case.config)
            if isinstance(shape, list):  # merge layers: see the graph test
                continue
            spec = {"input_shape": list(shape), "layers": [case.config]}
        else:
            spec = {"input_shape": [3, 4, 5], "layers": [{"type": "Activation", "activation": case.config}]}
        yield pytest.param(spec, id=case.id)


SINGLE_LAYER_CASES = list(_single_layer_cases())


@pytest.mark.parametrize("opset", LOWERING_OPSETS)
@pytest.mark.parametrize("spec", SINGLE_LAYER_CASES)
def test_builtin_configuration_matches_onnxruntime(spec, opset):
    model = regnet.Model.from_spec(spec, seed=1)
    randomise_buffers(model)
    x = sample_input(model, 5)
    proto = ronnx.to_proto(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    assert max_diff(model, proto, x) <= TOLERANCE


def test_every_builtin_layer_and_activation_is_covered():
    merges = {"Add", "Concatenate", "Subtract", "Multiply", "Maximum", "Minimum", "Average", "MultiHeadAttention"}
    merges |= {"MatMul", "Where"}  # tests/test_tensor_layers.py runs them in onnxruntime
    layers = {p.values[0]["layers"][0]["type"] for p in SINGLE_LAYER_CASES} | merges
    acts = {
        a if isinstance(a, str) else a["type"]
        for p in SINGLE_LAYER_CASES
        for a in [p.values[0]["layers"][0].get("activation")]
        if a
    }
    assert layers >= set(n for n in regnet.registry.layers.list() if regnet.registry.layers.provider(n).builtin), layers
    builtin = {n for n in regnet.registry.activations.list() if regnet.registry.activations.provider(n).builtin}
    assert acts >= builtin, builtin - acts


#: a graph: two branches added and concatenated, asymmetric 'same' padding (odd size, stride 2),
#: padded average pooling, BatchNorm, Reshape, GELU, Dropout and a Dense over a rank-3 input
GRAPH = {
    "format": "regnet.model",
    "version": 1,
    "name": "graph",
    "input_shape": [3, 9, 9],
    "layers": [
        {"type": "Conv2D", "name": "stem", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
        {"type": "BatchNorm", "name": "bn", "activation": "relu"},
        {"type": "Conv2D", "name": "left", "filters": 4, "kernel_size": 3, "padding": 1, "activation": "gelu"},
        {"type": "Conv2D", "name": "right", "filters": 4, "kernel_size": [1, 3], "padding": "same", "inputs": "bn"},
        {"type": "Add", "name": "sum", "inputs": ["left", "right", "bn"], "activation": "elu"},
        {"type": "AvgPool2D", "name": "avg", "pool_size": 3, "strides": 1, "padding": 1, "inputs": "sum"},
        {"type": "MaxPool2D", "name": "max", "pool_size": 3, "strides": 1, "padding": "same", "inputs": "bn"},
        {"type": "Concatenate", "name": "cat", "inputs": ["avg", "max", "sum"], "activation": "tanh"},
        {"type": "Reshape", "name": "rows", "target_shape": [12, -1]},
        {"type": "Dense", "name": "per_row", "units": 5, "activation": {"type": "leaky_relu", "alpha": 0.2}},
        {"type": "Dropout", "name": "drop", "rate": 0.25},
        {"type": "Flatten", "name": "flat"},
        {"type": "Dense", "name": "out", "units": 4, "activation": "softmax"},
    ],
}


def graph_model(seed=0):
    model = regnet.Model.from_spec(GRAPH, seed=seed)
    randomise_buffers(model)
    return model


#: the element-wise merges with NumPy broadcasting over the axes of a sample: squeeze-and-excitation
#: ((C, 1, 1) against (C, H, W)), inputs of fewer axes ((W,) against (C, H, W)), three inputs
MERGES = {
    "input_shape": [3, 4, 5],
    "layers": [
        {"type": "Conv2D", "name": "a", "filters": 4, "kernel_size": 1},
        {"type": "GlobalAveragePooling2D", "name": "pool", "keepdims": True},
        {"type": "Conv2D", "name": "gate", "filters": 4, "kernel_size": 1, "activation": "sigmoid"},
        {"type": "Multiply", "name": "se", "inputs": ["a", "gate"]},
        {"type": "Conv2D", "name": "b", "filters": 4, "kernel_size": [1, 5], "inputs": "input"},
        {"type": "Conv2D", "name": "c", "filters": 1, "kernel_size": [4, 1], "inputs": "input"},
        {"type": "Reshape", "name": "row", "target_shape": [5]},
        {"type": "Subtract", "name": "sub", "inputs": ["se", "b"]},
        {"type": "Maximum", "name": "max", "inputs": ["sub", "a", "gate"]},
        {"type": "Minimum", "name": "min", "inputs": ["max", "b"], "activation": "tanh"},
        {"type": "Average", "name": "avg", "inputs": ["min", "se", "gate"]},
        {"type": "Multiply", "name": "mul3", "inputs": ["avg", "a", "b"]},
        {"type": "Add", "name": "add", "inputs": ["mul3", "gate", "row"]},
        {"type": "Flatten", "name": "flat"},
        {"type": "Dense", "name": "out", "units": 3},
    ],
}


@pytest.mark.parametrize("opset", OPSETS)
def test_broadcasting_merges_match_onnxruntime(opset):
    model = regnet.Model.from_spec(MERGES, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 3, 4, 5)).astype(np.float32)
    proto = ronnx.to_proto(model, opset)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Mul", "Sub", "Max", "Min", "Mean", "Sum"} <= ops, ops
    assert max_diff(model, proto, x) <= TOLERANCE


@pytest.mark.parametrize("opset", OPSETS)
def test_graph_with_add_and_concatenate_matches_onnxruntime(opset, tmp_path):
    model = graph_model()
    x = np.random.default_rng(1).normal(size=(6, 3, 9, 9)).astype(np.float32)
    path = ronnx.export(model, tmp_path / "graph.onnx", opset=opset)
    proto = check_file(path)
    assert max_diff(model, proto, x) <= TOLERANCE
    ops = {n.op_type for n in proto.graph.node}
    assert {"Sum", "Concat", "AveragePool", "MaxPool", "BatchNormalization", "MatMul", "Reshape"} <= ops


def test_structure_names_batch_and_hints():
    model = graph_model()
    proto = ronnx.to_proto(model)
    graph = proto.graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["out"]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "N" and not batch.HasField("dim_value")
    assert {i.name for i in graph.initializer} >= {
        "stem/kernel",
        "stem/bias",
        "bn/gamma",
        "bn/beta",
        "bn/moving_mean",
        "bn/moving_variance",
        "per_row/kernel",
        "out/kernel",
    }
    np.testing.assert_array_equal(
        onnx.numpy_helper.to_array(next(i for i in graph.initializer if i.name == "stem/kernel")),
        model.get_layer("stem").params["kernel"],
    )
    produced = {o for n in graph.node for o in n.output}
    assert {n.name for n in model.nodes} <= produced  # every layer's output tensor carries its name
    main = {n.name: n for n in graph.node}
    assert json.loads(main["stem"].doc_string) == {"name": "stem", **model.get_layer("stem").get_config()}
    for batch_size in (1, 17):  # the batch dimension is dynamic
        x = np.random.default_rng(batch_size).normal(size=(batch_size, 3, 9, 9)).astype(np.float32)
        assert run_onnx(proto, x).shape == (batch_size, 4)


@pytest.mark.parametrize(("approximate", "attribute"), [(True, b"tanh"), (False, None)])
def test_gelu_forms_at_every_opset(approximate, attribute):
    spec = {
        "input_shape": [50],
        "layers": [{"type": "Activation", "activation": {"type": "gelu", "approximate": approximate}}],
    }
    model = regnet.Model.from_spec(spec)
    x = np.linspace(-6, 6, 100, dtype=np.float32).reshape(2, 50)
    old, new = ronnx.to_proto(model, 17), ronnx.to_proto(model, 20)
    assert "Gelu" not in {n.op_type for n in old.graph.node}
    assert ("Erf" in {n.op_type for n in old.graph.node}) is not approximate
    assert [n.op_type for n in new.graph.node] == ["Gelu"]
    values = [onnx.helper.get_attribute_value(a) for a in new.graph.node[0].attribute]
    assert values == ([attribute] if attribute else [])
    for proto in (old, new):
        assert max_diff(model, proto, x) <= TOLERANCE


def test_bad_opset_is_refused(tmp_path):
    model = graph_model()
    for opset in (12, 10_000, "17", True):
        with pytest.raises(regnet.ConfigError, match="opset"):
            ronnx.export(model, tmp_path / "x.onnx", opset=opset)
    assert not (tmp_path / "x.onnx").exists()


PLAIN = """
import attrs, numpy as np
from regnet.layers.base import Layer
from regnet.activations import Activation

@attrs.define(slots=False, eq=False)
class Plain(Layer):
    registered_name = "Plain"
    def forward(self, x, training=False):
        return x * 2
    def backward(self, grad):
        return grad * 2

@attrs.define
class Cube(Activation):
    registered_name = "cube"
    def forward(self, x):
        return x ** 3
    def backward(self, grad, x, y):
        return grad * 3 * x * x

@attrs.define(slots=False, eq=False)
class Broken(Plain):
    registered_name = "Broken"
    def to_onnx(self, ctx, inputs):
        return None

@attrs.define(slots=False, eq=False)
class Raises(Plain):
    registered_name = "Raises"
    def to_onnx(self, ctx, inputs):
        return ctx.node("Mul", [inputs[0], ctx.weight("no_such_weight")])
"""


def test_component_without_lowering_names_itself_and_its_distribution(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous contents")
    entry_points = {
        "layers": {"Plain": "plain_mod:Plain", "Broken": "plain_mod:Broken", "Raises": "plain_mod:Raises"},
        "activations": {"cube": "plain_mod:Cube"},
    }
    with plugin_distribution("onnxless-plugin", entry_points, modules={"plain_mod": PLAIN}, version="2.5"):
        layer = regnet.Model.from_spec({"input_shape": [3], "layers": [{"type": "Plain", "name": "twice"}]})
        with pytest.raises(ronnx.OnnxExportError) as err:
            ronnx.export(layer, target)
        message = str(err.value)
        assert "'Plain'" in message and "onnxless-plugin 2.5" in message and "to_onnx" in message and "twice" in message
        assert (err.value.component, err.value.kind) == ("Plain", "layers")
        assert err.value.distribution == "onnxless-plugin 2.5"
        act = regnet.Model.from_spec(
            {"input_shape": [3], "layers": [{"type": "Dense", "units": 2, "activation": "cube"}]}
        )
        with pytest.raises(ronnx.OnnxExportError, match="activation type 'cube'.*onnxless-plugin"):
            ronnx.export(act, target)
        broken = regnet.Model.from_spec({"input_shape": [3], "layers": [{"type": "Broken"}]})
        with pytest.raises(ronnx.OnnxExportError, match="not a tensor name"):
            ronnx.export(broken, target)
        raises = regnet.Model.from_spec({"input_shape": [3], "layers": [{"type": "Raises"}]})
        with pytest.raises(ronnx.OnnxExportError, match="'Raises' .*onnxless-plugin 2.5.* failed: KeyError"):
            ronnx.export(raises, target)
    assert target.read_bytes() == b"previous contents"  # never a broken or partial file
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


def _extras_specs(extras):
    specs = [
        {"input_shape": list(c["input_shape"]), "layers": [{"type": "RMSNorm", **c["config"]}]}
        for c in extras.RMSNorm.test_cases
    ]
    specs.append(
        {
            "input_shape": [2, 3, 3],
            "layers": [
                {"type": "Conv2D", "filters": 3, "kernel_size": 2, "activation": "squareplus"},
                {"type": "Flatten"},
                {"type": "Dense", "units": 8, "activation": "mish"},
                {"type": "RMSNorm"},
                {"type": "Dense", "units": 3, "activation": {"type": "squareplus", "b": 0.5}},
            ],
        }
    )
    return specs


@pytest.mark.parametrize("opset", OPSETS)
def test_regnet_extras_components_match_onnxruntime(opset):
    extras = pytest.importorskip("regnet_extras")
    for spec in _extras_specs(extras):
        model = regnet.Model.from_spec(spec, seed=3)
        for node in model.nodes:  # gamma and beta away from 1 and 0
            for value in node.layer.params.values():
                value += np.random.default_rng(4).normal(0, 0.3, value.shape).astype(np.float32)
        x = 2 * np.random.default_rng(5).normal(size=(7, *model.input_shape)).astype(np.float32)
        proto = ronnx.to_proto(model, opset)
        onnx.checker.check_model(proto, full_check=True)
        assert max_diff(model, proto, x) <= TOLERANCE, spec


def test_template_plugin_layer_matches_onnxruntime():
    template = pytest.importorskip("regnet_plugin_template")
    for case in template.ScaleShift.test_cases:
        spec = {"input_shape": list(case["input_shape"]), "layers": [{"type": "ScaleShift", **case["config"]}]}
        model = regnet.Model.from_spec(spec, seed=0)
        layer = model.layers[0]
        layer.params["shift"] += np.linspace(-1, 1, layer.params["shift"].size, dtype=np.float32)
        x = np.random.default_rng(6).normal(size=(4, *model.input_shape)).astype(np.float32)
        proto = ronnx.to_proto(model)
        assert {"ScaleShift/scale", "ScaleShift/shift"} <= {
            i.name.replace("scale_shift_1", "ScaleShift") for i in proto.graph.initializer
        }
        assert max_diff(model, proto, x) <= TOLERANCE


MISSING = """
import sys
sys.modules["onnx"] = None  # as if the extra were not installed
import regnet
from regnet.cli import main
try:
    import regnet.onnx
except regnet.errors.MissingDependencyError as exc:
    print("IMPORT:", exc)
print("EXPORT:", main(["export", "model.h5", "model.onnx"]))
print("IMPORT-CMD:", main(["import", "model.onnx", "model.h5"]))
print("TRAIN-HELP:", main(["summary", sys.argv[1]]))
"""


def test_without_onnx_regnet_works_and_the_commands_say_what_to_install():
    spec = zoo.info("mlp-moons")["spec_path"]
    out = subprocess.run([sys.executable, "-c", MISSING, spec], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORT: regnet.onnx needs the onnx package" in out.stdout and "pip install 'regnet[onnx]'" in out.stdout
    assert "EXPORT: 1" in out.stdout and "IMPORT-CMD: 1" in out.stdout and "TRAIN-HELP: 0" in out.stdout
    assert out.stderr.count("pip install 'regnet[onnx]'") == 2


def test_import_regnet_does_not_import_onnx():
    code = "import sys, regnet; print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)


def test_regnet_onnx_is_there_after_a_plain_import_regnet():
    code = "import regnet; print(regnet.onnx.export.__module__, regnet.onnx.DEFAULT_OPSET)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0].startswith("regnet.onnx")

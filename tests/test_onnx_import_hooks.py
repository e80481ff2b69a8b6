"""The import side of plugins (``regnet.onnx.hooks``), with distributions simulated by
``*.dist-info`` directories: a plugin layer exported by regnet comes back as itself (and only when
the file's nodes are what its ``to_onnx`` writes); import handlers of the group
``regnet.onnx_import`` claim custom-domain and standard operators before regnet's own, may
decline, and a broken one is an error naming its distribution that no other model notices;
``REGNET_DISABLE_PLUGIN_AUTOLOAD`` leaves them out."""

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")

from onnx import TensorProto, helper  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402
from regnet import registry  # noqa: E402
from regnet.onnx import hooks  # noqa: E402
from regnet.testing import plugin_distribution  # noqa: E402

# a plugin layer lowered to an operator regnet does not read by itself (Sin), and one lowered to
# operators regnet reads (Mul by a constant of its config)
LAYERS = """
import numpy as np
from regnet import fields
from regnet.activations import Activation, activation
from regnet.layers import Layer, layer


@layer("Sine", register=False)
class Sine(Layer):
    frequency: float = fields.number(1.0, doc="the frequency")

    def forward(self, x, training=False):
        return np.sin(x * np.float32(self.frequency))

    def backward(self, grad, *, need_input_grad=True):
        raise NotImplementedError

    def to_onnx(self, ctx, inputs):
        f = ctx.constant(np.float32(self.frequency), "frequency")
        return ctx.node("Sin", [ctx.node("Mul", [inputs[0], f])])


@activation("sin", register=False)
class Sin(Activation):
    def forward(self, x):
        return np.sin(x)

    def backward(self, grad, x, y):
        return grad * np.cos(x)

    def to_onnx(self, ctx, x):
        return ctx.node("Sin", [x])


@layer("Times", register=False)
class Times(Layer):
    factor: float = fields.number(2.0, doc="the factor")

    def forward(self, x, training=False):
        return x * np.float32(self.factor)

    def backward(self, grad, *, need_input_grad=True):
        return grad * np.float32(self.factor)

    def to_onnx(self, ctx, inputs):
        return ctx.node("Mul", [inputs[0], ctx.constant(np.float32(self.factor), "factor")])
"""
LAYER_ENTRY_POINTS = {
    "layers": {"Sine": "hook_layers_mod:Sine", "Times": "hook_layers_mod:Times"},
    "activations": {"sin": "hook_layers_mod:Sin"},
}

# import handlers: a custom-domain operator, a standard one taken only when the node is named
# 'twice', and ones that fail in each way a plugin can
HANDLERS = """
from regnet.onnx import NOT_MINE

CALLS = []


def double(st, node, attrs):
    x = st.tensor(node, 0)
    st.add(node, "Rescaling", {"scale": float(attrs.get("factor", 2.0))}, [x], x.shape)


def relu_named_twice(st, node, attrs):
    CALLS.append(node.name)
    if node.name != "twice":
        return NOT_MINE
    x = st.tensor(node, 0)
    st.add(node, "Rescaling", {"scale": 2.0}, [x], x.shape)


def raises(st, node, attrs):
    raise KeyError("no such thing")


def defines_nothing(st, node, attrs):
    return None


def returns_a_number(st, node, attrs):
    return 42
"""


def graph_of(op, domain="", name="n", shape=(4,), **attributes):
    """An ONNX model of one node ``op`` on an input of ``shape`` (and the batch axis)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *shape])
    node = helper.make_node(op, ["x"], ["y"], name=name, domain=domain or None, **attributes)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)


def x_of(shape=(4,)):
    return np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)


@pytest.fixture
def claims():
    with plugin_distribution(
        "onnx-claims",
        {
            "onnx_import": {
                "com.example::Double": "claims_mod:double",
                "Relu": "claims_mod:relu_named_twice",
                "com.example::Raises": "claims_mod:raises",
                "com.example::Nothing": "claims_mod:defines_nothing",
                "com.example::Number": "claims_mod:returns_a_number",
            }
        },
        modules={"claims_mod": HANDLERS},
        version="0.3",
    ) as root:
        yield root


@pytest.fixture
def safe_mode(monkeypatch):
    """``REGNET_DISABLE_PLUGIN_AUTOLOAD=1``, registries rediscovered (call it inside a plugin block)."""

    def enter(allowed=None):
        monkeypatch.setenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", "1")
        if allowed is None:
            monkeypatch.delenv("REGNET_PLUGINS", raising=False)
        else:
            monkeypatch.setenv("REGNET_PLUGINS", allowed)
        for reg in (*registry.REGISTRIES.values(), *registry.HOOKS.values()):
            reg.reset_plugins()

    yield enter
    monkeypatch.undo()
    for reg in (*registry.REGISTRIES.values(), *registry.HOOKS.values()):
        reg.reset_plugins()


# -- plugin layers exported by regnet ---------------------------------------------------------------


def sine_model():
    spec = {"input_shape": [4], "layers": [{"type": "Dense", "units": 3}, {"type": "Sine", "frequency": 0.5}]}
    return regnet.Model.from_spec(spec, seed=0)


def test_a_plugin_layer_exported_by_regnet_comes_back_as_itself():
    with plugin_distribution("hook-layers", LAYER_ENTRY_POINTS, modules={"hook_layers_mod": LAYERS}, version="2.0"):
        for model in (sine_model(), regnet.Model.from_spec({"input_shape": [4], "layers": [{"type": "Times"}]})):
            for opset in (13, ronnx.DEFAULT_OPSET):
                back = ronnx.from_proto(ronnx.to_proto(model, opset))
                assert back.to_spec() == model.to_spec()
                np.testing.assert_array_equal(back.predict(x_of()), model.predict(x_of()))
                assert registry.layers.provider(type(back.layers[-1]).registered_name).distribution == "hook-layers"


def test_a_hint_never_decides_what_a_plugin_layer_computes():
    """The rebuilt layer must lower to the file's very nodes: a constant that differs from the
    hinted config makes the nodes be read one by one, computing what the file says."""
    with plugin_distribution("hook-layers", LAYER_ENTRY_POINTS, modules={"hook_layers_mod": LAYERS}):
        model = regnet.Model.from_spec({"input_shape": [4], "layers": [{"type": "Times", "factor": 2.0}]})
        proto = ronnx.to_proto(model)
        (factor,) = [t for t in proto.graph.initializer if "factor" in t.name]
        factor.float_data[:] = []
        factor.raw_data = np.float32(3.0).tobytes()
        back = ronnx.from_proto(proto)
        assert [type(layer).__name__ for layer in back.layers] != ["Times"]  # regnet's own reading of the Mul
        np.testing.assert_allclose(back.predict(x_of()), 3 * x_of(), rtol=1e-6)


def test_a_missing_plugin_layer_names_the_layer_and_what_to_install():
    with plugin_distribution("hook-layers", LAYER_ENTRY_POINTS, modules={"hook_layers_mod": LAYERS}, version="2.0"):
        proto = ronnx.to_proto(sine_model())
        times = ronnx.to_proto(regnet.Model.from_spec({"input_shape": [4], "layers": [{"type": "Times"}]}))
    with pytest.raises(ronnx.OnnxImportError) as info:
        ronnx.from_proto(proto)
    msg = str(info.value)
    for part in ("layer 'sine_1'", "'Sine'", "hook-layers 2.0", "pip install 'hook-layers==2.0'", "(Sin)"):
        assert part in msg, (part, msg)
    # its nodes are all standard operators regnet reads: the same computation, in built-in layers
    back = ronnx.from_proto(times)
    np.testing.assert_allclose(back.predict(x_of()), 2 * x_of(), rtol=1e-6)


def test_a_built_in_layer_with_a_plugin_activation_comes_back_or_names_the_plugin():
    spec = {"input_shape": [4], "layers": [{"type": "Dense", "name": "d", "units": 3, "activation": "sin"}]}
    with plugin_distribution("hook-layers", LAYER_ENTRY_POINTS, modules={"hook_layers_mod": LAYERS}, version="2.0"):
        model = regnet.Model.from_spec(spec, seed=0)
        proto = ronnx.to_proto(model)
        back = ronnx.from_proto(proto)
        assert back.to_spec() == model.to_spec()
        np.testing.assert_array_equal(back.predict(x_of()), model.predict(x_of()))
    with pytest.raises(ronnx.OnnxImportError) as info:
        ronnx.from_proto(proto)
    msg = str(info.value)
    for part in ("layer 'd' of type 'Dense' with the activation 'sin'", "pip install 'hook-layers==2.0'", "(Sin)"):
        assert part in msg, (part, msg)


def test_a_plugin_layer_left_out_by_safe_mode_says_how_to_allow_it(safe_mode):
    with plugin_distribution("hook-layers", LAYER_ENTRY_POINTS, modules={"hook_layers_mod": LAYERS}):
        proto = ronnx.to_proto(sine_model())
        safe_mode()
        with pytest.raises(ronnx.OnnxImportError, match="'Sine'.*REGNET_PLUGINS=hook-layers"):
            ronnx.from_proto(proto)
        safe_mode("hook-layers")
        assert type(ronnx.from_proto(proto).layers[-1]).__name__ == "Sine"


# -- import handlers ----------------------------------------------------------------------------------


def test_a_handler_claims_an_operator_of_a_custom_domain(claims):
    back = ronnx.from_proto(graph_of("Double", "com.example", factor=3.0))
    assert [layer["type"] for layer in back.to_spec()["layers"]] == ["Rescaling"]
    np.testing.assert_allclose(back.predict(x_of()), 3 * x_of(), rtol=1e-6)


def test_without_its_plugin_a_custom_domain_operator_is_refused():
    with pytest.raises(ronnx.OnnxImportError, match="domain 'com.example' are unsupported"):
        ronnx.from_proto(graph_of("Double", "com.example"))


def test_a_handler_of_a_standard_operator_is_asked_first_and_may_decline(claims):
    import claims_mod

    back = ronnx.from_proto(graph_of("Relu", name="twice"))  # taken: not what Relu computes, to show who read it
    np.testing.assert_allclose(back.predict(x_of()), 2 * x_of(), rtol=1e-6)
    back = ronnx.from_proto(graph_of("Relu", name="plain"))  # declined: regnet's own Relu
    np.testing.assert_array_equal(back.predict(x_of()), np.maximum(x_of(), 0))
    assert claims_mod.CALLS == ["twice", "plain"]


def test_a_handler_that_declines_an_operator_regnet_cannot_read_is_an_error():
    source = "from regnet.onnx import NOT_MINE\n\ndef never(st, node, attrs):\n    return NOT_MINE\n"
    with plugin_distribution(
        "picky", {"onnx_import": {"com.example::Double": "picky_mod:never"}}, modules={"picky_mod": source}
    ):
        with pytest.raises(
            ronnx.OnnxImportError, match="'com.example::Double = picky_mod:never' of picky 1.0 declined"
        ):
            ronnx.from_proto(graph_of("Double", "com.example"))


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("Raises", r"'com.example::Raises = claims_mod:raises' of onnx-claims 0.3 failed: KeyError"),
        ("Nothing", r"onnx-claims 0.3 left 'y', which other nodes read, undefined"),
        ("Number", r"onnx-claims 0.3 returned 42"),
    ],
)
def test_a_failing_handler_is_an_error_naming_the_node_and_the_distribution(claims, op, expected):
    with pytest.raises(ronnx.OnnxImportError, match=expected) as info:
        ronnx.from_proto(graph_of(op, "com.example", name="it"))
    assert info.value.node == "it"


def test_a_handler_that_cannot_be_loaded_affects_only_graphs_with_its_operator():
    entry_points = {"onnx_import": {"com.example::Double": "gone_mod:double", "Relu": "gone_mod:relu"}}
    with plugin_distribution("needs-libfoo", entry_points, modules={"gone_mod": "raise ImportError('needs libfoo')"}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = ronnx.from_proto(graph_of("Sigmoid"))  # no claimed operator: nothing loaded, nothing said
        np.testing.assert_allclose(back.predict(x_of()), 1 / (1 + np.exp(-x_of())), rtol=1e-6)
        with pytest.raises(ronnx.OnnxImportError, match="only through a plugin.*needs-libfoo.*needs libfoo"):
            ronnx.from_proto(graph_of("Double", "com.example"))
        with pytest.warns(RuntimeWarning, match="regnet reads Relu itself.*needs-libfoo.*needs libfoo"):
            back = ronnx.from_proto(graph_of("Relu"))  # a standard operator: regnet's own handler reads it
        np.testing.assert_array_equal(back.predict(x_of()), np.maximum(x_of(), 0))
        broken = {(b.name, b.provider.distribution) for b in registry.onnx_import.broken()}
        assert broken == {("com.example::Double", "needs-libfoo"), ("Relu", "needs-libfoo")}


def test_two_plugins_claiming_one_operator_name_both():
    source = "def h(st, node, attrs):\n    pass\n"
    with (
        plugin_distribution(
            "claim-one", {"onnx_import": {"com.example::Double": "one_mod:h"}}, modules={"one_mod": source}
        ) as root,
        plugin_distribution(
            "claim-two", {"onnx_import": {"com.example::Double": "two_mod:h"}}, modules={"two_mod": source}, root=root
        ),
    ):
        with pytest.raises(ronnx.OnnxImportError, match="claim-one.*claim-two|claim-two.*claim-one"):
            ronnx.from_proto(graph_of("Double", "com.example"))


def test_safe_mode_leaves_import_handlers_out(claims, safe_mode):
    import claims_mod

    safe_mode()
    with pytest.raises(ronnx.OnnxImportError, match="REGNET_DISABLE_PLUGIN_AUTOLOAD.*REGNET_PLUGINS=onnx-claims"):
        ronnx.from_proto(graph_of("Double", "com.example"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = ronnx.from_proto(graph_of("Relu", name="twice"))  # regnet's own Relu, silently: asked for
    np.testing.assert_array_equal(back.predict(x_of()), np.maximum(x_of(), 0))
    assert claims_mod.CALLS == []
    safe_mode("onnx-claims")
    np.testing.assert_allclose(ronnx.from_proto(graph_of("Relu", name="twice")).predict(x_of()), 2 * x_of())


def test_regnet_plugins_lists_import_handlers(claims):
    report = registry.plugin_report()["onnx_import"]
    assert report["group"] == "regnet.onnx_import"
    names = {c["name"]: c for c in report["components"]}
    assert names["com.example::Double"]["distribution"] == "onnx-claims"
    assert hooks.op_key(graph_of("Double", "com.example").graph.node[0]) == "com.example::Double"


def test_the_guide_example_prints_what_its_comments_say(capsys):
    """docs/plugins.md section 7 (tests/test_ergonomics.py runs the whole guide; this checks the output)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    section = text[text.index("## 7. ONNX import") : text.index("\n## 8.")]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(compile(block, "<docs/plugins.md section 7>", "exec"), {"__name__": "__docs__"})
    expected = re.findall(r"^\s*print\(.*\)  # (.*)$", block, flags=re.M)
    assert capsys.readouterr().out.splitlines() == expected

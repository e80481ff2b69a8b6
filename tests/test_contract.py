"""The documented contracts run as written: the example layer in ``regnet.layers.base`` (a
doctest), and each kind's one decorator makes a registered attrs component."""

import doctest

import attrs
import numpy as np
import pytest

import regnet
from regnet import fields, registry
from regnet.layers import base


def test_the_layer_contract_example_runs():
    result = doctest.testmod(base, raise_on_error=False, verbose=False)
    assert result.attempted >= 8
    assert result.failed == 0
    assert "ExampleScale" not in registry.layers.list()  # the example cleans up after itself


@pytest.mark.parametrize(
    ("decorator", "base_class", "kind", "body"),
    [
        (regnet.activation, regnet.Activation, "activations", {"forward": lambda self, x: x}),
        (regnet.loss, regnet.Loss, "losses", {"value_and_grad": lambda self, p, t: (0.0, p * 0)}),
        (regnet.optimizer, regnet.Optimizer, "optimizers", {"update": lambda self, p, g, s: None}),
        (
            regnet.initializer,
            regnet.Initializer,
            "initializers",
            {"__call__": lambda self, s, r, d=np.float32: np.zeros(s, d)},
        ),
        (regnet.layer, regnet.Layer, "layers", {"forward": lambda self, x, training=False: x}),
    ],
)
def test_one_decorator_per_kind_defines_and_registers(decorator, base_class, kind, body):
    cls = type("Probe", (base_class,), {**body, "__annotations__": {"gain": float}, "gain": fields.number(1.0)})
    cls = decorator("probe_component")(cls)
    try:
        assert attrs.has(cls) and cls.registered_name == "probe_component"
        assert registry.REGISTRIES[kind].get("probe_component") is cls
        obj = registry.REGISTRIES[kind].create({"type": "probe_component", "gain": 2})
        assert obj.gain == 2.0 and obj.get_config()["type"] == "probe_component"
        assert registry.REGISTRIES[kind].create(obj.get_config()).get_config() == obj.get_config()
    finally:
        registry.REGISTRIES[kind].unregister("probe_component")


def test_register_false_defines_without_registering():
    @regnet.activation("unregistered_probe", register=False)
    class Probe(regnet.Activation):
        def forward(self, x):
            return x

    assert attrs.has(Probe) and Probe.registered_name == "unregistered_probe"
    assert "unregistered_probe" not in registry.activations


def test_a_registry_refuses_a_class_of_another_kind():
    with pytest.raises(TypeError, match="not a subclass of regnet.layers.base.Layer"):
        registry.layers.register(regnet.Activation, name="not_a_layer")


def test_a_layer_written_before_the_flag_still_works():
    """``backward(grad)`` without ``need_input_grad`` (an older plugin) is called without it."""

    @regnet.layer("OldStyle", register=False)
    class OldStyle(regnet.Layer):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, grad):
            return 2 * grad

    layer = OldStyle()
    layer.setup((3,), np.random.default_rng(0))
    layer(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(layer.call_backward(np.ones((2, 3)), need_input_grad=False), 2 * np.ones((2, 3)))


def test_release_drops_every_cache():
    layer = regnet.layers.Dense(units=2, activation="tanh")
    layer.setup((3,), np.random.default_rng(0))
    layer(np.ones((4, 3), np.float32), training=True)
    assert vars(layer.cache)
    layer.release()
    assert not vars(layer.cache)


def test_dead_aliases_are_gone():
    """One name per thing: the earlier aliases and the attrs-less register_* functions are removed."""
    assert not hasattr(regnet.Layer, "add_param")
    assert not hasattr(regnet.Model, "from_json")
    assert not [n for n in dir(regnet) if n.startswith("register_")]


def test_the_examples_of_the_normalisation_merge_and_shape_layers_run():
    from regnet.layers import elementwise, merge, normalization, reshaping

    for module in (normalization, merge, elementwise, reshaping):
        result = doctest.testmod(module, raise_on_error=False, verbose=False)
        assert result.attempted >= 4 and result.failed == 0, module.__name__

"""The registries: built-in names, lookup rules, errors for unknown names and fields, safe mode
(REGNET_DISABLE_PLUGIN_AUTOLOAD with REGNET_PLUGINS) and ``plugin_report``."""

import json

import attrs
import pytest

from regnet import registry
from regnet.errors import ConfigError, PluginError, UnknownComponentError
from regnet.layers.base import Layer
from regnet.layers.core import Dense
from regnet.testing import plugin_distribution

BUILTINS = {
    "layers": {
        "Dense",
        "Conv2D",
        "MaxPool2D",
        "AvgPool2D",
        "GlobalAveragePooling2D",
        "BatchNorm",
        "Dropout",
        "Flatten",
        "Reshape",
        "Activation",
        "Add",
        "Concatenate",
    },
    "activations": {
        "linear",
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "tanh",
        "sigmoid",
        "softmax",
        "gelu",
        "relu6",
        "silu",
        "hard_sigmoid",
        "hard_swish",
        "mish",
        "softplus",
        "softsign",
        "exponential",
        "log_softmax",
    },
    "losses": {
        "categorical_crossentropy",
        "binary_crossentropy",
        "mean_squared_error",
        "mean_absolute_error",
        "huber",
        "kl_divergence",
        "hinge",
        "squared_hinge",
        "log_cosh",
        "poisson",
        "cosine_similarity",
    },
    "optimizers": {"SGD", "AdaGrad", "RMSprop", "Adam", "AdamW", "Adamax", "Nadam", "Adadelta", "Lion", "Adafactor"},
    "initializers": {
        "zeros",
        "ones",
        "constant",
        "he_normal",
        "he_uniform",
        "glorot_normal",
        "glorot_uniform",
        "lecun_normal",
        "lecun_uniform",
    },
}

LAYER = """
import attrs
import numpy as np
from regnet.layers.base import Layer


@attrs.define(slots=False, eq=False)
class {name}(Layer):
    registered_name = "{name}"

    def forward(self, x, training=False):
        return x * np.asarray(2, x.dtype)

    def backward(self, grad):
        return grad * np.asarray(2, grad.dtype)
"""


def test_builtins_are_registered_with_their_provider():
    for kind, names in BUILTINS.items():
        reg = registry.REGISTRIES[kind]
        assert names <= set(reg.list()), kind
        for name in names:
            prov = reg.provider(name)
            assert prov.builtin and prov.distribution == "regnet" and prov.entry_point is None


def test_lookup_resolves_aliases_and_any_case_to_the_canonical_name():
    assert registry.layers.get("Linear") is Dense
    assert registry.layers.get("dense") is Dense
    assert registry.layers.canonical("maxpooling2d") == "MaxPool2D"
    assert registry.losses.canonical("MSE") == "mean_squared_error"
    assert registry.optimizers.canonical("adam") == "Adam"


def test_list_filters_with_a_glob_in_any_case():
    assert registry.layers.list("*pool*2d") == [
        "AvgPool2D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "MaxPool2D",
    ]
    assert registry.activations.list("?ELU") == ["gelu", "relu", "selu"]
    assert registry.activations.list("hard_*") == ["hard_sigmoid", "hard_swish"]


@pytest.mark.parametrize(
    ("kind", "typo", "suggestion"),
    [
        ("layers", "Dnse", "Dense"),
        ("layers", "Conv2", "Conv2D"),
        ("activations", "rellu", "relu"),
        ("losses", "binary_crossentropi", "binary_crossentropy"),
        ("optimizers", "Adamw", None),
        ("initializers", "glorot_unifrom", "glorot_uniform"),
    ],
)
def test_unknown_names_list_close_matches_and_the_entry_point_group(kind, typo, suggestion):
    reg = registry.REGISTRIES[kind]
    if suggestion is None:  # any case resolves: not unknown
        reg.get(typo)
        return
    with pytest.raises(UnknownComponentError) as info:
        reg.get(typo)
    msg = str(info.value)
    assert f"'{typo}'" in msg and f"did you mean '{suggestion}'" in msg and f"'regnet.{kind}'" in msg


def test_unknown_name_without_close_match_lists_the_known_names():
    with pytest.raises(UnknownComponentError) as info:
        registry.optimizers.get("Zzzzz")
    assert "did you mean" not in str(info.value) and "Adam, AdamW" in str(info.value)


def test_create_from_name_dict_and_instance():
    assert registry.activations.create("leaky_relu").alpha == 0.01
    assert registry.activations.create({"type": "leaky_relu", "alpha": 0.2}).alpha == 0.2
    inst = registry.optimizers.create("sgd")
    assert registry.optimizers.create(inst) is inst


def test_unknown_field_names_the_close_field():
    with pytest.raises(ConfigError) as info:
        registry.optimizers.create({"type": "SGD", "momentun": 0.9})
    assert info.value.field == "momentun" and "did you mean 'momentum'" in str(info.value)


def test_missing_required_field_is_named():
    with pytest.raises(ConfigError) as info:
        registry.layers.create({"type": "Dense"})
    assert info.value.field == "units"


def test_registering_a_taken_name_names_both_providers():
    @attrs.define(slots=False, eq=False)
    class Other(Layer):
        pass

    with pytest.raises(PluginError) as info:
        registry.layers.register(Other, name="Dense")
    assert "Dense" in str(info.value) and "regnet (built-in)" in str(info.value)
    assert registry.layers.get("Dense") is Dense


def test_registering_something_that_is_not_a_layer_fails():
    with pytest.raises(TypeError):
        registry.layers.register(object, name="NotALayer")
    assert "NotALayer" not in registry.layers


def test_plugin_report_lists_every_component_as_json_data():
    report = registry.plugin_report()
    assert set(report) == set(registry.KINDS) | set(registry.HOOKS)
    json.dumps(report)
    for kind, names in BUILTINS.items():
        entry = report[kind]
        assert entry["group"] == f"regnet.{kind}"
        by_name = {c["name"]: c for c in entry["components"]}
        assert names <= set(by_name)
        assert all(by_name[n]["builtin"] and by_name[n]["distribution"] == "regnet" for n in names)
        assert entry["broken"] == []


def test_plugin_report_without_loading_keeps_plugins_pending():
    with plugin_distribution(
        "lazy-report",
        {"layers": {"LazyDouble": "lazy_report_mod:LazyDouble"}},
        modules={"lazy_report_mod": LAYER.format(name="LazyDouble")},
    ):
        import sys

        report = registry.plugin_report(load=False)
        entry = {c["name"]: c for c in report["layers"]["components"]}["LazyDouble"]
        assert entry["loaded"] is False and entry["distribution"] == "lazy-report"
        assert "lazy_report_mod" not in sys.modules
        report = registry.plugin_report()
        assert {c["name"]: c for c in report["layers"]["components"]}["LazyDouble"]["loaded"] is True


# -- safe mode ---------------------------------------------------------------------------------------


@pytest.fixture
def two_plugins():
    with (
        plugin_distribution(
            "safe-one",
            {"layers": {"SafeOne": "safe_one_mod:SafeOne"}},
            modules={"safe_one_mod": LAYER.format(name="SafeOne")},
            version="1.2",
        ),
        plugin_distribution(
            "Safe_Two",
            {"layers": {"SafeTwo": "safe_two_mod:SafeTwo"}},
            modules={"safe_two_mod": LAYER.format(name="SafeTwo")},
        ),
    ):
        yield


def _reset():
    for reg in registry.REGISTRIES.values():
        reg.reset_plugins()


def test_plugins_load_without_safe_mode(two_plugins, monkeypatch):
    monkeypatch.delenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    _reset()
    assert {"SafeOne", "SafeTwo"} <= set(registry.layers.list())


def test_safe_mode_loads_only_the_named_distributions(two_plugins, monkeypatch):
    monkeypatch.setenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("REGNET_PLUGINS", " SAFE_one , unrelated")  # names compare like pip's
    _reset()
    try:
        names = registry.layers.list()
        assert "SafeOne" in names and "SafeTwo" not in names and "Dense" in names
        assert registry.layers.get("SafeOne").__name__ == "SafeOne"
        with pytest.raises(UnknownComponentError) as info:
            registry.layers.get("SafeTwo")
        msg = str(info.value)
        assert "Safe_Two" in msg and "REGNET_DISABLE_PLUGIN_AUTOLOAD" in msg and "REGNET_PLUGINS" in msg
    finally:
        monkeypatch.undo()
        _reset()


def test_safe_mode_without_a_list_loads_built_ins_only(two_plugins, monkeypatch):
    monkeypatch.setenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("REGNET_PLUGINS", raising=False)
    _reset()
    try:
        assert all(registry.layers.provider(n).builtin for n in registry.layers.list())
        assert registry.layers.get("Dense") is Dense
    finally:
        monkeypatch.undo()
        _reset()


def test_autoload_flag_zero_means_enabled(two_plugins, monkeypatch):
    monkeypatch.setenv("REGNET_DISABLE_PLUGIN_AUTOLOAD", "0")
    _reset()
    try:
        assert "SafeTwo" in registry.layers.list()
    finally:
        monkeypatch.undo()
        _reset()

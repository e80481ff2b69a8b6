"""Plugin failure modes, with distributions simulated by ``*.dist-info`` directories on a
temporary path: each broken entry gives an error naming its distribution, the rest of the
registry keeps working, and ``plugin_report()`` lists it as broken."""

import sys

import numpy as np
import pytest

import regnet
from regnet import registry
from regnet.errors import PluginError, UnknownComponentError
from regnet.layers.core import Dense
from regnet.testing import check_layer, component_cases, plugin_distribution

LAYER = """
import attrs
import numpy as np
from regnet.layers.base import Layer


@attrs.define(slots=False, eq=False)
class {name}(Layer):
    registered_name = "{name}"
    test_input_shape = (4,)

    def forward(self, x, training=False):
        return x * np.asarray(2, x.dtype)

    def backward(self, grad):
        return grad * np.asarray(2, grad.dtype)
"""


def _broken(kind, name=None, dist=None):
    report = registry.plugin_report()[kind]["broken"]
    return [b for b in report if (name is None or b["name"] == name) and (dist is None or b["distribution"] == dist)]


# -- a working plugin ---------------------------------------------------------------------------------


def test_working_plugin_is_listed_loaded_lazily_and_passes_the_kit():
    with plugin_distribution(
        "fake-good",
        {"layers": {"Doubler": "fake_good_mod:Doubler"}},
        modules={"fake_good_mod": LAYER.format(name="Doubler")},
        version="3.1",
    ):
        assert "Doubler" in registry.layers.list()
        assert "fake_good_mod" not in sys.modules  # listed, not imported
        prov = registry.layers.provider("Doubler")
        assert (prov.distribution, prov.version, prov.entry_point) == ("fake-good", "3.1", "fake_good_mod:Doubler")
        cls = registry.layers.get("Doubler")
        assert "fake_good_mod" in sys.modules and cls.__name__ == "Doubler"
        check_layer("Doubler")  # test_input_shape declared by the class
        cases = component_cases("fake-good")
        assert [(c.kind, c.name, c.error) for c in cases] == [("layers", "Doubler", None)]
    assert "Doubler" not in registry.layers.list()  # gone with the distribution


@pytest.mark.filterwarnings("ignore:.*never trained:UserWarning")  # saved untrained on purpose
def test_model_file_records_the_plugin_and_loads_while_it_is_installed(tmp_path):
    with plugin_distribution(
        "fake-saved",
        {"layers": {"Doubler2": "fake_saved_mod:Doubler2"}},
        modules={"fake_saved_mod": LAYER.format(name="Doubler2")},
        version="2.5",
    ):
        model = regnet.Model([{"type": "Dense", "units": 3}, {"type": "Doubler2"}], (4,), seed=0)
        path = tmp_path / "m.h5"
        regnet.save(model, path)
        x = np.ones((2, 4), np.float32)
        assert np.array_equal(regnet.load(path).predict(x), model.predict(x))


# -- failure modes -------------------------------------------------------------------------------------


def test_plugin_whose_import_fails():
    source = "raise ImportError('needs libfoo >= 2')\n"
    with plugin_distribution(
        "fake-importfail",
        {"layers": {"Fragile": "fake_importfail_mod:Fragile"}},
        modules={"fake_importfail_mod": source},
        version="0.3",
    ):
        assert "Fragile" in registry.layers.list()  # listed until someone asks for it
        with pytest.raises(PluginError) as info:
            registry.layers.get("Fragile")
        msg = str(info.value)
        assert "fake-importfail 0.3" in msg and "fake_importfail_mod:Fragile" in msg and "libfoo" in msg
        assert "regnet.layers" in msg
        with pytest.raises(PluginError, match="fake-importfail"):  # asked again: still named
            registry.layers.get("Fragile")
        assert registry.layers.get("Dense") is Dense
        assert regnet.Model([{"type": "Dense", "units": 2}], (3,)).predict(np.ones((1, 3), np.float32)).shape == (1, 2)
        [entry] = _broken("layers", "Fragile")
        assert entry["distribution"] == "fake-importfail" and "ImportError: needs libfoo" in entry["error"]
        assert "Fragile" not in registry.layers.list()


def test_plugin_whose_name_clashes_with_a_built_in():
    with plugin_distribution(
        "fake-clash",
        {
            "layers": {
                "Dense": "fake_clash_mod:Dense",
                "dropout": "fake_clash_mod:Dense",
                "Linear": "fake_clash_mod:Dense",
            }
        },
        modules={"fake_clash_mod": LAYER.format(name="Dense")},
    ):
        with pytest.warns(RuntimeWarning, match="fake-clash") as record:
            assert registry.layers.get("Dense") is Dense  # the built-in is kept
        messages = " ".join(str(w.message) for w in record)
        assert "regnet (built-in)" in messages and "the built-in is kept" in messages
        assert registry.layers.canonical("Linear") == "Dense"  # a built-in alias is not taken over
        assert registry.layers.canonical("dropout") == "Dropout"  # nor a built-in name in another case
        broken = _broken("layers", dist="fake-clash")
        assert {b["name"] for b in broken} == {"Dense", "dropout", "Linear"}
        assert all("name clash" in b["error"] for b in broken)
        assert "fake_clash_mod" not in sys.modules  # never imported


def test_two_plugins_clashing_with_each_other():
    with (
        plugin_distribution(
            "fake-left",
            {"layers": {"Twin": "fake_left_mod:Twin", "LeftOnly": "fake_left_mod:LeftOnly"}},
            modules={"fake_left_mod": LAYER.format(name="Twin") + LAYER.format(name="LeftOnly")},
            version="1.0",
        ),
        plugin_distribution(
            "fake-right",
            {"layers": {"Twin": "fake_right_mod:Twin"}},
            modules={"fake_right_mod": LAYER.format(name="Twin")},
            version="2.0",
        ),
    ):
        with pytest.raises(PluginError) as info:
            registry.layers.get("Twin")
        msg = str(info.value)
        assert "fake-left 1.0" in msg and "fake-right 2.0" in msg and "name clash" in msg
        assert registry.layers.get("LeftOnly").__name__ == "LeftOnly"  # the rest keeps working
        assert registry.layers.get("Dense") is Dense
        assert {b["distribution"] for b in _broken("layers", "Twin")} == {"fake-left", "fake-right"}
        assert "Twin" not in registry.layers.list()
        # the kit parametrisation shows the broken entry as a failing case
        [case] = [c for c in component_cases("fake-right")]
        assert case.error is not None
        with pytest.raises(PluginError, match="fake-right"):
            case.check()


NOT_COMPONENTS = """
import attrs
from regnet.layers.base import Layer


def helper():
    return 1


class PlainClass:
    pass


@attrs.define(slots=False, eq=False)
class RealLayer(Layer):
    pass
"""


@pytest.mark.parametrize(
    ("kind", "target", "reason"),
    [
        ("layers", "helper", "not a subclass of regnet.layers.base.Layer"),
        ("layers", "PlainClass", "not a subclass of regnet.layers.base.Layer"),
        ("losses", "RealLayer", "not a subclass of regnet.losses.Loss"),
        ("optimizers", "Missing", "AttributeError"),
    ],
)
def test_entry_point_that_is_not_a_valid_component(kind, target, reason):
    with plugin_distribution(
        "fake-invalid",
        {kind: {"Bogus": f"fake_invalid_mod:{target}"}},
        modules={"fake_invalid_mod": NOT_COMPONENTS},
        version="0.9",
    ):
        reg = registry.REGISTRIES[kind]
        with pytest.raises(PluginError) as info:
            reg.get("Bogus")
        msg = str(info.value)
        assert "fake-invalid 0.9" in msg and f"fake_invalid_mod:{target}" in msg and reason in msg
        [entry] = _broken(kind, "Bogus")
        assert entry["distribution"] == "fake-invalid" and entry["version"] == "0.9"
        assert reg.list()  # the built-ins are still there
        assert all(reg.provider(n).builtin or reg.provider(n).distribution != "fake-invalid" for n in reg.list())


def test_broken_plugins_do_not_break_building_models():
    with plugin_distribution(
        "fake-mixed",
        {
            "layers": {"Fine": "fake_mixed_mod:Fine", "Bad": "fake_mixed_mod:Nope"},
            "activations": {"relu": "fake_mixed_mod:Fine"},
        },
        modules={"fake_mixed_mod": LAYER.format(name="Fine")},
    ):
        with pytest.warns(RuntimeWarning):
            model = regnet.Model([{"type": "Dense", "units": 3, "activation": "relu"}, {"type": "Fine"}], (2,))
        assert model.predict(np.ones((1, 2), np.float32)).shape == (1, 3)
        report = registry.plugin_report()
        assert {b["name"] for b in report["layers"]["broken"]} == {"Bad"}
        assert {b["name"] for b in report["activations"]["broken"]} == {"relu"}
        assert "Fine" in {c["name"] for c in report["layers"]["components"]}


def test_reset_plugins_restores_the_registries():
    before = {k: r.list() for k, r in registry.REGISTRIES.items()}
    with plugin_distribution(
        "fake-temp", {"layers": {"Temp": "fake_temp_mod:Temp"}}, modules={"fake_temp_mod": LAYER.format(name="Temp")}
    ):
        registry.layers.get("Temp")
    assert {k: r.list() for k, r in registry.REGISTRIES.items()} == before
    assert all(r.broken() == [] for r in registry.REGISTRIES.values())
    assert "fake_temp_mod" not in sys.modules


# -- loading a model whose plugin is not installed ----------------------------------------------------


def test_loading_a_model_whose_plugin_is_missing_names_type_kind_group_and_distribution(tmp_path):
    path = tmp_path / "needs_plugin.h5"
    with plugin_distribution(
        "fake-gone",
        {"layers": {"Vanishing": "fake_gone_mod:Vanishing"}},
        modules={"fake_gone_mod": LAYER.format(name="Vanishing")},
        version="4.2",
    ):
        regnet.save(regnet.Model([{"type": "Vanishing"}, {"type": "Dense", "units": 2}], (3,), seed=0), path)
    with pytest.raises(UnknownComponentError) as info:
        regnet.load(path)
    msg = str(info.value)
    for part in ("Vanishing", "layers", "regnet.layers", "fake-gone", "4.2"):
        assert part in msg, (part, msg)


def test_loading_a_model_whose_plugin_activation_is_missing(tmp_path):
    act = """
import attrs
from regnet.activations import Activation


@attrs.define
class Cube(Activation):
    registered_name = "cube"

    def forward(self, x):
        return x ** 3

    def backward(self, grad, x, y):
        return grad * 3 * x * x
"""
    path = tmp_path / "needs_activation.h5"
    with plugin_distribution(
        "fake-acts", {"activations": {"cube": "fake_acts_mod:Cube"}}, modules={"fake_acts_mod": act}, version="1.1"
    ):
        model = regnet.Model([{"type": "Dense", "units": 2, "activation": "cube"}], (3,), seed=0)
        regnet.save(model, path)
    with pytest.raises(UnknownComponentError) as info:
        regnet.load(path)
    msg = str(info.value)
    for part in ("cube", "activations", "regnet.activations", "fake-acts", "1.1"):
        assert part in msg, (part, msg)

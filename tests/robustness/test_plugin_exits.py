"""A plugin whose import raises ``SystemExit`` (``sys.exit()`` as a Python-version guard) or another
``BaseException`` is a broken plugin like any other: listed as broken, and the built-ins, the
shipped zoo and ``regnet zoo list`` keep working. Only ``KeyboardInterrupt`` passes through."""

import json
from pathlib import Path

import pytest

import regnet
from regnet import zoo
from regnet.cli import main
from regnet.errors import PluginError
from regnet.registry import REGISTRIES
from regnet.testing import plugin_distribution

ZOO = Path(__file__).resolve().parents[2] / "model_zoo"
BUILTIN = [e["name"] for e in json.loads((ZOO / "manifest.json").read_text())["models"]]
EXITS = {
    "sys.exit with a message": ("import sys\nsys.exit('needs Python 3.99')", "SystemExit: needs Python 3.99"),
    "sys.exit(3)": ("import sys\nsys.exit(3)", "SystemExit: 3"),
    "GeneratorExit": ("raise GeneratorExit('odd')", "GeneratorExit: odd"),
    "a BaseException subclass": ("class Stop(BaseException):\n    pass\nraise Stop('x')", "Stop: x"),
}


@pytest.fixture(autouse=True)
def real_zoo(monkeypatch):
    for name in ("REGNET_ZOO", "REGNET_DISABLE_PLUGIN_AUTOLOAD", "REGNET_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("case", EXITS)
def test_a_zoo_provider_that_exits_is_listed_as_broken(case, capsys):
    source, fragment = EXITS[case]
    with plugin_distribution(
        "exiting-zoo", {"zoo": {"bad": "exiting_zoo_mod:MANIFEST"}}, modules={"exiting_zoo_mod": source}
    ):
        assert set(zoo.list()) >= set(BUILTIN)
        assert zoo.load("mlp-moons").count_params() > 0
        [broken] = [b for b in zoo.broken() if b["distribution"] == "exiting-zoo"]
        assert fragment in broken["error"]
        assert main(["zoo", "list"]) == 0
        out = capsys.readouterr().out
        assert "mlp-moons" in out and "BROKEN exiting-zoo" in out


@pytest.mark.parametrize("kind", ["layers", "activations", "losses", "optimizers", "initializers", "metrics"])
@pytest.mark.parametrize("case", ["sys.exit with a message", "a BaseException subclass"])
def test_a_component_plugin_that_exits_is_broken_not_fatal(kind, case, capsys):
    source, fragment = EXITS[case]
    with plugin_distribution(
        "exiting-plugin", {kind: {"Exiting": "exiting_mod:Thing"}}, modules={"exiting_mod": source}
    ):
        with pytest.raises(PluginError, match=fragment):
            REGISTRIES[kind].get("Exiting")
        assert any(fragment in b["error"] for b in regnet.registry.plugin_report()[kind]["broken"])
        regnet.Model([{"type": "Dense", "units": 2}], (3,)).compile()  # the built-ins still work
        assert main(["plugins"]) == 0
        assert "BROKEN" in capsys.readouterr().out


def test_keyboard_interrupt_still_interrupts():
    source = "raise KeyboardInterrupt"
    with plugin_distribution(
        "ctrl-c", {"zoo": {"c": "ctrl_c_mod:M"}, "layers": {"C": "ctrl_c_mod:M"}}, modules={"ctrl_c_mod": source}
    ):
        with pytest.raises(KeyboardInterrupt):
            zoo.list()
        with pytest.raises(KeyboardInterrupt):
            REGISTRIES["layers"].get("C")

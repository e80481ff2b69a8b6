"""The template's zoo model: published through the ``regnet.zoo`` entry point, hash-checked, and as
accurate as its manifest says."""

import json
from pathlib import Path

import pytest

pytest.importorskip("regnet_plugin_template")

import regnet_plugin_template

from regnet import zoo

DIST = "regnet-plugin-template"
MANIFEST = json.loads(Path(regnet_plugin_template.ZOO_MANIFEST).read_text())


def test_listed_with_this_distribution():
    [entry] = MANIFEST["models"]
    info = zoo.info(entry["name"])
    assert info["provider"]["distribution"] == DIST
    assert info["command"].startswith("regnet train ") and entry["weights"] in info["command"]
    assert not [b for b in zoo.broken() if b["distribution"] == DIST]


def test_loads_and_matches_its_manifest():
    [entry] = MANIFEST["models"]
    model = zoo.load(entry["name"])
    assert model.count_params() == entry["params"]
    assert any(layer["type"] == "ScaleShift" for layer in model.to_spec()["layers"])
    assert zoo.evaluate(entry["name"])["accuracy"] == pytest.approx(entry["test_accuracy"], abs=1e-9)

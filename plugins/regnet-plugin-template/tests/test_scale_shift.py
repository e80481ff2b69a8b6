"""Run the regnet conformance kit on everything this distribution provides."""

import pytest

pytest.importorskip("regnet_plugin_template")

from regnet.testing import component_cases, parametrize_components

DIST = "regnet-plugin-template"


@parametrize_components(distribution=DIST)
def test_conforms(case):
    case.check()


def test_installed():
    assert [c.name for c in component_cases(DIST)] == ["ScaleShift", "ScaleShift"]

"""The generated component reference: docs/components.md is current, every field of every
built-in component is documented, `regnet describe` finds any component (plugins' too), and each
built-in layer's docstring example runs."""

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

import regnet
from regnet import reference, registry

ROOT = Path(__file__).resolve().parents[1]


def test_docs_components_md_is_current():
    text = (ROOT / "docs" / "components.md").read_text(encoding="utf-8")
    assert text == reference.markdown(reference.builtin_entries()), (
        "docs/components.md is stale: python -m regnet describe --all --markdown > docs/components.md"
    )


def test_the_reference_lists_every_builtin_with_aliases():
    entries = {(e["kind"], e["name"]): e for e in reference.builtin_entries()}
    for kind in reference.KINDS:
        reg = registry.REGISTRIES[kind]
        assert {n for n in reg.list() if reg.provider(n).builtin} == {n for k, n in entries if k == kind}
    assert "Linear" in entries[("layers", "Dense")]["aliases"]
    units = next(f for f in entries[("layers", "Dense")]["fields"] if f["name"] == "units")
    assert units["default"] == "required" and units["accepts"] == "an integer >= 1"


def test_describe_prints_one_component_and_finds_it_by_alias_in_any_case():
    run = subprocess.run(
        [sys.executable, "-m", "regnet", "describe", "LINEAR"], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Dense: layer from regnet (built-in) (aliases: Linear)")
    assert "units: int = required" in run.stdout and "linear: schedule" in run.stdout


def test_describe_names_a_plugin_distribution():
    pytest.importorskip("regnet_extras")
    name = next(n for n in registry.layers.list() if not registry.layers.provider(n).builtin)
    (found,) = [e for e in reference.find(name) if e["kind"] == "layers"]
    assert found["provider"].startswith("regnet-extras")


def test_describe_of_an_unknown_name_is_one_clear_error():
    run = subprocess.run([sys.executable, "-m", "regnet", "describe", "Densee"], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "regnet: error: no component is called 'Densee' (regnet plugins lists them all)"
    ]
    with pytest.raises(regnet.UnknownComponentError, match="names containing it: .*Conv2D"):
        reference.find("conv")


def _builtin_layer_classes():
    return [registry.layers.get(n) for n in registry.layers.list() if registry.layers.provider(n).builtin]


@pytest.mark.parametrize("cls", _builtin_layer_classes(), ids=lambda c: c.registered_name)
def test_builtin_layer_docstring_examples_run(cls):
    doc = cls.__dict__.get("__doc__") or ""
    if ">>>" not in doc:
        pytest.skip(f"{cls.registered_name} has no example yet")
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    module = sys.modules[cls.__module__]
    for test in finder.find(cls, cls.registered_name, module=module, globs={**vars(module), "regnet": regnet}):
        runner.run(test)
    assert runner.failures == 0


@pytest.mark.parametrize("kind", reference.KINDS)
def test_every_field_of_every_builtin_component_is_documented(kind):
    undocumented = [
        f"{e['name']}.{f['name']}"
        for e in reference.builtin_entries()
        if e["kind"] == kind
        for f in e["fields"]
        if not f["doc"]
    ]
    assert undocumented == [], f"fields without doc=: {undocumented}"

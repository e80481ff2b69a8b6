"""The package's import graph, read from the source: no cycles, no imports of regnet modules
inside functions (a hidden back edge), and the layering that keeps the file format apart from
models (``tools/imports.py`` draws the same graph for docs/design.md)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("regnet_imports", ROOT / "tools" / "imports.py")
imports = importlib.util.module_from_spec(spec)
sys.modules["regnet_imports"] = imports
spec.loader.exec_module(imports)

GRAPH = imports.graph()
EDGES = imports.edges(GRAPH)


def test_the_graph_covers_every_module():
    assert {"regnet.io", "regnet.model", "regnet.checkpoint", "regnet.layers.base", "regnet.cli"} <= set(GRAPH)
    assert "regnet.model" in EDGES["regnet.checkpoint"] or "regnet.io" in EDGES["regnet.checkpoint"]


def test_no_import_cycle():
    assert imports.cycle(EDGES) is None, f"import cycle: {' -> '.join(imports.cycle(EDGES))}"


def test_no_regnet_import_inside_a_function():
    hidden = [f"{m}:{line} imports {t}" for m, targets in GRAPH.items() for t, line, inner in targets if inner]
    assert hidden == [], "imports of regnet modules inside functions hide dependencies: " + "; ".join(hidden)


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("regnet.errors", set()),
        ("regnet.text", set()),
        ("regnet.registry", {"regnet.errors", "regnet.text"}),
        ("regnet.names", {"regnet.errors", "regnet.text"}),
        ("regnet.atomic", {"regnet.errors", "regnet.text"}),
        ("regnet.io", {"regnet.errors", "regnet.text", "regnet._version", "regnet.atomic", "regnet.names"}),
    ],
)
def test_low_modules_import_only_lower_ones(module, allowed):
    assert EDGES[module] <= allowed, f"{module} imports {sorted(EDGES[module] - allowed)}"


@pytest.mark.parametrize("module", ["regnet.io", "regnet.checkpoint", "regnet.training.loop", "regnet.layers.base"])
def test_model_is_above_state_and_format(module):
    """The file format, the state bridge, the training loop and the layer contract do not know Model."""
    below = {module}
    stack = [module]
    while stack:  # everything the module reaches
        for t in EDGES.get(stack.pop(), ()):
            if t not in below:
                below.add(t)
                stack.append(t)
    assert "regnet.model" not in below


def test_the_checker_finds_a_cycle_and_a_hidden_import(tmp_path):
    pkg = tmp_path / "regnet"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    g = imports.graph(pkg)
    assert imports.cycle(imports.edges(g)) == ["regnet.a", "regnet.b", "regnet.a"]
    assert [(t, inner) for t, _, inner in g["regnet.b"]] == [("regnet.a", True)]


def test_docs_design_shows_the_graph_as_it_is():
    doc = ROOT / "docs" / "design.md"
    assert imports.block(doc) == imports.render(), (
        "docs/design.md is stale: run python tools/imports.py --update docs/design.md"
    )

"""What a new user runs into first: zoo models by name, the docs' examples as written, honest
validation in ``regnet train``, uint8 images, single samples, Keras's schedule fields."""

import inspect
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

import regnet
from regnet.cli import main
from regnet.errors import FileFormatError, UnknownComponentError

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# -- docs/plugins.md ----------------------------------------------------------------------------
def test_plugins_guide_examples_run(tmp_path, monkeypatch, capsys):
    """Every Python block of docs/plugins.md runs as written, in order, in one session; the
    section-6 lowerings, put on the section-3 classes, export models that onnxruntime runs with
    the outputs of ``predict``."""
    pytest.importorskip("regnet_extras")
    pytest.importorskip("regnet_plugin_template")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__", "__file__": str(tmp_path / "my_plugin.py")}  # as in a module
    lowerings = {}
    for i, block in enumerate(python_blocks((ROOT / "docs" / "plugins.md").read_text())):
        try:
            exec(compile(block, f"<docs/plugins.md example {i + 1}>", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"example {i + 1} fails: {type(exc).__name__}: {exc}\n{block}") from exc
        fn = namespace.pop("to_onnx", None)
        if fn is not None:
            lowerings[list(inspect.signature(fn).parameters)[2]] = fn
    assert set(lowerings) == {"inputs", "x"}  # a layer's and an activation's
    assert "my-plugin" in capsys.readouterr().out  # the broken plugin's error was printed

    pytest.importorskip("onnxruntime")
    import onnxruntime

    layer_cls = namespace["ScaleShift"]  # the guide's, unregistered: its lowering is the guide's
    monkeypatch.setattr(layer_cls, "to_onnx", lowerings["inputs"], raising=False)
    # a layer names its activation: "swish" is regnet-extras's, the same swish; give it the guide's lowering
    monkeypatch.setattr(regnet.registry.activations.get("swish"), "to_onnx", lowerings["x"])
    for shape in [(3, 4, 4), (5,)]:
        layer = layer_cls(initial_scale=0.5, activation={"type": "swish", "beta": 1.5})
        model = regnet.Model([layer], shape, seed=0)
        rng = np.random.default_rng(1)
        for w in model.state_dict().values():
            w[...] = rng.standard_normal(w.shape)
        x = rng.standard_normal((2, *shape)).astype(np.float32)
        regnet.onnx.export(model, "doc.onnx")
        session = onnxruntime.InferenceSession("doc.onnx", providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-6)


def test_plugins_guide_and_template_say_to_remove_the_zoo_entry():
    guide = " ".join((ROOT / "docs" / "plugins.md").read_text().split())
    readme = " ".join((ROOT / "plugins" / "regnet-plugin-template" / "README.md").read_text().split())
    for text in (guide, readme):
        assert "remove the" in text.lower() and "zoo" in text and "scaleshift-moons" in text

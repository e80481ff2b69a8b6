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


# -- the README's and docs/zoo.md's command lines -------------------------------------------------
def cli_examples(text):
    """The ``regnet ...`` commands of a document's plain code blocks (and of ``a && b`` chains), in
    order, without comments; lines with placeholders (``MODEL.h5``, ``NAME``, ``[...]``, ``a|b``)
    are a syntax summary, not a command, and are left out."""
    commands, language = [], None  # the language of the open block, None outside blocks
    for line in text.splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
            continue
        if language in ("", "bash"):
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                if part.startswith("regnet ") and not re.search(r"[\[|]|\b[A-Z]{2,}\b|[A-Z]+\.(h5|json|npy)", part):
                    commands.append(part)
    return commands


@pytest.fixture
def offline_docs_folder(tmp_path, monkeypatch):
    """A fresh folder holding the repository's model_zoo/ and docs/ (the examples' relative paths),
    no full MNIST anywhere and mirrors that refuse at once: ``--data mnist`` falls back to the
    bundled sample, as on an offline machine."""
    for name in ("model_zoo", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("REGNET_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("REGNET_MNIST_MIRRORS", "http://127.0.0.1:9/")  # the discard port: refused
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_and_zoo_guide_commands_run_as_written(offline_docs_folder, capsys):
    pytest.importorskip("PIL")
    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    pytest.importorskip("onnxruntime")
    readme = cli_examples((ROOT / "README.md").read_text())
    guide = cli_examples((ROOT / "docs" / "zoo.md").read_text())
    assert "regnet predict cnn-mnist docs/images/photo.jpg" in readme and readme[0].startswith("regnet zoo evaluate")
    assert "regnet predict cnn-mnist docs/images/photo.jpg" in guide and "regnet --version" in readme
    outputs = {}
    for command in readme + guide:
        code, out, err = run(capsys, shlex.split(command)[1:])
        assert code == 0, f"{command} fails: {err}"
        outputs[command] = out
    assert outputs["regnet predict cnn-mnist docs/images/photo.jpg"].startswith("read: 2026")
    trained = next(out for command, out in outputs.items() if command.startswith("regnet train"))
    assert "validation accuracy" in trained and "test accuracy" in trained
    for picture in ("curves.png", "confusion.png"):
        assert (offline_docs_folder / picture).stat().st_size > 1000

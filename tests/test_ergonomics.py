"""What a new user runs into first: zoo models by name, the docs' examples as written, honest
validation in ``regnet train``, uint8 images, single samples, Keras's schedule fields."""

import importlib
import inspect
import json
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
    # a layer names its activation: "squareplus" is regnet-extras's, the same one; give it the guide's lowering
    monkeypatch.setattr(regnet.registry.activations.get("squareplus"), "to_onnx", lowerings["x"])
    for shape in [(3, 4, 4), (5,)]:
        layer = layer_cls(initial_scale=0.5, activation={"type": "squareplus", "b": 1.5})
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


# -- zoo models by name -------------------------------------------------------------------------
def test_load_takes_zoo_names():
    by_name, by_scheme = regnet.load("mlp-moons"), regnet.Model.load("zoo:mlp-moons", compile=False)
    reference = regnet.zoo.load("mlp-moons")
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    for model in (by_name, by_scheme):
        np.testing.assert_array_equal(model.predict(x), reference.predict(x))
    assert by_name.loss is not None and by_scheme.loss is None


def test_an_existing_file_wins_over_a_zoo_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"input_shape": [2], "layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]}
    regnet.save(regnet.Model.from_spec(spec, seed=0), "mlp-moons")  # a file named like the zoo model
    assert regnet.load("mlp-moons").count_params() == 9
    assert regnet.load("zoo:mlp-moons").count_params() > 9


def test_unknown_names_and_missing_files_say_what_there_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        UnknownComponentError,
        match=r"no file named 'cnn-mnsit' here and no zoo model 'cnn-mnsit'; did you mean 'cnn-mnist'",
    ):
        regnet.load("cnn-mnsit")
    with pytest.raises(
        FileFormatError, match=r"'cnn-mnist.h5' does not exist; the zoo model 'cnn-mnist' is named without '.h5'"
    ):
        regnet.load("cnn-mnist.h5")
    with pytest.raises(FileFormatError, match="does not exist$"):
        regnet.load("other.h5")  # a file name: the plain error
    with pytest.raises(FileFormatError, match="does not exist$"):
        regnet.load(str(tmp_path / "cnn-mnist"))  # a path with a folder is a path
    monkeypatch.setenv("REGNET_ZOO", str(tmp_path / "no-zoo"))  # an unreadable zoo does not hide the file's error
    with pytest.raises(FileFormatError, match="^'?other.h5'? does not exist$"):
        regnet.load("other.h5")


def test_every_command_takes_zoo_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, ["summary", "mlp-moons"])
    assert code == 0 and "Total params: 1,218" in out and "Command: regnet train" in out
    code, out, _ = run(capsys, ["evaluate", "zoo:mlp-moons"])
    assert code == 0 and "moons:noise=0.05 test split" in out
    np.save("points.npy", np.array([[0.0, 0.5], [1.0, -0.5]], np.float32))
    code, out, _ = run(capsys, ["predict", "mlp-moons", "points.npy"])
    assert code == 0 and len(out.splitlines()) == 2
    code, out, _ = run(capsys, ["plot", "mlp-moons", "-o", "c.png"])
    assert code == 0 and "over 60 epoch(s)" in out
    code, out, err = run(capsys, ["summary", "mlp-moonz"])
    assert code == 1 and "did you mean 'mlp-moons'" in err and len(err.splitlines()) == 1
    pytest.importorskip("onnx")
    code, out, _ = run(capsys, ["export", "mlp-moons", "m.onnx"])
    assert code == 0 and Path("m.onnx").stat().st_size > 1000
    spec = regnet.zoo.info("mlp-moons")["spec_path"]
    code, out, err = run(capsys, ["export", spec, "s.onnx", "--weights", "mlp-moons"])
    assert code == 0 and Path("s.onnx").read_bytes() == Path("m.onnx").read_bytes(), err


# -- offline: every mirror tried is named -------------------------------------------------------
def test_each_mirror_tried_is_named_and_the_timeout_is_short(offline_docs_folder, capsys):
    mnist_module = importlib.import_module("regnet.datasets.mnist")
    assert inspect.signature(mnist_module.mnist).parameters["timeout"].default <= 10
    assert inspect.signature(mnist_module.fetch).parameters["timeout"].default <= 10
    dead = ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/", "http://127.0.0.1:9/c/"]
    (x, _), _ = mnist_module.mnist(mirrors=dead, timeout=2)
    err = capsys.readouterr().err.splitlines()
    tried = [line for line in err if line.startswith("regnet: trying ")]
    assert [line.split()[2] for line in tried] == [m + "train-images-idx3-ubyte.gz" for m in dead]
    assert all("REGNET_MNIST_MIRRORS" in line and "mnist-sample" in line for line in tried)
    assert len(x) == 5000 and "using the bundled sample" in err[-1]
    mnist_module.mnist(mirrors=dead, timeout=2, progress=False)  # asked for quiet: no lines
    assert "trying" not in capsys.readouterr().err


def test_the_cli_documents_mirrors_and_the_sample(capsys):
    code, out, _ = run(capsys, ["--help"])
    assert code == 0 and "REGNET_MNIST_MIRRORS" in out and "mnist-sample" in out
    code, out, _ = run(capsys, ["train", "--help"])
    assert code == 0 and "REGNET_MNIST_MIRRORS" in out and "mnist-sample" in out
    readme = (ROOT / "README.md").read_text()
    assert "REGNET_MNIST_MIRRORS" in readme and "--data mnist-sample" in readme


# -- regnet train: validation held out of the training data, test once at the end ---------------
MLP_2D = {
    "input_shape": [2],
    "layers": [
        {"type": "Dense", "units": 16, "activation": "relu"},
        {"type": "Dense", "units": 2, "activation": "softmax"},
    ],
}


def test_train_validates_on_held_out_training_data_by_default(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "mlp.json"
    spec.write_text(json.dumps(MLP_2D))
    seen = []
    original = regnet.Model.fit

    def spy(self, x, y, **kwargs):
        seen.append((len(x), kwargs["validation_data"]))
        return original(self, x, y, **kwargs)

    monkeypatch.setattr(regnet.Model, "fit", spy)
    data = "moons:n=400,seed=1"
    (xtr, _), (xte, _) = regnet.datasets.sources.load(data)
    out = tmp_path / "m.h5"
    code, text, _ = run(capsys, ["train", str(spec), "--data", data, "--epochs", "2", "--out", str(out), "--quiet"])
    assert code == 0
    n_train, (xv, _) = seen[-1]
    assert len(xv) == round(0.1 * len(xtr)) and n_train == len(xtr) - len(xv)
    assert not any((xv[:, None, :] == xte[None, :, :]).all(-1).any(1))  # no test point validates
    assert any((xv[:, None, :] == xtr[None, :, :]).all(-1).any(1))
    assert f"validation accuracy {regnet.load(out).history[-1]['val_accuracy']:.4f} on {len(xv)} held-out" in text
    assert "test accuracy" in text and f"on {len(xte)} samples (evaluated once, after training)" in text
    meta = regnet.io.read_metadata(out)
    assert meta["validation"] == "0.1" and meta["validation_samples"] == len(xv) and "test_accuracy" in meta
    code, text, _ = run(
        capsys,
        ["train", str(spec), "--data", data, "--epochs", "1", "--out", str(out), "--quiet", "--validation", "test"],
    )
    assert code == 0 and len(seen[-1][1][0]) == len(xte) and n_train < seen[-1][0]
    assert f"on the test split ({len(xte)} samples); test accuracy" in text


def test_version(capsys):
    code, out, _ = run(capsys, ["--version"])
    version, path = out.strip().split("\n")
    assert code == 0 and version == f"regnet {regnet.__version__}"
    assert re.fullmatch(r"regnet \d+\.\d+\.\d+", version)
    assert path == f"compute path: {regnet.accel.describe()}"  # numpy or fast (regnet.accel)


# -- uint8 images and single samples ------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet():
    return regnet.zoo.load("lenet5-mnist")


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = regnet.datasets.mnist(sample=True)
    return x[:32], y[:32]


def test_uint8_images_warn_with_the_fix_and_are_not_rescaled(lenet, digits):
    x, y = digits
    pixels = np.rint(x * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"uint8 integers \(image pixels in 0-255\?\).*x / 255"):
        raw = lenet.predict(pixels)
    np.testing.assert_array_equal(raw, lenet.predict(pixels.astype(np.float32)))  # taken as they are
    with pytest.warns(UserWarning, match="x / 255"):
        lenet.evaluate(pixels, y)
    with pytest.warns(UserWarning, match="x / 255"):
        lenet.predict_on_batch(pixels)
    model = regnet.Model.from_spec(lenet.to_spec(), seed=0).compile(optimizer="adam")
    with pytest.warns(UserWarning, match="x / 255"):
        model.fit(pixels, y, epochs=1, verbose=0)
    with pytest.warns(UserWarning, match=r"validation x holds uint8"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=(pixels, y))
    with pytest.warns(UserWarning, match="x / 255"):
        model.fit(iter([(pixels, y)]), steps_per_epoch=1, epochs=1, verbose=0)


def test_float_and_label_inputs_do_not_warn(lenet, digits):
    x, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lenet.predict(x)
        lenet.predict(x.astype(np.float64))
        lenet.evaluate(x, y.astype(np.uint8))  # integer labels are no images
        moons = regnet.zoo.load("mlp-moons")
        moons.predict(np.array([[0, 1], [1, 0]], np.int64))  # integer features of no image rank


def test_predict_takes_one_sample_without_the_batch_axis(lenet, digits):
    x, _ = digits
    one = lenet.predict(x[3])
    assert x[3].shape == (1, 28, 28) and one.shape == (1, 10)
    np.testing.assert_allclose(one, lenet.predict(x[3:4]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(lenet.predict_on_batch(x[3]), one, rtol=1e-6, atol=1e-7)
    with pytest.raises(regnet.DataError, match=r"reshape\(1, 1, 28, 28\)"):
        lenet.predict(x[3, 0])
    with pytest.raises(regnet.DataError, match="a single sample; add the batch axis"):
        lenet.evaluate(
            x[3], np.zeros(1, np.int64)
        )  # evaluate and fit take batches only  # (28, 28): neither a sample nor a batch of this model's inputs


# -- regnet plugins: aliases listed, no hidden flag ----------------------------------------------
def test_plugins_lists_aliases_and_has_no_hidden_flag(capsys):
    code, out, _ = run(capsys, ["plugins"])
    assert code == 0 and "case-insensitive" in out.splitlines()[0]
    assert "Conv2D (also Conv2d)" in out and "Dense (also Linear)" in out
    assert "cosine (also CosineAnnealingLR, CosineDecay)" in out
    report = regnet.registry.plugin_report()
    dense = next(c for c in report["layers"]["components"] if c["name"] == "Dense")
    assert dense["aliases"] == ["Linear"]
    code, _, err = run(capsys, ["plugins", "--all"])  # was accepted and did nothing
    assert code == 2 and "--all" in err
    code, out, _ = run(capsys, ["plugins", "--help"])
    assert "aliases" in out and "case-insensitive" in out


def test_the_readme_documents_aliases_and_case():
    spec_section = (ROOT / "README.md").read_text().split("## The JSON spec")[1].split("\n## ")[0]
    assert "case-insensitive" in spec_section and "Conv2d" in spec_section and "alias" in spec_section
    assert "regnet plugins [--all]" not in (ROOT / "README.md").read_text()


# -- Keras's schedule fields --------------------------------------------------------------------
KERAS_TWINS = {
    "ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5},
    "PolynomialDecay": {"initial_learning_rate": 0.1, "decay_steps": 10, "end_learning_rate": 0.01},
    "CosineDecay": {"initial_learning_rate": 0.1, "decay_steps": 10, "alpha": 0.1},
    "CosineDecayRestarts": {"initial_learning_rate": 0.1, "first_decay_steps": 10},
}


@pytest.mark.parametrize("name", sorted(KERAS_TWINS))
def test_schedules_take_keras_field_names(name):
    keras = regnet.schedules.get({"type": name, **KERAS_TWINS[name]})
    own = {"initial_learning_rate": "initial", "end_learning_rate": "final"}
    native = regnet.schedules.get({"type": name, **{own.get(k, k): v for k, v in KERAS_TWINS[name].items()}})
    assert keras == native and [keras(s) for s in (0, 5, 10, 30)] == [native(s) for s in (0, 5, 10, 30)]
    assert keras(0) == pytest.approx(0.1)
    config = keras.get_config()
    assert "initial" in config and "initial_learning_rate" not in config  # saved under regnet's names
    with pytest.raises(regnet.ConfigError, match="not both"):
        regnet.schedules.get({"type": name, "initial": 0.2, **KERAS_TWINS[name]})


def test_keras_names_in_compile_and_the_schedule_field_list():
    model = regnet.Model.from_spec(MLP_2D, seed=0)
    rate = {"type": "CosineDecay", "initial_learning_rate": 0.05, "decay_steps": 100}
    model.compile(optimizer={"type": "sgd", "learning_rate": rate})
    assert model.training_config()["optimizer"]["learning_rate"]["initial"] == 0.05
    with pytest.raises(regnet.ConfigError, match="also initial_learning_rate for initial"):
        regnet.schedules.get({"type": "cosine", "initial_lr": 0.1, "decay_steps": 10})
    with pytest.raises(regnet.ConfigError, match="has no field 'initial_learning_rate'"):
        regnet.schedules.get({"type": "step", "initial_learning_rate": 0.1, "step_size": 10})  # no Keras twin


# -- a training loop by hand ----------------------------------------------------------------------
def loop_block(text):
    (block,) = [b for b in python_blocks(text) if "loss_and_grad" in b]
    return block


def test_the_custom_loop_of_the_readme_runs_and_matches_the_training_guide(tmp_path, monkeypatch, capsys):
    readme = loop_block((ROOT / "README.md").read_text())
    guide = loop_block((ROOT / "docs" / "training.md").read_text())  # tests/test_docs.py runs the guide
    assert guide.strip() in readme  # the README adds only the imports
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    exec(compile(readme, "<README custom loop>", "exec"), namespace)
    net, images, labels = namespace["net"], namespace["test_images"], namespace["test_labels"]
    assert net.optimizer.iterations == 2 * (len(namespace["images"]) // 64)
    assert net.evaluate(images, labels)["accuracy"] > 0.85
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_loss_and_grad_is_the_step_fit_takes(digits):
    x, y = digits
    spec = {
        "input_shape": [1, 28, 28],
        "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}],
    }
    model = regnet.Model.from_spec(spec, seed=0).compile(optimizer="sgd")
    loss, _ = regnet.training.compute_gradients(model, x, y)
    reference = {k: g.copy() for k, g in model.grads.items()}
    for logits in (False, True):
        value, grad = model.loss_and_grad(model.forward(x, training=True, logits=logits), y)
        model.backward(grad, input_grad=False)
        assert value == pytest.approx(loss, rel=1e-6)
        for k, g in model.grads.items():
            np.testing.assert_allclose(g, reference[k], rtol=1e-4, atol=1e-6)
    weights = np.linspace(0.5, 1.5, len(x))
    value, _ = model.loss_and_grad(model.forward(x), y, sample_weight=weights)
    assert value == pytest.approx(model.evaluate(x, y, sample_weight=weights)["loss"], rel=1e-5)
    with pytest.raises(regnet.DataError):
        model.loss_and_grad(model.forward(x), y + 10)  # targets checked as fit checks them
    with pytest.raises(regnet.ConfigError, match="not compiled"):
        regnet.Model.from_spec(spec).loss_and_grad(model.forward(x), y)

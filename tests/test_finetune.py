"""Fine-tuning: frozen layers (no updates, no optimizer state, BatchNorm on its running statistics),
weights taken by layer name from a file or the zoo, the CLI's --init-from/--freeze, and a zoo model
fine-tuned on a new task beating training from scratch."""

import json
from pathlib import Path

import numpy as np
import pytest

import regnet
from regnet import ConfigError, Model, WeightsMismatchError
from regnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
LENET = json.loads((ROOT / "model_zoo" / "specs" / "lenet5-mnist.json").read_text())
SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "a", "units": 8, "activation": "relu"},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Dense", "name": "b", "units": 8, "activation": "relu", "trainable": False},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def copy_weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_frozen_layers_get_no_updates_and_no_optimizer_slots(tmp_path):
    model = Model.from_spec(SPEC, seed=0).compile(optimizer="adam")
    model.get_layer("a").trainable = False
    before = copy_weights(model)
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    after = model.state_dict()
    for k in ("a/kernel", "a/bias", "b/kernel", "b/bias"):
        assert after[k].tobytes() == before[k].tobytes(), k
    for k in ("bn/gamma", "out/kernel"):
        assert not np.array_equal(after[k], before[k]), k
    slots = {k.partition("/")[2] for k in model.optimizer.state_dict() if k != "iterations"}
    assert slots == {"bn/gamma", "bn/beta", "out/kernel", "out/bias"}
    assert "trainable" not in model.to_spec()["layers"][1]
    assert model.to_spec()["layers"][0]["trainable"] is False
    model.save(tmp_path / "m.h5")
    loaded = regnet.load(tmp_path / "m.h5")
    assert [layer.trainable for layer in loaded.layers] == [False, True, False, True]
    loaded.fit(X, Y, epochs=1, verbose=0)  # resumes with the same layers frozen
    assert loaded.state_dict()["a/kernel"].tobytes() == before["a/kernel"].tobytes()


def _summary(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines[0]


def test_summary_counts_trainable_and_frozen_parameters(capsys):
    model = Model.from_spec(SPEC)
    text = _summary(model)
    # a 40, bn 16 + 16 running statistics, b 72 (frozen), out 27
    assert "Total params: 171 (trainable 83, non-trainable 88)" in text
    assert "b (Dense frozen)" in text and "(N, 8)" in text and "Input shape: (N, 4)" in text
    model.freeze()
    assert "(trainable 0, non-trainable 171)" in _summary(model)
    model.unfreeze("b")
    assert "(trainable 72, non-trainable 99)" in _summary(model)
    assert model.summary() is None  # printed, as Keras does
    assert capsys.readouterr().out == _summary(model) + "\n"


def test_a_frozen_batchnorm_normalises_with_its_running_statistics_and_keeps_them():
    bn = Model.from_spec({"input_shape": [3], "layers": [{"type": "BatchNorm", "name": "bn", "trainable": False}]})
    layer = bn.get_layer("bn")
    layer.buffers["moving_mean"][...] = [1.0, 2.0, 3.0]
    layer.buffers["moving_variance"][...] = [4.0, 1.0, 0.25]
    x = RNG.standard_normal((8, 3)).astype(np.float32) * 5
    out = bn.forward(x, training=True)
    np.testing.assert_allclose(out, bn.forward(x, training=False))
    np.testing.assert_allclose(out, (x - [1, 2, 3]) / np.sqrt(np.array([4, 1, 0.25]) + 1e-3), rtol=1e-5)
    assert layer.buffers["moving_mean"].tolist() == [1.0, 2.0, 3.0]
    layer.trainable = True
    bn.forward(x, training=True)
    assert layer.buffers["moving_mean"].tolist() != [1.0, 2.0, 3.0]


def test_backward_stops_below_the_lowest_trainable_layer(monkeypatch):
    model = Model.from_spec(LENET, seed=0).compile(optimizer="sgd").freeze("c1", "c3")
    calls = []
    for name in ("c1", "c3", "f5"):
        layer = model.get_layer(name)
        original = layer.backward
        monkeypatch.setattr(layer, "backward", lambda g, _n=name, _o=original, **kw: (calls.append(_n), _o(g, **kw))[1])
    model.fit(np.zeros((4, 1, 28, 28), np.float32), np.zeros(4, np.int64), verbose=0)
    assert calls == ["f5"]


def test_weights_from_a_file_take_layers_by_name_and_new_layers_keep_theirs(tmp_path):
    trained = Model.from_spec(SPEC, seed=1).compile()
    trained.fit(X, Y, epochs=1, verbose=0)
    trained.save(tmp_path / "t.h5")
    spec = json.loads(json.dumps(SPEC))
    spec["layers"][-1] = {"type": "Dense", "name": "new_head", "units": 2, "activation": "softmax"}
    fresh = Model.from_spec(spec, seed=5)
    model = Model.from_spec(spec, seed=5, weights_from=tmp_path / "t.h5")
    for k in ("a/kernel", "bn/moving_mean", "b/bias"):
        assert model.state_dict()[k].tobytes() == trained.state_dict()[k].tobytes(), k
    assert model.state_dict()["new_head/kernel"].tobytes() == fresh.state_dict()["new_head/kernel"].tobytes()
    assert sorted(model.weights_report.skipped) == ["out/bias", "out/kernel"]


def test_mismatched_shapes_are_refused_unless_skipped(tmp_path):
    Model.from_spec(SPEC, seed=1).save_weights(tmp_path / "w.h5")
    spec = json.loads(json.dumps(SPEC))
    spec["layers"][-1]["units"] = 5
    with pytest.raises(WeightsMismatchError, match="'weights/out/kernel': file has shape \\[8, 3\\]"):
        Model.from_spec(spec, weights_from=tmp_path / "w.h5")
    with pytest.warns(UserWarning, match="kept the model's own weights"):
        model = Model.from_spec(spec, seed=2, weights_from=tmp_path / "w.h5", skip_mismatch=True)
    assert model.state_dict()["out/kernel"].shape == (8, 5)
    other = {"input_shape": [4], "layers": [{"type": "Dense", "name": "zz", "units": 3}]}
    with pytest.raises(WeightsMismatchError, match="no tensor of the file has a name of the model"):
        Model.from_spec(other, weights_from=tmp_path / "w.h5")


def test_freezing_an_unknown_layer_names_the_close_ones_and_freezes_nothing():
    model = Model.from_spec(LENET)
    with pytest.raises(ConfigError, match="no layer named 'c2'; did you mean .*'c1'.*the layers are c1, s2, c3"):
        model.freeze("c1", "c2")
    assert all(layer.trainable for layer in model.layers)
    with pytest.raises(ConfigError, match="field 'trainable'"):
        model.get_layer("c1").trainable = "no"


def mnist_halves():
    (x, y), (xt, yt) = regnet.datasets.mnist(sample=True)  # the sample bundled with the package
    return (x, (y >= 5).astype(np.int64)), (xt, (yt >= 5).astype(np.int64))


def test_a_fine_tuned_zoo_lenet_beats_training_from_scratch_on_a_new_task():
    """Digits 0-4 against 5-9 with 200 training images and two epochs: LeNet-5 from the zoo with a
    new two-class head and frozen convolutions, against the same network from scratch."""
    (x, y), (xt, yt) = mnist_halves()
    spec = json.loads(json.dumps(LENET))
    spec["layers"][-1] = {"type": "Dense", "name": "head", "units": 2, "activation": "softmax"}
    tuned = Model.from_spec(spec, seed=0, weights_from="zoo:lenet5-mnist").freeze("c1", "c3")
    scratch = Model.from_spec(spec, seed=0)
    accuracy = {}
    for name, model in (("tuned", tuned), ("scratch", scratch)):
        model.compile(optimizer={"type": "adam", "learning_rate": 1e-3})
        model.fit(x[:200], y[:200], epochs=2, batch_size=32, seed=0, verbose=0)
        accuracy[name] = model.evaluate(xt, yt)["accuracy"]
    print(f"\ndigits 0-4 against 5-9, 200 training images: test accuracy {accuracy}")
    assert accuracy["tuned"] > 0.9 and accuracy["tuned"] > accuracy["scratch"] + 0.1, accuracy


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_trains_from_a_zoo_model_with_frozen_layers(tmp_path, capsys):
    spec = json.loads(json.dumps(LENET))
    spec["layers"][-1] = {"type": "Dense", "name": "head", "units": 10, "activation": "softmax"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "tuned.h5"
    argv = [
        "train",
        str(tmp_path / "spec.json"),
        "--data",
        "mnist-sample",
        "--epochs",
        "1",
        "--validation",
        "none",
        "--quiet",
    ]
    code, text, err = run(capsys, [*argv, "--init-from", "lenet5-mnist", "--freeze", "c1, c3", "--out", str(out)])
    assert code == 0, err
    assert "trained 1 epoch in" in text
    model, zoo = regnet.load(out), regnet.zoo.load("lenet5-mnist")
    assert [layer.name for layer in model.layers if not layer.trainable] == ["c1", "c3"]
    for k in ("c1/kernel", "c3/bias"):
        assert model.state_dict()[k].tobytes() == zoo.state_dict()[k].tobytes()
    assert model.state_dict()["f5/kernel"].tobytes() != zoo.state_dict()["f5/kernel"].tobytes()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--freeze", "c1,c9"], "no layer named 'c9'"),
        (["--init-from", "lenet6-mnist"], "no zoo model 'lenet6-mnist'; did you mean 'lenet5-mnist'"),
        (["--out", "/nonexistent-dir/m.h5"], "the directory /nonexistent-dir does not exist"),
    ],
)
def test_cli_refuses_bad_fine_tuning_options_before_training(tmp_path, capsys, extra, fragment):
    argv = ["train", str(ROOT / "model_zoo" / "specs" / "lenet5-mnist.json"), "--data", "mnist-sample", "--quiet"]
    code, text, err = run(capsys, [*argv, "--out", str(tmp_path / "m.h5"), *extra])
    assert code == 1 and fragment in err and "epoch" not in err and text == ""

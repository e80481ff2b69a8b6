"""The ``regnet`` command line, run in-process through ``main`` (and once as the console script)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import regnet
from regnet import schedules
from regnet.cli import main
from regnet.datasets import idx, moons, sources
from regnet.datasets.augment import random_shift, shift

MLP_2D = {
    "format": "regnet.model",
    "version": 1,
    "input_shape": [2],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 16, "activation": "relu"},
        {"type": "Dense", "name": "output", "units": 2, "activation": "softmax"},
    ],
}
LINEAR_MNIST = {
    "format": "regnet.model",
    "version": 1,
    "input_shape": [1, 28, 28],
    "layers": [{"type": "Flatten"}, {"type": "Dense", "name": "output", "units": 10, "activation": "softmax"}],
}


@pytest.fixture
def spec_2d(tmp_path):
    path = tmp_path / "mlp.json"
    path.write_text(json.dumps(MLP_2D))
    return path


@pytest.fixture(scope="module")
def moons_model(tmp_path_factory):
    """A small model trained by the command line on moons (shared by the read-only tests)."""
    folder = tmp_path_factory.mktemp("moons")
    spec = folder / "mlp.json"
    spec.write_text(json.dumps(MLP_2D))
    out = folder / "moons.h5"
    argv = [
        "train",
        str(spec),
        "--data",
        "moons:noise=0.05",
        "--epochs",
        "5",
        "--batch-size",
        "32",
        "--lr",
        "0.02",
        "--seed",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    return out, argv


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    spec = folder / "linear.json"
    spec.write_text(json.dumps(LINEAR_MNIST))
    out = folder / "linear.h5"
    assert (
        main(
            [
                "train",
                str(spec),
                "--data",
                "mnist-sample",
                "--epochs",
                "1",
                "--batch-size",
                "100",
                "--seed",
                "0",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regnet: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


# -- train ------------------------------------------------------------------------------------------
def test_train_saves_model_history_and_command(moons_model):
    out, argv = moons_model
    model = regnet.load(out)
    assert model.epoch == 5 and len(model.history) == 5
    assert all("val_accuracy" in h and "loss" in h for h in model.history)
    x, y = moons(noise=0.05)[1]
    acc = model.evaluate(x, y)["accuracy"]
    assert acc > 0.85 and model.history[-1]["val_accuracy"] > 0.85  # validated on held-out training data
    meta = regnet.io.read_metadata(out)
    assert meta["command"] == "regnet " + " ".join(argv)
    assert meta["test_accuracy"] == pytest.approx(acc)
    assert meta["data"] == "moons:noise=0.05"


def test_train_is_reproducible(spec_2d, tmp_path, capsys):
    outs = []
    for name in ("a.h5", "b.h5"):
        argv = [
            "train",
            str(spec_2d),
            "--data",
            "circles:margin=0.02",
            "--epochs",
            "2",
            "--seed",
            "4",
            "--lr-schedule",
            "cosine",
            "--warmup",
            "0.5",
            "--out",
            str(tmp_path / name),
            "--quiet",
        ]
        assert main(argv) == 0
        outs.append(regnet.load(tmp_path / name).state_dict())
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k])
    assert "saved" in capsys.readouterr().out


def test_train_progress_on_stderr(spec_2d, tmp_path, capsys):
    code, out, err = run(
        capsys, ["train", str(spec_2d), "--data", "moons", "--epochs", "2", "--out", str(tmp_path / "m.h5")]
    )
    assert code == 0
    assert "epoch 1/2" in err and "epoch 2/2" in err and "val_accuracy" in err
    assert "test accuracy" in out


def test_train_options(spec_2d, tmp_path, capsys):
    out = tmp_path / "m.h5"
    code, _, _ = run(
        capsys,
        [
            "train",
            str(spec_2d),
            "--data",
            "spirals",
            "--epochs",
            "2",
            "--optimizer",
            "sgd",
            "--momentum",
            "0.9",
            "--weight-decay",
            "1e-4",
            "--lr",
            "0.05",
            "--lr-schedule",
            "exponential",
            "--lr-decay",
            "0.5",
            "--validation",
            "0.2",
            "--no-optimizer-state",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert code == 0
    model = regnet.load(out)
    assert type(model.optimizer).__name__ == "SGD" and model.optimizer.momentum == 0.9
    assert model.optimizer.state_dict().keys() == {"iterations"}
    code, _, _ = run(
        capsys,
        [
            "train",
            str(spec_2d),
            "--data",
            "moons",
            "--epochs",
            "1",
            "--validation",
            "none",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert code == 0 and "val_loss" not in regnet.load(out).history[-1]


def test_train_with_augmentation(mnist_model, tmp_path, capsys):
    spec = tmp_path / "linear.json"
    spec.write_text(json.dumps(LINEAR_MNIST))
    out = tmp_path / "aug.h5"
    code, stdout, _ = run(
        capsys,
        [
            "train",
            str(spec),
            "--data",
            "mnist-sample",
            "--epochs",
            "2",
            "--augment",
            "2",
            "--batch-size",
            "250",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert code == 0
    model = regnet.load(out)
    assert model.epoch == 2 and len(model.history) == 2


# -- evaluate / predict / summary -------------------------------------------------------------------
def test_evaluate_prints_report(moons_model, capsys):
    out, _ = moons_model
    code, text, _ = run(capsys, ["evaluate", str(out)])  # data taken from the file's metadata
    assert code == 0
    model = regnet.load(out)
    x, y = moons(noise=0.05)[1]
    pred = model.predict(x).argmax(axis=1)
    assert f"accuracy: {np.mean(pred == y):.4f} ({int(np.sum(pred == y))}/{len(y)})" in text
    assert "confusion matrix" in text and "per-class accuracy" in text
    confusion = np.zeros((2, 2), int)
    np.add.at(confusion, (y, pred), 1)
    rows = [line.split() for line in text.splitlines()[-2:]]
    assert [[int(v) for v in r[1:]] for r in rows] == confusion.tolist()


def test_evaluate_on_other_data_and_train_split(moons_model, capsys):
    out, _ = moons_model
    code, text, _ = run(capsys, ["evaluate", str(out), "--data", "moons:n=400,noise=0.05,seed=9", "--split", "train"])
    assert code == 0 and "(300 samples)" in text


def test_predict_npy_print_and_out(moons_model, tmp_path, capsys):
    out, _ = moons_model
    x = moons(noise=0.05)[1][0][:7]
    np.save(tmp_path / "x.npy", x)
    code, text, _ = run(capsys, ["predict", str(out), str(tmp_path / "x.npy")])
    assert code == 0
    lines = text.strip().splitlines()
    expected = regnet.load(out).predict(x)
    assert len(lines) == 7
    assert [int(line.split()[1]) for line in lines] == expected.argmax(axis=1).tolist()
    code, _, _ = run(capsys, ["predict", str(out), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.npy")])
    assert code == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-6)
    np.savez(tmp_path / "x.npz", a=x, b=x)
    code, _, err = run(capsys, ["predict", str(out), str(tmp_path / "x.npz")])
    assert_one_line_error(code, err, "--key")
    code, text, _ = run(capsys, ["predict", str(out), str(tmp_path / "x.npz"), "--key", "b", "--raw"])
    assert code == 0 and len(text.strip().splitlines()) == 7 and len(text.splitlines()[0].split()) == 3


@pytest.mark.parametrize("compress", [False, True])
def test_predict_idx_images(mnist_model, tmp_path, capsys, compress):
    images = sources.load("mnist-sample")[1][0][:5]
    raw = np.rint(images[:, 0] * 255).astype(np.uint8)
    path = tmp_path / ("images-idx3-ubyte" + (".gz" if compress else ""))
    idx.write(path, raw, compress=compress)
    code, text, _ = run(capsys, ["predict", str(mnist_model), str(path)])
    assert code == 0
    expected = regnet.load(mnist_model).predict(images).argmax(axis=1)
    assert [int(line.split()[1]) for line in text.strip().splitlines()] == expected.tolist()


def test_summary_of_spec_and_model(moons_model, spec_2d, capsys):
    code, text, _ = run(capsys, ["summary", str(spec_2d)])
    assert code == 0 and "Total params: 82" in text
    out, argv = moons_model
    code, text, _ = run(capsys, ["summary", str(out)])
    assert code == 0 and "Trained epochs: 5" in text and "Last epoch:" in text
    assert "regnet " + " ".join(argv) in text


# -- zoo and plugins --------------------------------------------------------------------------------
def make_zoo(folder, model_file):
    folder.mkdir()
    (folder / "weights").mkdir()
    target = folder / "weights" / "m.h5"
    shutil.copy(model_file, target)
    from regnet.datasets.download import sha256_file

    entry = {
        "name": "toy-moons",
        "task": "classification",
        "dataset": "moons:noise=0.05",
        "spec": "m.json",
        "weights": "weights/m.h5",
        "sha256": sha256_file(target),
        "size": target.stat().st_size,
        "params": 82,
        "test_accuracy": 1.0,
        "train_seconds": 1.0,
        "command": "regnet train ...",
    }
    (folder / "manifest.json").write_text(json.dumps({"format": "regnet.zoo", "version": 1, "models": [entry]}))
    return target


def test_zoo_commands(moons_model, tmp_path, monkeypatch, capsys):
    target = make_zoo(tmp_path / "zoo", moons_model[0])
    monkeypatch.setenv("REGNET_ZOO", str(tmp_path / "zoo"))
    code, text, _ = run(capsys, ["zoo", "list"])
    assert code == 0 and "toy-moons" in text and "100.00 %" in text
    code, text, _ = run(capsys, ["zoo", "info", "toy-moons"])
    assert code == 0 and json.loads(text)["dataset"] == "moons:noise=0.05"
    code, text, _ = run(capsys, ["zoo", "evaluate", "toy-moons"])
    assert code == 0 and "sha256 verified" in text and "(250 samples)" in text
    code, _, err = run(capsys, ["zoo", "info", "toy-moon"])
    assert_one_line_error(code, err, "toy-moons")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    code, _, err = run(capsys, ["zoo", "evaluate", "toy-moons"])
    assert_one_line_error(code, err, "SHA-256", "not loaded")


def test_plugins_lists_every_kind_and_every_component(capsys):
    code, text, _ = run(capsys, ["plugins"])
    assert code == 0
    for kind in ("layers", "activations", "losses", "optimizers", "initializers", "schedules", "metrics"):
        assert f"{kind} (regnet.{kind})" in text
    assert "Conv2D" in text and "Adam" in text and "cosine" in text and "f1" in text
    assert "RMSNorm" in text and "regnet-extras" in text
    code, only, _ = run(capsys, ["plugins", "--plugins-only"])
    assert code == 0 and "Conv2D" not in only and "RMSNorm" in only


# -- errors -----------------------------------------------------------------------------------------
def test_missing_spec_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, ["train", str(tmp_path / "nope.json"), "--data", "moons"])
    assert_one_line_error(code, err, "nope.json")


@pytest.mark.parametrize(
    "argv_tail, fragment",
    [
        (["--data", "nosuchdata"], "unknown data 'nosuchdata'"),
        (["--data", "moons:n=abc"], "not a number"),
        (["--data", "moons:bogus=1"], "bogus"),
        (["--data", "moons", "--optimizer", "adamm"], "adamm"),
        (["--data", "moons", "--optimizer", "adam", "--momentum", "0.9"], "momentum"),
        (["--data", "moons", "--validation", "2"], "--validation"),
        (["--data", "moons", "--augment", "2"], "--augment"),
        (["--data", "mnist-sample"], "shape"),
    ],
)
def test_train_errors_are_one_line(spec_2d, tmp_path, capsys, argv_tail, fragment):
    code, _, err = run(
        capsys, ["train", str(spec_2d), "--epochs", "1", "--out", str(tmp_path / "m.h5"), "--quiet", *argv_tail]
    )
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "m.h5").exists()


def test_unreadable_model_files(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    for argv in (
        ["evaluate", str(bad), "--data", "moons"],
        ["summary", str(bad)],
        ["predict", str(bad), str(bad)],
        ["evaluate", str(tmp_path / "missing.h5")],
    ):
        code, _, err = run(capsys, argv)
        assert_one_line_error(code, err)


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(regnet.RegnetError):
        main(["train", str(tmp_path / "nope.json"), "--debug"])


@pytest.mark.parametrize(
    "argv",
    [[], ["train"], ["train", "s.json", "--epochs", "0"], ["frobnicate"], ["zoo"], ["train", "s.json", "--lr", "nan"]],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("regnet: error: ") and err.count("\n") == 1 and "--help" in err


def test_console_script(spec_2d, tmp_path):
    exe = Path(sys.executable).with_name("regnet")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "regnet"]
    ok = subprocess.run([*cmd, "summary", str(spec_2d)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "Total params: 82" in ok.stdout
    bad = subprocess.run([*cmd, "summary", str(tmp_path / "none.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("regnet: error:") and "Traceback" not in bad.stderr


# -- pieces -----------------------------------------------------------------------------------------
def test_cli_schedule_flags_map_onto_schedules():
    def rates(kind, lr, steps_per_epoch, epochs, n, **kw):
        s = schedules.get(schedules.from_cli(kind, lr, steps_per_epoch, epochs, **kw))
        return [s(i) for i in range(n)]

    cos = rates("cosine", 0.1, 10, 2, 21, warmup_epochs=1)
    assert cos[0] == pytest.approx(0.01) and cos[9] == pytest.approx(0.1)
    assert cos[10] == pytest.approx(0.1) and cos[15] == pytest.approx(0.05) and cos[20] == pytest.approx(0)
    assert rates("linear", 1.0, 4, 1, 5) == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    assert rates("exponential", 1.0, 5, 3, 11, decay=0.5)[10] == pytest.approx(0.25)
    assert schedules.from_cli("constant", 0.3, 5, 3) == 0.3  # a plain number: no schedule at all
    assert rates("constant", 0.3, 5, 3, 13, warmup_epochs=2)[12] == 0.3


def test_train_saves_the_schedule_in_the_training_config(spec_2d, tmp_path, capsys):
    out = tmp_path / "m.h5"
    argv = ["train", str(spec_2d), "--data", "moons", "--epochs", "2", "--lr-schedule", "cosine", "--warmup", "0.5"]
    code, _, _ = run(capsys, [*argv, "--out", str(out), "--quiet"])
    assert code == 0
    model = regnet.load(out)
    rate = model.training_config()["optimizer"]["learning_rate"]
    assert rate["type"] == "warmup" and rate["schedule"]["type"] == "cosine"
    assert model.optimizer.schedule(model.optimizer.iterations) == pytest.approx(0.0)  # decayed to 0 at the end


def test_shift_moves_pixels_and_fills_zeros():
    x = np.arange(2 * 1 * 4 * 5, dtype=np.float32).reshape(2, 1, 4, 5) + 1
    s = shift(x, 1, -2)
    np.testing.assert_array_equal(s[:, :, 1:, :3], x[:, :, :3, 2:])
    assert (s[:, :, 0] == 0).all() and (s[:, :, :, 3:] == 0).all()
    np.testing.assert_array_equal(shift(x, 0, 0), x)


def test_random_shift_per_image():
    rng = np.random.default_rng(0)
    x = np.zeros((200, 1, 9, 9), np.float32)
    x[:, :, 4, 4] = 1
    out = random_shift(x, 2, rng)
    assert out.shape == x.shape and out.dtype == np.float32
    pos = np.argwhere(out[:, 0] == 1)
    assert len(pos) == 200  # each image keeps its one pixel, moved by at most 2
    assert np.abs(pos[:, 1:] - 4).max() == 2
    assert len({tuple(p[1:]) for p in pos}) == 25  # all 25 offsets occur
    again = random_shift(x, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)


def test_sources_npz(tmp_path):
    (x, y), (xt, yt) = moons(n=100)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    (a, b), (c, d) = sources.load(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(d, yt)
    np.savez(tmp_path / "e.npz", x_train=x)
    with pytest.raises(regnet.DataError, match="lacks y_train"):
        sources.load(str(tmp_path / "e.npz"))

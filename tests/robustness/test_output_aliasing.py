"""Outputs that are inputs, and outputs over files of another kind: every command that writes a
file refuses a target that is one of its inputs (the same file, however it is spelled) and a
model (or ONNX, or .npy) output over an existing file of another kind; the file is left untouched."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet
from regnet import ConfigError, FileFormatError, Model, atomic, cli, io
from tests.specs import MLP

SPEC = {
    "input_shape": [2],
    "layers": [
        {"type": "Dense", "name": "h", "units": 4, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 2, "activation": "softmax"},
    ],
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    Model.from_spec(SPEC, seed=0).save(tmp_path / "model.h5")
    (tmp_path / "sub").mkdir()
    return tmp_path


def run(*argv):
    return cli.main([str(a) for a in argv])


def untouched(path, before, capsys, words="same file"):
    err = capsys.readouterr().err
    assert err.startswith("regnet: error: ") and words in err and err.count("\n") == 1, err
    assert Path(path).read_bytes() == before


def spellings(work, name):
    os.symlink(name, work / f"link-{name}")
    return [name, f"./{name}", str(work / name), f"sub/../{name}", f"link-{name}", f"./sub/../link-{name}"]


@pytest.mark.parametrize("index", range(6))
def test_train_refuses_its_spec_as_output(work, capsys, index):
    before = (work / "spec.json").read_bytes()
    out = spellings(work, "spec.json")[index]
    assert run("train", "spec.json", "--data", "moons", "--epochs", "1", "--quiet", "--out", out) == 1
    untouched(work / "spec.json", before, capsys)


def test_train_refuses_a_hard_link_to_its_spec(work, capsys):
    os.link(work / "spec.json", work / "hard.h5")
    before = (work / "spec.json").read_bytes()
    assert run("train", "spec.json", "--data", "moons", "--epochs", "1", "--quiet", "--out", "hard.h5") == 1
    untouched(work / "spec.json", before, capsys)


def test_train_refuses_its_init_from_and_data_files(work, capsys):
    before = (work / "model.h5").read_bytes()
    argv = ["train", "spec.json", "--data", "moons", "--epochs", "1", "--quiet"]
    assert run(*argv, "--init-from", "model.h5", "--out", "./model.h5") == 1
    untouched(work / "model.h5", before, capsys)
    import numpy as np

    np.savez(work / "data.npz", x_train=np.zeros((8, 2), np.float32), y_train=np.zeros(8, np.int64))
    data = (work / "data.npz").read_bytes()
    assert run("train", "spec.json", "--data", "data.npz", "--epochs", "1", "--quiet", "--out", "data.npz") == 1
    untouched(work / "data.npz", data, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["plot", "model.h5", "-o", "./model.h5"],
        ["evaluate", "model.h5", "--data", "moons", "--plot", "model.h5"],
        ["predict", "model.h5", "model.h5", "--out", "model.h5"],
        ["export", "model.h5", "model.h5"],
        ["export", "spec.json", "out.onnx", "--weights", "model.h5"],
    ],
)
def test_every_writing_command_refuses_its_input(work, capsys, argv):
    before = (work / "model.h5").read_bytes()
    if "out.onnx" in argv:  # the output is a link to the weights
        os.symlink("model.h5", work / "out.onnx")
    assert run(*argv) == 1
    untouched(work / "model.h5", before, capsys)


def test_import_refuses_its_onnx_file(work, capsys):
    pytest.importorskip("onnx")
    assert run("export", "model.h5", "m.onnx") == 0
    before = (work / "m.onnx").read_bytes()
    capsys.readouterr()
    assert run("import", "m.onnx", str(work / "m.onnx")) == 1
    untouched(work / "m.onnx", before, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "spec.json", "--data", "moons", "--epochs", "1", "--quiet", "--out", "picture.png"],
        ["import", "m.onnx", "picture.png"],
        ["export", "model.h5", "picture.png"],
        ["predict", "model.h5", "x.npy", "--out", "picture.png"],
    ],
)
def test_a_file_of_another_kind_is_not_replaced(work, capsys, argv):
    pytest.importorskip("onnx")
    import numpy as np

    np.save(work / "x.npy", np.zeros((2, 2), np.float32))
    assert run("export", "model.h5", "m.onnx") == 0
    capsys.readouterr()
    (work / "picture.png").write_bytes(PNG)
    assert run(*argv) == 1
    untouched(work / "picture.png", PNG, capsys, "left untouched")


def test_files_of_the_same_kind_are_replaced(work, capsys):
    pytest.importorskip("onnx")
    argv = ["train", "spec.json", "--data", "moons", "--epochs", "1", "--quiet", "--out", "model.h5"]
    assert run(*argv) == 0
    assert run("export", "model.h5", "m.onnx") == 0 and run("export", "model.h5", "m.onnx") == 0
    (work / "empty.h5").write_bytes(b"")
    assert run("import", "m.onnx", "empty.h5") == 0
    Model.from_spec(SPEC).save_weights(work / "weights.h5")
    assert run("import", "m.onnx", "weights.h5") == 0
    assert io.is_model_file(work / "weights.h5")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["./", "sub/../", "sub/./../", "link/"]), max_size=4), st.booleans())
def test_refuse_input_compares_files_not_strings(tmp_path, parts, absolute):
    (tmp_path / "sub").mkdir(exist_ok=True)
    if not (tmp_path / "link").exists():
        os.symlink(".", tmp_path / "link")
    (tmp_path / "in.json").write_text("{}")
    spelled = "".join(parts) + "in.json"
    out = os.path.join(tmp_path, spelled) if absolute else os.path.relpath(tmp_path / spelled)
    with pytest.raises(FileFormatError, match="same file"):
        atomic.refuse_input(out, {"the input": str(tmp_path / "in.json")})
    atomic.refuse_input(tmp_path / "other.json", {"the input": str(tmp_path / "in.json")})  # no file: fine


def test_csv_log_and_checkpoint_on_one_file_are_refused(tmp_path):
    import numpy as np

    model = Model.from_spec(MLP, seed=0).compile()
    x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)
    path = tmp_path / "run.h5"
    with pytest.raises(ConfigError, match="both write"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[regnet.ModelCheckpoint(path), regnet.CSVLogger(path)])
    model.save(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="HDF5 file"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[regnet.CSVLogger(path)])
    assert path.read_bytes() == before
    (tmp_path / "log.csv").write_text("epoch,loss\n")
    with pytest.raises(ConfigError, match="not a regnet model file"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[regnet.ModelCheckpoint(tmp_path / "log.csv")])
    assert (tmp_path / "log.csv").read_text() == "epoch,loss\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "spec.json", "--data", "moons", "--epochs", "1", "--quiet", "--out", "fifo"],
        ["predict", "model.h5", "x.npy", "--out", "fifo"],
        ["export", "model.h5", "fifo"],
        ["import", "m.onnx", "fifo"],
    ],
)
def test_the_checks_never_open_a_fifo(work, capsys, argv, time_limit):
    """Telling what an existing output is must not open a FIFO (that would block until a writer
    came): the save refuses it as a special file."""
    pytest.importorskip("onnx")
    import numpy as np

    np.save(work / "x.npy", np.zeros((2, 2), np.float32))
    assert run("export", "model.h5", "m.onnx") == 0
    capsys.readouterr()
    os.mkfifo(work / "fifo")
    with time_limit(60):
        assert run(*argv) == 1
    assert "FIFO" in capsys.readouterr().err

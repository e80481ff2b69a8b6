"""Mistakes a new user makes, answered in their words: a JSON spec where a trained model is expected,
a directory where a file is expected."""

import json
import shlex

import pytest

import regnet
from regnet.cli import main
from regnet.errors import DataError, FileFormatError

SPEC = {"input_shape": [2], "layers": [{"type": "Dense", "name": "out", "units": 2, "activation": "softmax"}]}


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "my spec.json"
    path.write_text(json.dumps(SPEC, indent=2))
    return path


def test_load_of_a_spec_says_train_it(spec):
    with pytest.raises(FileFormatError, match="is a model spec \\(JSON\\), not a trained model file") as info:
        regnet.load(spec)
    assert str(info.value).endswith(f"train it first with: regnet train {shlex.quote(str(spec))} --out model.h5")
    assert "signature" not in str(info.value)


@pytest.mark.parametrize("command", [["evaluate"], ["predict"], ["plot"], ["summary"]])
def test_commands_given_a_spec(spec, tmp_path, capsys, command):
    x = tmp_path / "x.npy"
    x.write_bytes(b"")
    argv = [*command, str(spec)] + ([str(x)] if command == ["predict"] else [])
    code = main(argv)
    err = capsys.readouterr().err
    if command == ["summary"]:  # summary takes specs too
        assert code == 0
        return
    assert code == 1 and "is a model spec (JSON)" in err and "regnet train" in err and "signature" not in err


def test_other_json_and_other_files(tmp_path):
    (tmp_path / "list.h5").write_text("[1, 2, 3]")
    with pytest.raises(FileFormatError, match="is a JSON file, not a regnet model file"):
        regnet.load(tmp_path / "list.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(FileFormatError, match="not a readable HDF5 file"):
        regnet.load(tmp_path / "text.h5")


def test_predict_on_a_directory(tmp_path, capsys):
    model = regnet.zoo.info("mlp-moons")["weights_path"]
    assert main(["predict", model, str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(DataError, match="is a directory"):
        regnet.datasets.read_inputs(tmp_path, (2,))

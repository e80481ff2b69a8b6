"""``regnet export`` and ``regnet import``."""

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")

import regnet
from regnet import zoo
from regnet.cli import main


def test_export_then_import_gives_the_same_model(tmp_path, capsys):
    info = zoo.info("cnn-mnist")
    onnx_path, h5_path = tmp_path / "cnn.onnx", tmp_path / "cnn.h5"
    assert main(["export", info["weights_path"], str(onnx_path), "--opset", "21"]) == 0
    assert "ONNX opset 21" in capsys.readouterr().out
    assert main(["import", str(onnx_path), str(h5_path)]) == 0
    out = capsys.readouterr().out
    assert "209,266 parameters" in out and "regnet" in out
    back, original = regnet.load(h5_path), zoo.load("cnn-mnist")
    assert back.to_spec()["layers"] == original.to_spec()["layers"]
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(back.predict(x), original.predict(x))
    assert regnet.io.read_metadata(h5_path)["imported_from"] == "cnn.onnx"


def test_export_from_a_spec_with_weights(tmp_path, capsys):
    info = zoo.info("mlp-moons")
    path = tmp_path / "moons.onnx"
    assert main(["export", info["spec_path"], str(path), "--weights", info["weights_path"]]) == 0
    assert "note" not in capsys.readouterr().err
    assert main(["import", str(path), str(tmp_path / "moons.h5")]) == 0
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    np.testing.assert_array_equal(regnet.load(tmp_path / "moons.h5").predict(x), zoo.load("mlp-moons").predict(x))
    assert main(["export", info["spec_path"], str(tmp_path / "fresh.onnx")]) == 0
    assert "no --weights given" in capsys.readouterr().err


def test_failures_are_one_line_and_write_nothing(tmp_path, capsys):
    info = zoo.info("mlp-moons")
    assert main(["export", info["weights_path"], str(tmp_path / "x.onnx"), "--opset", "9"]) == 1
    assert "opset must be an integer in [13," in capsys.readouterr().err
    (tmp_path / "bad.onnx").write_bytes(b"not onnx at all")
    assert main(["import", str(tmp_path / "bad.onnx"), str(tmp_path / "bad.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("regnet: error: ONNX file") and err.count("\n") == 1
    assert main(["export", info["weights_path"], str(tmp_path / "y.onnx"), "--opset", "seventeen"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]

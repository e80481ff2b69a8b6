"""The model zoo: every model loads, matches its hash and its recorded accuracy; tampering is caught."""

import hashlib
import importlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import regnet
import regnet.checkpoint
from regnet import zoo
from regnet.datasets import sources
from regnet.datasets.download import sha256_file
from regnet.errors import FileFormatError, IntegrityError, UnknownComponentError

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "model_zoo"
mnist_module = importlib.import_module("regnet.datasets.mnist")  # the package exports the function
# the full set where mnist() finds it ($REGNET_DATA, the user cache), else in ../shared/data
FULL_MNIST = mnist_module.locate([ROOT.parent / "shared" / "data"])
MANIFEST = json.loads((ZOO / "manifest.json").read_text())
NAMES = [e["name"] for e in MANIFEST["models"]]
EXPECTED = {"mlp-mnist", "lenet5-mnist", "cnn-mnist", "lstm-mnist", "vit-mnist", "mlp-moons", "mlp-circles"}


@pytest.fixture(autouse=True)
def real_zoo(monkeypatch):
    monkeypatch.delenv("REGNET_ZOO", raising=False)


def test_manifest_lists_the_zoo():
    builtin = [name for name in zoo.list() if zoo.info(name)["provider"]["distribution"] == "regnet"]
    assert set(builtin) == EXPECTED and builtin == sorted(NAMES)
    for name in NAMES:
        e = zoo.info(name)
        for key in zoo.REQUIRED:
            assert key in e, (name, key)
        assert e["command"].startswith("regnet train ")
        assert e["spec"] in e["command"] and e["weights"] in e["command"]
        assert f"--data {e['dataset']}" in e["command"]
        assert Path(e["spec_path"]).is_file() and Path(e["weights_path"]).is_file()
        assert e["size"] <= 4_000_000  # weights stay small
        assert 0 < e["train_seconds"] < 3600  # trained on a shared 2-core machine


def data_for(entry):
    if entry["dataset"] == "mnist":
        if FULL_MNIST is None:
            pytest.skip("full MNIST not found in $REGNET_DATA, the user cache or ../shared/data")
        return mnist_module.load_files(FULL_MNIST)[1]
    return sources.load(entry["dataset"], download=False)[1]


@pytest.mark.parametrize("name", NAMES)
def test_model_matches_manifest(name):
    e = zoo.info(name)
    assert sha256_file(e["weights_path"]) == e["sha256"]
    model = zoo.load(name)
    assert model.count_params() == e["params"]
    assert all(v.dtype == np.float32 for v in model.state_dict().values())
    spec = regnet.Model.from_spec(e["spec_path"]).to_spec()
    assert [layer["type"] for layer in spec["layers"]] == [layer["type"] for layer in model.to_spec()["layers"]]
    x, y = data_for(e)
    assert len(x) == e["test_samples"]
    acc = model.evaluate(x, y)["accuracy"]
    assert abs(100 * acc - 100 * e["test_accuracy"]) <= 0.05, (name, acc, e["test_accuracy"])


def test_recorded_accuracy_targets():
    acc = {e["name"]: e["test_accuracy"] for e in MANIFEST["models"]}
    assert acc["mlp-mnist"] >= 0.985
    assert acc["lenet5-mnist"] >= 0.992
    assert acc["cnn-mnist"] >= 0.994
    assert acc["lstm-mnist"] >= 0.985  # a digit read as a sequence of 28 rows
    assert acc["vit-mnist"] >= 0.98  # a sequence of 16 patches
    assert acc["mlp-moons"] == 1.0 and acc["mlp-circles"] == 1.0


def test_sequence_models_read_a_digit_as_a_sequence():
    """lstm-mnist steps through 28 rows of 28 pixels; vit-mnist attends over 16 patch tokens."""
    lstm = zoo.load("lstm-mnist")
    assert lstm.get_layer("rows").output_shape == (28, 28)
    assert type(lstm.get_layer("lstm")).__name__ == "LSTM" and lstm.get_layer("lstm").output_shape == (128,)
    vit = zoo.load("vit-mnist")
    assert vit.get_layer("tokens").output_shape == (16, 64)
    attention = [layer for layer in vit.layers if type(layer).__name__ == "MultiHeadAttention"]
    assert len(attention) == 2 and all(layer.output_shape == (16, 64) for layer in attention)


# -- tampering, on copies ---------------------------------------------------------------------------
@pytest.fixture
def zoo_copy(tmp_path, monkeypatch):
    """A copy of the zoo with the small models' files; loads must never reach the reader."""
    target = tmp_path / "zoo"
    (target / "weights").mkdir(parents=True)
    shutil.copytree(ZOO / "specs", target / "specs")
    shutil.copy(ZOO / "manifest.json", target / "manifest.json")
    for e in MANIFEST["models"]:
        if e["name"] in ("mlp-moons", "mlp-circles"):
            shutil.copy(ZOO / e["weights"], target / e["weights"])
    monkeypatch.setenv("REGNET_ZOO", str(target))
    return target


@pytest.fixture
def no_reading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a file that failed verification was opened")

    monkeypatch.setattr(regnet.checkpoint, "load", refuse)


def weights(zoo_copy, name):
    return zoo_copy / zoo.info(name)["weights"]


def test_copy_loads(zoo_copy):
    assert zoo.load("mlp-moons").count_params() == zoo.info("mlp-moons")["params"]


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_byte(zoo_copy, no_reading, where):
    path = weights(zoo_copy, "mlp-moons")
    data = bytearray(path.read_bytes())
    data[int(where * len(data)) if where != -1 else -1] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="mlp-moons.*SHA-256"):
        zoo.load("mlp-moons")


def test_truncated_file(zoo_copy, no_reading):
    path = weights(zoo_copy, "mlp-moons")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="truncated"):
        zoo.load("mlp-moons")


def test_extended_file(zoo_copy, no_reading):
    path = weights(zoo_copy, "mlp-moons")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError):
        zoo.load("mlp-moons")


def test_swapped_for_another_valid_model(zoo_copy, no_reading):
    """Another zoo model of the very same size still fails: the hash decides, not the format."""
    moons, circles = weights(zoo_copy, "mlp-moons"), weights(zoo_copy, "mlp-circles")
    shutil.copy(circles, moons)
    manifest = json.loads((zoo_copy / "manifest.json").read_text())
    for e in manifest["models"]:
        if e["name"] == "mlp-moons":
            e["size"] = moons.stat().st_size
    (zoo_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="SHA-256"):
        zoo.load("mlp-moons")


@pytest.fixture
def swapped_after_hashing(zoo_copy, monkeypatch, tmp_path):
    """Replace the mlp-moons file with another valid model (every weight 666) the moment its
    SHA-256 has been computed: what is then loaded must be what was hashed."""
    path = weights(zoo_copy, "mlp-moons")
    good = regnet.load(path).state_dict()
    evil = regnet.load(path)
    evil.load_state_dict({k: np.full_like(v, 666) for k, v in evil.state_dict().items()})
    evil.save(tmp_path / "evil.h5")
    real = hashlib.sha256
    swaps = []

    class HashThenSwap:  # the first digest taken (the zoo's check) swaps the file
        def __init__(self, *args):
            self.h = real(*args)

        def update(self, data):
            self.h.update(data)

        def hexdigest(self):
            digest = self.h.hexdigest()
            if not swaps:
                swaps.append(os.replace(tmp_path / "evil.h5", path))
            return digest

    monkeypatch.setattr(hashlib, "sha256", HashThenSwap)
    yield good
    assert swaps, "the file was never hashed"


def test_a_file_replaced_after_hashing_is_not_what_loads(swapped_after_hashing):
    loaded = zoo.load("mlp-moons").state_dict()
    assert all(np.array_equal(loaded[k], v) for k, v in swapped_after_hashing.items())


def test_weights_from_zoo_load_the_hashed_bytes(swapped_after_hashing):
    spec = json.loads((Path(zoo.info("mlp-moons")["spec_path"])).read_text())
    model = regnet.Model.from_spec(spec, weights_from="zoo:mlp-moons")
    loaded = model.state_dict()
    assert all(np.array_equal(loaded[k], v) for k, v in swapped_after_hashing.items())


def test_verified_reads_the_file_once_and_no_more_than_the_manifest_size(zoo_copy, monkeypatch):
    reads = []
    real_open = open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def fileno(self):
            return self.fh.fileno()

        def read(self, n=-1):
            reads.append(n)
            return self.fh.read(n)

    monkeypatch.setattr(zoo, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    data = zoo.verified("mlp-moons")
    size = zoo.info("mlp-moons")["size"]
    assert len(data.data) == size and reads == [size + 1]


def test_missing_file(zoo_copy):
    weights(zoo_copy, "mlp-moons").unlink()
    with pytest.raises(FileFormatError, match="mlp-moons"):
        zoo.load("mlp-moons")


def test_unknown_name(zoo_copy):
    with pytest.raises(UnknownComponentError, match="did you mean 'mlp-moons'"):
        zoo.info("mlp-moon")


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "regnet.zoo", "models": [{"name": "x"}]}'])
def test_malformed_manifest(zoo_copy, text):
    (zoo_copy / "manifest.json").write_text(text)
    with pytest.raises(FileFormatError, match="manifest"):
        zoo.list()

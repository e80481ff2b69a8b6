"""The format promises a ``sha256`` attribute on every JSON document and tensor: a file without
one is refused (``IntegrityError`` naming the dataset), unless the documented opt-out
``REGNET_ALLOW_MISSING_CHECKSUMS=1`` is set for a hand-made file."""

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet
from regnet import IntegrityError, Model
from tests.specs import MLP

#: every dataset a saved, trained model holds
DATASETS = [
    "model_spec",
    "training_config",
    "rng_state",
    "metadata/history",
    "metadata/components",
    "metadata/user",
    "weights/hidden/kernel",
    "weights/hidden/bias",
    "weights/out/kernel",
    "weights/out/bias",
]


def fresh():
    return Model.from_spec(MLP, seed=3).compile(optimizer={"type": "SGD", "momentum": 0.9})


@pytest.fixture
def saved(tmp_path):
    model = fresh()
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    model.fit(x, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path, "r") as f:
        optimizer = []
        f["optimizer"].visititems(
            lambda k, v: optimizer.append(f"optimizer/{k}") if isinstance(v, h5py.Dataset) else None
        )
    return path, optimizer


def strip(path, where, change):
    """Delete the ``sha256`` of ``where`` and, with ``change``, alter its value (a tensor: its first
    element; a JSON document: stays valid JSON)."""
    with h5py.File(path, "r+") as f:
        ds = f[where]
        del ds.attrs["sha256"]
        if change and ds.dtype.kind == "f":
            value = ds[()]
            value.reshape(-1)[0] += 1.0
            ds[...] = value


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_missing_checksum_is_refused(saved, data, tmp_path_factory):
    path, optimizer = saved
    copy = tmp_path_factory.mktemp("c") / "model.h5"
    copy.write_bytes(path.read_bytes())
    where = data.draw(st.sampled_from(DATASETS + optimizer), label="dataset")
    strip(copy, where, data.draw(st.booleans(), label="change"))
    read = regnet.io.read_metadata if where == "metadata/user" else regnet.load  # what reads it
    with pytest.raises(IntegrityError, match=rf"'{where}' has no sha256 attribute") as info:
        read(copy)
    assert str(copy) in str(info.value) and "REGNET_ALLOW_MISSING_CHECKSUMS" in str(info.value)


def test_every_reader_refuses_a_changed_tensor_without_checksum(saved):
    path, _ = saved
    strip(path, "weights/out/kernel", change=True)
    readers = [
        lambda: regnet.load(path),
        lambda: regnet.load(path, compile=False),
        lambda: fresh().load_weights(path),
        lambda: regnet.checkpoint.restore(fresh(), path),
        lambda: fresh().fit(np.zeros((4, 4), np.float32), np.zeros(4, np.int64), epochs=2, verbose=0, resume_from=path),
    ]
    for read in readers:
        with pytest.raises(IntegrityError, match="weights/out/kernel' has no sha256"):
            read()
    strip(path, "metadata/user", change=False)
    with pytest.raises(IntegrityError, match="metadata/user' has no sha256"):
        regnet.io.read_metadata(path)


def test_the_opt_out_loads_a_hand_made_file(saved, monkeypatch):
    path, _ = saved
    strip(path, "weights/out/kernel", change=True)
    strip(path, "model_spec", change=False)
    monkeypatch.setenv("REGNET_ALLOW_MISSING_CHECKSUMS", "1")
    model = regnet.load(path)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(model.get_layer("out").params["kernel"], f["weights/out/kernel"][()])
    monkeypatch.setenv("REGNET_ALLOW_MISSING_CHECKSUMS", "0")
    with pytest.raises(IntegrityError):
        regnet.load(path)

"""Hostile model files: external storage, links, virtual datasets, huge declarations, pickles,
wrong attribute types, cycles. Loading refuses them with a RegnetError and reads nothing."""

import json
import pickle
import tracemalloc

import h5py
import numpy as np
import pytest

import regnet
from regnet import FileFormatError, Model, RegnetError, WeightsMismatchError, io
from tests.specs import MLP as SPEC

SECRET = np.array([1.5, -2.5, 3.5], dtype=np.float32)  # "out/bias" shaped, so only the refusal stops it


@pytest.fixture
def saved(tmp_path):
    model = Model.from_spec(SPEC, seed=0).compile(optimizer={"type": "SGD", "momentum": 0.9})
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    model.fit(x, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path)
    return path


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET.tobytes())
    return path


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def all_loaders(path):
    """Every way a file is read: each must refuse it."""
    fresh = lambda: Model.from_spec(SPEC, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})
    yield "load", lambda: regnet.load(path)
    yield "load(compile=False)", lambda: regnet.load(path, compile=False)
    yield "load_weights", lambda: fresh().load_weights(path)
    yield "load_weights(strict=False)", lambda: fresh().load_weights(path, strict=False)
    yield "restore", lambda: regnet.checkpoint.restore(fresh(), path)


def assert_refused(path, match, kinds=(FileFormatError,)):
    for what, call in all_loaders(path):
        with pytest.raises(kinds, match=match) as info:
            call()
        assert str(path) in str(info.value), what


def replace(f, where, **kwargs):
    del f[where]
    f.create_dataset(where, **kwargs)


def test_external_raw_storage_is_refused(saved, secret_file):
    edit(saved, lambda f: replace(f, "weights/out/bias", shape=(3,), dtype="f4", external=[(str(secret_file), 0, 12)]))
    with h5py.File(saved, "r") as f:  # plain h5py would read the other file's bytes
        np.testing.assert_array_equal(f["weights/out/bias"][()], SECRET)
    assert_refused(saved, "weights/out/bias.*external raw files")


def test_external_raw_storage_in_optimizer_state_is_refused(saved, secret_file):
    edit(
        saved,
        lambda f: replace(
            f, "optimizer/momentum/out/bias", shape=(3,), dtype="f4", external=[(str(secret_file), 0, 12)]
        ),
    )
    with pytest.raises(FileFormatError, match="optimizer/momentum/out/bias.*external"):
        regnet.load(saved)


def test_external_link_is_refused(saved, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["bias"] = SECRET
    edit(
        saved,
        lambda f: (
            f.__delitem__("weights/out/bias"),
            f["weights/out"].__setitem__("bias", h5py.ExternalLink(str(other), "/bias")),
        ),
    )
    assert_refused(saved, "weights/out/bias.*external link")


def test_external_link_for_the_spec_is_refused(saved, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(saved, "r") as src, h5py.File(other, "w") as dst:
        src.copy("model_spec", dst)

    def swap(f):
        del f["model_spec"]
        f["model_spec"] = h5py.ExternalLink(str(other), "/model_spec")

    edit(saved, swap)
    with pytest.raises(FileFormatError, match="model_spec.*external link"):
        regnet.load(saved)


def test_soft_links_are_refused(saved):
    def link(f):
        f.create_dataset("stash/bias", data=SECRET)
        del f["weights/out/bias"]
        f["weights/out/bias"] = h5py.SoftLink("/stash/bias")

    edit(saved, link)
    assert_refused(saved, "weights/out/bias.*soft link")


def test_soft_link_to_a_group_is_refused(saved):
    def link(f):
        f.move("weights/out", "elsewhere")
        f["weights/out"] = h5py.SoftLink("/elsewhere")

    edit(saved, link)
    assert_refused(saved, "weights/out.*soft link")


def test_virtual_dataset_is_refused(saved, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["bias"] = SECRET

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(3,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "bias", shape=(3,))
        del f["weights/out/bias"]
        f["weights/out"].create_virtual_dataset("bias", layout)

    edit(saved, virtual)
    with h5py.File(saved, "r") as f:
        np.testing.assert_array_equal(f["weights/out/bias"][()], SECRET)
    assert_refused(saved, "weights/out/bias.*virtual dataset")


def _peak_bytes(call):
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("where", ["weights/hidden/kernel", "optimizer/momentum/hidden/kernel"])
def test_huge_declared_tensor_is_refused_without_allocating(saved, where):
    shape = (10**6, 10**6)  # 10**12 float32 values, 4 TB, none of them written (contiguous, unallocated)
    edit(saved, lambda f: replace(f, where, shape=shape, dtype="f4"))
    for what, call in all_loaders(saved):
        if what in ("load(compile=False)", "load_weights", "load_weights(strict=False)") and where.startswith(
            "optimizer"
        ):
            assert call() is not None  # these never look at the optimizer state
            continue

        def check():
            if what == "load_weights(strict=False)":
                report = call()
                assert [m.file_shape for m in report.mismatched] == [shape]
            else:
                with pytest.raises(WeightsMismatchError, match=rf"{where}.*\[1000000, 1000000\].*\[4, 8\]"):
                    call()

        assert _peak_bytes(check) < 20 << 20, what


def test_huge_declared_json_is_refused(saved):
    edit(saved, lambda f: replace(f, "model_spec", shape=(), dtype=h5py.string_dtype("utf-8", 2**31 - 1)))

    def check():
        with pytest.raises(FileFormatError, match=r"model_spec.*declares 2147483647 bytes"):
            regnet.load(saved)

    assert _peak_bytes(check) < 20 << 20
    edit(saved, lambda f: replace(f, "model_spec", shape=(10**9,), dtype=h5py.string_dtype("utf-8", 8)))
    with pytest.raises(FileFormatError, match="model_spec.*scalar"):
        regnet.load(saved)


def test_pickled_object_is_never_unpickled(saved, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Boom())
    edit(saved, lambda f: replace(f, "weights/out/bias", data=np.void(payload)))
    with pytest.raises(WeightsMismatchError, match="weights/out/bias"):
        regnet.load(saved)
    edit(saved, lambda f: replace(f, "rng_state", data=np.void(payload)))
    edit(saved, lambda f: replace(f, "weights/out/bias", data=SECRET))
    monkeypatch.setenv("REGNET_ALLOW_MISSING_CHECKSUMS", "1")  # the new bias has none: reach rng_state
    with pytest.raises(FileFormatError, match="rng_state.*fixed-length string"):
        regnet.load(saved)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("format", np.int64(3), "'format'.*must be a string"),
        ("format", np.array(["regnet.model.h5"] * 2, dtype=h5py.string_dtype()), "'format'.*scalar"),
        ("format_version", "1", "'format_version'.*must be an integer"),
        ("format_version", np.float64(1.0), "'format_version'.*must be an integer"),
        ("format_version", np.int64(-1), "format_version -1 is not a valid"),
        ("epoch", np.float32(2.0), "'epoch'.*must be an integer"),
        ("epoch", np.int64(-3), "epoch must be >= 0"),
    ],
)
def test_root_attributes_of_the_wrong_type(saved, name, value, match):
    edit(saved, lambda f: f.attrs.__setitem__(name, value))
    with pytest.raises(FileFormatError, match=match):
        regnet.load(saved)


@pytest.mark.parametrize("where, name", [("/", "format"), ("weights/out/kernel", "sha256"), ("model_spec", "sha256")])
def test_variable_length_string_attributes_are_refused_unread(saved, where, name):
    """A variable-length string declares no length (its itemsize is a pointer's): 20 MB of it
    must be refused before it is read, not allocated and then compared."""
    edit(saved, lambda f: f[where].attrs.create(name, "a" * (20 << 20), dtype=h5py.string_dtype()))

    def check():
        with pytest.raises(FileFormatError, match=rf"attribute '{name}'.*variable-length") as info:
            regnet.load(saved)
        assert str(saved) in str(info.value)

    assert _peak_bytes(check) < 10 << 20
    edit(saved, lambda f: f[where].attrs.create(name, "short", dtype=h5py.string_dtype()))
    with pytest.raises(FileFormatError, match="variable-length"):
        regnet.load(saved)


def test_optimizer_iterations_of_the_wrong_type(saved):
    edit(saved, lambda f: f["optimizer"].attrs.__setitem__("iterations", "many"))
    with pytest.raises(FileFormatError, match="'iterations' of '/optimizer' must be an integer"):
        regnet.load(saved)
    assert regnet.load(saved, compile=False).optimizer is None  # not needed without compile


def test_groups_and_datasets_swapped(saved):
    edit(saved, lambda f: (f.__delitem__("model_spec"), f.create_group("model_spec")))
    with pytest.raises(FileFormatError, match="model_spec.*should be a dataset"):
        regnet.load(saved)


def test_weights_as_a_dataset(saved):
    edit(saved, lambda f: (f.__delitem__("weights"), f.create_dataset("weights", data=np.zeros(3, np.float32))))
    assert_refused(saved, "'weights' should be a group")


def test_hard_link_cycle_terminates(saved):
    edit(saved, lambda f: f["weights/hidden"].__setitem__("loop", f["weights"]))
    with pytest.raises(FileFormatError, match="nested deeper than"):
        regnet.load(saved)


def test_json_tampering_is_detected(saved):
    def tamper(f):
        text = f["model_spec"][()].replace(b'"units":8', b'"units":9')
        digest = f["model_spec"].attrs["sha256"]
        replace(f, "model_spec", data=np.bytes_(text))
        f["model_spec"].attrs["sha256"] = digest

    edit(saved, tamper)
    with pytest.raises(FileFormatError, match="model_spec.*sha256"):
        regnet.load(saved)


def test_deeply_nested_json_is_refused(saved):
    edit(saved, lambda f: replace(f, "model_spec", data=np.bytes_(b"[" * 100_000 + b"]" * 100_000)))
    with pytest.raises(FileFormatError, match="model_spec"):
        regnet.load(saved)


def test_spec_that_is_not_a_model(saved):
    edit(saved, lambda f: (f.__delitem__("model_spec"), io._write_json(f, "model_spec", json.dumps({"layers": 3}))))
    with pytest.raises(FileFormatError, match="model_spec does not describe a valid model"):
        regnet.load(saved)


def test_rng_state_of_another_generator(saved):
    state = np.random.MT19937(0).state
    edit(
        saved,
        lambda f: (
            f.__delitem__("rng_state"),
            io._write_json(f, "rng_state", json.dumps(state, default=lambda a: a.tolist())),
        ),
    )
    with pytest.raises(FileFormatError, match="rng_state is not a PCG64 state"):
        regnet.load(saved)
    bad = {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}, "has_uint32": 0, "uinteger": 0}
    edit(saved, lambda f: (f.__delitem__("rng_state"), io._write_json(f, "rng_state", json.dumps(bad))))
    with pytest.raises(FileFormatError, match="rng_state is invalid"):
        regnet.load(saved)


def test_all_refusals_are_regnet_errors(saved, secret_file):
    edit(saved, lambda f: replace(f, "weights/out/bias", shape=(3,), dtype="f4", external=[(str(secret_file), 0, 12)]))
    with pytest.raises(RegnetError):
        regnet.load(saved)
    with pytest.raises(OSError):  # FileFormatError is also an OSError for callers that catch those
        regnet.load(saved)


def test_empty_attribute(saved):
    edit(saved, lambda f: f.attrs.__setitem__("format_version", h5py.Empty("i8")))
    with pytest.raises(FileFormatError, match="'format_version'.*empty dataspace"):
        regnet.load(saved)


def test_path_of_the_wrong_type():
    with pytest.raises(regnet.ConfigError, match="path"):
        regnet.load(42)
    with pytest.raises(regnet.ConfigError, match="path"):
        Model.from_spec(SPEC).save(object())

"""Corrupted model files, generated with hypothesis from real saved models: truncations, flipped
bytes, deleted and reshaped objects, attributes of the wrong type, non-HDF5 bytes and huge
declared datasets. Loading either raises a RegnetError or returns exactly the saved model; it
never raises anything else and never allocates what a corrupted header declares.

The number of generated cases per property is printed (``pytest -s``), recorded as the
``fuzz_cases`` property of each test (``--junitxml``) and appended as JSON lines to the file
named by ``$REGNET_FUZZ_REPORT`` when it is set.
"""

import collections
import json
import os
import shutil
import tracemalloc
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import regnet
from regnet import FileFormatError, Model, RegnetError
from tests.specs import MLP_BN_DROPOUT as SPEC


def fuzz(max_examples):
    """Settings for one property: no example database, no per-example deadline (the machine is
    shared), ``max_examples`` kept modest so the whole file runs in well under a minute."""
    return settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


COUNTS = collections.Counter()
#: attributes the loader never reads: any value loads (they are informational)
UNREAD_ATTRS = {"created", "regnet_version", "type"}


def attribute_is_read(kind, owner, name):
    if name in UNREAD_ATTRS or owner == "metadata/user":
        return False
    if kind == "weights":  # weights-only loads read the header and the weights
        return (owner == "/" and name in ("format", "format_version")) or owner.startswith("weights/")
    return True


ALLOCATION_LIMIT = 20 << 20  # bytes; the declared sizes below are terabytes


def fresh():
    return Model.from_spec(SPEC, seed=123)


def signature(model, full):
    weights = sorted((k, v.tobytes()) for k, v in model.state_dict().items())
    if not full:
        return weights
    state = model.optimizer.state_dict() if model.optimizer is not None else {}
    opt = sorted((k, np.asarray(v).tobytes()) for k, v in state.items())
    return (
        weights,
        model.epoch,
        json.dumps(model.history),
        model.rng.bit_generator.state,
        opt,
        model.training_config(),
        model.to_spec(),
    )


def load_any(kind, path):
    """Load ``path`` the way a file of ``kind`` is loaded; returns its signature."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind == "model":
            return signature(regnet.load(path), True)
        model = fresh()
        model.load_weights(path)
        return signature(model, False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Saved files of each kind, their bytes, objects, attributes and clean signatures."""
    root = tmp_path_factory.mktemp("fuzz")
    model = Model.from_spec(SPEC, seed=0).compile(optimizer="adam")
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    model.fit(x, np.arange(32) % 3, epochs=2, batch_size=8, verbose=0)
    model.save(root / "model.h5", metadata={"run": "fuzz"})
    model.save_weights(root / "weights.h5")
    out = {"root": root}
    for kind in ("model", "weights"):
        path = root / f"{kind}.h5"
        objects, attributes = [], []
        with h5py.File(path, "r") as f:
            attributes += [("/", a) for a in f.attrs]
            f.visititems(lambda name, obj: objects.append((name, isinstance(obj, h5py.Dataset))))
            for name, _ in objects:
                attributes += [(name, a) for a in f[name].attrs]
        out[kind] = {
            "path": path,
            "bytes": path.read_bytes(),
            "objects": objects,
            "attributes": attributes,
            "signature": load_any(kind, path),
        }
    return out


def check(files, kind, case, *, must_fail=False):
    """Load the corrupted ``case`` file: a RegnetError, or exactly the saved model."""
    try:
        got = load_any(kind, case)
    except RegnetError as exc:
        assert str(case) in str(exc) or not isinstance(exc, FileFormatError), exc
        return exc
    assert not must_fail, "a corrupted file loaded"
    assert got == files[kind]["signature"], "a corrupted file loaded different values"
    return None


def case_path(files, name):
    return files["root"] / f"case-{name}.h5"


def copy(files, kind, name):
    path = case_path(files, name)
    shutil.copyfile(files[kind]["path"], path)
    return path


def run(prop, record_property):
    before = COUNTS[prop.__name__]
    prop()
    n = COUNTS[prop.__name__] - before
    record_property("fuzz_cases", n)
    print(f"\n{prop.__name__}: {n} generated cases")
    report = os.environ.get("REGNET_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"property": prop.__name__, "cases": n}) + "\n")
    assert n > 0


KINDS = st.sampled_from(["model", "weights"])


def test_truncated_files(files, record_property):
    @fuzz(200)
    @given(kind=KINDS, data=st.data())
    def truncated(kind, data):
        COUNTS["truncated"] += 1
        raw = files[kind]["bytes"]
        size = data.draw(st.integers(0, len(raw) - 1), label="size")
        path = case_path(files, "truncated")
        path.write_bytes(raw[:size])
        check(files, kind, path)

    run(truncated, record_property)


def test_flipped_bytes(files, record_property):
    @fuzz(400)
    @given(kind=KINDS, data=st.data())
    def flipped(kind, data):
        COUNTS["flipped"] += 1
        raw = bytearray(files[kind]["bytes"])
        flips = data.draw(
            st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), min_size=1, max_size=8)
        )
        for offset, mask in flips:
            raw[offset] ^= mask
        path = case_path(files, "flipped")
        path.write_bytes(bytes(raw))
        check(files, kind, path)

    run(flipped, record_property)


def test_deleted_objects_and_attributes(files, record_property):
    @fuzz(120)
    @given(kind=KINDS, data=st.data())
    def deleted(kind, data):
        COUNTS["deleted"] += 1
        info = files[kind]
        path = copy(files, kind, "deleted")
        target = data.draw(
            st.sampled_from(
                [("object", n) for n, _ in info["objects"]] + [("attribute", a) for a in info["attributes"]]
            )
        )
        with h5py.File(path, "r+") as f:
            if target[0] == "object":
                del f[target[1]]
            else:
                del f[target[1][0]].attrs[target[1][1]]
        try:
            got = load_any(kind, path)
        except RegnetError:
            return
        # a file without an optional part (user metadata, optimizer state, checksums) may load,
        # but never with other weights
        saved = files[kind]["signature"]
        assert (got[0] == saved[0]) if kind == "model" else (got == saved)

    run(deleted, record_property)


SHAPES = st.lists(st.integers(0, 50), min_size=0, max_size=3).map(tuple)
DTYPES = st.sampled_from(["<f4", ">f4", "<f8", "<i4", "u1", "S8"])


def test_reshaped_datasets(files, record_property):
    @fuzz(120)
    @given(kind=KINDS, data=st.data(), shape=SHAPES, dtype=DTYPES, keep_data=st.booleans())
    def reshaped(kind, data, shape, dtype, keep_data):
        info = files[kind]
        path = copy(files, kind, "reshaped")
        where = data.draw(st.sampled_from([n for n, is_ds in info["objects"] if is_ds]))
        with h5py.File(path, "r+") as f:
            old = f[where]
            attrs = dict(old.attrs)
            same = tuple(old.shape or ()) == shape and old.dtype == np.dtype(dtype)
            del f[where]
            values = np.zeros(shape, dtype=dtype)
            if keep_data:
                values.reshape(-1)[:] = np.arange(values.size).astype(dtype)
            f.create_dataset(where, data=values)
            for k, v in attrs.items():
                f[where].attrs[k] = v
        if same and not keep_data:
            reject()  # an unchanged layout with zeros is a legitimate, different file
        COUNTS["reshaped"] += 1
        check(files, kind, path)

    run(reshaped, record_property)


def _wrong_values(original):
    """Values whose type differs from the attribute's original type."""
    if h5py.check_string_dtype(np.asarray(original).dtype) is not None:
        return st.one_of(
            st.integers(-(2**63), 2**63 - 1).map(np.int64),
            st.floats(allow_nan=True).map(np.float64),
            st.lists(st.integers(0, 9), min_size=2, max_size=4).map(np.array),
            st.booleans().map(np.bool_),
        )
    return st.one_of(
        st.text(st.characters(exclude_characters="\x00"), max_size=20),  # HDF5 strings hold no NUL
        st.floats(allow_nan=True).map(np.float64),
        st.lists(st.integers(0, 9), min_size=2, max_size=4).map(np.array),
        st.binary(min_size=1, max_size=20).map(np.bytes_),
        st.booleans().map(np.bool_),
    )


def test_attributes_of_wrong_type(files, record_property):
    @fuzz(120)
    @given(kind=KINDS, data=st.data())
    def wrong_attribute(kind, data):
        COUNTS["wrong_attribute"] += 1
        info = files[kind]
        path = copy(files, kind, "attribute")
        owner, name = data.draw(st.sampled_from(info["attributes"]))
        with h5py.File(path, "r+") as f:
            value = data.draw(_wrong_values(f[owner].attrs[name]), label="value")
            del f[owner].attrs[name]
            f[owner].attrs[name] = value
        exc = check(files, kind, path, must_fail=attribute_is_read(kind, owner, name))
        if exc is not None:
            assert isinstance(exc, FileFormatError)

    run(wrong_attribute, record_property)


def test_not_hdf5_files(files, record_property):
    @fuzz(80)
    @given(kind=KINDS, prefix=st.sampled_from([b"", b"\x89HDF\r\n\x1a\n"]), body=st.binary(max_size=2048))
    def not_hdf5(kind, prefix, body):
        COUNTS["not_hdf5"] += 1
        path = case_path(files, "garbage")
        path.write_bytes(prefix + body)
        exc = check(files, kind, path, must_fail=True)
        assert isinstance(exc, FileFormatError)

    run(not_hdf5, record_property)


def test_huge_declared_datasets(files, record_property):
    @fuzz(60)
    @given(
        kind=KINDS,
        data=st.data(),
        dims=st.lists(st.integers(10**4, 10**7), min_size=2, max_size=3),
        dtype=st.sampled_from(["<f4", "<f8", "u1"]),
    )
    def huge(kind, data, dims, dtype):
        shape = tuple(dims)
        if int(np.prod(shape, dtype=np.float64)) < 10**12:
            reject()
        COUNTS["huge"] += 1
        info = files[kind]
        path = copy(files, kind, "huge")
        where = data.draw(st.sampled_from([n for n, is_ds in info["objects"] if is_ds]))
        with h5py.File(path, "r+") as f:
            attrs = dict(f[where].attrs)
            del f[where]
            f.create_dataset(where, shape=shape, dtype=dtype, chunks=(1,) * (len(shape) - 1) + (4096,))
            for k, v in attrs.items():
                f[where].attrs[k] = v
        tracemalloc.start()
        try:
            # everything is read but user metadata (and, for weights-only loads, all but the weights)
            read = where.startswith("weights/") if kind == "weights" else where != "metadata/user"
            exc = check(files, kind, path, must_fail=read)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < ALLOCATION_LIMIT, f"{peak} bytes allocated for {where} declared as {shape}"
        assert exc is None or isinstance(exc, RegnetError)

    run(huge, record_property)

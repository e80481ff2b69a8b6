"""Resource bombs: inputs small on disk that declare or expand to far more.

Model files: every dataset must be stored as the format says (contiguous or compact, no filters);
chunked or compressed datasets, with any chunk shape and filter hypothesis draws, are refused by
layout before their data is read. ``.npy`` / ``.npz`` inputs: the declared size is checked before
anything is read or decompressed (the npy header, the zip directory), so deflate bombs, forged
sizes and ratios, other compression methods and object arrays are refused; every array that is
honest reads back exactly as ``numpy.load`` reads it. Counts are recorded with ``fuzz_cases``.
"""

import io as stdio
import os
import struct
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet
from regnet import DataError, FileFormatError, Model, cli
from regnet.datasets import npy, read_inputs, sources
from tests.specs import trained_sgd_file

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
TENSORS = [
    "weights/hidden/kernel",
    "weights/out/bias",
    "optimizer/momentum/hidden/kernel",
    "optimizer/momentum/out/bias",
]


def fuzz(n):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def fresh():
    return Model.from_spec(SPEC, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})


@pytest.fixture
def saved(tmp_path):
    path = trained_sgd_file(SPEC, tmp_path / "model.h5")
    return path


def loaders(path):
    yield "load", lambda: regnet.load(path)
    yield "load(compile=False)", lambda: regnet.load(path, compile=False)
    yield "load_weights", lambda: fresh().load_weights(path)
    yield "restore", lambda: regnet.checkpoint.restore(fresh(), path)


def restore_with(path, where, **storage):
    """Rewrite ``where`` with the same data and checksum but another storage."""
    with h5py.File(path, "r+") as f:
        data, digest = f[where][()], f[where].attrs["sha256"]
        del f[where]
        if storage.pop("compact", False):
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_layout(h5py.h5d.COMPACT)
            space = h5py.h5s.create_simple(data.shape)
            dsid = h5py.h5d.create(f.id, where.encode(), h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
            ds = h5py.Dataset(dsid)
            ds[...] = data
        else:
            ds = f.create_dataset(where, data=data, **storage)
        ds.attrs["sha256"] = digest
    return data


@pytest.fixture
def reads(monkeypatch):
    """The names of the datasets whose data was read."""
    seen = []
    original = h5py.Dataset.read_direct

    def spy(self, *args, **kwargs):
        seen.append(self.name.lstrip("/"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "read_direct", spy)
    return seen


# -- model files ------------------------------------------------------------------------------------
@st.composite
def storages(draw, shape):
    chunks = tuple(draw(st.integers(1, max(d, 1))) for d in shape)
    storage = {"chunks": chunks}
    compression = draw(st.sampled_from([None, "gzip", "lzf"]))
    if compression == "gzip":
        storage.update(compression="gzip", compression_opts=draw(st.integers(0, 9)))
    elif compression:
        storage["compression"] = compression
    storage["shuffle"] = draw(st.booleans())
    storage["fletcher32"] = draw(st.booleans())
    if draw(st.booleans()):
        storage["maxshape"] = tuple(None for _ in shape)
    return storage


def test_chunked_or_filtered_tensors_are_refused_before_reading(saved, reads, fuzz_cases):
    shapes = {"weights/hidden/kernel": (4, 8), "weights/out/bias": (3,)}
    shapes.update({f"optimizer/momentum/{k[8:]}": v for k, v in list(shapes.items())})
    pristine = saved.read_bytes()

    @fuzz(80)
    @given(data=st.data())
    def refused(data):
        where = data.draw(st.sampled_from(TENSORS))
        storage = data.draw(storages(shapes[where]))
        fuzz_cases("hdf5 storages")
        saved.write_bytes(pristine)
        restore_with(saved, where, **storage)
        for what, call in loaders(saved):
            reads.clear()
            if where.startswith("optimizer") and what in ("load(compile=False)", "load_weights"):
                call()  # these never look at the optimizer state
                assert where not in reads
                continue
            with pytest.raises(FileFormatError, match=f"{where}.*chunked"):
                call()
            assert where not in reads, (what, storage)

    refused()


def test_a_compressed_tensor_with_one_value_per_chunk_is_refused(saved, reads):
    restore_with(saved, "weights/hidden/kernel", chunks=(1, 1), compression="gzip", compression_opts=9)
    with pytest.raises(FileFormatError, match=r"chunked \(chunk shape \[1, 1\]\)"):
        regnet.load(saved)
    assert reads == []


@pytest.mark.parametrize("where", ["model_spec", "metadata/user", "training_config"])
def test_chunked_json_documents_are_refused(saved, where):
    with h5py.File(saved, "r+") as f:
        text = bytes(f[where][()])
        del f[where]
        f.create_dataset(where, data=np.frombuffer(text, np.uint8), chunks=(1,), compression="gzip")
    reader = regnet.io.read_metadata if where == "metadata/user" else regnet.load  # load never reads it
    with pytest.raises(FileFormatError, match=f"{where}.*chunked"):
        reader(saved)


@pytest.mark.parametrize("where", TENSORS)
def test_compact_layout_is_accepted(saved, where):
    data = restore_with(saved, where, compact=True)
    with h5py.File(saved, "r") as f:
        assert f[where].id.get_create_plist().get_layout() == h5py.h5d.COMPACT
    model = regnet.load(saved)
    if where.startswith("weights/"):
        np.testing.assert_array_equal(model.state_dict()[where[8:]], data)
    else:
        np.testing.assert_array_equal(model.optimizer.state_dict()[where[10:]], data)


# -- .npy / .npz ------------------------------------------------------------------------------------
def peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return top


def npy_bytes(array, header=None, version=(1, 0)):
    """An .npy file for ``array``, optionally with another header dict."""
    out = stdio.BytesIO()
    if header is None:
        np.lib.format.write_array(out, array, version=version, allow_pickle=False)
        return out.getvalue()
    np.lib.format.write_array_header_1_0(out, header) if version == (1, 0) else np.lib.format.write_array_header_2_0(
        out, header
    )
    return out.getvalue() + np.ascontiguousarray(array).tobytes()


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(npy, "MAX_BYTES", 1 << 20)
    return 1 << 20


def test_a_deflate_bomb_npz_is_refused_before_decompressing(tmp_path, small_limit, capsys):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=np.zeros((1 << 24,), np.float32))  # 64 MiB of zeros, ~65 kB on disk
    assert path.stat().st_size < 200_000

    def refuse():
        with pytest.raises(DataError, match="limit"):
            read_inputs(path, (4,))

    assert peak(refuse) < small_limit
    np.savez_compressed(
        path, **{k: np.zeros((1 << 24,), np.float32) for k in ("x_train", "y_train", "x_test", "y_test")}
    )
    assert peak(lambda: pytest.raises(DataError, sources.load_npz, path)) < small_limit
    with pytest.raises(DataError, match="limit"):
        sources.load(str(path))


def test_many_members_share_one_budget(tmp_path, small_limit):
    path = tmp_path / "four.npz"
    quarter = np.zeros((small_limit // 4 // 4 + 1000,), np.float32)  # each fits, all four do not
    np.savez_compressed(path, x_train=quarter, y_train=quarter, x_test=quarter, y_test=quarter)
    with pytest.raises(DataError, match="limit"):
        sources.load_npz(path)


def test_an_npy_header_declaring_terabytes_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(
        npy_bytes(np.zeros(4, np.float32), {"descr": "<f4", "fortran_order": False, "shape": (10**6,) * 2})
    )
    assert peak(lambda: pytest.raises(DataError, read_inputs, path, (4,))) < 1 << 20
    with pytest.raises(DataError, match="more than the limit"):
        read_inputs(path, (4,))


def forge_sizes(data, file_size=None, compress_size=None):
    """The zip ``data`` with the first member's declared sizes replaced (local and central)."""
    out = bytearray(data)
    local, central = out.find(b"PK\x03\x04"), out.find(b"PK\x01\x02")
    if file_size is not None:
        struct.pack_into("<I", out, local + 22, file_size)
        struct.pack_into("<I", out, central + 24, file_size)
    if compress_size is not None:
        struct.pack_into("<I", out, local + 18, compress_size)
        struct.pack_into("<I", out, central + 20, compress_size)
    return bytes(out)


def zip_bytes(members, method=zipfile.ZIP_DEFLATED):
    out = stdio.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_forged_declared_size_is_refused(tmp_path):
    path = tmp_path / "forged.npz"
    path.write_bytes(forge_sizes(zip_bytes({"x.npy": npy_bytes(np.ones(8, np.float32))}), file_size=2**31 - 1))
    with pytest.raises(DataError, match="declares 2147483647 bytes"):
        read_inputs(path, (8,))


def test_forged_ratio_is_refused(tmp_path):
    path = tmp_path / "ratio.npz"
    data = zip_bytes({"x.npy": npy_bytes(np.zeros(1 << 16, np.float32))})
    compressed = zipfile.ZipFile(stdio.BytesIO(data)).infolist()[0].compress_size
    path.write_bytes(forge_sizes(data, file_size=compressed * 2000))
    with pytest.raises(DataError, match="ratio"):
        read_inputs(path, (8,))


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods_are_refused(tmp_path, method):
    path = tmp_path / "other.npz"
    path.write_bytes(zip_bytes({"x.npy": npy_bytes(np.ones(8, np.float32))}, method))
    with pytest.raises(DataError, match="compression method"):
        read_inputs(path, (8,))


def raw_npy(header_text, payload=b"\0" * 24):
    """A version 1.0 .npy file whose header dict is ``header_text`` verbatim (numpy cannot write
    a malformed one)."""
    text = header_text.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1") + payload


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f4', 'fortran_order': False, 'shape': 12, 3), }",  # unbalanced: tokenize.TokenError
        "{'descr': '<f4', 'fortran_order': False,b'shape': (2, 3), }",  # bytes key: TypeError
        "{'descr': '<04', 'fortran_order': False, 'shape': (2, 3), }",  # not a literal: SyntaxError
        "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 2000 + ")" * 2000 + ", }",
    ],
    ids=["unbalanced", "bytes key", "bad literal", "deep nesting"],
)
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_unparseable_npy_headers_are_data_errors_naming_the_file(tmp_path, header, suffix):
    data = raw_npy(header)
    path = tmp_path / f"h{suffix}"
    path.write_bytes(data if suffix == ".npy" else zip_bytes({"x.npy": data}))
    with pytest.raises(DataError, match=f"h\\{suffix}.*not a valid .npy array"):
        read_inputs(path, (3,))


@pytest.mark.parametrize("shape", [(-1, -1), (-2, -2), (-1, -1, 1), (-4,), (2, -3)])
def test_negative_dimensions_are_refused(tmp_path, shape):
    path = tmp_path / "neg.npy"
    n = abs(int(np.prod(shape))) * 4
    path.write_bytes(raw_npy(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}", b"\0" * n))
    with pytest.raises(DataError, match=r"neg\.npy declares shape .*negative dimension"):
        npy.read_npy(path)


def test_encrypted_npz_members_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "enc.npz"
    raw = bytearray(zip_bytes({"x.npy": npy_bytes(np.arange(4, dtype=np.float32))}))
    raw[raw.find(b"PK\x03\x04") + 6] |= 1  # general purpose flag bit 0: encrypted
    raw[raw.find(b"PK\x01\x02") + 8] |= 1
    path.write_bytes(bytes(raw))
    opened = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: opened.append(a))
    with pytest.raises(DataError, match=r"enc\.npz: array 'x' is encrypted"):
        npy.open_npz(path).read("x")
    with pytest.raises(DataError, match="encrypted"):
        read_inputs(path, (4,))
    assert opened == []


@pytest.fixture(scope="module")
def compressed_npz():
    data = zip_bytes({"x.npy": npy_bytes(np.random.default_rng(0).random((50, 50)).astype("f4"))})
    info = zipfile.ZipFile(stdio.BytesIO(data)).infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    return data, start, info.compress_size


@fuzz(150)
@given(offset=st.integers(0, 10**6), xor=st.integers(1, 255))
def test_damaged_compressed_npz_members_are_data_errors(tmp_path, compressed_npz, fuzz_cases, offset, xor):
    fuzz_cases("npz byte flips")
    data, start, size = compressed_npz
    damaged = bytearray(data)
    damaged[start + offset % size] ^= xor
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(damaged))
    try:
        with npy.open_npz(path) as z:
            z.read("x")  # a flip deflate and the CRC both miss is not possible to tell apart
    except DataError as exc:
        assert "flipped.npz" in str(exc)


def test_corrupt_deflate_data_is_a_data_error(tmp_path, compressed_npz):
    data, start, size = compressed_npz
    path = tmp_path / "bad.npz"
    path.write_bytes(data[:start] + b"\xff" * 16 + data[start + 16 :])
    with pytest.raises(DataError, match=r"bad\.npz: array 'x' is damaged"):
        with npy.open_npz(path) as z:
            z.read("x")


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_object_arrays_are_never_unpickled(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"objects{suffix}"
    arr = np.array([Boom(), 1], dtype=object)
    if suffix == ".npy":
        np.save(path, arr, allow_pickle=True)
    else:
        np.savez(path, x=arr)
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    with pytest.raises(DataError, match="dtype object"):
        read_inputs(path, (2,))
    assert called == []


def test_cli_predict_refuses_a_bomb(tmp_path, small_limit, capsys):
    Model.from_spec(SPEC, seed=0).save(tmp_path / "m.h5")
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((1 << 22, 4), np.float32))
    assert cli.main(["predict", str(tmp_path / "m.h5"), str(tmp_path / "bomb.npz")]) == 1
    assert "limit" in capsys.readouterr().err


DTYPES = ["?", "i1", "u1", "<i2", ">i2", "<u4", ">i8", "<f2", ">f4", "<f4", "<f8", ">f8"]


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize))
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape) if shape else np.frombuffer(raw, dtype=dtype)[0].reshape(())
    if dtype.kind == "b":
        arr = arr.astype(bool)
    return np.asfortranarray(arr) if draw(st.booleans()) else arr


MUTATIONS = [
    "none",
    "truncate",
    "append",
    "bigger shape",
    "smaller shape",
    "object",
    "complex",
    "structured",
    "version",
]


def mutate(arr, how, draw):
    """The bytes of an .npy file for ``arr``, spoiled as ``how`` says (``none``: honest)."""
    header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": arr.shape}
    body = npy_bytes(np.ascontiguousarray(arr))
    if how == "truncate":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if how == "append":
        return body + draw(st.binary(min_size=1, max_size=16))
    if how == "bigger shape":
        extra = draw(st.integers(2, 10**9))
        shape = (*arr.shape, extra) if arr.size else (extra,)
        return npy_bytes(np.ascontiguousarray(arr), {**header, "shape": shape})
    if how == "smaller shape":
        return npy_bytes(np.ascontiguousarray(arr), {**header, "shape": (0,) if arr.size else (1,)})
    if how == "object":
        return npy_bytes(np.ascontiguousarray(arr), {**header, "descr": "|O"})
    if how == "complex":
        return npy_bytes(np.ascontiguousarray(arr), {**header, "descr": "<c8"})
    if how == "structured":
        return npy_bytes(np.ascontiguousarray(arr), {**header, "descr": [("a", "<f4")]})
    if how == "version":
        return b"\x93NUMPY\x09\x00" + body[8:]
    return npy_bytes(arr)


def test_npy_and_npz_read_exactly_or_refuse(tmp_path, fuzz_cases):
    """Honest files read back exactly as numpy.load reads them; every mutation is refused."""

    @fuzz(300)
    @given(
        arr=arrays(),
        how=st.sampled_from(MUTATIONS),
        container=st.sampled_from(["npy", "npz", "npz-deflate"]),
        data=st.data(),
    )
    def check(arr, how, container, data):
        body = mutate(arr, how, data.draw)
        path = tmp_path / f"a.{container[:3]}"
        if container == "npy":
            path.write_bytes(body)
        else:
            method = zipfile.ZIP_DEFLATED if container.endswith("deflate") else zipfile.ZIP_STORED
            path.write_bytes(zip_bytes({"x.npy": body}, method))
        fuzz_cases(f"arrays, {container}")
        try:
            if container == "npy":
                got = npy.read_npy(path)
            else:
                with npy.open_npz(path) as z:
                    got = z.read("x")
        except DataError:
            fuzz_cases(f"arrays, {how}, refused")
            assert how != "none"
            return
        fuzz_cases("arrays, read")
        assert how == "none", f"a {how} file was read"
        np.testing.assert_array_equal(got, np.load(path, allow_pickle=False) if container == "npy" else arr)
        assert got.dtype == arr.dtype.newbyteorder("=") and got.dtype.isnative and got.shape == arr.shape

    check()

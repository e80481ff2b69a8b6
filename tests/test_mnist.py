"""MNIST loading: the strict IDX reader, the search path, raw and gzip files, the bundled sample."""

import gzip
import importlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from regnet.datasets import idx
from regnet.datasets._make_sample import balanced_indices
from regnet.datasets.mnist import FILES, load_sample, mnist
from regnet.errors import DataError

mnist_module = importlib.import_module("regnet.datasets.mnist")  # the package exports the function

# the full set where mnist() finds it ($REGNET_DATA, the user cache), else in ../shared/data
FULL = mnist_module.locate([Path(__file__).resolve().parents[1].parent / "shared" / "data"])
SHARED = Path(FULL["test_images"]).parent if FULL else Path("/nonexistent")
needs_mnist = pytest.mark.skipif(
    not (SHARED / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="full MNIST (gzip IDX files) not found in $REGNET_DATA, the user cache or ../shared/data",
)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $REGNET_DATA, an empty user cache, no reachable mirror."""
    monkeypatch.delenv("REGNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("REGNET_MNIST_MIRRORS", "http://127.0.0.1:9/")
    return tmp_path


def link_mnist(folder):
    """Symlinks to the shared gzip files (never copies of the data)."""
    folder.mkdir(parents=True, exist_ok=True)
    for base in FILES.values():
        (folder / f"{base}.gz").symlink_to(SHARED / f"{base}.gz")
    return folder


def check_layout(split, n):
    x, y = split
    assert x.shape == (n, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


# -- full set ---------------------------------------------------------------------------------------
@needs_mnist
def test_full_set_from_explicit_folder(isolated):
    train, test = mnist(SHARED, download=False)
    check_layout(train, 60000)
    check_layout(test, 10000)
    # pixel values are k/255 exactly as stored
    raw = idx.read(SHARED / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(np.rint(test[0][:, 0] * 255).astype(np.uint8), raw)


@needs_mnist
@pytest.mark.parametrize("layout", ["flat", "subdir"])
def test_regnet_data_env(isolated, monkeypatch, layout):
    root = isolated / "data"
    link_mnist(root if layout == "flat" else root / "mnist")
    monkeypatch.setenv("REGNET_DATA", str(root))
    (_, y_train), (_, y_test) = mnist(download=False, sample=False)
    assert len(y_train) == 60000 and len(y_test) == 10000


@needs_mnist
def test_user_cache_is_searched(isolated):
    link_mnist(isolated / "cache" / "regnet" / "mnist")
    (_, y_train), _ = mnist(download=False, sample=False)
    assert len(y_train) == 60000


@needs_mnist
def test_raw_idx_files_match_gzip(isolated):
    raw = isolated / "raw"
    raw.mkdir()
    for base in FILES.values():
        (raw / base).write_bytes(gzip.decompress((SHARED / f"{base}.gz").read_bytes()))
    assert not idx.is_gzip(raw / FILES["test_images"])
    (xr, yr), (xtr, ytr) = mnist(raw, download=False)
    (xg, yg), (xtg, ytg) = mnist(SHARED, download=False)
    np.testing.assert_array_equal(xr, xg)
    np.testing.assert_array_equal(yr, yg)
    np.testing.assert_array_equal(xtr, xtg)
    np.testing.assert_array_equal(ytr, ytg)


# -- strict IDX reader ------------------------------------------------------------------------------
def header(code, dims):
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    p = tmp_path / "a.idx"
    idx.write(p, a, compress=compress)
    b = idx.read(p)
    assert b.dtype == a.dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


BAD = {
    "bad magic": b"\x01\x00\x08\x01" + struct.pack(">I", 3) + b"abc",
    "unknown dtype code": header(0x07, [3]) + b"abc",
    "zero dimensions": struct.pack(">HBB", 0, 8, 0),
    "truncated header": header(0x08, [3, 4])[:9],
    "truncated payload": header(0x08, [3, 4]) + b"x" * 11,
    "extra bytes": header(0x08, [3, 4]) + b"x" * 13,
    "empty file": b"",
    "float payload cut mid-item": header(0x0D, [2]) + b"\x00" * 7,
}


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("case", sorted(BAD))
def test_idx_rejects_malformed_files(tmp_path, case, compress):
    p = tmp_path / "bad-file-idx1-ubyte"
    data = BAD[case]
    p.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match="bad-file-idx1-ubyte"):
        idx.read(p)


def test_idx_huge_declared_size_is_refused_before_allocating(tmp_path):
    p = tmp_path / "huge-idx3-ubyte"
    p.write_bytes(header(0x0E, [65535, 65535, 65535]) + b"\x00" * 16)
    with pytest.raises(DataError, match="limit"):
        idx.read(p)
    g = tmp_path / "huge-idx3-ubyte.gz"
    g.write_bytes(gzip.compress(header(0x08, [4096, 4096, 1024])))
    with pytest.raises(DataError, match="limit"):
        idx.read(g)


def test_idx_gzip_size_checked_against_trailer(tmp_path):
    """A header declaring more than the gzip stream holds fails before the payload is read."""
    p = tmp_path / "liar-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(header(0x08, [1_000_000]) + b"x" * 10))
    with pytest.raises(DataError, match="liar-idx1-ubyte.gz.*gzip stream holds 18 bytes"):
        idx.read(p)


def test_idx_corrupted_gzip(tmp_path):
    good = gzip.compress(header(0x08, [100]) + bytes(range(100)))
    p = tmp_path / "broken-idx1-ubyte.gz"
    p.write_bytes(good[:20] + bytes([good[20] ^ 0xFF]) + good[21:])
    with pytest.raises(DataError, match="broken-idx1-ubyte.gz"):
        idx.read(p)
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="broken-idx1-ubyte.gz"):
        idx.read(p)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothere"):
        idx.read(tmp_path / "nothere")


def write_set(folder, images, labels, test_images=None, test_labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    idx.write(folder / FILES["train_images"], images)
    idx.write(folder / FILES["train_labels"], labels)
    idx.write(folder / FILES["test_images"], images if test_images is None else test_images)
    idx.write(folder / FILES["test_labels"], labels if test_labels is None else test_labels)
    return folder


def test_small_custom_set_in_dotted_names(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = (np.arange(20) % 10).astype(np.uint8)
    folder = write_set(tmp_path / "d", images, labels)
    for p in folder.iterdir():  # train-images.idx3-ubyte style, as some archives name them
        p.rename(folder / p.name.replace("-idx", ".idx"))
    (x, y), _ = mnist(folder, download=False)
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8), "4 labels but .* 5 images"),
        (np.zeros((5, 28, 27), np.uint8), np.zeros(5, np.uint8), "shape \\[N, 28, 28\\]"),
        (np.zeros((5, 28, 28), np.float32), np.zeros(5, np.uint8), "uint8 images"),
        (np.zeros((5, 28, 28), np.uint8), np.full(5, 10, np.uint8), "labels must be 0..9"),
        (np.zeros((5, 28, 28), np.uint8), np.zeros((5, 1), np.uint8), "vector of labels"),
    ],
)
def test_inconsistent_set_rejected(tmp_path, images, labels, message):
    folder = write_set(tmp_path / "d", images, labels)
    with pytest.raises(DataError, match=message):
        mnist(folder, download=False)


# -- the bundled sample -----------------------------------------------------------------------------
def test_sample_layout_and_balance():
    train, test = load_sample()
    for (x, y), n in ((train, 5000), (test, 2000)):
        check_layout((x, y), n)
        assert np.all(np.bincount(y, minlength=10) == n // 10)
    size = mnist_module.sample_path().stat().st_size
    assert size <= 1_500_000


@needs_mnist
def test_sample_is_the_documented_subset_of_the_full_set():
    """The stored indices are the seeded balanced choice, and the images are the full set's."""
    from regnet.datasets import _make_sample

    with np.load(mnist_module.sample_path()) as z:
        stored = {k: z[k] for k in z.files}
    rng = np.random.default_rng(_make_sample.SEED)
    for split, per in (("train", _make_sample.PER_CLASS_TRAIN), ("test", _make_sample.PER_CLASS_TEST)):
        labels = idx.read(SHARED / f"{FILES[split + '_labels']}.gz")
        images = idx.read(SHARED / f"{FILES[split + '_images']}.gz")
        chosen = balanced_indices(labels, per, rng)
        np.testing.assert_array_equal(stored[f"{split}_index"], chosen)
        np.testing.assert_array_equal(stored[f"x_{split}"], images[chosen])
        np.testing.assert_array_equal(stored[f"y_{split}"], labels[chosen])


def test_fallback_to_sample_says_so(isolated, capsys):
    (x, y), (xt, yt) = mnist(download=False)
    assert x.shape == (5000, 1, 28, 28) and xt.shape == (2000, 1, 28, 28)
    err = capsys.readouterr().err
    assert "using the bundled sample" in err and "download disabled" in err and len(err.splitlines()) == 1


def test_fallback_after_failed_download_is_one_short_line(isolated, monkeypatch, capsys):
    calls = []
    real = mnist_module._download.fetch
    monkeypatch.setattr(mnist_module._download, "fetch", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    for _ in range(3):  # the network is tried once per process
        (x, _), _ = mnist(download=True, progress=False, timeout=2)
        assert len(x) == 5000
    assert calls == ["train-images-idx3-ubyte.gz"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and len(set(lines)) == 1
    assert "using the bundled sample" in lines[0] and "could not be downloaded" in lines[0]
    assert "downloading" not in lines[0] and "127.0.0.1" not in lines[0] and len(lines[0]) < 200
    with pytest.raises(DataError, match="127.0.0.1:9.*not retried"):  # the reasons stay in the error
        mnist(download=True, sample=False, progress=False, timeout=2)


def test_no_fallback_when_refused(isolated):
    with pytest.raises(DataError, match="MNIST not available.*download disabled"):
        mnist(download=False, sample=False)


def test_explicit_empty_folder_never_falls_back(isolated):
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        mnist(empty, download=False)


def test_sample_true_skips_the_search(isolated, monkeypatch, capsys):
    monkeypatch.setenv("REGNET_DATA", str(SHARED))
    (x, _), _ = mnist(sample=True)
    assert len(x) == 5000
    assert capsys.readouterr().err == ""


def test_search_path_order(isolated, monkeypatch):
    monkeypatch.setenv("REGNET_DATA", "/some/where")
    got = mnist_module.search_path()
    assert got == ["/some/where", os.path.join("/some/where", "mnist"), mnist_module.cache_dir()]
    assert mnist_module.cache_dir() == str(isolated / "cache" / "regnet" / "mnist")
    assert mnist_module.search_path("/x") == ["/x", os.path.join("/x", "mnist")]

"""Verified MNIST downloads against a local HTTP server on 127.0.0.1."""

import functools
import gzip
import hashlib
import http.server
import importlib
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from regnet.datasets import download
from regnet.datasets.mnist import CONTENT_SHA256, FILES, SHA256, mnist
from regnet.errors import DataError, DownloadError

mnist_module = importlib.import_module("regnet.datasets.mnist")
# the full set where mnist() finds it ($REGNET_DATA, the user cache), else in ../shared/data
FULL = mnist_module.locate([Path(__file__).resolve().parents[1].parent / "shared" / "data"])
SHARED = Path(FULL["test_images"]).parent if FULL else Path("/nonexistent")
pytestmark = pytest.mark.skipif(
    not (SHARED / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="full MNIST (gzip IDX files) not found in $REGNET_DATA, the user cache or ../shared/data",
)
LABELS = "t10k-labels-idx1-ubyte.gz"  # the smallest file: 4.5 kB


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL`` of an HTTP server for ``folder`` running in a thread."""
    servers = []

    def start(folder):
        handler = functools.partial(Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def dead_url():
    """A URL on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("REGNET_DATA", raising=False)
    monkeypatch.delenv("REGNET_MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "regnet" / "mnist"


def corrupted_copy(folder, name=LABELS, *, flip_at=100):
    """``folder`` holding the shared files (links) with ``name`` corrupted by one flipped byte."""
    folder.mkdir()
    for base in FILES.values():
        (folder / f"{base}.gz").symlink_to(SHARED / f"{base}.gz")
    data = bytearray((SHARED / name).read_bytes())
    data[flip_at] ^= 0x01
    (folder / name).unlink()
    (folder / name).write_bytes(bytes(data))
    return folder


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_full_set_into_cache(serve, cache, capsys):
    url = serve(SHARED)
    (x, y), (xt, yt) = mnist(mirrors=[url], sample=False)
    assert x.shape == (60000, 1, 28, 28) and yt.shape == (10000,)
    assert leftovers(cache) == sorted(f"{b}.gz" for b in FILES.values())  # no temporary files
    for name, digest in SHA256.items():
        assert download.sha256_file(cache / name) == digest
    err = capsys.readouterr().err
    assert "downloading MNIST into" in err and "train-images-idx3-ubyte.gz" in err  # progress bar
    (x2, _), _ = mnist(mirrors=["http://127.0.0.1:9/"], sample=False)  # now found in the cache
    np.testing.assert_array_equal(x, x2)


def test_mirror_list_from_environment(serve, cache, monkeypatch):
    monkeypatch.setenv("REGNET_MNIST_MIRRORS", f"http://127.0.0.1:9/, {serve(SHARED)}")
    _, (xt, _) = mnist(sample=False, progress=False, timeout=5)
    assert len(xt) == 10000


def test_corrupted_download_rejected_and_removed(serve, tmp_path):
    url = serve(corrupted_copy(tmp_path / "bad"))
    dest = tmp_path / "dest" / LABELS
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download.fetch(LABELS, [url], dest, SHA256[LABELS], progress=False)
    assert leftovers(dest.parent) == []


def test_corrupted_file_in_full_download(serve, cache, tmp_path):
    """The whole loader: a bad file from the only mirror fails and leaves nothing behind."""
    url = serve(corrupted_copy(tmp_path / "bad", "train-labels-idx1-ubyte.gz"))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*SHA-256 mismatch"):
        mnist(mirrors=[url], sample=False, progress=False)
    names = leftovers(cache)
    assert "train-labels-idx1-ubyte.gz" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    for n in names:  # whatever was kept is verified
        assert download.sha256_file(cache / n) == SHA256[n]


def test_next_mirror_after_a_corrupted_one(serve, tmp_path):
    bad, good = serve(corrupted_copy(tmp_path / "bad")), serve(SHARED)
    dest = tmp_path / "dest" / LABELS
    download.fetch(LABELS, [bad, good], dest, SHA256[LABELS], progress=False)
    assert dest.read_bytes() == (SHARED / LABELS).read_bytes()


def test_server_down(dead_url, tmp_path):
    dest = tmp_path / "dest" / LABELS
    with pytest.raises(DownloadError, match=dead_url.rstrip("/")):
        download.fetch(LABELS, [dead_url], dest, SHA256[LABELS], timeout=5, progress=False)
    assert leftovers(dest.parent) == []


def test_server_down_falls_back_to_sample(dead_url, cache, capsys):
    (x, _), (xt, _) = mnist(mirrors=[dead_url], progress=False, timeout=5)
    assert (len(x), len(xt)) == (5000, 2000)
    err = capsys.readouterr().err
    assert "using the bundled sample" in err and "could not be downloaded" in err and len(err.splitlines()) == 1
    with pytest.raises(DataError, match="MNIST not available"):
        mnist(mirrors=[dead_url], sample=False, progress=False, timeout=5)


def test_missing_file_on_mirror(serve, tmp_path):
    url = serve(tmp_path)  # an empty folder: 404
    with pytest.raises(DownloadError, match="HTTP 404"):
        download.fetch(LABELS, [url], tmp_path / "out" / LABELS, SHA256[LABELS], progress=False)


def test_oversized_response_refused(serve, tmp_path):
    with pytest.raises(DownloadError, match="limit of 1000"):
        download.fetch(
            LABELS, [serve(SHARED)], tmp_path / "out" / LABELS, SHA256[LABELS], progress=False, max_bytes=1000
        )
    assert leftovers(tmp_path / "out") == []


def test_recompressed_mirror_verified_by_content(serve, tmp_path):
    """A mirror serving the same content with another gzip level passes the content check."""
    folder = tmp_path / "recompressed"
    folder.mkdir()
    content = gzip.decompress((SHARED / LABELS).read_bytes())
    (folder / LABELS).write_bytes(gzip.compress(content, compresslevel=1, mtime=0))
    assert hashlib.sha256((folder / LABELS).read_bytes()).hexdigest() != SHA256[LABELS]
    dest = tmp_path / "out" / LABELS

    def by_content(p):
        return mnist_module.content_sha256(p) == CONTENT_SHA256[LABELS]

    download.fetch(LABELS, [serve(folder)], dest, SHA256[LABELS], progress=False, accept=by_content)
    assert gzip.decompress(dest.read_bytes()) == content
    # the same file with one changed label fails both checks
    (folder / LABELS).write_bytes(gzip.compress(content[:-1] + bytes([(content[-1] + 1) % 10])))
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        download.fetch(
            LABELS, [serve(folder)], tmp_path / "out2" / LABELS, SHA256[LABELS], progress=False, accept=by_content
        )


def test_no_mirror(tmp_path):
    with pytest.raises(DownloadError, match="no mirror"):
        download.fetch(LABELS, [], tmp_path / LABELS, SHA256[LABELS], progress=False)

"""MNIST: the four IDX files from a folder, the user cache or a verified download, with a bundled
sample (5 000 train / 2 000 test images) as the last resort.

Search order: the ``path`` argument (only that), else ``$REGNET_DATA`` (a folder holding the
files, or one with an ``mnist/`` subfolder), else the user cache (``$XDG_CACHE_HOME/regnet/mnist``
or ``~/.cache/regnet/mnist``). Files may be gzip-compressed or raw.
"""

import gzip
import hashlib
import os
import sys
import zlib
from importlib import resources

import numpy as np

from ..errors import DataError, DownloadError
from . import download as _download
from . import idx, npy

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: SHA-256 of the standard gzip files
SHA256 = {
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}
#: SHA-256 of their uncompressed content: a mirror that recompresses the files is still verified
CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
SAMPLE = "mnist_sample.npz"
#: why a download failed, per (destination, mirrors): the network is tried once per process
_FAILED: dict = {}
CLASSES = 10
SIDE = 28


def mnist(path=None, *, download=True, sample=None, mirrors=None, progress=True, timeout=_download.TIMEOUT):
    """``((x_train, y_train), (x_test, y_test))``: float32 ``(N, 1, 28, 28)`` in [0, 1], int64 labels.

    ``sample=True`` returns the bundled sample; ``sample=None`` falls back to it (saying so on
    stderr) when no full set is found and none can be downloaded; ``sample=False`` raises
    instead. An explicit ``path`` never falls back: the files are read from there or downloaded
    into it. ``mirrors`` (base URLs; default ``$REGNET_MNIST_MIRRORS``, space- or comma-separated,
    or the public ones) are tried in order, each named on stderr (with ``progress``) until one
    answers, each given ``timeout`` seconds of silence; each file must match its known SHA-256.
    """
    if sample is True:
        return load_sample()
    folders = search_path(path)
    found = find(folders)
    if found is not None:
        return load_files(found)
    reasons = [f"no MNIST IDX files in {', '.join(folders)}"]
    if download:
        dest = os.fspath(path) if path is not None else cache_dir()
        attempt = (dest, tuple(mirror_list(mirrors)))
        if attempt in _FAILED:  # the network is tried once per process
            reasons.append(f"{_FAILED[attempt]} (not retried)")
        else:
            try:
                return load_files(fetch(dest, mirrors=mirrors, progress=progress, timeout=timeout))
            except DownloadError as exc:
                _FAILED[attempt] = str(exc)
                reasons.append(str(exc))
    else:
        reasons.append("download disabled")
    if sample is False or path is not None:
        raise DataError("MNIST not available: " + "; ".join(reasons))
    how = "and could not be downloaded" if download else "(download disabled)"
    print(
        f"regnet: full MNIST not found {how}: using the bundled sample (5000 train / 2000 test images); "
        f"set REGNET_DATA to a folder holding the four MNIST IDX files",
        file=sys.stderr,
        flush=True,
    )
    return load_sample()


def locate(extra: "tuple | list" = ()) -> "dict | None":
    """The four full-set files ``mnist()`` would read, searched in ``$REGNET_DATA`` and the user
    cache, then in the folders ``extra`` (each, or its ``mnist/`` subfolder): ``{key: path}`` or
    ``None``."""
    more = [p for folder in extra for p in (os.fspath(folder), os.path.join(os.fspath(folder), "mnist"))]
    return find(search_path() + more)


# -- locating ---------------------------------------------------------------------------------------
def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "regnet", "mnist")


def search_path(path=None):
    """Folders searched, in order."""
    if path is not None:
        path = os.fspath(path)
        return [path, os.path.join(path, "mnist")]
    out = []
    env = os.environ.get("REGNET_DATA")
    if env:
        out += [env, os.path.join(env, "mnist")]
    return out + [cache_dir()]


def _variants(base):
    dotted = base.replace("-idx", ".idx")
    return [base + ".gz", base, dotted + ".gz", dotted]


def find(folders):
    """``{key: path}`` for the first folder that holds all four files, else ``None``."""
    for folder in folders:
        paths = {}
        for key, base in FILES.items():
            hit = next(
                (os.path.join(folder, v) for v in _variants(base) if os.path.isfile(os.path.join(folder, v))), None
            )
            if hit is None:
                break
            paths[key] = hit
        else:
            return paths
    return None


# -- downloading ------------------------------------------------------------------------------------
def mirror_list(mirrors=None):
    if mirrors is not None:
        return [mirrors] if isinstance(mirrors, str) else list(mirrors)
    env = os.environ.get("REGNET_MNIST_MIRRORS")
    if env:
        return env.replace(",", " ").split()
    return list(MIRRORS)


def fetch(dest, *, mirrors=None, progress=True, timeout=_download.TIMEOUT):
    """Download the four gzip files into ``dest`` (skipping those already there); ``{key: path}``."""
    mirrors = mirror_list(mirrors)
    told = []

    def notice(url):  # said once a server answers, so an offline machine is not told about downloads
        if not told:
            told.append(url)
            print(f"regnet: downloading MNIST into {dest}", file=sys.stderr, flush=True)

    def trying(url):  # until a server answers, each attempt is named: a wait is never silent
        if progress and not told:
            print(
                f"regnet: trying {url} (up to {timeout:g} s; REGNET_MNIST_MIRRORS sets the mirrors, "
                f"--data mnist-sample skips the network)",
                file=sys.stderr,
                flush=True,
            )

    paths = {}
    for key, base in FILES.items():
        name = base + ".gz"
        target = os.path.join(dest, name)
        if not os.path.isfile(target):
            try:
                _download.fetch(
                    name,
                    mirrors,
                    target,
                    SHA256[name],
                    timeout=timeout,
                    progress=progress,
                    accept=lambda p, n=name: content_sha256(p) == CONTENT_SHA256[n],
                    on_start=notice,
                    on_try=trying,
                )
            except OSError as exc:
                raise DownloadError(f"cannot write {target}: {exc.strerror or exc}") from None
        paths[key] = target
    return paths


def content_sha256(path, limit=256 << 20):
    """SHA-256 of a gzip file's uncompressed content (``None`` if it is not valid gzip)."""
    h, seen = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 16), b""):
                seen += len(block)
                if seen > limit:
                    return None
                h.update(block)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


# -- loading ----------------------------------------------------------------------------------------
def load_files(paths):
    """Read and check the four IDX files; convert to the float32 NCHW layout."""
    arrays = {key: idx.read(p) for key, p in paths.items()}
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        ip, lp = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
            raise DataError(
                f"{ip}: expected uint8 images of shape [N, {SIDE}, {SIDE}], found {images.dtype} {list(images.shape)}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{lp}: expected a uint8 vector of labels, found {labels.dtype} {list(labels.shape)}")
        if len(labels) != len(images):
            raise DataError(f"{lp} holds {len(labels)} labels but {ip} holds {len(images)} images")
        if len(labels) and labels.max() >= CLASSES:
            raise DataError(f"{lp}: labels must be 0..{CLASSES - 1}, found {int(labels.max())}")
        out.append((to_float(images), labels.astype(np.int64)))
    return tuple(out)


def to_float(images):
    """uint8 ``(N, 28, 28)`` → float32 ``(N, 1, 28, 28)`` in [0, 1]."""
    x = images.reshape(len(images), 1, SIDE, SIDE).astype(np.float32)
    x /= np.float32(255)
    return x


def sample_path():
    return resources.files(__package__).joinpath(SAMPLE)


def load_sample():
    """The bundled class-balanced sample: 5 000 train and 2 000 test images."""
    ref = sample_path()
    try:
        with resources.as_file(ref) as p, npy.open_npz(p) as z:
            data = {k: z.read(k) for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"the bundled MNIST sample {ref} is missing or damaged: {exc}") from None
    return (
        (to_float(data["x_train"]), data["y_train"].astype(np.int64)),
        (to_float(data["x_test"]), data["y_test"].astype(np.int64)),
    )

"""Verified downloads: try mirrors in turn, check SHA-256, write atomically.

A file is streamed into a temporary file next to its destination while its SHA-256 is
computed; only a file whose hash is one of the accepted ones is moved into place with
``os.replace``. Anything else (HTTP error, refused connection, wrong hash, oversize) removes
the temporary file, and when every mirror fails ``DownloadError`` lists why each one did.
"""

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request

from ..errors import DownloadError

CHUNK = 1 << 16
#: stop reading a response after this many bytes (MNIST's largest file is under 10 MB)
MAX_BYTES = 256 << 20
#: seconds a mirror may stay silent (connecting, or between two reads) before the next is tried
TIMEOUT = 10.0


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(
    name,
    mirrors,
    dest,
    sha256,
    *,
    timeout=TIMEOUT,
    progress=True,
    max_bytes=MAX_BYTES,
    accept=None,
    on_start=None,
    on_try=None,
):
    """Download ``name`` from the first mirror that serves it with a hash in ``sha256``.

    ``mirrors`` are base URLs (``name`` is appended), ``dest`` the final path, ``sha256`` one
    hex digest or a collection of accepted ones. ``accept(tmp_path) -> bool`` (optional) is a
    second check for a file whose hash is not listed (e.g. a hash of its decompressed content).
    ``on_start(url)`` (optional) is called when a server starts sending, ``on_try(url)`` before
    each mirror is tried (to say what is being waited for). Returns ``dest``.
    """
    accepted = {sha256} if isinstance(sha256, str) else set(sha256)
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        if on_try is not None:
            on_try(url)
        try:
            _fetch_one(url, dest, accepted, accept, timeout, progress, max_bytes, on_start)
            return dest
        except DownloadError as exc:
            failures.append(f"{url}: {exc}")
    if not failures:
        raise DownloadError(f"cannot download {name}: no mirror configured")
    raise DownloadError(f"cannot download {name}; " + "; ".join(failures))


def _fetch_one(url, dest, accepted, accept, timeout, progress, max_bytes, on_start=None):
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, timeout, progress, max_bytes, on_start)
            out.flush()
            os.fsync(out.fileno())
        if digest not in accepted and not (accept is not None and accept(tmp)):
            raise DownloadError(
                f"SHA-256 mismatch: got {digest}, expected {' or '.join(sorted(accepted))} "
                f"(corrupted or altered download, discarded)"
            )
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _stream(url, out, timeout, progress, max_bytes, on_start=None):
    """Copy the response body of ``url`` into ``out``; return its SHA-256."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if on_start is not None:
                on_start(url)
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            if total is not None and total > max_bytes:
                raise DownloadError(f"server announces {total} bytes, more than the limit of {max_bytes}")
            bar = _bar(url, total, progress)
            try:
                seen = 0
                for block in iter(lambda: resp.read(CHUNK), b""):
                    seen += len(block)
                    if seen > max_bytes:
                        raise DownloadError(f"response exceeds the limit of {max_bytes} bytes")
                    h.update(block)
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and seen != total:
                raise DownloadError(f"connection closed after {seen} of {total} bytes")
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        raise DownloadError(f"{type(exc).__name__}: {exc}") from None
    return h.hexdigest()


def _bar(url, total, progress):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=url.rsplit("/", 1)[-1],
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )

"""A strict reader for IDX files (the MNIST format), raw or gzip-compressed.

An IDX file is a 4-byte magic ``00 00 <dtype code> <ndim>``, ``ndim`` big-endian uint32
dimensions, then exactly ``prod(dims)`` big-endian items. Every deviation (bad magic, unknown
dtype code, short or long payload) raises ``DataError`` naming the file. Memory is allocated
only for the declared size, and only after that size has been checked against the file (raw)
or the gzip trailer (compressed), and against ``max_bytes``.
"""

import gzip
import os
import struct
import zlib

import numpy as np

from ..atomic import checked_path
from ..errors import DataError

#: IDX type codes → big-endian NumPy dtypes
DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
#: refuse files that declare more payload than this (MNIST's largest is 47 MB)
MAX_BYTES = 1 << 30


def is_gzip(path):
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def read(path, *, max_bytes=MAX_BYTES):
    """The array stored in the IDX file at ``path`` (native byte order)."""
    path = checked_path(path, error=DataError, what="an IDX file")
    try:
        if is_gzip(path):
            return _read_gzip(path, max_bytes)
        return _read_raw(path, max_bytes)
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from None


def _header(read_exact, path):
    """``(dtype, dims, header_bytes)`` from a stream reader ``read_exact(n) -> bytes``."""
    magic = read_exact(4)
    if len(magic) < 4:
        raise DataError(f"{path} is not an IDX file: {len(magic)} bytes, too short for the header")
    zero, code, ndim = struct.unpack(">HBB", magic)
    if zero != 0:
        raise DataError(f"{path} is not an IDX file: magic starts with {magic[:2].hex()}, expected 0000")
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in DTYPES)
        raise DataError(f"{path}: unknown IDX data type code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    raw = read_exact(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path} is truncated: header declares {ndim} dimensions but the file ends inside it")
    dims = struct.unpack(f">{ndim}I", raw)
    return DTYPES[code], dims, 4 + 4 * ndim


def _payload_bytes(dtype, dims, path, max_bytes):
    n = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if n > max_bytes:
        raise DataError(
            f"{path}: IDX header declares {list(dims)} items of {dtype.itemsize} bytes "
            f"({n} bytes), more than the limit of {max_bytes} bytes"
        )
    return n


def _to_array(buf, dtype, dims):
    return np.frombuffer(buf, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _read_raw(path, max_bytes):
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        dtype, dims, head = _header(fh.read, path)
        n = _payload_bytes(dtype, dims, path, max_bytes)
        if size != head + n:
            raise DataError(
                f"{path}: IDX header declares shape {list(dims)} ({head + n} bytes with the "
                f"header) but the file holds {size} bytes"
            )
        buf = bytearray(n)
        if fh.readinto(buf) != n:
            raise DataError(f"{path} changed while it was read")
    return _to_array(buf, dtype, dims)


def _gzip_isize(path):
    """The uncompressed size modulo 2**32 recorded in the gzip trailer."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 18:
            raise DataError(f"{path} is a truncated gzip file ({fh.tell()} bytes)")
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0]


def _read_gzip(path, max_bytes):
    isize = _gzip_isize(path)
    try:
        with gzip.open(path, "rb") as fh:
            dtype, dims, head = _header(fh.read, path)
            n = _payload_bytes(dtype, dims, path, max_bytes)
            if (head + n) % (1 << 32) != isize:
                raise DataError(
                    f"{path}: IDX header declares shape {list(dims)} ({head + n} bytes with "
                    f"the header) but the gzip stream holds {isize} bytes (mod 2**32)"
                )
            buf = bytearray(n)
            got = fh.readinto(buf)
            if got != n:
                raise DataError(f"{path} is truncated: {got} of {n} payload bytes")
            if fh.read(1):
                raise DataError(f"{path} holds data beyond the {head + n} bytes its IDX header declares")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is a corrupted gzip file: {exc}") from None
    return _to_array(buf, dtype, dims)


def write(path, array, *, compress=False):
    """Write ``array`` as an IDX file (used by tests and tools)."""
    array = np.asarray(array)
    codes = {v.newbyteorder("="): k for k, v in DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    body = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body += array.astype(DTYPES[code], copy=False).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(body)

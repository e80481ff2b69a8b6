"""Bounded readers for NumPy ``.npy`` and ``.npz`` files.

Nothing is allocated or decompressed before its size is known and checked, as the IDX reader
does: a ``.npy`` header (``numpy.lib.format``) declares the shape and dtype, so the payload size
is known before reading; an ``.npz`` is a zip archive whose directory declares each member's
uncompressed size and compression method, checked before the member is opened. Refused, with a
``DataError`` naming the file: object and other non-numeric dtypes (nothing is unpickled),
payloads or archives declaring more than ``max_bytes``, members compressed more than
``MAX_RATIO`` to one (more than deflate can achieve: the declared size is a lie) or with another
method than stored or deflate, encrypted members, negative dimensions, headers numpy cannot
parse, damaged compressed data, and payloads that do not match their header.
"""

import math
import os
import tokenize
import zipfile
import zlib
from types import TracebackType
from typing import IO

import numpy as np

from ..atomic import checked_path
from ..errors import DataError
from ..text import escape

#: refuse arrays (or archives, all members read together) declaring more bytes than this
MAX_BYTES = 1 << 30

#: deflate compresses by at most about 1032 to one; a member declaring more is not honest
MAX_RATIO = 1100
#: the dtype kinds accepted: booleans, signed and unsigned integers, floats
KINDS = "biuf"
_HEADER_BYTES = 10_000  # numpy's own limit on a header
# what numpy's header parser (tokenize + ast.literal_eval) raises on a damaged header, besides
# ValueError: an unclosed bracket, a bytes key compared with str ones, an invalid literal, ...
_HEADER_ERRORS = (ValueError, TypeError, SyntaxError, tokenize.TokenError, RecursionError, MemoryError)
# what reading a zip member raises on damaged data: a bad CRC, damaged deflate data, features
# zipfile does not implement
_MEMBER_ERRORS = (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error, NotImplementedError)
_ENCRYPTED = 0x1  # general purpose flag bit 0 of a zip entry


def read_npy(path: "str | os.PathLike[str]", *, max_bytes: int | None = None) -> np.ndarray:
    """The array in the ``.npy`` file at ``path`` (native byte order), its declared size checked
    against ``max_bytes`` (default ``MAX_BYTES``) and the file before anything is read."""
    path = checked_path(path, error=DataError, what="an .npy file")
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            return _read(fh, size, escape(path), max_bytes)
    except OSError as exc:
        raise DataError(f"cannot read {escape(path)}: {exc.strerror or exc}") from None


class NpzFile:
    """An open ``.npz`` archive: ``files`` lists its arrays, ``read(name)`` returns one; all reads
    together may declare at most ``max_bytes`` (default ``MAX_BYTES``)."""

    def __init__(self, path: "str | os.PathLike[str]", *, max_bytes: int | None = None) -> None:
        self.path = checked_path(path, error=DataError, what="an .npz file")
        self.shown = escape(self.path)
        self.budget = MAX_BYTES if max_bytes is None else max_bytes
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
            raise DataError(f"cannot read {self.shown}: not a valid .npz (zip) file: {escape(exc)}") from None
        self.members = {
            info.filename[: -len(".npy")]: info for info in self.zip.infolist() if info.filename.endswith(".npy")
        }
        self.files = sorted(self.members)

    def read(self, name: str) -> np.ndarray:
        """The array ``name``, after checking what the archive declares about it."""
        info = self.members.get(name)
        if info is None:
            held = escape(", ".join(self.files), 300) or "nothing"
            raise DataError(f"{self.shown} has no array {escape(repr(name), 100)} (it holds {held})")
        where = f"{self.shown}: array {escape(repr(name), 100)}"
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DataError(
                f"{where} uses zip compression method {info.compress_type}; only stored and deflate are read"
            )
        if info.flag_bits & _ENCRYPTED:
            raise DataError(f"{where} is encrypted; encrypted .npz members are not read")
        if info.file_size > self.budget:
            raise DataError(
                f"{where} declares {info.file_size} bytes uncompressed, more than the {self.budget} bytes left "
                f"of the limit"
            )
        if info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise DataError(
                f"{where} declares {info.file_size} bytes from {info.compress_size} compressed, a ratio beyond "
                f"{MAX_RATIO}:1 that deflate cannot reach"
            )
        try:
            with self.zip.open(info) as fh:
                arr = _read(fh, info.file_size, where, self.budget)
        except _MEMBER_ERRORS as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{where} is damaged: {escape(exc)}") from None
        self.budget -= info.file_size
        return arr

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> "NpzFile":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def open_npz(path: "str | os.PathLike[str]", *, max_bytes: int | None = None) -> NpzFile:
    """Open an ``.npz`` archive for bounded reading (a context manager)."""
    return NpzFile(path, max_bytes=max_bytes)


def _read(fh: IO[bytes], size: int, where: str, max_bytes: int) -> np.ndarray:
    """An array from ``fh`` (an ``.npy`` stream of ``size`` bytes), header checked first."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=_HEADER_BYTES)
        else:
            raise DataError(f"{where}: .npy format version {version} is not read (1.0 and 2.0 are)")
    except _HEADER_ERRORS as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{where} is not a valid .npy array: its header cannot be read: {escape(exc)}") from None
    if dtype.hasobject or dtype.kind not in KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{where} holds dtype {dtype}; only booleans, integers and floats are read (never objects)")
    if any(d < 0 for d in shape):
        raise DataError(f"{where} declares shape {list(shape)}, with a negative dimension")
    n = math.prod(shape) * dtype.itemsize
    if n > max_bytes:
        raise DataError(
            f"{where} declares shape {list(shape)} of {dtype} ({n} bytes), more than the limit of {max_bytes}"
        )
    head = fh.tell()
    if size != head + n:
        raise DataError(f"{where} declares {n} bytes of data after its header but holds {size - head}")
    buf = bytearray(n)
    got = 0
    while got < n:
        chunk = fh.read(min(n - got, 1 << 24))
        if not chunk:
            raise DataError(f"{where} is truncated: {got} of {n} bytes")
        buf[got : got + len(chunk)] = chunk
        got += len(chunk)
    if fh.read(1):
        raise DataError(f"{where} holds data beyond the {n} bytes its header declares")
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), copy=False)

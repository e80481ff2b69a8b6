"""Reading an input batch for a model from a file: ``.npy``, ``.npz`` or an IDX file, each through
a reader that checks the declared size before reading (``npy``, ``idx``)."""

import os

import numpy as np

from ..atomic import checked_path
from ..errors import DataError
from ..text import escape
from . import idx, npy


def read_inputs(
    path: "str | os.PathLike[str]", input_shape: tuple, key: str | None = None, *, scale_bytes: bool = True
) -> np.ndarray:
    """An input batch from ``.npy``, ``.npz`` or an IDX file, shaped for ``input_shape`` (no
    batch axis).

    uint8 arrays (images) are scaled to [0, 1]; a single sample gets a batch axis; ``(N, H, W)``
    becomes ``(N, 1, H, W)`` when the model expects one channel (any reshape that keeps each
    sample's size; not for a shape with a variable-length axis, ``None``). ``scale_bytes=False``
    keeps uint8 values as they are (token ids for an int64 input).
    """
    path = checked_path(path, error=DataError, what="an input file")
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist or is not a regular file"
        raise DataError(f"input {escape(path)} {what}")
    if path.endswith(".npy"):
        arr = npy.read_npy(path)
    elif path.endswith(".npz"):
        with npy.open_npz(path) as z:
            arr = z.read(_choose(z.files, key, path))
    else:
        arr = idx.read(path)
    if arr.dtype == np.uint8 and scale_bytes:
        arr = arr.astype(np.float32) / np.float32(255)
    want = tuple(input_shape)
    if arr.shape == want:
        return arr[None]
    if None in want:
        return arr
    if arr.ndim >= 1 and arr.shape[1:] != want and int(np.prod(arr.shape[1:])) == int(np.prod(want)):
        arr = arr.reshape(len(arr), *want)
    return arr


def _choose(names: list, key: str | None, path: str) -> str:
    """The array of an ``.npz`` to read: ``key``, the only one, or ``x``/``x_test``/``inputs``."""
    if key is None:
        guesses = [k for k in ("x", "x_test", "inputs") if k in names]
        if len(names) == 1:
            return names[0]
        if guesses:
            return guesses[0]
        raise DataError(f"{escape(path)} holds {escape(', '.join(names), 300)}: choose one with --key")
    if key not in names:
        raise DataError(
            f"{escape(path)} has no array {escape(repr(key), 100)} (it holds {escape(', '.join(names), 300)})"
        )
    return key

"""Reading an input batch for a model from a file: ``.npy``, ``.npz`` or an IDX file."""

import os

import numpy as np

from ..errors import DataError
from . import idx


def read_inputs(path: "str | os.PathLike[str]", input_shape: tuple, key: str | None = None) -> np.ndarray:
    """An input batch from ``.npy``, ``.npz`` or an IDX file, shaped for ``input_shape`` (no
    batch axis).

    uint8 arrays (images) are scaled to [0, 1]; a single sample gets a batch axis; ``(N, H, W)``
    becomes ``(N, 1, H, W)`` when the model expects one channel (any reshape that keeps each
    sample's size).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"input {path} {'is a directory, not a file' if os.path.isdir(path) else 'does not exist'}")
    if path.endswith(".npy"):
        arr = _np_load(path)
    elif path.endswith(".npz"):
        arr = _npz_array(path, key)
    else:
        arr = idx.read(path)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / np.float32(255)
    want = tuple(input_shape)
    if arr.shape == want:
        return arr[None]
    if arr.ndim >= 1 and arr.shape[1:] != want and int(np.prod(arr.shape[1:])) == int(np.prod(want)):
        arr = arr.reshape(len(arr), *want)
    return arr


def _np_load(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _npz_array(path, key):
    with _np_load(path) as z:
        names = z.files
        if key is None:
            guesses = [k for k in ("x", "x_test", "inputs") if k in names]
            if len(names) == 1:
                key = names[0]
            elif guesses:
                key = guesses[0]
            else:
                raise DataError(f"{path} holds {', '.join(names)}: choose one with --key")
        if key not in names:
            raise DataError(f"{path} has no array '{key}' (it holds {', '.join(names)})")
        return z[key]

"""Data sets by name, as the command line and the model zoo give them.

``load(source)`` accepts ``mnist``, ``mnist-sample``, ``moons``, ``circles``, ``spirals`` (with
optional generator arguments: ``moons:n=2000,noise=0.2,seed=1``), a folder holding MNIST-style
IDX files, or an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``. It returns
``((x_train, y_train), (x_test, y_test))``.
"""

import os

import numpy as np

from ..errors import DataError
from . import synthetic
from .mnist import mnist

SYNTHETIC = {"moons": synthetic.moons, "circles": synthetic.circles, "spirals": synthetic.spirals}
NAMES = ("mnist", "mnist-sample", *SYNTHETIC)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load(source, *, download=True):
    source = os.fspath(source)
    name, _, args = source.partition(":")
    if name in SYNTHETIC:
        return SYNTHETIC[name](**parse_args(args, source))
    if args and name in NAMES:
        raise DataError(f"data set '{name}' takes no arguments (got '{source}')")
    if source == "mnist":
        return mnist(download=download)
    if source == "mnist-sample":
        return mnist(sample=True)
    if os.path.isdir(source):
        return mnist(source, download=False)
    if source.endswith(".npz") and os.path.isfile(source):
        return load_npz(source)
    raise DataError(
        f"unknown data '{source}': give one of {', '.join(NAMES)}, a folder holding MNIST IDX "
        f"files or an .npz file with {', '.join(NPZ_KEYS)}"
    )


def parse_args(text, source):
    """``"n=2000,noise=0.2"`` → ``{"n": 2000, "noise": 0.2}`` (ints, then floats)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise DataError(f"cannot read '{item}' in data '{source}': write key=value pairs, e.g. moons:n=2000,seed=1")
        out[key] = _number(value, item, source)
    return out


def _number(value, item, source):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    raise DataError(f"'{item}' in data '{source}' is not a number")


def load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (it holds {', '.join(z.files) or 'nothing'})")
            xtr, ytr, xte, yte = (z[k] for k in NPZ_KEYS)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read {path}: {exc}") from None
    return (xtr, ytr), (xte, yte)


def describe(source):
    """A short label for reports (``mnist`` → ``MNIST``)."""
    return {"mnist": "MNIST", "mnist-sample": "MNIST sample"}.get(source, source)

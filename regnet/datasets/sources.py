"""Data sets by name, as the command line and the model zoo give them.

``load(source)`` accepts ``mnist``, ``mnist-sample``, ``moons``, ``circles``, ``spirals`` (with
optional generator arguments: ``moons:n=2000,noise=0.2,seed=1``), a folder holding MNIST-style
IDX files, or an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``. It returns
``((x_train, y_train), (x_test, y_test))``.
"""

import os

from ..atomic import checked_path
from ..errors import DataError
from ..text import escape
from . import npy, synthetic
from .mnist import mnist

SYNTHETIC = {"moons": synthetic.moons, "circles": synthetic.circles, "spirals": synthetic.spirals}
NAMES = ("mnist", "mnist-sample", *SYNTHETIC)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load(source, *, download=True):
    source = checked_path(source, error=DataError, what="a data source")
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
        f"unknown data '{escape(source, 300)}': give one of {', '.join(NAMES)}, a folder holding MNIST IDX "
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


def load_npz(path: "str | os.PathLike[str]") -> tuple:
    """``((x_train, y_train), (x_test, y_test))`` from an ``.npz`` holding those four arrays, each
    checked by the bounded reader (``npy.open_npz``) before it is decompressed."""
    with npy.open_npz(path) as z:
        missing = [k for k in NPZ_KEYS if k not in z.files]
        if missing:
            held = escape(", ".join(z.files), 300) or "nothing"
            raise DataError(f"{escape(z.path)} lacks {', '.join(missing)} (it holds {held})")
        xtr, ytr, xte, yte = (z.read(k) for k in NPZ_KEYS)
    return (xtr, ytr), (xte, yte)


def describe(source):
    """A short label for reports (``mnist`` → ``MNIST``)."""
    return {"mnist": "MNIST", "mnist-sample": "MNIST sample"}.get(source, source)

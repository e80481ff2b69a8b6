"""The optional compiled accelerator (the ``fast`` extra: numba).

The NumPy code is the default, the reference and always complete; a kernel here computes the same
result in one compiled pass where NumPy needs several (fused optimizer updates, pooling with its
argmax, normalisation with its activation...). Call sites ask ``active()`` and fall back to NumPy:

    from .. import accel
    if accel.active():
        accel.kernels("optim").adam_update(...)
    else:
        ...  # the NumPy reference

* ``REGNET_ACCEL=0`` (or ``off``/``false``) turns the accelerator off for the process;
* ``accel.enabled(False)`` is the same at run time, as a context manager for tests
  (``with accel.enabled(False): ...``) or a plain call;
* compiled kernels are cached on disk (numba's ``cache=True``: next to the module, or in the user's
  cache directory where site-packages is read-only), so the compilation is paid once per install.
"""

import contextlib
import functools
import importlib
import importlib.util
import os
from types import ModuleType

ENV = "REGNET_ACCEL"
_OFF = {"0", "off", "false", "no"}
_state = {"on": os.environ.get(ENV, "1").strip().lower() not in _OFF}


@functools.cache
def available() -> bool:
    """Whether the ``fast`` extra (numba) is installed."""
    return importlib.util.find_spec("numba") is not None


def active() -> bool:
    """Whether call sites use the compiled kernels: installed and not switched off."""
    return _state["on"] and available()


class _Switch(contextlib.AbstractContextManager):
    def __init__(self, previous: bool) -> None:
        self.previous = previous

    def __exit__(self, *exc: object) -> None:
        _state["on"] = self.previous


def enabled(on: bool) -> _Switch:
    """Switch the accelerator on or off (for the process, or for a ``with`` block)."""
    previous = _state["on"]
    _state["on"] = bool(on)
    return _Switch(previous)


def kernels(family: str) -> ModuleType:
    """The compiled kernels of one family, the module ``regnet.accel.<family>`` (``optim``,
    ``pool``, ``norm``...), imported by name on first use: numba is optional and slow to import.
    Each is a module of ``@numba.njit(cache=True)`` functions; tests/test_accel*.py compare each
    kernel with its NumPy reference."""
    return importlib.import_module(f"{__name__}.{family}")


def describe() -> str:
    """One line for benchmark contexts and ``regnet --version``: the path in use and why."""
    if not available():
        return "numpy (the 'fast' extra is not installed)"
    if not _state["on"]:
        return f"numpy ({ENV}=0 or switched off)"
    import numba

    return f"fast (numba {numba.__version__})"

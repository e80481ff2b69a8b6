"""The processes of a data-parallel run: an MPI communicator (through mpi4py) with the few
collectives training needs, each under the watchdog, and the time spent in them.

mpi4py is imported when a ``Communicator`` is first made, not when regnet is imported: importing
``mpi4py.MPI`` initialises MPI, which a program that never trains in parallel should not pay for.
"""

import os
import time
from typing import Any, NoReturn

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from ..text import show
from . import faults
from .watchdog import Watchdog

#: seconds a process waits in one collective before it stops the run (``REGNET_MPI_TIMEOUT``)
DEFAULT_TIMEOUT = 300.0

INSTALL = "pip install 'regnet[mpi]' (mpi4py and the mpich wheel, which brings mpiexec)"


def mpi() -> Any:
    """The ``mpi4py.MPI`` module, or ``MissingDependencyError`` saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise MissingDependencyError(
            f"distributed training needs mpi4py and an MPI library, and mpi4py cannot be imported ({exc}): {INSTALL}"
        ) from exc
    return MPI


def timeout_setting(value: float | None = None) -> float | None:
    """The collective deadline in seconds: ``value``, else ``REGNET_MPI_TIMEOUT``, else
    ``DEFAULT_TIMEOUT``; 0 turns the deadline off."""
    source = "timeout"
    if value is None:
        text = os.environ.get("REGNET_MPI_TIMEOUT")
        if text is None:
            return DEFAULT_TIMEOUT
        source = "REGNET_MPI_TIMEOUT"
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"expected a number of seconds, got {show(text)}", field=source) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ConfigError(f"expected a finite number of seconds >= 0 (0: no deadline), got {show(value)}", field=source)
    return float(value) or None


class Communicator:
    """``rank``, ``size`` and the collectives of a data-parallel run over an MPI communicator
    (default ``MPI.COMM_WORLD``).

    Every collective is named (``what``) for the messages and runs under a deadline of
    ``timeout`` seconds (see ``timeout_setting`` and ``watchdog``). ``seconds`` accumulates the
    time spent in each kind of collective, for measurements.
    """

    def __init__(self, comm: Any = None, *, timeout: float | None = None) -> None:
        MPI = mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())
        self.timeout = timeout_setting(timeout)
        self.watchdog = Watchdog(self.timeout, self._expired)
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    @property
    def chief(self) -> bool:
        """True on rank 0, the process that prints and writes files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"<Communicator rank {self.rank} of {self.size}>"

    # -- failure --------------------------------------------------------------------------------
    def _expired(self, what: str, waited: float) -> None:
        self.abort(
            f"waited {waited:.0f} s for the other processes in {what} (the deadline is {self.timeout:g} s, "
            f"REGNET_MPI_TIMEOUT): a process has died or hangs"
        )

    def abort(self, message: str) -> NoReturn:
        """Report ``message`` and stop every process of the run."""
        faults.abort(self.comm, self.rank, self.size, message)

    # -- collectives ----------------------------------------------------------------------------
    def _timed(self, what: str, kind: str, call: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        with self.watchdog.watch(what):
            out = call(*args)
        self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - t0
        self.calls[kind] = self.calls.get(kind, 0) + 1
        return out

    def allreduce(self, buffer: np.ndarray, what: str = "a sum over processes", kind: str = "allreduce") -> np.ndarray:
        """Replace ``buffer`` (a contiguous float32 or float64 array) by its sum over all processes
        (its time is counted under ``kind``)."""
        if not buffer.flags.c_contiguous or buffer.dtype not in (np.float32, np.float64):
            raise TypeError(f"allreduce needs a contiguous float32 or float64 array, got {buffer.dtype}")
        self._timed(what, kind, self.comm.Allreduce, self.MPI.IN_PLACE, buffer)
        return buffer

    def any(self, flag: bool, what: str = "a decision") -> bool:
        """True on every process when ``flag`` is true on any."""
        return bool(self._timed(what, "decision", self.comm.allreduce, bool(flag), self.MPI.LOR))

    def allgather(self, value: Any, what: str = "an exchange") -> list:
        """Every process's ``value`` (a small picklable object), by rank."""
        return list(self._timed(what, "allgather", self.comm.allgather, value))

    def broadcast(self, value: Any, what: str = "a broadcast") -> Any:
        """Rank 0's ``value`` (a picklable object) on every process."""
        return self._timed(what, "broadcast", self.comm.bcast, value, 0)

    def barrier(self, what: str = "a barrier") -> None:
        self._timed(what, "barrier", self.comm.Barrier)


_world: Communicator | None = None


def world(timeout: float | None = None) -> Communicator:
    """The ``Communicator`` of every process started by the launcher (``MPI.COMM_WORLD``)."""
    global _world
    if _world is None:
        _world = Communicator(timeout=timeout)
    elif timeout is not None:
        _world.timeout = timeout_setting(timeout)
        _world.watchdog.timeout = _world.timeout
    return _world

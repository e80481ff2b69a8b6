"""What a process does when it cannot go on: say why, then stop every process of the run.

A process that raises while the others wait in a collective would leave them waiting forever
(and MPICH's ``MPI_Finalize`` at exit waits for them too). So an error that only this process
knows of is reported on stderr, prefixed with the rank, and followed by ``MPI_Abort``, which makes
the launcher stop every process of the run. Errors that every process raises together, on a
decision they reached collectively (too few ranks, data that differ between ranks, a diverged
step, drifted replicas), are marked with ``collective`` and raised normally everywhere.
"""

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from ..errors import RegnetError
from ..text import escape

#: the exit status of a run stopped by ``abort``
ABORT_STATUS = 70
#: seconds between the last words of a failing process and ``MPI_Abort``
OUTPUT_GRACE = 0.5

_MARK = "_regnet_collective"


def collective(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised by every process together (returns it, to ``raise collective(...)``)."""
    setattr(exc, _MARK, True)
    return exc


def is_collective(exc: BaseException) -> bool:
    return bool(getattr(exc, _MARK, False))


def describe(exc: BaseException) -> str:
    """One line: the error's class and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {escape(text)}" if text else type(exc).__name__


def report(rank: int, size: int, message: str) -> None:
    """``regnet: rank R of N: message`` on stderr, flushed (the process may be killed next)."""
    try:
        sys.stderr.write(f"regnet: rank {rank} of {size}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed
        pass


_aborting = threading.Lock()


def abort(comm: Any, rank: int, size: int, message: str, status: int = ABORT_STATUS) -> NoReturn:
    """Report ``message`` and stop every process of the run (``MPI_Abort`` on ``comm``)."""
    if not _aborting.acquire(blocking=False):  # another thread is already aborting
        threading.Event().wait()
    report(rank, size, f"{message}; stopping all {size} processes")
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    time.sleep(OUTPUT_GRACE)  # the launcher forwards output asynchronously: let it pass before the kill
    try:
        comm.Abort(status)
    finally:  # Abort does not return; should it, leave anyway
        os._exit(status)


@contextmanager
def abort_on_local_error(comm: Any, rank: int, size: int) -> Iterator[None]:
    """Raise collective errors normally; abort the run on any other (see the module docstring)."""
    try:
        yield
    except BaseException as exc:
        if size == 1 or is_collective(exc):
            raise
        if not isinstance(exc, (RegnetError, KeyboardInterrupt)):
            traceback.print_exception(exc)
        abort(comm, rank, size, f"failed with {describe(exc)}")


def install_excepthook(comm: Any, rank: int, size: int) -> None:
    """An exception that ends the program on one process stops the others too (not only those
    raised inside ``fit``), once per process."""
    if getattr(sys.excepthook, "_regnet_mpi", False) or size == 1:
        return
    previous = sys.excepthook

    def hook(kind, exc, tb):
        previous(kind, exc, tb)
        if exc is not None and is_collective(exc):
            return
        abort(comm, rank, size, f"ended with an uncaught {describe(exc) if exc is not None else kind.__name__}")

    hook._regnet_mpi = True  # type: ignore[attr-defined]
    sys.excepthook = hook

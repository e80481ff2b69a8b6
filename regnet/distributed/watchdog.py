"""A deadline on blocking collectives: a process waiting longer than ``timeout`` seconds for
the others stops the whole run instead of hanging.

MPI collectives block until every process has joined them. When a process dies, ``mpiexec``
normally stops the rest at once; when it does not (a launcher without that clean-up, a process
that hangs instead of dying, a lost machine), the others would wait forever. The ``Watchdog``
thread sees a collective that has lasted ``timeout`` seconds and calls ``expire(what, waited)``,
which reports and aborts the run (``faults.abort``). mpi4py releases the GIL while it waits in MPI,
so the thread runs; arming and disarming costs two attribute writes per collective.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Watchdog:
    """Calls ``expire(what, seconds)`` from a daemon thread when one ``watch(what)`` block lasts
    longer than ``timeout`` seconds (``None`` or 0: no deadline)."""

    def __init__(self, timeout: float | None, expire: Callable[[str, float], None]) -> None:
        self.timeout = float(timeout) if timeout else None
        self.expire = expire
        self._since: float | None = None
        self._what = ""
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, what: str) -> Iterator[None]:
        """Run the block under the deadline (blocks do not nest)."""
        if self.timeout is None:
            yield
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="regnet-mpi-watchdog", daemon=True)
            self._thread.start()
        self._what, self._since = what, time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def _run(self) -> None:
        while True:
            timeout = self.timeout
            time.sleep(min(1.0, timeout / 10) if timeout else 1.0)
            since, what = self._since, self._what
            if timeout and since is not None and time.monotonic() - since > timeout:
                self.expire(what, time.monotonic() - since)
                return

"""Shared helpers for the robustness tests: case counting for fuzz properties and time limits.

``fuzz_cases`` counts the examples a hypothesis property actually ran; at teardown the count is
printed (``pytest -s``), recorded as the ``fuzz_cases`` property of the test (``--junitxml``)
and appended as a JSON line to ``$REGNET_FUZZ_REPORT`` when that is set.
"""

import contextlib
import json
import os
import signal
import threading

import pytest


class CaseCounter:
    def __init__(self):
        self.counts = {}

    def __call__(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1


@pytest.fixture
def fuzz_cases(request, record_property):
    counter = CaseCounter()
    yield counter
    for name, n in counter.counts.items():
        record_property(f"fuzz_cases[{name}]", n)
        print(f"\n{request.node.name}: {name}: {n} generated cases")
        report = os.environ.get("REGNET_FUZZ_REPORT")
        if report:
            with open(report, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"test": request.node.nodeid, "property": name, "cases": n}) + "\n")


class TimeLimitExceeded(Exception):
    """Raised inside the code under test when it runs past its time limit (a hang)."""


@contextlib.contextmanager
def time_limit(seconds):
    """Interrupt the block with ``TimeLimitExceeded`` after ``seconds`` of wall time (main thread,
    POSIX only; elsewhere the block simply runs)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise TimeLimitExceeded(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(name="time_limit")
def time_limit_fixture():
    """The ``time_limit(seconds)`` context manager, for tests that guard against hangs."""
    return time_limit

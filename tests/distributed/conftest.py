"""Runs of ``mpiexec`` from pytest: ``mpirun(n, scenario, *args)`` starts ``tests/distributed/
mpi_worker.py`` on ``n`` processes (one BLAS thread each) under a time limit. Skipped where mpi4py
or mpiexec is missing (``pip install -e '.[mpi]'``)."""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regnet.distributed import launch

WORKER = Path(__file__).with_name("mpi_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _available():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if launch.mpiexec() is None:
        return "no mpiexec (pip install mpich)"
    return None


class Run:
    """A finished run: ``returncode``, ``stdout``, ``stderr`` and ``seconds`` (wall time)."""

    def __init__(self, done, seconds):
        self.returncode, self.stdout, self.stderr, self.seconds = done.returncode, done.stdout, done.stderr, seconds

    def __repr__(self):
        return f"<Run rc={self.returncode} in {self.seconds:.1f}s\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}>"


@pytest.fixture
def mpirun():
    reason = _available()
    if reason:
        pytest.skip(reason)

    def run(n, *args, timeout=120, env=None, mpiexec_args=(), argv=None):
        argv = [sys.executable, str(WORKER), *map(str, args)] if argv is None else argv
        t0 = time.monotonic()
        try:
            done = launch.run(n, argv, timeout=timeout, env=env, mpiexec_args=mpiexec_args, cwd=ROOT)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the run did not end within {timeout} s:\n{exc.stdout}\n{exc.stderr}")
        return Run(done, time.monotonic() - t0)

    return run

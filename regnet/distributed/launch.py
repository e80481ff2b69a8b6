"""Starting an MPI run from Python (tests, benchmarks): find ``mpiexec`` and run a command on N
processes, each with ``threads`` BLAS threads, under a time limit.

On a cluster, start runs with the cluster's launcher instead (``mpiexec`` with a hostfile, Slurm's
``srun``): see docs/distributed.md.
"""

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import MissingDependencyError
from .mpi import INSTALL

#: environment variables that size the thread pools of BLAS and OpenMP
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def mpiexec() -> str | None:
    """The ``mpiexec`` of this Python environment (the mpich wheel puts it next to the
    interpreter), else the first on ``PATH``; ``None`` when there is none."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("mpiexec")


def require_mpiexec() -> str:
    found = mpiexec()
    if found is None:
        raise MissingDependencyError(f"no mpiexec found next to {sys.executable} or on PATH: {INSTALL}")
    return found


def environment(threads: int = 1, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``threads`` BLAS/OpenMP threads per process."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in THREAD_VARIABLES})
    env.update(extra or {})
    return env


def command(processes: int, argv: Sequence[str], mpiexec_args: Sequence[str] = ()) -> list[str]:
    """``mpiexec [mpiexec_args] -n processes argv`` (MPICH reads global options such as
    ``-disable-auto-cleanup`` only before ``-n``)."""
    return [require_mpiexec(), *mpiexec_args, "-n", str(processes), *argv]


def run(
    processes: int,
    argv: Sequence[str],
    *,
    timeout: float,
    threads: int = 1,
    env: dict[str, str] | None = None,
    mpiexec_args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``argv`` on ``processes`` processes and wait at most ``timeout`` seconds. After that the
    whole run (``mpiexec`` and every process it started) is stopped and
    ``subprocess.TimeoutExpired`` raised."""
    proc = subprocess.Popen(
        command(processes, argv, mpiexec_args),
        env=environment(threads, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,  # its own process group, to stop every process of the run at once
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
    except BaseException:
        stop(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop a run started by ``run``: SIGTERM to its process group, then SIGKILL to whatever of
    the group is left after ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

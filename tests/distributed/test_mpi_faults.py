"""Replicas and failures on real MPI runs (2 processes): rank 0's state reaches every process, a
one-bit difference is caught, and a process that raises, is killed or hangs stops the whole run
within a bounded time with a message naming it."""

import json

import numpy as np


def test_broadcast_gives_every_process_rank_0s_state_and_the_checksum_sees_one_ulp(mpirun, tmp_path):
    run = mpirun(2, "state", tmp_path)
    assert run.returncode == 0, run
    w0, w1 = (np.load(tmp_path / f"weights-{r}.npz") for r in (0, 1))
    assert set(w0) == set(w1) and all(np.array_equal(w0[k], w1[k]) for k in w0)
    s0, s1 = (json.loads((tmp_path / f"state-{r}.json").read_text()) for r in (0, 1))
    assert s0["rng"] == s1["rng"]
    for s in (s0, s1):  # every process raises, naming the tensor
        assert "rank 1 differs from rank 0 in weight out/kernel" in s["drift"]
        assert "after a change on rank 1" in s["drift"]


def test_a_process_that_raises_stops_the_run(mpirun, tmp_path):
    run = mpirun(2, "fail", tmp_path, "raise", timeout=60)
    assert run.returncode != 0, run
    assert "regnet: rank 1 of 2: failed with RuntimeError: a failure only rank 1 sees; stopping all 2" in run.stderr
    print(f"\nthe whole run (launch, training, stop) took {run.seconds:.2f} s")
    assert run.seconds < 30, run


def test_a_killed_process_stops_the_run(mpirun, tmp_path):
    """mpiexec (MPICH's hydra) sees the killed process and stops the others at once."""
    run = mpirun(2, "fail", tmp_path, "kill", timeout=60)
    assert run.returncode != 0, run
    assert "Killed (signal 9)" in run.stdout + run.stderr
    print(f"\nthe whole run (launch, training, stop) took {run.seconds:.2f} s")
    assert run.seconds < 30, run


def test_a_hanging_process_is_caught_by_the_deadline(mpirun, tmp_path):
    """A process that neither answers nor dies (or dies where the launcher does not notice): the
    others' deadline stops the run."""
    run = mpirun(2, "fail", tmp_path, "hang", timeout=60, env={"REGNET_MPI_TIMEOUT": "3"})
    assert run.returncode != 0, run
    assert "regnet: rank 0 of 2: waited 3 s for the other processes in the gradient exchange" in run.stderr, run
    print(f"\nthe whole run (launch, training, stop) took {run.seconds:.2f} s")
    assert run.seconds < 30, run


def test_an_uncaught_exception_on_one_process_stops_the_run(mpirun, tmp_path):
    run = mpirun(2, "uncaught", tmp_path, timeout=60)
    assert run.returncode != 0, run
    assert "KeyError: 'not found on rank 1'" in run.stderr
    assert "regnet: rank 1 of 2: ended with an uncaught KeyError" in run.stderr
    print(f"\nthe whole run (launch, training, stop) took {run.seconds:.2f} s")
    assert run.seconds < 30, run

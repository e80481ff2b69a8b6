"""Data-parallel training gives the weights one process gets on the same global batches, up to
the order of floating-point sums, for SGD and Adam with BatchNorm and Dropout; every replica
holds the same bits."""

import json
import time

import numpy as np
import pytest

import regnet
from tests.distributed import training

#: the bound on the largest weight difference from one process after 14 steps: the sums of a
#: step differ from one process's in their last bits (about 1e-7 relative), which training
#: carries on; measured differences are about 2e-7 (docs/distributed.md)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def single():
    """Each case trained on one process, without any strategy."""
    out = {}
    for name, case in training.CASES.items():
        m = training.model(case)
        history = training.fit(m, case)
        out[name] = ({k: v.copy() for k, v in m.state_dict().items()}, history.history)
    return out


def _largest_difference(a, b):
    assert set(a) == set(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.parametrize("ranks", [2, 4])
def test_data_parallel_training_equals_one_process(mpirun, tmp_path, single, ranks):
    run = mpirun(ranks, "agree", tmp_path, timeout=240)
    assert run.returncode == 0, run
    for name in training.CASES:
        weights, history = single[name]
        for mode in ("global", "per_rank"):
            replicas = [dict(np.load(tmp_path / f"{name}-{mode}-rank{r}.npz")) for r in range(ranks)]
            for other in replicas[1:]:  # every replica holds the same bits
                assert all(np.array_equal(replicas[0][k], other[k]) for k in other)
            diff = _largest_difference(replicas[0], weights)
            print(f"\n{name} ({mode}) on {ranks} processes: largest weight difference from one process {diff:.2g}")
            assert diff < TOLERANCE, (name, mode, diff)
            assert diff > 0 or ranks == 1  # the sums do differ in order: the comparison is not vacuous
            logs = json.loads((tmp_path / f"{name}-{mode}.json").read_text())
            assert set(logs) == set(history)
            for key in history:
                np.testing.assert_allclose(logs[key], history[key], rtol=1e-4, err_msg=key)


def test_a_non_finite_gradient_on_one_process_rewinds_every_process_alike(mpirun, tmp_path):
    run = mpirun(2, "diverge", tmp_path)
    assert run.returncode == 0, run
    for r in (0, 1):
        epoch, batch, message = (tmp_path / f"error-{r}.txt").read_text().split(" ", 2)
        assert (epoch, batch) == ("1", "5"), message
        assert "the gradients of hidden/kernel" in message or "hidden/kernel" in message
    w0, w1 = (dict(np.load(tmp_path / f"weights-{r}.npz")) for r in (0, 1))
    assert all(np.array_equal(w0[k], w1[k]) for k in w0)
    # where one process is after the 4 steps before the failing one
    case = training.CASES["sgd"]
    m = training.model(case)
    x, y = training.data()
    m.fit(x, y, batch_size=training.GLOBAL_BATCH, epochs=1, steps_per_epoch=4, seed=11, verbose=0)
    assert _largest_difference(w0, m.state_dict()) < TOLERANCE


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("lengths", "DataError", "the processes hold different x (rank 0: 200 samples in 7 batches; rank 1: 160 "),
        ("small_batch", "ConfigError", "a global batch of 1 samples cannot be shared by 2 processes"),
        ("last_batch", "DataError", "the last one holds 1 sample(s), fewer than the 2 processes"),
        ("batch_sizes", "DistributedError", "the processes have different batch sizes: rank(s) 1 differ"),
        ("generator", "DistributedError", "ran out of batches at different steps: after step 3, 1 of 2 processes"),
    ],
)
def test_bad_input_is_one_clear_error_on_every_process(mpirun, tmp_path, case, error, words):
    run = mpirun(2, "bad", tmp_path, case)
    assert run.returncode == 0, run
    for r in (0, 1):
        kind, message = json.loads((tmp_path / f"error-{r}.json").read_text())
        assert kind == error and words in message, message


def test_one_process_is_not_enough(mpirun, tmp_path):
    run = mpirun(1, "bad", tmp_path, "none")
    assert run.returncode == 0, run
    kind, message = json.loads((tmp_path / "error-0.json").read_text())
    assert kind == "DistributedError" and "needs at least 2 processes and this run has 1" in message


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_failing_process_stops_training_and_the_last_checkpoint_loads(mpirun, tmp_path, how):
    run = mpirun(2, "crash", tmp_path, how, timeout=180)
    ended = time.time()
    assert run.returncode != 0, run
    failed_at = float((tmp_path / "failed-at").read_text())
    assert ended - failed_at < 30, run  # measured: under 0.1 s on one machine
    if how == "raise":
        expected = "regnet: rank 1 of 2: failed with RuntimeError: lost its data disk; stopping all 2 processes"
        assert expected in run.stderr
    else:
        assert "Killed (signal 9)" in run.stdout + run.stderr
    model = regnet.load(tmp_path / "ckpt.h5")  # complete: written atomically, whatever was killed when
    assert model.epoch >= 2
    assert [k for k in tmp_path.iterdir() if k.name.startswith("ckpt") and k.name != "ckpt.h5"] == []


def test_a_run_resumed_on_another_number_of_processes_continues_it(mpirun, tmp_path):
    """With the same global batch, the run goes on as it would have (4 processes, or one, from a
    checkpoint written by 2): shuffling, Dropout and BatchNorm do not depend on the count."""
    first = mpirun(2, "resume", tmp_path, "first")
    assert first.returncode == 0, first
    again = mpirun(4, "resume", tmp_path, "again", timeout=180)
    assert again.returncode == 0, again
    uninterrupted = dict(np.load(tmp_path / "first.npz"))
    assert _largest_difference(dict(np.load(tmp_path / "again-4.npz")), uninterrupted) < TOLERANCE
    case = training.CASES["adam"]
    alone = training.model(case, seed=99)
    training.fit(alone, case, resume_from=tmp_path / "ckpt-1.h5")
    assert _largest_difference(alone.state_dict(), uninterrupted) < TOLERANCE
    logs = json.loads((tmp_path / "again-4.json").read_text())
    assert [e["epoch"] for e in logs] == [1, 2]
    np.testing.assert_allclose(logs[1]["loss"], json.loads((tmp_path / "first.json").read_text())[1]["loss"], rtol=1e-4)
    per_rank = mpirun(4, "resume", tmp_path, "per_rank", timeout=180)
    assert per_rank.returncode == 0, per_rank
    said = json.loads((tmp_path / "warnings-0.json").read_text())
    assert any(
        "trained with a global batch of 32 on 2 process(es); it now has a global batch of 64 on 4" in w for w in said
    )
    assert json.loads((tmp_path / "warnings-1.json").read_text()) == []  # rank 0 alone says it

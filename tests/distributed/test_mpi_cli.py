"""``regnet train ... --distributed`` under mpiexec: the same flags as one process, the same model
(up to the order of sums), one line of output, and clear errors."""

import json
import os
import subprocess
import sys

import numpy as np

import regnet
from regnet import cli

SPEC = {
    "format": "regnet.model",
    "version": 1,
    "input_shape": [2],
    "layers": [
        {"type": "Dense", "name": "h1", "units": 16, "activation": "relu"},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Dropout", "name": "drop", "rate": 0.2},
        {"type": "Dense", "name": "out", "units": 2, "activation": "softmax"},
    ],
}
FLAGS = ["--data", "moons:n=400", "--epochs", "3", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--quiet"]


def test_distributed_cli_trains_the_model_one_process_trains(mpirun, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    argv = ["train", str(spec), *FLAGS, "--batch-size", "32"]
    run = mpirun(
        2, argv=[sys.executable, "-m", "regnet", *argv, "--distributed", "global", "--out", str(tmp_path / "2.h5")]
    )
    assert run.returncode == 0, run
    assert run.stdout.count("saved ") == 1 and run.stderr == "", run  # rank 0 alone speaks
    assert cli.main([*argv, "--out", str(tmp_path / "1.h5")]) == 0
    two, one = regnet.load(tmp_path / "2.h5"), regnet.load(tmp_path / "1.h5")
    assert two.epoch == one.epoch == 3
    diff = max(float(np.max(np.abs(two.state_dict()[k] - one.state_dict()[k]))) for k in one.state_dict())
    assert diff < 1e-4, diff
    assert "--distributed global" in regnet.io.read_metadata(tmp_path / "2.h5")["command"]


def test_distributed_cli_errors_are_printed_once(mpirun, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    argv = ["train", str(spec), *FLAGS, "--distributed", "global", "--batch-size", "1", "--out", str(tmp_path / "m.h5")]
    run = mpirun(2, argv=[sys.executable, "-m", "regnet", *argv])
    assert run.returncode == 1, run
    assert run.stderr.count("regnet: error: field 'batch_size': a global batch of 1 samples cannot be shared") == 1
    assert not (tmp_path / "m.h5").exists()


def test_distributed_cli_on_one_process_says_how_to_start_it(mpirun, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    run = mpirun(1, argv=[sys.executable, "-m", "regnet", "train", str(spec), *FLAGS, "--distributed"])
    assert run.returncode == 1, run
    assert (
        "regnet: error: --distributed needs at least 2 processes and this run has 1: start it with mpiexec"
        in run.stderr
    )


def test_distributed_cli_without_mpi4py_names_the_extra(tmp_path):
    """No MPI needed: mpi4py is made unimportable."""
    fake = tmp_path / "site" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('mpi4py is not installed here')\n")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-m", "regnet", "train", str(spec), *FLAGS, "--distributed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "regnet: error: distributed training needs mpi4py" in done.stderr
    assert "pip install 'regnet[mpi]'" in done.stderr

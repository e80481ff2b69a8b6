"""benchmarks/distributed.py keeps working: a quick scaling run and a short agreement run on
random images (the figures are not checked: timings on a shared machine are noise)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("what", [["--quick"], ["agreement", "--quick"]])
def test_distributed_benchmark_runs(mpirun, tmp_path, what):
    argv = [sys.executable, str(ROOT / "benchmarks" / "distributed.py"), *what, "--synthetic", "--archs", "lenet5"]
    done = subprocess.run(argv + ["--out", str(tmp_path / "d.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    if what == ["--quick"]:
        assert "| lenet5 | 2 processes x 1 thread |" in done.stdout and (tmp_path / "d.json").exists()
    else:
        assert "| lenet5 | sgd |" in done.stdout and "| lenet5 | adam |" in done.stdout

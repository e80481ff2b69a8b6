"""The benchmark script still runs end to end (regnet only, random data, a few batches).

Speed is never asserted here: only that every architecture trains and predicts, and that the
table and the JSON file come out with sane, positive figures.
"""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
TINY = [
    "--frameworks",
    "regnet",
    "--synthetic",
    "--rounds",
    "1",
    "--warmup",
    "1",
    "--train-batches",
    "2",
    "--infer-batches",
    "1",
    "--infer-batch",
    "32",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("regnet_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_architecture_in_process(bench, tmp_path, capsys):
    out = tmp_path / "smoke.json"
    assert bench.main([*TINY, "--in-process", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["arch"] for r in result["summary"]] == list(bench.ARCHS)
    for row in result["summary"]:
        assert row["regnet_train_ips"] > 0 and row["regnet_infer_ips"] > 0
        assert row["torch_train_ips"] is None and row["train_ratio"] is None
    for run in result["runs"]:
        assert run["framework"] == "regnet" and run["images"] > 0 and run["seconds"] > 0
    assert "| lenet5 |" in capsys.readouterr().out


def test_worker_subprocess_reports_memory(bench, tmp_path):
    out = tmp_path / "one.json"
    argv = [*TINY, "--archs", "lenet5", "--modes", "train", "--out", str(out)]
    assert bench.main(argv) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["mode"] == "train" and run["peak_mib"] is not None and run["peak_mib"] >= 0
    assert run["loss"] > 0

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
    "--latency-calls",
    "3",
    "--scaling-rounds",
    "0",
    "--peak-size",
    "128",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("regnet_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_architecture_in_process(bench, tmp_path, capsys):
    out = tmp_path / "smoke.json"
    assert bench.main([*TINY, "--batch", "16", "--in-process", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["arch"] for r in result["summary"]] == list(bench.ARCHS)
    for row in result["summary"]:
        assert row["regnet_train_ips"] > 0 and row["regnet_infer_ips"] > 0
        assert row["torch_train_ips"] is None and row["train_ratio"] is None
    for run in result["runs"]:
        assert run["framework"] == "regnet" and run["images"] > 0 and run["seconds"] > 0
    assert "| lenet5 |" in capsys.readouterr().out
    assert result["meta"]["cpu"] is not None and result["meta"]["command"].startswith("python benchmarks/bench.py")
    assert result["meta"]["matmul_peak_gflops"] > 0
    for row in result["summary"]:
        assert row["regnet_latency_ms"] > 0 and 0 < row["regnet_train_peak_fraction"]
    report = out.with_suffix(".md").read_text()
    assert "float32 matmul peak" in report and "| resnet8_cifar |" in report


def test_scaling_table_and_plot(bench, tmp_path):
    out = tmp_path / "scaling.json"
    argv = [*TINY, "--archs", "mlp_1024", "--modes", "train", "--in-process", "--out", str(out)]
    argv[argv.index("--scaling-rounds") + 1] = "1"
    assert bench.main([*argv, "--scaling-images", "16"]) == 0
    result = json.loads(out.read_text())
    got = {(r["arch"], r["batch"]) for r in result["scaling"] if r["framework"] == "regnet"}
    assert got == {("mlp_1024", b) for b in bench.SCALING_BATCHES} | {(f"mlp_{w}", 64) for w in bench.WIDTHS}
    assert all(r["us_per_img"] > 0 for r in result["scaling"])
    report = out.with_suffix(".md").read_text()
    assert "by batch size" in report and "by MLP width" in report
    if importlib.util.find_spec("matplotlib") is not None:
        assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_matmul_flops_count_the_products(bench):
    model = bench.regnet_model("mlp_370_115_50")
    fwd, train = bench.matmul_flops(model)
    assert fwd == 2 * (784 * 370 + 370 * 115 + 115 * 50 + 50 * 10)
    assert train == 3 * fwd - 2 * 784 * 370  # the first layer computes no input gradient
    conv = bench.regnet_model("convnet_32_64")
    assert bench.matmul_flops(conv)[0] == 2 * (32 * 9 * 26 * 26 + 64 * 32 * 9 * 11 * 11 + 1600 * 10)


def test_worker_subprocess_reports_memory(bench, tmp_path):
    out = tmp_path / "one.json"
    argv = [*TINY, "--archs", "lenet5", "--modes", "train", "--out", str(out)]
    assert bench.main(argv) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["mode"] == "train" and run["peak_mib"] is not None and run["peak_mib"] >= 0
    assert run["loss"] > 0

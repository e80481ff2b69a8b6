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
    assert {"lstm_128", "vit_2x64", "dwsep_16_32_64"} <= set(bench.ARCHS)
    for row in result["summary"]:
        assert row["regnet_train_ips"] > 0 and row["regnet_infer_ips"] > 0
        assert row["regnet_train_first_ms"] > 0 and row["regnet_train_steady_ms"] > 0
        assert row["torch_train_ips"] is None and row["train_ratio"] is None
        assert row["regnet_accel_train_ips"] is None and row["accel_train_speedup"] is None
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
    has_plot = importlib.util.find_spec("matplotlib") is not None
    if has_plot:
        assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
        out.with_suffix(".png").unlink()

    # --render writes the same report, the plot and a README block again from the result file alone
    out.with_suffix(".md").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nbefore\n<!-- bench:begin: generated -->\nold table\n<!-- bench:end -->\nafter\n")
    assert bench.main(["--render", str(out), "--readme", str(readme)]) == 0
    assert out.with_suffix(".md").read_text() == report
    assert out.with_suffix(".png").exists() == has_plot
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n<!-- bench:begin: generated -->\nOne run of `python benchmarks/bench.py")
    assert text.endswith("<!-- bench:end -->\nafter\n") and "old table" not in text
    assert "| mlp_1024 |" in text and ("![training time per image](scaling.png)" in text) == has_plot
    # the project's README has the block: the documented command replaces it and nothing else
    real = BENCH.parents[1] / "README.md"
    copy = tmp_path / "PROJECT_README.md"
    copy.write_text(real.read_text())
    assert bench.main(["--render", str(out), "--readme", str(copy)]) == 0
    before, after = real.read_text(), copy.read_text()
    cut = before.index(bench.BEGIN)
    assert after[:cut] == before[:cut] and after.endswith(before[before.index(bench.END) :])
    assert "| mlp_1024 |" in after[cut:]
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no block"):
        bench.main(["--render", str(out), "--readme", str(bare)])


def test_matmul_flops_count_the_products(bench):
    model = bench.regnet_model("mlp_370_115_50")
    fwd, train = bench.matmul_flops(model)
    assert fwd == 2 * (784 * 370 + 370 * 115 + 115 * 50 + 50 * 10)
    assert train == 3 * fwd - 2 * 784 * 370  # the first layer computes no input gradient
    conv = bench.regnet_model("convnet_32_64")
    assert bench.matmul_flops(conv)[0] == 2 * (32 * 9 * 26 * 26 + 64 * 32 * 9 * 11 * 11 + 1600 * 10)
    lstm_fwd, lstm_train = bench.matmul_flops(bench.regnet_model("lstm_128"))
    assert lstm_fwd == 2 * (28 * (28 * 512 + 128 * 512) + 128 * 10)
    assert lstm_train == 2 * (2 * 28 * 28 * 512 + 3 * 28 * 128 * 512 + 3 * 128 * 10)  # the recurrent product's input
    dw = bench.regnet_model("dwsep_16_32_64")
    assert bench.matmul_flops(dw)[0] == 2 * (
        16 * 9 * 14 * 14 + 16 * 9 * 14 * 14 + 32 * 16 * 14 * 14 + 32 * 9 * 7 * 7 + 64 * 32 * 7 * 7 + 64 * 10
    )
    vit_fwd = bench.matmul_flops(bench.regnet_model("vit_2x64"))[0]
    attention = 16 * 4 * 64 * 64 + 2 * 16 * 16 * 4 * 16  # four projections of 16 tokens, scores and values
    mlp = 16 * 2 * 64 * 128
    assert vit_fwd == 2 * (49 * 64 * 16 + 2 * (attention + mlp) + 64 * 10)


def test_worker_subprocess_reports_memory(bench, tmp_path):
    out = tmp_path / "one.json"
    argv = [*TINY, "--archs", "lenet5", "--modes", "train", "--out", str(out)]
    assert bench.main(argv) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["mode"] == "train" and run["peak_mib"] is not None and run["peak_mib"] >= 0
    assert run["loss"] > 0


def test_both_regnet_paths_in_fresh_processes(bench, tmp_path):
    """The NumPy path and the accelerated path each run in a worker with ``REGNET_ACCEL`` set
    before import; the accelerated path's first step is also measured with an empty kernel cache."""
    pytest.importorskip("numba")
    out = tmp_path / "paths.json"
    argv = [*TINY, "--archs", "lstm_128", "--modes", "infer", "--out", str(out)]
    argv[argv.index("--frameworks") + 1 : argv.index("--frameworks") + 2] = ["regnet", "regnet_accel"]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    paths = {r["framework"]: r["accel"] for r in result["runs"]}
    assert paths["regnet"].startswith("numpy") and paths["regnet_accel"].startswith("fast")
    (cold,) = result["cold_runs"]
    assert cold["framework"] == "regnet_accel" and cold["cache"] == "empty" and cold["first_ms"] > 0
    (row,) = result["summary"]
    assert row["regnet_accel_infer_compile_ms"] == cold["first_ms"]
    assert row["regnet_infer_first_ms"] > 0 and row["regnet_accel_infer_first_ms"] > 0
    assert row["accel_infer_speedup"] == row["regnet_accel_infer_ips"] / row["regnet_infer_ips"]
    report = out.with_suffix(".md").read_text()
    assert "regnet_accel: fast (numba" in report and "numba " in report and "| lstm_128 |" in report

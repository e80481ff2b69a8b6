"""The benchmark's PyTorch twins compute the same function as the regnet models they copy
(skipped where PyTorch, an optional benchmark dependency, is not installed)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("regnet_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torch_twin_has_the_same_function(bench):
    torch = pytest.importorskip("torch")
    for arch in bench.ARCHS:
        model = bench.regnet_model(arch)
        twin = bench.torch_model(model).eval()
        x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
        with torch.inference_mode():
            want = twin(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(model.forward(x, logits=True), want, rtol=1e-4, atol=1e-5)


def test_training_steps_move_both_alike(bench):
    torch = pytest.importorskip("torch")
    from regnet import runtime

    model = bench.regnet_model("mlp_370_115_50")
    twin = bench.torch_model(model)
    rng = np.random.default_rng(1)
    x = rng.random((bench.BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, bench.BATCH)
    opt = torch.optim.Adam(twin.parameters(), lr=bench.LR)
    first = model.layers[1]
    start = first.params["kernel"].copy()
    for step in range(3):
        runtime.train_step(model, x, y)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        if step == 0:
            np.testing.assert_allclose(first.grads["kernel"], twin[1].weight.grad.numpy().T, rtol=1e-4, atol=1e-7)
        opt.step()
    moved = first.params["kernel"] - start
    twin_moved = twin[1].weight.detach().numpy().T - start
    # Adam divides by sqrt(v): where a gradient is ~0 float32 rounding moves a step a little
    assert np.abs(moved - twin_moved).max() < 0.02 * np.abs(twin_moved).max()

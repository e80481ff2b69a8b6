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
        x = np.random.default_rng(0).random((3, *bench.input_shape(arch)), dtype=np.float32)
        with torch.inference_mode():
            want = twin(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(model.forward(x, logits=True), want, rtol=1e-4, atol=1e-5)


def test_training_steps_move_both_alike(bench):
    torch = pytest.importorskip("torch")
    from regnet.training import loop as runtime

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


def test_graph_twin_takes_the_same_gradients(bench):
    torch = pytest.importorskip("torch")

    model = bench.regnet_model("resnet8_cifar")
    twin = bench.torch_model(model).train()
    rng = np.random.default_rng(2)
    x = rng.random((8, *bench.input_shape("resnet8_cifar")), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    out = model.forward(x, training=True, logits=True)
    _, grad = model.training_loss.value_and_grad(out, y)
    model.backward(grad, input_grad=False)
    logits = twin(torch.from_numpy(x))
    np.testing.assert_allclose(out, logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
    for name in ("conv0", "s2_proj", "s3_conv2", "fc"):
        ours = model.get_layer(name).grads["kernel"]
        theirs = twin.layers[name].weight.grad.numpy()
        theirs = theirs.T if name == "fc" else theirs
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5 * np.abs(theirs).max())


def test_onnx_export_of_every_twin_runs_in_onnxruntime(bench, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    for arch in bench.ARCHS:
        model = bench.regnet_model(arch)
        sess = bench.ort_session(model, arch, 1, tmp_path)
        x = np.random.default_rng(3).random((4, *bench.input_shape(arch)), dtype=np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], model.forward(x, logits=True), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "pairs"),
    [
        # (regnet layer, its tensor, the twin's parameter path, how the twin lays it out)
        (
            "lstm_128",
            [
                ("lstm_1", "kernel", "1.lstm.weight_ih_l0", "T"),
                ("lstm_1", "recurrent_kernel", "1.lstm.weight_hh_l0", "T"),
            ],
        ),
        (
            "vit_2x64",
            [
                ("b1_mha", "query_kernel", "layers.b1_mha.mha.in_proj_weight", "q"),
                ("b2_mha", "output_kernel", "layers.b2_mha.mha.out_proj.weight", "out"),
                ("b1_norm1", "gamma", "layers.b1_norm1.weight", ""),
                ("position", "embeddings", "layers.position.embeddings", ""),
            ],
        ),
        (
            "dwsep_16_32_64",
            [
                ("depthwise_conv2d_1", "kernel", "3.weight", ""),
                ("conv2d_3", "kernel", "12.weight", ""),
                ("batch_norm_2", "gamma", "4.weight", ""),
            ],
        ),
    ],
)
def test_new_twins_take_the_same_gradients(bench, arch, pairs):
    """The sequence, attention and depthwise twins: training-mode outputs and weight gradients."""
    torch = pytest.importorskip("torch")

    model = bench.regnet_model(arch)
    twin = bench.torch_model(model).train()
    rng = np.random.default_rng(4)
    x = rng.random((6, *bench.input_shape(arch)), dtype=np.float32)
    y = rng.integers(0, 10, 6)
    out = model.forward(x, training=True, logits=True)
    _, grad = model.training_loss.value_and_grad(out, y)
    model.backward(grad, input_grad=False)
    logits = twin(torch.from_numpy(x))
    np.testing.assert_allclose(out, logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
    params = dict(twin.named_parameters())
    for layer, tensor, path, layout in pairs:
        ours = model.get_layer(layer).grads[tensor]
        theirs = params[path].grad.numpy()
        if layout == "T":
            theirs = theirs.T
        elif layout == "q":  # the query rows of in_proj_weight: (heads * key_dim, D) -> (D, heads, key_dim)
            theirs = theirs[: ours.shape[1] * ours.shape[2]].T.reshape(ours.shape)
        elif layout == "out":  # out_proj.weight (D, heads * key_dim) -> (heads, key_dim, D)
            theirs = theirs.T.reshape(ours.shape)
        assert np.abs(theirs).max() > 0
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())

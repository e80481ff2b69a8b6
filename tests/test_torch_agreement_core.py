"""The agreement harness on components that existed before it: Dense, Conv2D, elu, mean squared
error and Adam against PyTorch (the harness itself must catch a disagreement)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.torch_agreement import activation_agrees, layer_agrees, loss_agrees, optimizer_agrees  # noqa: E402

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

F = torch.nn.functional


def test_dense():
    layer_agrees({"type": "Dense", "units": 4}, (5,), lambda x, w: x @ w["kernel"] + w["bias"])


def test_conv2d():
    layer_agrees(
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
        (2, 6, 6),
        lambda x, w: F.conv2d(x, w["kernel"], w["bias"], padding=1),
    )


def test_elu():
    activation_agrees("elu", F.elu)


def test_mean_squared_error():
    rng = np.random.default_rng(0)
    pred, target = rng.random((4, 3), dtype=np.float32), rng.random((4, 3), dtype=np.float32)
    loss_agrees("mean_squared_error", F.mse_loss, pred, target)


def test_adam():
    optimizer_agrees({"type": "Adam", "learning_rate": 0.01}, lambda p: torch.optim.Adam(p, lr=0.01))


def test_the_harness_catches_a_wrong_gradient():
    wrong = lambda x, w: x @ w["kernel"] + w["bias"] * 1.01
    with pytest.raises(AssertionError, match="forward"):
        layer_agrees({"type": "Dense", "units": 4, "bias_initializer": "ones"}, (5,), wrong)
    with pytest.raises(AssertionError):
        optimizer_agrees({"type": "Adam", "learning_rate": 0.01}, lambda p: torch.optim.Adam(p, lr=0.011))

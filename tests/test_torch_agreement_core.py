import pytest
torch = pytest.importorskip("torch")
import numpy as np
from tests.torch_agreement import layer_agrees, activation_agrees, loss_agrees, optimizer_agrees
F = torch.nn.functional

def test_dense():
    layer_agrees({"type": "Dense", "units": 4}, (5,), lambda x, w: x @ w["kernel"] + w["bias"])

def test_conv():
    layer_agrees({"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"}, (2, 6, 6),
                 lambda x, w: F.conv2d(x, w["kernel"], w["bias"], padding=1))

def test_act():
    activation_agrees("elu", F.elu)

def test_loss():
    rng = np.random.default_rng(0)
    loss_agrees("mean_squared_error", F.mse_loss, rng.random((4, 3), dtype=np.float32), rng.random((4, 3), dtype=np.float32))

def test_adam():
    optimizer_agrees({"type": "Adam", "learning_rate": 0.01}, lambda p: torch.optim.Adam(p, lr=0.01))

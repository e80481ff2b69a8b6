"""Models built and exported with PyTorch (``torch.onnx.export``) import into regnet, predict what
torch predicts, fine-tune with ``fit`` and save like any regnet model."""

import importlib.util
import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
torch = pytest.importorskip("torch", reason="the PyTorch import tests need torch==2.13.0")

from torch import nn  # noqa: E402

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402

TOLERANCE = 1e-5
HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)  # shape arithmetic: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        x = torch.relu(self.fc2(torch.relu(self.fc1(x))))
        return torch.softmax(self.fc3(x), dim=1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.block1, self.block2 = Block(8), Block(8)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 7 * 7, 32)
        self.bn = nn.BatchNorm1d(32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.block2(self.block1(torch.relu(self.stem(x))))
        x = torch.flatten(self.pool(x), 1)
        return self.head(torch.relu(self.bn(self.fc(x))))


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)
    )


NETWORKS = {"mlp": mlp, "lenet5": LeNet5, "resnet": ResNet}


def build(name):
    torch.manual_seed(0)
    net = NETWORKS[name]()
    with torch.no_grad():  # running statistics as after training, not the identity
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return net.eval()


def export(net, x, exporter, **options):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(
                net,
                (torch.from_numpy(x),),
                buffer,
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("N")},),
                **options,
            )
        else:
            torch.onnx.export(
                net,
                (torch.from_numpy(x),),
                buffer,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "N"}},
                **options,
            )
    return buffer.getvalue()


def images(n=64):
    (_, _), (x, y) = regnet.datasets.sources.load("mnist-sample")
    return np.ascontiguousarray(x[:n]), y[:n]


EXPORTERS = [
    pytest.param("torchscript", {}, id="torchscript"),
    pytest.param("torchscript", {"do_constant_folding": False}, id="torchscript-unfolded"),
    pytest.param(
        "dynamo",
        {},
        id="dynamo",
        marks=[
            pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="torch's dynamo exporter needs onnxscript"),
            pytest.mark.slow,
        ],
    ),
]


@pytest.mark.parametrize(("exporter", "options"), EXPORTERS)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_torch_export_imports_and_predicts_the_same(name, exporter, options, tmp_path):
    net = build(name)
    x, _ = images()
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(export(net, x, exporter, **options))
    model = ronnx.load(path)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    diff = float(np.abs(model.predict(x) - expected).max())
    print(f"{name} ({exporter}{', unfolded' if options else ''}): max abs diff after import {diff:.3g}")
    assert diff <= TOLERANCE


def test_unfolded_export_keeps_batchnorm_and_shape_arithmetic():
    """With torch's own folding off, the file holds the BatchNormalization nodes and the
    Shape/Gather/Unsqueeze/Concat chain; regnet folds the chain and keeps BatchNorm layers."""
    x, _ = images(8)
    proto = onnx.load_from_string(export(build("lenet5"), x, "torchscript", do_constant_folding=False))
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= {n.op_type for n in proto.graph.node}
    assert [la["type"] for la in ronnx.from_proto(proto).to_spec()["layers"]][4] == "Flatten"
    resnet = onnx.load_from_string(export(build("resnet"), x, "torchscript", do_constant_folding=False))
    types = [la["type"] for la in ronnx.from_proto(resnet).to_spec()["layers"]]
    assert types.count("BatchNorm") == 5 and types.count("Add") == 2


@pytest.mark.parametrize("name", list(NETWORKS))
def test_imported_torch_model_fine_tunes_and_saves(name, tmp_path):
    net = build(name)
    x, y = images(64)
    path = tmp_path / "net.onnx"
    path.write_bytes(export(net, x, "torchscript"))
    model = ronnx.load(path)
    loss = "categorical_crossentropy" if name != "resnet" else {"type": "categorical_crossentropy", "from_logits": True}
    model.compile(loss, {"type": "adam", "learning_rate": 1e-3}, metrics=["accuracy"])
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, seed=0)
    after = model.evaluate(x, y)["loss"]
    assert np.isfinite(after) and after < before, (before, after)
    regnet.save(model, tmp_path / "tuned.h5")
    again = regnet.load(tmp_path / "tuned.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.optimizer.iterations == model.optimizer.iterations

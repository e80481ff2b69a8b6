"""The convolutional kit as PyTorch writes it (``torch.onnx.export``, dynamo=False, opset 17):
grouped, dilated, depthwise and transposed convolutions, pooling with ceil_mode and
count_include_pad, global max pooling, Resize (nearest and linear, from scales and from sizes
computed by shape arithmetic), Pad and slices; each imports and predicts what torch does."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
torch = pytest.importorskip("torch", reason="the PyTorch import tests need torch")

from torch import nn  # noqa: E402

import regnet.onnx as ronnx  # noqa: E402
from tests.torch_agreement import torch_onnx_bytes  # noqa: E402

F = nn.functional
TOLERANCE = 1e-4


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def mobilenet_block():
    """An inverted residual (MobileNetV2): 1x1 expansion, 3x3 depthwise (stride 2), 1x1 projection."""
    return nn.Sequential(
        nn.Conv2d(4, 12, 1, bias=False),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12, bias=False),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 6, 1),
    )


MODELS = {
    "grouped-dilated": (
        lambda: nn.Sequential(
            nn.Conv2d(4, 8, 3, groups=2, dilation=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, groups=8, padding=1),  # depthwise, multiplier 2
            nn.Conv2d(16, 6, (3, 2), dilation=(1, 2), stride=2),
        ),
        (4, 9, 9),
        ["Conv2D", "DepthwiseConv2D", "Conv2D"],
    ),
    # torch folds each BatchNorm into the convolution before it
    "mobilenet-block": (mobilenet_block, (4, 8, 8), ["Conv2D", "DepthwiseConv2D", "Conv2D"]),
    "transposed": (
        lambda: nn.Sequential(
            nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
            nn.Tanh(),
            nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2, bias=False),
            nn.ConvTranspose2d(6, 2, 3, dilation=2),
        ),
        (3, 4, 5),
        ["Conv2DTranspose", "Conv2DTranspose", "Conv2DTranspose"],
    ),
    "pooling": (
        lambda: nn.Sequential(
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True),  # count_include_pad=True: torch's default
            nn.AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False),
        ),
        (2, 14, 11),
        ["MaxPool2D", "AvgPool2D", "AvgPool2D"],
    ),
    "adaptive-max": (  # written as a MaxPool over the whole image
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveMaxPool2d(1), nn.Flatten()),
        (2, 6, 5),
        ["Conv2D", "MaxPool2D", "Flatten"],
    ),
    "upsample": (
        lambda: nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2, 2, 3, padding=1),
            nn.Upsample(scale_factor=(2, 3), mode="bilinear", align_corners=False),
        ),
        (2, 3, 4),
        ["UpSampling2D", "Conv2D", "UpSampling2D"],
    ),
    "resize-to-size": (  # sizes from Shape -> Slice -> Concat arithmetic
        lambda: Lambda(lambda x: F.interpolate(F.interpolate(x, size=(6, 8)), size=(12, 24), mode="bilinear")),
        (2, 3, 4),
        ["UpSampling2D", "UpSampling2D"],
    ),
    "pad-and-crop": (
        lambda: nn.Sequential(
            Lambda(lambda x: F.pad(x, (1, 2, 0, 3))),
            nn.ZeroPad2d(2),
            nn.Conv2d(2, 3, 3),
            Lambda(lambda x: x[:, :, 1:-1, 2:]),
            Lambda(lambda x: F.pad(x, (-1, 0, 0, -2))),
        ),
        (2, 5, 6),
        ["ZeroPadding2D", "ZeroPadding2D", "Conv2D", "Cropping2D"],  # one Cropping2D for 3 slices and pads
    ),
}


def export(net, x):
    return torch_onnx_bytes(net, x)


def _build(name):
    torch.manual_seed(0)
    make, shape, types = MODELS[name]
    net = make()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval(), shape, types


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_model_imports_and_predicts_the_same(name):
    net, shape, types = _build(name)
    x = np.random.default_rng(0).standard_normal((5, *shape)).astype(np.float32)
    model = ronnx.from_proto(onnx.load_from_string(export(net, x)))
    if types is not None:
        assert [la["type"] for la in model.to_spec()["layers"]] == types
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = model.predict(x)
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff <= TOLERANCE, diff
    # another batch size: nothing was fixed to the exported one
    assert np.abs(model.predict(x[:2]) - expected[:2]).max() <= TOLERANCE


@pytest.mark.parametrize("flatten", [False, True])
def test_global_max_pool(flatten):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("GlobalMaxPool", ["c"], ["g" if flatten else "y"], name="gmp"),
    ]
    if flatten:
        nodes.append(helper.make_node("Flatten", ["g"], ["y"], name="flat"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3] if flatten else ["N", 3, 1, 1])],
        [numpy_helper.from_array(w, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = ronnx.from_proto(proto)
    types = [(la["type"], la.get("keepdims")) for la in model.to_spec()["layers"]]
    assert types[:2] == [("Conv2D", None), ("GlobalMaxPooling2D", True)]
    x = np.random.default_rng(1).standard_normal((4, 2, 6, 5)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(model.predict(x), session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_unsupported_resize_and_pad_are_refused_with_the_reason():
    x = np.zeros((1, 2, 4, 4), np.float32)
    corners = Lambda(lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True))
    with pytest.raises(ronnx.OnnxImportError, match="align_corners"):
        ronnx.from_proto(onnx.load_from_string(export(corners, x)))
    reflect = Lambda(lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect"))
    with pytest.raises(ronnx.OnnxImportError, match="mode='reflect'"):
        ronnx.from_proto(onnx.load_from_string(export(reflect, x)))
    fractional = Lambda(lambda t: F.interpolate(t, scale_factor=1.5))
    with pytest.raises(ronnx.OnnxImportError, match="integers"):
        ronnx.from_proto(onnx.load_from_string(export(fractional, x)))

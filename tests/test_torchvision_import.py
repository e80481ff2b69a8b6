"""Convolutional classifiers of torchvision and timm (random weights, exported by
``torch.onnx.export``) import into regnet and predict what onnxruntime predicts; an imported
MobileNetV2 fine-tunes with ``fit`` and saves like any regnet model.

The models come from the 'test-models' extra (test-only). torchvision 0.28 is a CUDA build whose
compiled operators do not load on a CPU-only machine; its model classes need none of them, so an
empty module stands in for ``torchvision._meta_registrations`` (which registers them) before
``import torchvision``.
"""

import io
import sys
import types
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need the 'onnx' extra: pip install 'regnet[onnx]'")
torch = pytest.importorskip("torch", reason="the model tests need torch==2.13.0 (the 'test-models' extra)")


def _import_torchvision():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip("torchvision", reason="these tests need the 'test-models' extra (torchvision)")


torchvision = _import_torchvision()
timm = pytest.importorskip("timm", reason="these tests need the 'test-models' extra (timm)")

import regnet  # noqa: E402
import regnet.onnx as ronnx  # noqa: E402

#: the largest difference from onnxruntime, relative to the largest absolute output
TOLERANCE = 1e-4

tvm = torchvision.models

#: name -> (constructor, input size): quick ones first (each under a few seconds here)
QUICK = {
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(width_mult=0.5), 32),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(), 32),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(), 32),
    "mnasnet0_5": (lambda: tvm.mnasnet0_5(), 32),
    "lcnet_050": (lambda: timm.create_model("lcnet_050"), 32),
    "ghostnet_050": (lambda: timm.create_model("ghostnet_050"), 32),
}
SLOW = {
    "mobilenet_v3_large": (lambda: tvm.mobilenet_v3_large(), 64),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(), 64),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(), 64),
    "googlenet": (lambda: tvm.googlenet(aux_logits=False, init_weights=True), 64),
    "convnext_tiny": (lambda: tvm.convnext_tiny(), 32),
    "timm_convnext_atto": (lambda: timm.create_model("convnext_atto"), 32),
}


NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.LayerNorm, torch.nn.GroupNorm)


def randomize(net):
    """Random normalisation statistics, affine parameters and layer scales (a freshly built
    network has neutral ones, which would leave much of the import untested)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, NORMS):
                for name in ("weight", "running_var", "bias", "running_mean"):
                    t = getattr(module, name, None)
                    if not isinstance(t, torch.Tensor):
                        continue
                    if name in ("weight", "running_var"):
                        t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                    else:
                        t.copy_(torch.randn(t.shape, generator=g) / 5)
        for name, p in net.named_parameters():
            if name.endswith(("layer_scale", "gamma")) and not name.startswith("norm"):
                p.copy_(torch.rand(p.shape, generator=g) / 2 + 0.5)
    return net.eval()


def build(table, name):
    torch.manual_seed(0)
    make, size = table[name]
    return randomize(make()), size


def export(net, size):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, size, size),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        )
    return onnx.load_from_string(buffer.getvalue())


def check_import(table, name):
    net, size = build(table, name)
    proto = export(net, size)
    model = ronnx.from_proto(proto)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    got = model.predict(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.std(expected) > 1e-3 * np.max(np.abs(expected))  # the outputs differ: a telling comparison
    error = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
    print(f"{name}: {len(model.layers)} layers, max relative error {error:.2g}")
    assert error <= TOLERANCE
    return model


@pytest.mark.parametrize("name", list(QUICK))
def test_torchvision_and_timm_models_import(name):
    check_import(QUICK, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW))
def test_larger_torchvision_and_timm_models_import(name):
    check_import(SLOW, name)


def test_imported_mobilenet_v2_fine_tunes_and_saves(tmp_path):
    model = check_import(QUICK, "mobilenet_v2")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    y = np.eye(1000, dtype=np.float32)[rng.integers(0, 1000, 16)]
    model.compile({"type": "categorical_crossentropy", "from_logits": True}, {"type": "adam", "learning_rate": 1e-3})
    before = model.evaluate(x, y, batch_size=16)["loss"]
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=0)
    after = model.evaluate(x, y, batch_size=16)["loss"]
    assert np.isfinite(after) and after < before, (before, after)
    regnet.save(model, tmp_path / "tuned.h5")
    again = regnet.load(tmp_path / "tuned.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))

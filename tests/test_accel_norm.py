"""The compiled normalisation and activation kernels (regnet.accel's ``norm`` and ``elementwise``)
against the NumPy reference: each layer or activation run on both paths on the same data, with
forward outputs, input gradients, weight gradients and running statistics compared, on small and
odd shapes, batch 1, dense, NCHW and CHWN-stored inputs; and each compiled path checked to be the
one that ran."""

import numpy as np
import pytest

from regnet import accel, activations, layers
from regnet.ops import layout

pytestmark = pytest.mark.skipif(not accel.available(), reason="the 'fast' extra (numba) is not installed")

RTOL, ATOL = 2e-5, 2e-6


def _close(got, want, what):
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def _chwn(a):
    """``a`` (NCHW) stored batch-innermost, as the convolutions write their outputs."""
    return layout.from_chwn(layout.contiguous_chwn(a))


def _layer_pass(config, shape, fast, *, training=True, chwn=False, need_input_grad=True, trainable=True, steps=2):
    """``steps`` forward/backward passes of a fresh ``config`` layer (random gamma and beta) on one
    path: ``(outputs, input grads, weight grads, buffers, the layer)`` of the last pass."""
    layer = layers.create(dict(config, trainable=trainable))
    layer.setup(shape[1:], np.random.default_rng(0))
    for i, p in enumerate(layer.params.values()):
        p[...] = np.random.default_rng(10 + i).standard_normal(p.shape)
    rng = np.random.default_rng(1)
    with accel.enabled(fast):
        for _ in range(steps):
            x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
            g = rng.standard_normal(shape).astype(np.float32)
            if chwn:
                x, g = _chwn(x), _chwn(g)
            y = layer(x, training)
            dx = layer.call_backward(g, need_input_grad=need_input_grad)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}, {k: v.copy() for k, v in layer.buffers.items()}, layer


def _agree(config, shape, **kw):
    """Run both paths; compare everything; return the fast layer (to check which path ran)."""
    fast = _layer_pass(config, shape, True, **kw)
    ref = _layer_pass(config, shape, False, **kw)
    _close(fast[0], ref[0], "output")
    if ref[1] is None:
        assert fast[1] is None
    else:
        _close(fast[1], ref[1], "input gradient")
    for what in (2, 3):
        assert fast[what].keys() == ref[what].keys()
        for k in ref[what]:
            _close(fast[what][k], ref[what][k], k)
    return fast


BATCHNORM_SHAPES = [(4, 3, 5, 7), (1, 2, 3, 3), (3, 5, 1, 1), (7, 5), (1, 4), (2, 1)]


@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ["relu", "linear", "tanh"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_batchnorm_on_both_paths(shape, activation, training):
    config = {"type": "BatchNorm", "momentum": 0.8, "epsilon": 1e-3, "activation": activation}
    layer = _agree(config, shape, training=training)[4]
    assert layer.cache.compiled
    assert layer.cache.relu == (activation == "relu")  # the ReLU fused, any other activation applied after


@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (1, 2, 3, 3)], ids=str)
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_batchnorm_on_chwn_inputs_keeps_their_layout(shape, activation):
    config = {"type": "BatchNorm", "activation": activation}
    y, dx, _, _, _ = _agree(config, shape, chwn=True)
    assert layout.is_chwn(y) and layout.is_chwn(dx)


@pytest.mark.parametrize(
    "config",
    [
        {"type": "BatchNorm", "center": False, "activation": "relu"},
        {"type": "BatchNorm", "scale": False},
        {"type": "BatchNorm", "center": False, "scale": False, "momentum": 0.0},
    ],
    ids=str,
)
def test_batchnorm_without_gamma_or_beta(config):
    _agree(config, (3, 4, 2, 3))
    _agree(config, (5, 3))


def test_batchnorm_without_an_input_gradient_and_frozen():
    config = {"type": "BatchNorm", "activation": "relu"}
    assert _agree(config, (3, 4, 2, 3), need_input_grad=False)[1] is None
    _agree(config, (3, 4, 2, 3), trainable=False)  # keeps to its running statistics


def test_batchnorm_with_a_large_mean_keeps_its_precision():
    """Statistics around a shift: data at 1e4 with unit spread still normalise to unit variance."""
    bn = layers.create({"type": "BatchNorm"})
    bn.setup((3, 4, 4), np.random.default_rng(0))
    x = (np.random.default_rng(1).standard_normal((8, 3, 4, 4)) + 1e4).astype(np.float32)
    with accel.enabled(True):
        y = bn(x, True)
    assert bn.cache.compiled
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=2e-3)


def test_batchnorm_float64_and_switched_off_use_numpy():
    bn = layers.create({"type": "BatchNorm", "activation": "relu"})
    bn.setup((3,), np.random.default_rng(0))
    y = bn(np.ones((2, 3)), True)
    assert y.dtype == np.float64 and not bn.cache.compiled
    with accel.enabled(False):
        bn(np.ones((2, 3), np.float32), True)
    assert not bn.cache.compiled


def test_batchnorm_relu_in_a_model_on_both_paths():
    """Conv2D (writing CHWN) -> BatchNorm+ReLU -> pooling -> Dense: one training step's gradients."""
    from regnet import Sequential

    spec = [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "BatchNorm", "activation": "relu"},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 3},
    ]
    x = np.random.default_rng(0).standard_normal((5, 2, 6, 6)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    results = []
    for fast in (True, False):
        model = Sequential(spec, input_shape=(2, 6, 6), seed=0)
        with accel.enabled(fast):
            y = model.forward(x, training=True)
            dx = model.backward(g)
        results.append((y, dx, {k: v.copy() for k, v in model.layers[1].grads.items()}))
    (yf, dxf, gf), (yn, dxn, gn) = results
    _close(yf, yn, "output")
    _close(dxf, dxn, "input gradient")
    for k in gn:
        _close(gf[k], gn[k], k)


LAYERNORM_CASES = [
    ({}, (4, 6)),
    ({}, (1, 1)),
    ({"epsilon": 1e-5}, (3, 5, 7)),
    ({"axis": [-2, -1]}, (3, 4, 5)),
    ({"axis": [1, 2, 3]}, (2, 3, 2, 2)),
    ({"center": False, "scale": False}, (3, 7)),
    ({"center": False, "activation": "relu"}, (2, 9)),
]


@pytest.mark.parametrize("config, shape", LAYERNORM_CASES, ids=str)
def test_layer_normalization_on_both_paths(config, shape):
    layer = _agree({"type": "LayerNormalization", **config}, shape)[4]
    assert layer.cache.compiled == "layernorm"


def test_layer_normalization_over_leading_axes_uses_numpy():
    layer = _agree({"type": "LayerNormalization", "axis": [1, 3]}, (3, 2, 4, 5))[4]
    assert not layer.cache.compiled


GROUPNORM_CASES = [
    ({"groups": 2}, (3, 4, 3, 5), False),
    ({"groups": 2}, (3, 4, 3, 5), True),
    ({"groups": 4, "activation": "relu"}, (1, 4, 2, 2), False),  # instance normalisation, batch 1
    ({"groups": 1}, (2, 3, 2), False),
    ({"groups": 3, "axis": -1}, (2, 5, 6), False),  # channels last
    ({"groups": 3, "scale": False}, (2, 6), False),
    ({"groups": 2, "center": False, "epsilon": 0.1}, (2, 6, 3), False),
]


@pytest.mark.parametrize("config, shape, chwn", GROUPNORM_CASES, ids=str)
def test_group_normalization_on_both_paths(config, shape, chwn):
    y, dx, _, _, layer = _agree({"type": "GroupNormalization", **config}, shape, chwn=chwn)
    if chwn:  # read in place, the output and gradient stored so too
        assert layer.cache.compiled == "groupnorm_chwn"
        assert layout.is_chwn(y) and layout.is_chwn(dx)
    else:
        assert layer.cache.compiled in ("groupnorm", "groupnorm_chwn")  # batch 1 is stored both ways


def test_normalisation_without_an_input_gradient():
    _agree({"type": "LayerNormalization"}, (3, 8), need_input_grad=False)
    _agree({"type": "GroupNormalization", "groups": 2}, (3, 4, 2, 2), need_input_grad=False)


def test_kernels_split_over_threads_agree(monkeypatch):
    """The same layers with every kernel's loop split over the threads (numba's parallel loops)."""
    from regnet.accel import norm

    monkeypatch.setattr(norm, "MIN_ELEMENTS_PER_THREAD", 1)
    _agree({"type": "BatchNorm", "activation": "relu"}, (4, 6, 5, 5), chwn=True)
    _agree({"type": "LayerNormalization"}, (6, 5, 16))
    _agree({"type": "GroupNormalization", "groups": 3}, (4, 6, 3, 3))
    _agree({"type": "GroupNormalization", "groups": 3}, (4, 6, 3, 3), chwn=True)
    for name in ("gelu", "silu", "mish"):
        _activation_agrees(name, (4, 3, 50))


ACTIVATIONS = ["gelu", {"type": "gelu", "approximate": True}, "silu", "mish"]


def _activation_pass(spec, x, g, fast):
    act = activations.get(spec)
    with accel.enabled(fast):
        y = act.forward(x)
        return y, act.backward(g, x, y)


def _activation_agrees(spec, shape, scale=3.0, x=None, g=None):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * scale).astype(np.float32) if x is None else x
    g = rng.standard_normal(x.shape).astype(np.float32) if g is None else g
    y, dx = _activation_pass(spec, x, g, True)
    y_ref, dx_ref = _activation_pass(spec, x, g, False)
    _close(y, y_ref, f"{spec} forward")
    _close(dx, dx_ref, f"{spec} backward")
    return y, dx


@pytest.mark.parametrize("spec", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("shape, scale", [((4, 7), 3.0), ((1, 1), 1.0), ((2, 3, 5, 7), 12.0), ((3, 1001), 30.0)])
def test_activations_on_both_paths(spec, shape, scale):
    _activation_agrees(spec, shape, scale)


@pytest.mark.parametrize("spec", ACTIVATIONS, ids=str)
def test_activations_keep_the_layout_and_read_any_strides(spec):
    rng = np.random.default_rng(1)
    x = _chwn(rng.standard_normal((3, 4, 2, 5)).astype(np.float32))
    y, dx = _activation_agrees(spec, x.shape, x=x)  # the gradient stored NCHW, the input CHWN
    assert layout.is_chwn(y) and layout.is_chwn(dx)
    wide = rng.standard_normal((4, 12)).astype(np.float32)
    _activation_agrees(spec, None, x=wide[:, ::3], g=wide[:, 1::3])  # neither contiguous
    _activation_agrees(spec, None, x=np.asfortranarray(wide))


@pytest.mark.parametrize("spec", ACTIVATIONS, ids=str)
def test_activations_far_out_and_special_values(spec):
    x = np.array([-1e4, -90.0, -30.0, -5.0, -1e-30, 0.0, 1e-30, 5.0, 30.0, 90.0, 1e4], np.float32)
    _activation_agrees(spec, None, x=x)
    y, dx = _activation_pass(spec, np.array([np.nan, 1.0], np.float32), np.ones(2, np.float32), True)
    assert np.isnan(y[0]) and np.isnan(dx[0]) and np.isfinite(y[1])


def test_activations_fall_back_to_numpy_for_float64():
    x = np.linspace(-3, 3, 7)
    for spec in ACTIVATIONS:
        act = activations.get(spec)
        with accel.enabled(False):
            want = act.forward(x)
        got = act.forward(x)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(3, 4, 5), (6,)], ids=str)
def test_batchnorm_relu_agrees_with_torch(shape, accel_path):
    torch = pytest.importorskip("torch")
    from tests.torch_agreement import layer_agrees

    def torch_fn(x, w):
        y = torch.nn.functional.batch_norm(x, None, None, w["gamma"], w["beta"], training=True, eps=1e-5)
        return torch.relu(y)

    layer = layer_agrees(
        {"type": "BatchNorm", "epsilon": 1e-5, "activation": "relu"}, shape, torch_fn, batch=5, training=True
    )
    assert layer.cache.relu == (accel_path == "fast")

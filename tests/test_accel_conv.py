"""The compiled depthwise convolution (regnet.accel.conv) against the NumPy reference
(regnet.ops.grouped): forward, input gradient and weight gradients of DepthwiseConv2D and of
Conv2D with one input channel per group, on random shapes (batch 1, odd sizes, strides, padding,
dilation, depth multipliers), and which batches take the compiled path."""

import numpy as np
import pytest

from regnet import accel, layers

pytestmark = pytest.mark.skipif(not accel.available(), reason="the 'fast' extra (numba) is not installed")

CASES = [
    ({"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same"}, (4, 7, 6), 2),
    ({"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "valid"}, (3, 5, 5), 1),
    (
        {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "strides": 2, "padding": "same"},
        (3, 7, 8),
        3,
    ),
    (
        {"type": "DepthwiseConv2D", "kernel_size": [2, 3], "dilation_rate": 2, "padding": 1, "use_bias": False},
        (3, 6, 6),
        1,
    ),
    ({"type": "DepthwiseConv2D", "kernel_size": 5, "strides": [3, 2], "padding": 4}, (2, 9, 5), 2),
    ({"type": "DepthwiseConv2D", "kernel_size": 1, "strides": 2, "depth_multiplier": 3}, (2, 5, 4), 2),
    ({"type": "DepthwiseConv2D", "kernel_size": [1, 4], "dilation_rate": [3, 1], "padding": "same"}, (5, 3, 11), 4),
    ({"type": "Conv2D", "filters": 8, "groups": 4, "kernel_size": 3, "dilation_rate": [1, 2]}, (4, 7, 9), 2),
    ({"type": "Conv2D", "filters": 6, "groups": 6, "kernel_size": 2, "strides": 2, "padding": 1}, (6, 5, 5), 1),
]


def _run(config, shape, n, on, seed=1, training=True):
    """``(output, input gradient, weight gradients, compiled?)`` of one forward and backward pass."""
    with accel.enabled(on):
        layer = layers.create(dict(config))
        layer.setup(shape, np.random.default_rng(0))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        y = layer(x, training)
        g = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.call_backward(g)
        return y, dx, {k: v.copy() for k, v in layer.grads.items()}, layer.cache.compiled


def _agree(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config, shape, n", CASES)
def test_compiled_depthwise_matches_numpy(config, shape, n):
    y0, dx0, g0, compiled0 = _run(config, shape, n, on=False)
    y1, dx1, g1, compiled1 = _run(config, shape, n, on=True)
    assert (compiled0, compiled1) == (False, True)
    assert y1.dtype == dx1.dtype == np.float32 and y1.shape == y0.shape and dx1.shape == dx0.shape
    _agree(y1, y0)
    _agree(dx1, dx0)
    assert sorted(g1) == sorted(g0)
    for name in g0:
        _agree(g1[name], g0[name])


def test_compiled_backward_after_an_inference_forward():
    config, shape, n = CASES[2]
    ref = _run(config, shape, n, on=False, training=False)
    out = _run(config, shape, n, on=True, training=False)
    for a, b in zip(out[:2], ref[:2]):
        _agree(a, b)
    for name in ref[2]:
        _agree(out[2][name], ref[2][name])


def test_a_wrong_kernel_is_caught():
    """The comparison above can fail: a compiled output with a flipped kernel differs."""
    config, shape, n = CASES[0]
    with accel.enabled(True):
        layer = layers.create(dict(config))
        layer.setup(shape, np.random.default_rng(0))
        x = np.random.default_rng(1).standard_normal((n, *shape)).astype(np.float32)
        y = layer(x)
        layer.params["kernel"][...] = layer.params["kernel"][..., ::-1].copy()
        with pytest.raises(AssertionError):
            _agree(layer(x), y)


def test_which_batches_are_compiled():
    """float32 with one input channel per group takes the kernels; float64 and grouped
    convolutions with several channels per group stay with NumPy, as does everything when the
    accelerator is off."""
    rng = np.random.default_rng(0)
    dw = layers.create({"type": "DepthwiseConv2D", "kernel_size": 3})
    dw.setup((2, 5, 5), rng)
    grouped = layers.create({"type": "Conv2D", "filters": 4, "kernel_size": 3, "groups": 2})
    grouped.setup((4, 5, 5), rng)
    x32 = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    with accel.enabled(True):
        dw(x32)
        assert dw.cache.compiled
        dw(x32.astype(np.float64))
        assert not dw.cache.compiled
        grouped(rng.standard_normal((2, 4, 5, 5)).astype(np.float32))
        assert not grouped.cache.compiled
    with accel.enabled(False):
        dw(x32)
        assert not dw.cache.compiled


def test_kernels_directly_on_a_known_case():
    """A 2x2 all-ones kernel over a 3x3 ramp without padding: each output is a 2x2 window sum;
    the input gradient of all-ones counts the windows covering each pixel."""
    conv = accel.kernels("conv")
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    k = np.ones((1, 1, 2, 2), np.float32)
    y = conv.depthwise_forward(x, k, np.zeros(0, np.float32), 1, 1, 0, 0, 0, 0, 1, 1, 2, 2)
    np.testing.assert_array_equal(y[0, 0], [[8, 12], [20, 24]])
    dx = conv.depthwise_input_grad(np.ones((1, 1, 2, 2), np.float32), k, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    dk, db = conv.depthwise_kernel_grad(x, np.ones((1, 1, 2, 2), np.float32), 2, 2, 1, 1, 0, 0, 0, 0, 1, 1)
    np.testing.assert_array_equal(dk[0, 0], [[8, 12], [20, 24]])
    np.testing.assert_array_equal(db, [4])

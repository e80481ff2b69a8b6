"""Conv2D and MaxPool2D kernels against naive loop references, and their gradients against
central differences (float64), for padding, strides and memory layouts."""

import numpy as np
import pytest

from regnet.layers.conv import Conv2D
from regnet.layers.core import Dense
from regnet.layers.pooling import AvgPool2D, MaxPool2D
from regnet.ops import layout


def naive_conv(x, k, b, stride, pads):
    """Direct convolution by loops over output pixels (reference only)."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, w = xp.shape
    f, _, kh, kw = k.shape
    ho, wo = (h - kh) // stride[0] + 1, (w - kw) // stride[1] + 1
    y = np.zeros((n, f, ho, wo))
    for r in range(ho):
        for s in range(wo):
            patch = xp[:, :, r * stride[0] : r * stride[0] + kh, s * stride[1] : s * stride[1] + kw]
            y[:, :, r, s] = np.einsum("ncij,fcij->nf", patch, k)
    return y + (0 if b is None else b[None, :, None, None])


def naive_maxpool(x, pool, stride, pads):
    """Window maxima and, per input element, the gradient share (first maximum of each window)."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    n, c, h, w = xp.shape
    ho, wo = (h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1
    y = np.zeros((n, c, ho, wo))
    route = np.zeros((n, c, ho, wo, h, w))
    for a in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    win = xp[a, ch, r * stride[0] : r * stride[0] + pool[0], s * stride[1] : s * stride[1] + pool[1]]
                    y[a, ch, r, s] = win.max()
                    i, j = np.unravel_index(np.argmax(win), win.shape)  # first maximum
                    route[a, ch, r, s, r * stride[0] + i, s * stride[1] + j] = 1
    return y, route[..., top : h - bottom, left : w - right]


def build(layer, shape, dtype=np.float64, seed=0):
    layer.setup(shape, np.random.default_rng(seed))
    for d in (layer.params, layer.grads):
        for k in d:
            d[k] = d[k].astype(dtype)
    if "bias" in layer.params:
        layer.params["bias"][...] = np.random.default_rng(seed + 1).standard_normal(layer.params["bias"].shape)
    return layer


CONV_CASES = [
    dict(filters=4, kernel_size=3),
    dict(filters=3, kernel_size=5, padding="same"),
    dict(filters=2, kernel_size=(2, 3), strides=(2, 1), padding="same"),
    dict(filters=3, kernel_size=3, strides=2, padding=1),
    dict(filters=2, kernel_size=4, strides=3, padding=2, use_bias=False),
    dict(filters=5, kernel_size=1),
    dict(filters=2, kernel_size=3, padding=3),  # some kernel offsets see only padding
]


def chwn_copy(x):
    """``x`` stored batch-innermost (as the convolution kernels store their outputs)."""
    out = layout.from_chwn(np.empty((x.shape[1], x.shape[2], x.shape[3], x.shape[0]), x.dtype))
    out[...] = x
    return out


@pytest.mark.parametrize("cfg", CONV_CASES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("stored", ["nchw", "chwn"])
@pytest.mark.parametrize("bands", ["whole", "rows"])
@pytest.mark.parametrize("method", ["im2col", "shift"])
def test_conv_matches_naive(cfg, training, stored, bands, method, monkeypatch):
    from regnet.ops import blas, shift
    from regnet.ops import conv as conv_ops

    if bands == "rows":  # columns built one or two output rows at a time, none kept
        monkeypatch.setattr(conv_ops, "COLUMN_BYTES", 2000)
        monkeypatch.setattr(conv_ops, "KEEP_COLUMN_BYTES", 0)
    if method == "shift":  # every stride-1 case through shifted products, whatever its channels
        if not blas.available():
            pytest.skip(blas.reason())
        monkeypatch.setattr(shift, "MIN_CHANNELS", 1)
        monkeypatch.setattr(shift, "MAX_WIDTH_RATIO", 100)
        monkeypatch.setattr(shift, "MIN_LENGTH", 0)
    rng = np.random.default_rng(1)
    layer = build(Conv2D(**cfg), (3, 9, 8))
    assert layer._shift == (method == "shift" and layer.strides == (1, 1))
    x = rng.standard_normal((5, 3, 9, 8))
    if stored == "chwn":
        x = chwn_copy(x)
    y = layer.forward(x, training)
    want = naive_conv(x, layer.params["kernel"], layer.params.get("bias"), layer.strides, layer._pads)
    assert y.shape == want.shape == (5, *layer.output_shape)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
    # backward: d(sum(y * r))/dx is the adjoint applied to r
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (4, 2, 8, 7), (2, 1, 4, 3), (3, 0, 0, 7)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (
            np.sum(naive_conv(xp, layer.params["kernel"], layer.params.get("bias"), layer.strides, layer._pads) * r)
            - np.sum(want * r)
        ) / eps
        num2 = (
            np.sum(want * r)
            - np.sum(naive_conv(xm, layer.params["kernel"], layer.params.get("bias"), layer.strides, layer._pads) * r)
        ) / eps
        assert dx[idx] == pytest.approx((num + num2) / 2, rel=1e-5, abs=1e-6)
    # kernel and bias gradients in closed form from the naive convolution
    k = layer.params["kernel"]
    for kidx in [(0, 0, 0, 0), tuple(s - 1 for s in k.shape)]:
        e = np.zeros_like(k)
        e[kidx] = 1
        want_dk = np.sum(naive_conv(x, e, None, layer.strides, layer._pads) * r)
        assert layer.grads["kernel"][kidx] == pytest.approx(want_dk, rel=1e-9, abs=1e-9)
    if layer.use_bias:
        np.testing.assert_allclose(layer.grads["bias"], r.sum(axis=(0, 2, 3)), rtol=1e-10)


def test_conv_float32_stays_float32_and_batches_agree():
    rng = np.random.default_rng(2)
    layer = build(Conv2D(filters=4, kernel_size=3, padding="same", activation="relu"), (2, 7, 7), np.float32)
    x = rng.standard_normal((300, 2, 7, 7)).astype(np.float32)
    y_inf = layer(x, False)
    y_tr = layer(x, True)
    assert y_inf.dtype == y_tr.dtype == np.float32
    np.testing.assert_allclose(y_inf, y_tr, rtol=1e-5, atol=1e-6)  # inference runs in pieces
    g = layer.call_backward(np.ones_like(y_tr))
    np.testing.assert_allclose(layer(x[:7], False), y_inf[:7], rtol=1e-5, atol=1e-6)
    assert g.dtype == layer.grads["kernel"].dtype == np.float32


def test_conv_relu_matches_separate_activation():
    rng = np.random.default_rng(3)
    fused = build(Conv2D(filters=3, kernel_size=3, activation="relu"), (2, 6, 6))
    plain = build(Conv2D(filters=3, kernel_size=3), (2, 6, 6))
    x = rng.standard_normal((4, 2, 6, 6))
    y = fused(x, True)
    z = plain(x, True)
    np.testing.assert_allclose(y, np.maximum(z, 0))
    r = rng.standard_normal(y.shape)
    np.testing.assert_allclose(fused.call_backward(r), plain.call_backward(r * (z > 0)))


def test_conv_skips_input_gradient_when_told():
    layer = build(Conv2D(filters=2, kernel_size=3), (1, 5, 5))
    x = np.random.default_rng(4).standard_normal((2, 1, 5, 5))
    y = layer.forward(x, True)
    assert layer.backward(np.ones_like(y), need_input_grad=False) is None
    assert np.abs(layer.grads["kernel"]).sum() > 0


POOL_CASES = [
    dict(pool_size=2),
    dict(pool_size=3, strides=2),  # overlapping windows
    dict(pool_size=2, strides=3),  # gaps between windows
    dict(pool_size=3, padding="same"),
    dict(pool_size=(2, 3), strides=(1, 2), padding=1),
]


@pytest.mark.parametrize("cfg", POOL_CASES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("stored", ["nchw", "chwn"])
@pytest.mark.parametrize("threads", ["1", "2"])
def test_maxpool_matches_naive(cfg, training, stored, threads, monkeypatch):
    from regnet.ops import parallel

    monkeypatch.setenv("REGNET_NUM_THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 50)  # the channels split over threads
    rng = np.random.default_rng(5)
    layer = build(MaxPool2D(**cfg), (3, 7, 9))
    x = rng.integers(-3, 3, (4, 3, 7, 9)).astype(np.float64)  # many ties
    if stored == "chwn":
        x = chwn_copy(x)
    y = layer.forward(x, training)
    want, route = naive_maxpool(x, layer.pool_size, layer.stride, layer._pads)
    np.testing.assert_array_equal(y, want)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r)
    np.testing.assert_allclose(dx, np.einsum("ncrshw,ncrs->nchw", route, r), atol=1e-12)


def test_maxpool_keeps_chwn_layout():
    x = chwn_copy(np.random.default_rng(6).standard_normal((4, 3, 8, 8)).astype(np.float32))
    layer = build(MaxPool2D(pool_size=2), (3, 8, 8), np.float32)
    y = layer.forward(x, True)
    assert layout.is_chwn(y) and y.dtype == np.float32
    assert layout.is_chwn(layer.backward(np.ones_like(y)))


def test_avgpool_on_chwn_input():
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 6))
    layer = build(AvgPool2D(pool_size=2), (3, 6, 6))
    np.testing.assert_allclose(layer.forward(chwn_copy(x)), layer.forward(x))


def test_dense_skips_input_gradient_when_told():
    layer = build(Dense(units=3), (4,))
    x = np.random.default_rng(8).standard_normal((5, 4))
    g = np.ones((5, 3))
    layer.forward(x, True)
    want = layer.backward(g)
    kernel_grad = layer.grads["kernel"].copy()
    layer.forward(x, True)
    assert layer.backward(g, need_input_grad=False) is None
    np.testing.assert_allclose(layer.grads["kernel"], kernel_grad)
    assert want.shape == x.shape


@pytest.mark.parametrize("threads", ["1", "3"])
def test_adam_in_slices_matches_the_reference_rule(monkeypatch, threads):
    from regnet import optimizers
    from regnet.ops import parallel

    monkeypatch.setenv("REGNET_NUM_THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 10)
    rng = np.random.default_rng(9)
    p = rng.standard_normal((7, 13)).astype(np.float32)
    ref_p, ref_m, ref_v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opt = optimizers.Adam(learning_rate=0.01)
    for t in range(1, 4):
        g = rng.standard_normal(p.shape).astype(np.float32)
        opt.step({"w": p}, {"w": g})
        ref_m = 0.9 * ref_m + 0.1 * g
        ref_v = 0.999 * ref_v + 0.001 * g * g
        ref_p = ref_p - 0.01 / (1 - 0.9**t) * ref_m / (np.sqrt(ref_v / (1 - 0.999**t)) + 1e-8)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, ref_p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.slots["v"]["w"], ref_v, rtol=1e-5, atol=1e-9)


def test_channel_slices_cover_every_channel_once(monkeypatch):
    from regnet.ops import parallel

    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 10)
    monkeypatch.setenv("REGNET_NUM_THREADS", "3")
    x = chwn_copy(np.random.default_rng(11).standard_normal((4, 7, 3, 2)))
    out = np.zeros_like(x)
    seen = []

    def rule(a, none, b):
        assert none is None
        seen.append(a.shape[1])
        np.multiply(a, 2, out=b)

    parallel.for_channels(rule, x, None, out)
    assert sorted(seen) == [1, 3, 3]
    np.testing.assert_array_equal(out, 2 * x)


def test_slices_are_bit_identical_to_one_thread(monkeypatch):
    from regnet.ops import parallel

    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 100)
    x = np.random.default_rng(10).standard_normal(1001).astype(np.float32)

    def rule(a, out):
        np.sqrt(np.abs(a), out=out)
        out /= 3.0

    outs = []
    for threads in ("1", "4"):
        monkeypatch.setenv("REGNET_NUM_THREADS", threads)
        out = np.empty_like(x)
        parallel.for_rows(rule, x, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_blocks_split_the_axis_outermost_in_memory(monkeypatch):
    from regnet.ops import parallel

    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 10)
    monkeypatch.setenv("REGNET_NUM_THREADS", "2")
    stored_chwn = chwn_copy(np.zeros((6, 4, 3, 3)))
    c_ordered = np.zeros((6, 4, 3, 3))
    for x, axis, parts in ((stored_chwn, 1, [2, 2]), (c_ordered, 0, [3, 3])):
        shapes = []
        parallel.for_blocks(lambda a: shapes.append(a.shape), x)
        assert sorted(s[axis] for s in shapes) == parts
        assert all(s[1 - axis] == x.shape[1 - axis] for s in shapes)


@pytest.mark.parametrize("stored", ["chwn", "nchw", "dense"])
def test_relu_gradient_on_threads_is_the_product_with_the_mask(monkeypatch, stored):
    from regnet import activations

    monkeypatch.setattr(activations, "RELU_ELEMENTS_PER_THREAD", 50)
    rng = np.random.default_rng(12)
    shape = (64, 5) if stored == "dense" else (5, 4, 3, 6)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0] = np.nan  # a NaN input passes no gradient, as in grad * (x > 0)
    g = rng.standard_normal(shape).astype(np.float32)
    if stored == "chwn":
        x, g = chwn_copy(x), chwn_copy(g)
    want = g * (x > 0)
    for threads in ("1", "3"):
        monkeypatch.setenv("REGNET_NUM_THREADS", threads)
        got = activations.ReLU().backward(g, x, np.maximum(x, 0))
        assert got.dtype == np.float32 and got.shape == g.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # -0.0 where g < 0 and x <= 0


def test_inference_pieces_share_one_buffer_across_layers(monkeypatch):
    from regnet.ops import conv as conv_ops

    monkeypatch.setattr(conv_ops, "COLUMN_BYTES", 3000)  # a few samples per piece
    rng = np.random.default_rng(11)
    padded = build(Conv2D(filters=3, kernel_size=3, padding="same"), (2, 6, 6))
    valid = build(Conv2D(filters=2, kernel_size=2, use_bias=False), (2, 6, 6))
    for n in (7, 3, 7, 1):
        for layer in (padded, valid, padded):
            x = rng.standard_normal((n, 2, 6, 6))
            want = naive_conv(x, layer.params["kernel"], layer.params.get("bias"), layer.strides, layer._pads)
            np.testing.assert_allclose(layer.forward(x, False), want, rtol=1e-10, atol=1e-10)


def test_dense_relu_matches_separate_activation():
    rng = np.random.default_rng(12)
    fused = build(Dense(units=5, activation="relu"), (4,))
    plain = build(Dense(units=5), (4,))
    x = rng.standard_normal((6, 4))
    y = fused(x, True)
    z = plain(x, True)
    np.testing.assert_allclose(y, np.maximum(z, 0))
    r = rng.standard_normal(y.shape)
    np.testing.assert_allclose(fused.call_backward(r), plain.call_backward(r * (z > 0)))


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling_on_both_layouts(keepdims):
    from regnet.layers.pooling import GlobalAveragePooling2D

    x = np.random.default_rng(13).standard_normal((5, 3, 4, 6))
    layer = build(GlobalAveragePooling2D(keepdims=keepdims), (3, 4, 6))
    want = x.mean(axis=(2, 3), keepdims=keepdims)
    for stored in (x, chwn_copy(x)):
        np.testing.assert_allclose(layer.forward(stored, True), want, rtol=1e-12)
    g = np.random.default_rng(14).standard_normal(want.shape)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, np.broadcast_to(g.reshape(5, 3, 1, 1) / 24, x.shape), rtol=1e-12)
    assert layout.is_chwn(dx)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_threaded_adam_is_bit_identical_to_the_plain_rule(monkeypatch, threads):
    """Adam runs its passes slice by slice on several threads: the weights and moments must be
    those of the plain whole-array rule, bit for bit."""
    from regnet import optimizers
    from regnet.ops import parallel

    monkeypatch.setenv("REGNET_NUM_THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 10)
    rng = np.random.default_rng(15)
    p = rng.standard_normal((37, 11)).astype(np.float32)
    ref_p, ref_m, ref_v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opt = optimizers.Adam(learning_rate=0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-7)
    for t in range(1, 5):
        g = rng.standard_normal(p.shape).astype(np.float32)
        opt.step({"w": p}, {"w": g})
        b1, b2 = 0.8, 0.99
        lr_t, c2 = 0.003 / (1 - b1**t), 1 - b2**t
        tmp = np.empty_like(p)  # the plain rule, pass by pass
        np.multiply(g, 1 - b1, out=tmp)
        ref_m *= b1
        ref_m += tmp
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        ref_v *= b2
        ref_v += tmp
        np.divide(ref_v, c2, out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += 1e-7
        np.divide(ref_m, tmp, out=tmp)
        tmp *= lr_t
        ref_p -= tmp
    np.testing.assert_array_equal(p, ref_p)
    np.testing.assert_array_equal(opt.slots["m"]["w"], ref_m)
    np.testing.assert_array_equal(opt.slots["v"]["w"], ref_v)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("keep", [True, False])
def test_shifted_products_match_im2col_on_a_resnet_stage(training, keep, monkeypatch):
    """16 channels at 32x32 (the benchmark's ResNet-8 stage 1) choose ``ops.shift`` where BLAS
    accumulates in place; float32 results agree with the im2col method's."""
    from regnet.ops import blas
    from regnet.ops import conv as conv_ops

    if not blas.available():
        pytest.skip(blas.reason())
    if not keep:
        monkeypatch.setattr(conv_ops, "KEEP_COLUMN_BYTES", 0)
    rng = np.random.default_rng(5)
    fast = build(Conv2D(filters=16, kernel_size=3, padding=1), (16, 32, 32), np.float32)
    plain = build(Conv2D(filters=16, kernel_size=3, padding=1), (16, 32, 32), np.float32)
    plain._shift = False
    assert fast._shift
    x = chwn_copy(rng.standard_normal((12, 16, 32, 32)).astype(np.float32))
    y, z = fast.forward(x, training), plain.forward(x, training)
    assert y.dtype == np.float32 and layout.is_chwn(y)
    np.testing.assert_allclose(y, z, rtol=1e-4, atol=1e-4)
    r = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(fast.backward(r), plain.backward(r), rtol=1e-4, atol=1e-4)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(fast.grads[name], plain.grads[name], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "cfg, shape",
    [
        ({"filters": 8, "kernel_size": 3, "padding": "same"}, (8, 4, 5)),
        ({"filters": 8, "kernel_size": [2, 3], "padding": "same", "use_bias": False}, (9, 3, 4)),
    ],
)
def test_shifted_products_pass_the_gradient_check(cfg, shape, monkeypatch):
    """The kit's numerical gradient check through ``ops.shift`` (small batches forced onto it)."""
    from regnet.ops import blas, shift
    from regnet.testing import check_layer

    if not blas.available():
        pytest.skip(blas.reason())
    monkeypatch.setattr(shift, "MIN_LENGTH", 0)
    layer = build(Conv2D(**cfg), shape)
    assert layer._shifted(2)
    report = check_layer({"type": "Conv2D", **cfg}, input_shape=shape, checks=["gradient"])
    assert report.passed == ["gradient"]


def test_small_batches_take_im2col_columns():
    from regnet.ops import blas

    if not blas.available():
        pytest.skip(blas.reason())
    layer = build(Conv2D(filters=16, kernel_size=3, padding=1), (16, 32, 32))
    assert layer._shift and not layer._shifted(1) and layer._shifted(64)


def test_input_gradient_method_follows_the_layer_shape():
    stride_one = build(Conv2D(filters=2, kernel_size=3, padding=1), (3, 6, 6))
    assert stride_one._transposed is not None and stride_one._transposed.pads == (1, 1, 1, 1)
    assert build(Conv2D(filters=2, kernel_size=3, strides=2), (3, 7, 7))._transposed is None
    assert build(Conv2D(filters=2, kernel_size=3, padding=3), (3, 6, 6))._transposed is None


def test_steady_heap_sets_the_thresholds_once():
    import os
    import platform
    import subprocess
    import sys

    code = "from regnet.ops import memory; print(memory.steady_heap(), memory.steady_heap())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    off = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "REGNET_MALLOC_TUNING": "0"},
    ).stdout.split()
    assert on[1] == "False" and off == ["False", "False"]
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert on[0] == "True"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["contiguous", "strided", "long rows"])
def test_row_sums_and_dots_match_numpy(dtype, form, monkeypatch):
    from regnet.ops import reduce

    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 3000)).astype(dtype)
    b = rng.standard_normal((5, 3000)).astype(dtype)
    if form == "strided":
        a, b = a[:, ::2], b[:, ::2]
    if form == "long rows":
        monkeypatch.setattr(reduce, "MAX_ROW", 100)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    sums, dots = reduce.row_sums(a), reduce.row_dots(a, b)
    assert sums.shape == dots.shape == (5,) and sums.dtype == dots.dtype == dtype
    np.testing.assert_allclose(sums, a.astype(np.float64).sum(axis=1), rtol=tol, atol=tol * 100)
    np.testing.assert_allclose(dots, (a.astype(np.float64) * b).sum(axis=1), rtol=tol, atol=tol * 100)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_over_threads_is_bit_identical_to_one_thread(training, monkeypatch):
    """BatchNorm's per-channel passes (split by channel over threads) give the same bits on one
    thread and on three."""
    from regnet.layers.normalization import BatchNorm
    from regnet.ops import parallel

    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 64)
    rng = np.random.default_rng(12)
    x = chwn_copy(rng.standard_normal((6, 5, 4, 4)).astype(np.float32))
    r = chwn_copy(rng.standard_normal((6, 5, 4, 4)).astype(np.float32))
    results = []
    for threads in ("1", "3"):
        monkeypatch.setenv("REGNET_NUM_THREADS", threads)
        layer = build(BatchNorm(activation="relu"), (5, 4, 4), np.float32)
        y = layer(x, training)
        results.append((y.copy(), layer.call_backward(r), layer.grads["gamma"].copy()))
    for one, three in zip(*results):
        np.testing.assert_array_equal(one, three)
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()

"""The convolutional kit against PyTorch: grouped, dilated, depthwise, separable and transposed
convolutions, pooling with ceil_mode and count_include_pad, global max pooling, upsampling,
zero padding and cropping (forward, input and weight gradients)."""

import pytest

torch = pytest.importorskip("torch")

from tests.torch_agreement import layer_agrees  # noqa: E402

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

F = torch.nn.functional


@pytest.mark.parametrize(
    "config, shape, torch_kw",
    [
        ({"filters": 4, "kernel_size": 3, "groups": 2}, (4, 6, 6), {"groups": 2}),
        (
            {"filters": 6, "kernel_size": 3, "groups": 3, "strides": 2, "padding": 1},
            (3, 7, 7),
            {"groups": 3, "stride": 2, "padding": 1},
        ),
        ({"filters": 8, "kernel_size": 3, "groups": 8, "padding": 1}, (8, 5, 5), {"groups": 8, "padding": 1}),
        ({"filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": 2}, (2, 7, 7), {"dilation": 2, "padding": 2}),
        (
            {"filters": 4, "kernel_size": [3, 2], "dilation_rate": [1, 3], "groups": 2, "strides": [2, 1]},
            (2, 7, 8),
            {"dilation": (1, 3), "groups": 2, "stride": (2, 1)},
        ),
    ],
)
@pytest.mark.usefixtures("accel_path")  # groups=8 over 8 channels: the compiled depthwise kernels
def test_grouped_and_dilated_conv2d(config, shape, torch_kw):
    layer_agrees({"type": "Conv2D", **config}, shape, lambda x, w: F.conv2d(x, w["kernel"], w["bias"], **torch_kw))


def test_dilated_conv2d_same_padding():
    # Keras 'same' with dilation 2 and a 3x3 kernel pads 2 on every side (stride 1)
    layer_agrees(
        {"type": "Conv2D", "filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": "same", "use_bias": False},
        (2, 6, 6),
        lambda x, w: F.conv2d(x, w["kernel"], dilation=2, padding=2),
    )


@pytest.mark.usefixtures("accel_path")
@pytest.mark.parametrize("multiplier, stride, dilation", [(1, 1, 1), (2, 2, 1), (1, 1, 2), (3, 2, 2)])
def test_depthwise_conv2d(multiplier, stride, dilation):
    c = 5
    layer_agrees(
        {
            "type": "DepthwiseConv2D",
            "kernel_size": 3,
            "depth_multiplier": multiplier,
            "strides": stride,
            "dilation_rate": dilation,
            "padding": 1,
        },
        (c, 7, 8),
        lambda x, w: F.conv2d(x, w["kernel"], w["bias"], stride=stride, padding=1, dilation=dilation, groups=c),
    )


@pytest.mark.usefixtures("accel_path")
def test_depthwise_conv2d_many_channels():
    c = 64  # the per-channel computation is vectorised over channels, not a loop over them
    layer_agrees(
        {"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same", "use_bias": False},
        (c, 5, 5),
        lambda x, w: F.conv2d(x, w["kernel"], padding=1, groups=c),
        batch=4,
    )


@pytest.mark.parametrize("multiplier, stride", [(1, 1), (2, 2)])
def test_separable_conv2d(multiplier, stride):
    c = 3

    def torch_fn(x, w):
        d = F.conv2d(x, w["depthwise_kernel"], stride=stride, padding=1, groups=c)
        return F.conv2d(d, w["pointwise_kernel"], w["bias"])

    layer_agrees(
        {
            "type": "SeparableConv2D",
            "filters": 4,
            "kernel_size": 3,
            "depth_multiplier": multiplier,
            "strides": stride,
            "padding": 1,
        },
        (c, 6, 7),
        torch_fn,
    )


@pytest.mark.parametrize(
    "config, shape, torch_kw",
    [
        ({"filters": 2, "kernel_size": 3}, (3, 4, 4), {}),
        (
            {"filters": 3, "kernel_size": 3, "strides": 2, "padding": 1, "output_padding": 1},
            (2, 4, 5),
            {"stride": 2, "padding": 1, "output_padding": 1},
        ),
        (
            {"filters": 2, "kernel_size": [2, 3], "strides": [2, 3], "padding": 0, "output_padding": [1, 2]},
            (2, 3, 3),
            {"stride": (2, 3), "output_padding": (1, 2)},
        ),
        (
            {"filters": 4, "kernel_size": 3, "groups": 2, "dilation_rate": 2, "strides": 2},
            (4, 3, 3),
            {"groups": 2, "dilation": 2, "stride": 2},
        ),
        ({"filters": 6, "kernel_size": 2, "groups": 3, "strides": 2}, (3, 3, 4), {"groups": 3, "stride": 2}),
    ],
)
def test_conv2d_transpose(config, shape, torch_kw):
    layer_agrees(
        {"type": "ConvTranspose2d", **config},
        shape,
        lambda x, w: F.conv_transpose2d(x, w["kernel"], w["bias"], **torch_kw),
    )


def test_conv2d_transpose_same():
    # 'same': an output of H * strides; for kernel 4, stride 2 that is PyTorch's padding 1
    layer_agrees(
        {"type": "Conv2DTranspose", "filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"},
        (3, 4, 5),
        lambda x, w: F.conv_transpose2d(x, w["kernel"], w["bias"], stride=2, padding=1),
    )


@pytest.mark.parametrize(
    "pool, stride, padding, shape",
    [(3, 2, 0, (2, 6, 7)), (2, 2, 1, (1, 5, 4)), (3, 3, 1, (2, 7, 8)), ((2, 3), (2, 2), 0, (1, 5, 8))],
)
def test_max_pool_ceil_mode(pool, stride, padding, shape):
    layer_agrees(
        {"type": "MaxPool2d", "pool_size": pool, "strides": stride, "padding": padding, "ceil_mode": True},
        shape,
        lambda x, w: F.max_pool2d(x, pool, stride, padding, ceil_mode=True),
    )


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize(
    "pool, stride, padding, shape", [(3, 2, 1, (2, 6, 6)), ((2, 3), (2, 2), 1, (1, 5, 6)), (2, 2, 0, (1, 5, 5))]
)
def test_avg_pool(pool, stride, padding, shape, ceil_mode, count_include_pad):
    layer_agrees(
        {
            "type": "AvgPool2d",
            "pool_size": pool,
            "strides": stride,
            "padding": padding,
            "ceil_mode": ceil_mode,
            "count_include_pad": count_include_pad,
        },
        shape,
        lambda x, w: F.avg_pool2d(x, pool, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad),
    )


def test_avg_pool_default_keeps_its_meaning():
    # padded positions are not counted unless asked (files written before count_include_pad)
    layer_agrees(
        {"type": "AvgPool2D", "pool_size": 3, "strides": 1, "padding": 1},
        (2, 4, 4),
        lambda x, w: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
    )


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_max_pooling(keepdims):
    def torch_fn(x, w):
        y = F.adaptive_max_pool2d(x, 1)
        return y if keepdims else y.flatten(1)

    layer_agrees({"type": "GlobalMaxPooling2D", "keepdims": keepdims}, (3, 4, 5), torch_fn)


@pytest.mark.parametrize("size", [2, (3, 2), (1, 4)])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsampling(size, mode):
    layer_agrees(
        {"type": "UpSampling2D", "size": size, "interpolation": mode},
        (2, 3, 4),
        lambda x, w: F.interpolate(
            x, scale_factor=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {})
        ),
    )


@pytest.mark.parametrize(
    "padding, torch_pad", [(1, (1, 1, 1, 1)), ((2, 1), (1, 1, 2, 2)), (((0, 2), (3, 1)), (3, 1, 0, 2))]
)
def test_zero_padding(padding, torch_pad):
    layer_agrees({"type": "ZeroPadding2D", "padding": padding}, (2, 3, 4), lambda x, w: F.pad(x, torch_pad))


@pytest.mark.parametrize(
    "cropping, rows, cols", [(1, (1, -1), (1, -1)), ((2, 0), (2, -2), (0, None)), (((0, 2), (3, 1)), (0, -2), (3, -1))]
)
def test_cropping(cropping, rows, cols):
    layer_agrees(
        {"type": "Cropping2D", "cropping": cropping}, (2, 5, 6), lambda x, w: x[:, :, slice(*rows), slice(*cols)]
    )


@pytest.mark.usefixtures("accel_path")
def test_a_wrong_reference_is_caught():
    """The harness fails on a reference that differs (here: the kernel flipped), so the tests above
    can fail."""
    with pytest.raises(AssertionError):
        layer_agrees(
            {"type": "DepthwiseConv2D", "kernel_size": 3},
            (4, 6, 6),
            lambda x, w: F.conv2d(x, w["kernel"].flip(-1), w["bias"], groups=4),
        )

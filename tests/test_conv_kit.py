"""The convolutional kit in use: a MobileNetV2-style model and an encoder-decoder train; clear
errors for configurations that cannot work; existing files keep their meaning."""

import numpy as np
import pytest

from regnet import Model, layers
from regnet.errors import ConfigError, ShapeError

MOBILENET = {
    "input_shape": [3, 8, 8],
    "layers": [
        {
            "type": "Conv2D",
            "filters": 8,
            "kernel_size": 3,
            "strides": 2,
            "padding": "same",
            "activation": "relu",
            "name": "stem",
        },
        {"type": "Conv2D", "filters": 16, "kernel_size": 1, "use_bias": False, "name": "expand"},
        {"type": "BatchNorm", "activation": "relu"},
        {"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "Conv2D", "filters": 8, "kernel_size": 1, "name": "project"},
        {"type": "Add", "inputs": ["project", "stem"]},
        {"type": "SeparableConv2D", "filters": 8, "kernel_size": 3, "padding": 1, "activation": "relu"},
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "groups": 4, "dilation_rate": 2, "padding": "same"},
        {"type": "GlobalMaxPooling2D"},
        {"type": "Dense", "units": 2, "activation": "softmax"},
    ],
}

ENCODER_DECODER = {
    "input_shape": [1, 8, 8],
    "layers": [
        {"type": "ZeroPadding2D", "padding": 1},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 3, "strides": 2, "ceil_mode": True},
        {"type": "Conv2DTranspose", "filters": 4, "kernel_size": 3, "strides": 2, "padding": 1, "output_padding": 1},
        {"type": "UpSampling2D", "size": 2, "interpolation": "bilinear"},
        {"type": "Cropping2D", "cropping": 4},
        {"type": "AvgPool2D", "pool_size": 3, "strides": 2, "padding": 1, "count_include_pad": True, "ceil_mode": True},
        {"type": "Flatten"},
        {"type": "Dense", "units": 2, "activation": "softmax"},
    ],
}


@pytest.mark.parametrize("spec", [MOBILENET, ENCODER_DECODER], ids=["mobilenet", "encoder-decoder"])
def test_model_trains(spec):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, *spec["input_shape"])).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    m = Model.from_spec(spec, seed=0).compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.01})
    before = m.evaluate(x, y)["loss"]
    m.fit(x, y, epochs=15, batch_size=16, seed=0, verbose=0)
    assert m.evaluate(x, y)["loss"] < 0.7 * before


@pytest.mark.parametrize(
    "config, shape, error, field",
    [
        ({"type": "Conv2D", "filters": 4, "kernel_size": 3, "groups": 3}, (6, 5, 5), ShapeError, "groups"),
        ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "groups": 2}, (4, 5, 5), ShapeError, "groups"),
        ({"type": "Conv2D", "filters": 3, "kernel_size": 3, "dilation_rate": 3}, (1, 6, 6), ShapeError, "kernel_size"),
        (
            {"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "output_padding": 1},
            (1, 3, 3),
            ConfigError,
            "output_padding",
        ),
        (
            {
                "type": "Conv2DTranspose",
                "filters": 2,
                "kernel_size": 3,
                "strides": 2,
                "padding": "same",
                "output_padding": 1,
            },
            (1, 3, 3),
            ConfigError,
            "output_padding",
        ),
        ({"type": "Conv2DTranspose", "filters": 2, "kernel_size": 2, "padding": 2}, (1, 2, 2), ShapeError, "padding"),
        ({"type": "Cropping2D", "cropping": [[2, 2], [0, 0]]}, (1, 4, 5), ShapeError, "cropping"),
        ({"type": "DepthwiseConv2D", "kernel_size": 3}, (4,), ShapeError, "inputs"),
    ],
)
def test_bad_configurations_name_the_field(config, shape, error, field):
    layer = layers.create(config)
    with pytest.raises(error) as info:
        layer.setup(shape, np.random.default_rng(0))
    assert info.value.field == field


@pytest.mark.parametrize(
    "config",
    [
        {"type": "ZeroPadding2D", "padding": -1},
        {"type": "ZeroPadding2D", "padding": [1, 2, 3]},
        {"type": "Cropping2D", "cropping": [[1, 2], [3]]},
        {"type": "UpSampling2D", "interpolation": "bicubic"},
        {"type": "Conv2D", "filters": 2, "kernel_size": 3, "groups": 0},
        {"type": "Conv2DTranspose", "filters": 2, "kernel_size": 3, "output_padding": -1},
    ],
)
def test_bad_field_values_are_config_errors(config):
    with pytest.raises(ConfigError):
        layers.create(config)


def test_padding_forms_are_one_spelling():
    a = layers.create({"type": "ZeroPadding2D", "padding": 2}).get_config()
    b = layers.create({"type": "ZeroPadding2D", "padding": [2, 2]}).get_config()
    c = layers.create({"type": "ZeroPadding2D", "padding": [[2, 2], [2, 2]]}).get_config()
    assert a == b == c and a["padding"] == [[2, 2], [2, 2]]


def test_plain_conv2d_keeps_its_paths_and_older_configs_their_meaning():
    conv = layers.create({"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same"})  # no groups field
    conv.setup((8, 6, 6), np.random.default_rng(0))
    assert conv._general is None and conv._shift  # the existing GEMM paths, not the grouped one
    pool = layers.create({"type": "AvgPool2D", "pool_size": 3, "strides": 1, "padding": 1})
    pool.setup((1, 3, 3), np.random.default_rng(0))
    corner = pool(np.ones((1, 1, 3, 3), np.float32))[0, 0, 0, 0]
    assert corner == 1.0  # padded positions are not counted unless count_include_pad


def test_global_max_pooling_gradient_goes_to_the_first_maximum_and_nan_propagates():
    pool = layers.create({"type": "GlobalMaxPooling2D"})
    pool.setup((1, 2, 2), np.random.default_rng(0))
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]], np.float32)
    pool(x, training=True)
    assert pool.call_backward(np.ones((1, 1), np.float32))[0, 0].tolist() == [[0, 1], [0, 0]]
    x[0, 0, 1, 1] = np.nan
    assert np.isnan(pool(x)[0, 0])


def test_depthwise_equals_grouped_conv2d():
    rng = np.random.default_rng(0)
    dw = layers.create({"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 2, "strides": 2})
    conv = layers.create({"type": "Conv2D", "filters": 8, "kernel_size": 3, "groups": 4, "strides": 2})
    dw.setup((4, 7, 7), rng)
    conv.setup((4, 7, 7), rng)
    conv.params["kernel"][...] = dw.params["kernel"]
    conv.params["bias"][...] = dw.params["bias"]
    x = rng.standard_normal((3, 4, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(dw(x), conv(x))

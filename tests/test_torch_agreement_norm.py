"""Normalisation, PReLU, Rescaling, SpatialDropout2D, Permute, SliceChannels and the element-wise
merges agree with PyTorch: forward, input gradients and weight gradients."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from regnet import layers  # noqa: E402
from tests.torch_agreement import layer_agrees  # noqa: E402

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

F = torch.nn.functional
#: on both paths: NumPy and the compiled kernels (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")


@pytest.mark.parametrize(
    "config, shape, normalized",
    [
        ({"type": "LayerNormalization"}, (6,), (6,)),
        ({"type": "LayerNormalization", "axis": -1, "epsilon": 1e-5}, (3, 5), (5,)),
        ({"type": "LayerNormalization", "axis": [-2, -1]}, (2, 3, 4), (3, 4)),
        ({"type": "LayerNormalization", "axis": [1, 2, 3], "epsilon": 0.01}, (2, 3, 3), (2, 3, 3)),
        (
            {"type": "LayerNorm", "gamma_initializer": "glorot_uniform", "beta_initializer": "glorot_uniform"},
            (2, 4),
            (4,),
        ),
    ],
)
def test_layer_normalization(config, shape, normalized):
    eps = config.get("epsilon", 1e-3)
    layer_agrees(config, shape, lambda x, w: F.layer_norm(x, normalized, w["gamma"], w["beta"], eps))


def test_layer_normalization_over_the_channels_of_an_image():
    """axis=1 of NCHW: F.layer_norm over a channels-last view."""

    def torch_fn(x, w):
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w["gamma"], w["beta"], 1e-3)
        return y.permute(0, 3, 1, 2)

    config = {"type": "LayerNormalization", "axis": 1, "gamma_initializer": "glorot_uniform"}
    layer_agrees(config, (4, 2, 3), torch_fn)


def test_layer_normalization_without_center_or_scale():
    layer_agrees(
        {"type": "LayerNormalization", "center": False},
        (5,),
        lambda x, w: F.layer_norm(x, (5,), w["gamma"], None, 1e-3),
    )
    layer_agrees(
        {"type": "LayerNormalization", "scale": False}, (5,), lambda x, w: F.layer_norm(x, (5,), None, w["beta"], 1e-3)
    )


@pytest.mark.parametrize(
    "groups, shape",
    [(2, (4, 3, 3)), (1, (3, 2, 2)), (3, (3, 2, 4)), (2, (6,)), (4, (8, 2, 2))],  # groups = channels: instance norm
)
def test_group_normalization(groups, shape):
    config = {
        "type": "GroupNormalization",
        "groups": groups,
        "epsilon": 1e-5,
        "gamma_initializer": "glorot_uniform",  # weights away from 1 and 0, which hide mistakes
        "beta_initializer": "glorot_uniform",
    }
    layer_agrees(config, shape, lambda x, w: F.group_norm(x, groups, w["gamma"], w["beta"], 1e-5))


def test_group_normalization_with_groups_equal_to_channels_is_instance_norm():
    config = {"type": "GroupNorm", "groups": 3, "epsilon": 1e-5, "gamma_initializer": "glorot_uniform"}
    layer_agrees(config, (3, 4, 4), lambda x, w: F.instance_norm(x, weight=w["gamma"], bias=w["beta"], eps=1e-5))


def test_group_normalization_on_the_last_axis():
    def torch_fn(x, w):
        y = F.group_norm(x.permute(0, 2, 1), 2, w["gamma"], None, 1e-3)
        return y.permute(0, 2, 1)

    layer_agrees({"type": "GroupNormalization", "groups": 2, "axis": -1, "center": False}, (3, 4), torch_fn)


@pytest.mark.parametrize(
    "config, shape, slope",
    [
        # PyTorch's PReLU(num_parameters=C): one slope per channel
        ({"shared_axes": [2, 3], "alpha_initializer": "glorot_uniform"}, (3, 4, 4), lambda a: a.reshape(-1)),
        # PyTorch's PReLU(): one slope for everything
        (
            {"shared_axes": [1, 2, 3], "alpha_initializer": {"type": "constant", "value": 0.25}},
            (2, 3, 3),
            lambda a: a.reshape(1),
        ),
        ({"shared_axes": [1], "alpha_initializer": {"type": "constant", "value": 0.1}}, (5,), lambda a: a.reshape(1)),
    ],
)
def test_prelu(config, shape, slope):
    layer_agrees({"type": "PReLU", **config}, shape, lambda x, w: F.prelu(x, slope(w["alpha"])))


def test_prelu_with_a_slope_per_value():
    layer_agrees(
        {"type": "PReLU", "alpha_initializer": "glorot_uniform"},
        (2, 3),
        lambda x, w: torch.where(x > 0, x, w["alpha"] * x),
    )


def test_rescaling():
    layer_agrees({"type": "Rescaling", "scale": 1 / 255, "offset": -0.5}, (2, 3, 3), lambda x, w: x * (1 / 255) - 0.5)


def test_spatial_dropout_is_the_identity_in_inference():
    layer_agrees({"type": "SpatialDropout2D", "rate": 0.4}, (3, 2, 2), lambda x, w: F.dropout2d(x, 0.4, training=False))


def test_spatial_dropout_drops_whole_channels_in_training():
    """Training masks are random in both: compare what they do, not the draws."""
    layer = layers.create({"type": "SpatialDropout2D", "rate": 0.5})
    layer.setup((64, 3, 3), np.random.default_rng(0))
    x = np.ones((8, 64, 3, 3), np.float32)
    y = layer(x, training=True)
    t = F.dropout2d(torch.from_numpy(x), 0.5, training=True).numpy()
    for out in (y, t):
        assert out.shape == x.shape
        per_channel = out.reshape(8, 64, 9)
        assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))  # a channel is kept or dropped whole
        assert set(np.unique(out)) <= {0.0, 2.0}
    assert 0.3 < float((y == 0).mean()) < 0.7
    g = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.call_backward(g), g * y)  # the same mask scales the gradient


@pytest.mark.parametrize("dims, shape", [([2, 3, 1], (2, 3, 4)), ([3, 1, 2], (2, 3, 4)), ([2, 1], (3, 5))])
def test_permute(dims, shape):
    layer_agrees({"type": "Permute", "dims": dims}, shape, lambda x, w: x.permute(0, *dims))


def test_slice_channels():
    layer_agrees({"type": "SliceChannels", "start": 1, "stop": 3}, (4, 2, 2), lambda x, w: x[:, 1:3])
    layer_agrees({"type": "SliceChannels", "start": 0, "stop": 2}, (4,), lambda x, w: x.chunk(2, dim=1)[0])


BROADCAST = [
    [(3, 4, 4), (3, 4, 4)],
    [(3, 4, 4), (3, 1, 1)],  # squeeze-and-excitation
    [(3, 1, 1), (3, 4, 4)],
    [(2, 1, 3), (2, 4, 1)],  # both broadcast
]


def _lead(x, rank):
    """A batch of samples with fewer axes seen with leading ones after the batch axis (regnet's rule)."""
    return x.reshape(x.shape[0], *([1] * (rank - x.dim())), *x.shape[1:])


@pytest.mark.parametrize("shapes", BROADCAST)
@pytest.mark.parametrize(
    "name, fn",
    [
        ("Multiply", torch.mul),
        ("Subtract", torch.sub),
        ("Maximum", torch.maximum),
        ("Minimum", torch.minimum),
        ("Add", torch.add),
        ("Average", lambda a, b: (a + b) / 2),
    ],
)
def test_merges_broadcast_like_torch(name, fn, shapes):
    layer_agrees({"type": name}, shapes, lambda xs, w: fn(xs[0], xs[1]))


THREE = {
    "Multiply": lambda a, b, c: a * b * c,
    "Add": lambda a, b, c: a + b + c,
    "Maximum": lambda a, b, c: torch.maximum(torch.maximum(a, b), c),
    "Minimum": lambda a, b, c: torch.minimum(torch.minimum(a, b), c),
    "Average": lambda a, b, c: (a + b + c) / 3,
}


@pytest.mark.parametrize("name", sorted(THREE))
def test_merges_of_three_inputs_of_different_ranks(name):
    """A sample of fewer axes counts as one with leading axes of length 1 (after the batch axis)."""
    layer_agrees({"type": name}, [(2, 3, 4), (3, 1), (4,)], lambda xs, w: THREE[name](*(_lead(x, 4) for x in xs)))

"""Sequence layers against PyTorch: Embedding, PositionEmbedding, Conv1D, the 1-D pools and the
global 1-D pools (forward, input gradient and weight gradients on the same inputs and weights)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.torch_agreement import layer_agrees  # noqa: E402

# every test here runs on both computation paths: NumPy and the compiled accelerator (regnet.accel)
pytestmark = pytest.mark.usefixtures("accel_path")

F = torch.nn.functional


@pytest.mark.parametrize("shape", [(5,), (2, 3)])
def test_embedding(shape):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 6, size=(4, *shape))
    ids[0, ...] = 5  # repeated ids: their gradients add up
    layer = layer_agrees(
        {"type": "Embedding", "input_dim": 6, "output_dim": 3},
        shape,
        lambda x, w: F.embedding(x, w["embeddings"]),
        x=ids,
    )
    assert layer.output_shape == (*shape, 3)


def test_embedding_reads_whole_floats_as_ids():
    from regnet import layers

    ids = np.array([[0, 3, 3, 1]])
    layer = layers.create({"type": "Embedding", "input_dim": 4, "output_dim": 2})
    layer.setup((4,), np.random.default_rng(0))
    want = F.embedding(torch.tensor(ids), torch.tensor(layer.params["embeddings"])).numpy()
    np.testing.assert_array_equal(layer(ids.astype(np.float32)), want)


def test_position_embedding():
    layer_agrees(
        {"type": "PositionEmbedding", "sequence_length": 7},
        (5, 3),
        lambda x, w: x + w["embeddings"][:5],
    )


CONV_CASES = [
    ({"kernel_size": 3}, lambda x, w: F.conv1d(x, w["kernel"], w["bias"])),
    (  # an even window: 'same' pads 1 before and 2 after (as PyTorch's padding="same")
        {"kernel_size": 4, "padding": "same"},
        lambda x, w: F.conv1d(F.pad(x, (1, 2)), w["kernel"], w["bias"]),
    ),
    (
        {"kernel_size": 3, "padding": "same", "dilation_rate": 2},
        lambda x, w: F.conv1d(x, w["kernel"], w["bias"], padding="same", dilation=2),
    ),
    (  # Keras 'same' with stride 2 on 8 positions: 4 outputs, nothing before, 1 after
        {"kernel_size": 3, "strides": 2, "padding": "same"},
        lambda x, w: F.conv1d(F.pad(x, (0, 1)), w["kernel"], w["bias"], stride=2),
    ),
    (
        {"kernel_size": 3, "padding": "causal", "dilation_rate": 2},
        lambda x, w: F.conv1d(F.pad(x, (4, 0)), w["kernel"], w["bias"], dilation=2),
    ),
    (
        {"kernel_size": 3, "padding": 2, "groups": 2, "strides": 2},
        lambda x, w: F.conv1d(x, w["kernel"], w["bias"], stride=2, padding=2, groups=2),
    ),
    (
        {"kernel_size": 2, "strides": 3, "dilation_rate": 2, "use_bias": False, "activation": "relu"},
        lambda x, w: F.relu(F.conv1d(x, w["kernel"], stride=3, dilation=2)),
    ),
    (  # depthwise: one group per channel
        {"kernel_size": 3, "groups": 4, "padding": "causal"},
        lambda x, w: F.conv1d(F.pad(x, (2, 0)), w["kernel"], w["bias"], groups=4),
    ),
]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("config, torch_fn", CONV_CASES)
def test_conv1d(config, torch_fn, training):
    layer_agrees({"type": "Conv1d", "filters": 4, **config}, (4, 8), torch_fn, training=training)


POOL_CASES = [
    ("MaxPooling1D", {"pool_size": 2}, lambda x: F.max_pool1d(x, 2)),
    ("MaxPool1d", {"pool_size": 3, "strides": 2, "padding": 1}, lambda x: F.max_pool1d(x, 3, 2, padding=1)),
    (  # Keras 'same', 9 positions, window 2, stride 2: nothing before, 1 after
        "MaxPooling1D",
        {"pool_size": 2, "padding": "same"},
        lambda x: F.max_pool1d(F.pad(x, (0, 1), value=-float("inf")), 2),
    ),
    ("MaxPooling1D", {"pool_size": 3, "strides": 1}, lambda x: F.max_pool1d(x, 3, 1)),
    ("AveragePooling1D", {"pool_size": 2}, lambda x: F.avg_pool1d(x, 2)),
    (
        "AvgPool1d",
        {"pool_size": 3, "strides": 2, "padding": 1},
        lambda x: F.avg_pool1d(x, 3, 2, padding=1, count_include_pad=False),
    ),
    (  # Keras 'same' averages the real positions only: 9 positions, window 3, stride 2 -> 1 and 1
        "AveragePooling1D",
        {"pool_size": 3, "strides": 2, "padding": "same"},
        lambda x: F.avg_pool1d(x, 3, 2, padding=1, count_include_pad=False),
    ),
    ("GlobalAveragePooling1D", {}, lambda x: F.adaptive_avg_pool1d(x, 1).flatten(1)),
    ("GlobalAveragePooling1D", {"keepdims": True}, lambda x: F.adaptive_avg_pool1d(x, 1)),
    ("GlobalMaxPooling1D", {}, lambda x: F.adaptive_max_pool1d(x, 1).flatten(1)),
    ("GlobalMaxPool1D", {"keepdims": True}, lambda x: F.adaptive_max_pool1d(x, 1)),
    # (N, L, C): the mean / max over the length, axis 1
    ("GlobalAveragePooling1D", {"data_format": "channels_last"}, lambda x: x.mean(dim=1)),
    ("GlobalMaxPooling1D", {"data_format": "channels_last", "keepdims": True}, lambda x: x.amax(dim=1, keepdim=True)),
]


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name, config, torch_fn", POOL_CASES)
def test_pooling_1d(name, config, torch_fn, training):
    layer_agrees({"type": name, **config}, (3, 9), lambda x, w: torch_fn(x), training=training)

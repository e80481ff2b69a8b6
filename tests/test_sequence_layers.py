"""Sequence layers at the layer level: Embedding's ids and mask, errors naming the layer and field,
the class docstrings' examples, and the layers inside a model (float32 ids, as models take today)."""

import doctest
import json

import numpy as np
import pytest

from regnet import ConfigError, DataError, Model, ShapeError, layers
from regnet.layers import conv1d, embedding


def _built(config, shape, seed=0):
    layer = layers.create(config)
    layer.setup(shape, np.random.default_rng(seed))
    return layer


@pytest.mark.parametrize("module", [embedding, conv1d])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_embedding_gathers_rows_and_scatters_gradients():
    layer = _built({"type": "Embedding", "input_dim": 5, "output_dim": 3}, (2, 2))
    ids = np.array([[[1, 4], [4, 0]]])
    y = layer(ids)
    table = layer.params["embeddings"]
    assert y.dtype == np.float32 and y.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(y[0, 1, 0], table[4])
    g = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    assert layer.call_backward(g, need_input_grad=False) is None
    want = np.zeros_like(table)
    for (i, j), v in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [1, 4, 4, 0]):
        want[v] += g[0, i, j]
    np.testing.assert_array_equal(layer.grads["embeddings"], want)
    dx = layer.call_backward(g)
    assert dx.shape == ids.shape and not dx.any()


@pytest.mark.parametrize("bad", [-1, 5, 17])
def test_embedding_refuses_ids_out_of_range_naming_layer_and_id(bad):
    layer = _built({"type": "Embedding", "input_dim": 5, "output_dim": 2, "name": "tokens"}, (3,))
    with pytest.raises(DataError, match=rf"Embedding 'tokens'.*token id {bad} is outside \[0, 5\)"):
        layer(np.array([[0, bad, 1]]))


def test_embedding_refuses_fractional_and_non_numeric_ids():
    layer = _built({"type": "Embedding", "input_dim": 5, "output_dim": 2}, (2,))
    with pytest.raises(DataError, match="whole numbers, got 1.5"):
        layer(np.array([[1.0, 1.5]], np.float32))
    with pytest.raises(DataError, match="must be integers"):
        layer(np.array([["a", "b"]]))


def test_embedding_mask_zero_records_the_mask():
    layer = _built({"type": "Embedding", "input_dim": 5, "output_dim": 2, "mask_zero": True}, (3,))
    ids = np.array([[0, 2, 0], [3, 0, 1]])
    y = layer(ids)
    np.testing.assert_array_equal(layer.cache.mask, ids != 0)
    np.testing.assert_array_equal(layer.compute_mask(ids), ids != 0)
    np.testing.assert_array_equal(y[0, 0], layer.params["embeddings"][0])  # id 0 is still embedded
    plain = _built({"type": "Embedding", "input_dim": 5, "output_dim": 2}, (3,))
    plain(ids)
    assert plain.compute_mask(ids) is None and not hasattr(plain.cache, "mask")


def test_embedding_default_initializer_is_kerass_uniform():
    table = _built({"type": "Embedding", "input_dim": 50, "output_dim": 8}, (2,)).params["embeddings"]
    assert np.abs(table).max() <= 0.05 and table.std() > 0.02


def test_position_embedding_shorter_sequence_and_too_long():
    layer = _built({"type": "PositionEmbedding", "sequence_length": 6}, (4, 3))
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(x), x + layer.params["embeddings"][:4])
    layer.call_backward(np.ones((2, 4, 3), np.float32))
    np.testing.assert_array_equal(layer.grads["embeddings"][:4], 2.0)
    np.testing.assert_array_equal(layer.grads["embeddings"][4:], 0.0)
    with pytest.raises(ShapeError, match="7 positions, more than sequence_length 6"):
        _built({"type": "PositionEmbedding", "sequence_length": 6}, (7, 3))


@pytest.mark.parametrize(
    "config, shape, error, field",
    [
        ({"filters": 3, "kernel_size": 2, "groups": 2}, (4, 5), ConfigError, "groups"),
        ({"filters": 4, "kernel_size": 2, "groups": 3}, (4, 5), ConfigError, "groups"),
        ({"filters": 4, "kernel_size": 2, "groups": 4}, (6, 5), ShapeError, "groups"),
        ({"filters": 2, "kernel_size": 4, "dilation_rate": 2}, (1, 6), ShapeError, "kernel_size"),
        ({"filters": 2, "kernel_size": 0}, (1, 6), ConfigError, "kernel_size"),
        ({"filters": 2, "kernel_size": 2, "padding": "full"}, (1, 6), ConfigError, "padding"),
        ({"filters": 2, "kernel_size": 2, "strides": True}, (1, 6), ConfigError, "strides"),
        ({"filters": 2, "kernel_size": 2}, (1, 6, 6), ShapeError, "inputs"),
    ],
)
def test_conv1d_bad_configs_name_the_field(config, shape, error, field):
    with pytest.raises(error) as info:
        _built({"type": "Conv1D", **config}, shape)
    assert info.value.field == field


def test_conv1d_accepts_kerass_one_element_tuples():
    layer = layers.create({"type": "Conv1D", "filters": 2, "kernel_size": [3], "strides": (2,)})
    assert layer.kernel_size == 3 and layer.strides == 2
    assert layer.get_config()["kernel_size"] == 3


def test_pooling_1d_bad_configs():
    with pytest.raises(ShapeError, match="more than half the window"):
        _built({"type": "MaxPooling1D", "pool_size": 2, "padding": 2}, (1, 6))
    with pytest.raises(ConfigError) as info:
        layers.create({"type": "AveragePooling1D", "padding": "causal"})
    assert info.value.field == "padding"
    with pytest.raises(ShapeError):
        _built({"type": "GlobalMaxPooling1D"}, (3,))


def test_sequence_model_trains_on_float_ids():
    """Embedding -> Conv1D over (N, D, L) -> pools -> Dense, in today's one-float32-input model."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, size=(32, 10)).astype(np.float32)
    y = (x[:, :5].sum(axis=1) > x[:, 5:].sum(axis=1)).astype(np.int64)
    model = Model(
        [
            {"type": "Embedding", "input_dim": 9, "output_dim": 4},
            {"type": "PositionEmbedding", "sequence_length": 10},
            # regnet has no Permute layer yet: a Reshape stands in for (N, L, D) -> (N, D, L) here
            {"type": "Reshape", "target_shape": [4, 10]},
            {"type": "Conv1D", "filters": 6, "kernel_size": 3, "padding": "causal", "activation": "relu"},
            {"type": "MaxPooling1D", "pool_size": 2},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": 2, "activation": "softmax"},
        ],
        (10,),
        seed=0,
    )
    model.compile("sparse_categorical_crossentropy", {"type": "adam", "learning_rate": 0.01}, metrics=[])
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    loss = lambda v: v["loss"] if isinstance(v, dict) else v
    assert loss(after) < loss(before)
    again = Model.from_spec(json.loads(model.to_json()))
    assert again.output_shape == (2,) and again.layers[0].input_dim == 9

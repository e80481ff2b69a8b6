"""Sequence layers' semantics without PyTorch: masks keep the previous state, go_backwards and
Bidirectional's reversal, causal attention ignores the future, a fully masked query, attention
in a graph fed the model input twice (save/load), and errors that name the layer and field."""

import doctest

import numpy as np
import pytest

import regnet
from regnet import ConfigError, Model
from regnet.layers import attention, recurrent

RNG = np.random.default_rng(0)


def built(config, shape, seed=0):
    layer = regnet.layers.create(config)
    layer.setup(shape, np.random.default_rng(seed))
    return layer


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_steps_keep_the_previous_state(kind):
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], np.float32)
    layer = built({"type": kind, "units": 4, "return_sequences": True, "use_mask": True}, [(5, 3), (5,)])
    y = layer([x, mask])
    np.testing.assert_array_equal(y[0, 2], y[0, 1])  # a skipped step repeats the output before it
    np.testing.assert_array_equal(y[0, 4], y[0, 3])
    np.testing.assert_array_equal(y[1, 0], 0)  # nothing seen yet
    plain = built({"type": kind, "units": 4, "return_sequences": True}, (3, 3))
    np.testing.assert_allclose(plain(x[:1, [0, 1, 3]])[0, -1], y[0, 3], atol=1e-6)  # the valid steps alone


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_go_backwards_reads_the_reversed_sequence(kind):
    x = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    back = built({"type": kind, "units": 3, "return_sequences": True, "go_backwards": True}, (4, 3))
    fwd = built({"type": kind, "units": 3, "return_sequences": True}, (4, 3))
    np.testing.assert_array_equal(back(x), fwd(x[:, ::-1].copy()))


def test_bidirectional_reverses_the_backward_sequence_back():
    x = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    bi = built({"type": "Bidirectional", "layer": {"type": "GRU", "units": 2, "return_sequences": True}}, (4, 3))
    back = built({"type": "GRU", "units": 2, "return_sequences": True, "go_backwards": True}, (4, 3))
    for k in back.params:
        back.params[k][...] = bi.params[f"backward.{k}"]
    np.testing.assert_allclose(bi(x)[..., 2:], back(x)[:, ::-1], atol=1e-6)
    assert sorted(bi.params) == sorted(f"{d}.{k}" for d in ("forward", "backward") for k in back.params)


def test_causal_attention_ignores_the_future():
    layer = built({"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 3, "use_causal_mask": True}, [(5, 4)] * 2)
    x = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    changed = x.copy()
    changed[:, 3:] += 1.0
    a, b = layer([x, x]), layer([changed, changed])
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_fully_masked_query_attends_to_nothing():
    layer = attention.MultiHeadAttention(num_heads=2, key_dim=2, use_attention_mask=True, bias_initializer="ones")
    layer.setup([(3, 4), (3, 4), (3, 3)], np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    mask = np.ones((2, 3, 3), np.float32)
    mask[0, 1] = 0  # query 1 of sample 0 sees no key
    y = layer([x, x, mask])
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0, 1], layer.params["output_bias"])  # no value reaches it
    grads = layer.call_backward(np.ones_like(y))
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert not np.allclose(y[0, 0], layer.params["output_bias"])


@pytest.mark.filterwarnings("ignore:.*never trained:UserWarning")  # saved untrained on purpose
def test_self_attention_on_the_model_input_fed_twice_saves_and_loads(tmp_path):
    spec = {
        "input_shape": [5, 4],
        "layers": [
            {"type": "MultiHeadAttention", "name": "mha", "num_heads": 2, "key_dim": 2, "inputs": ["input", "input"]},
            {"type": "LSTM", "units": 3},
        ],
    }
    model = Model.from_spec(spec, seed=0)
    x = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    regnet.save(model, tmp_path / "m.h5")
    again = regnet.load(tmp_path / "m.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert "mha/query_kernel" in again.state_dict()
    model.forward(x, training=True)
    dx = model.backward(np.ones((3, 3), np.float32))  # both uses of the input add up
    assert dx.shape == x.shape and np.all(np.isfinite(dx))


@pytest.mark.parametrize(
    ("layers", "shape", "field", "words"),
    [
        ([{"type": "LSTM", "units": 2}], [4], "inputs", "rank-3"),
        ([{"type": "Bidirectional", "layer": {"type": "Dense", "units": 2}}], [4, 3], "layer", "recurrent layer"),
        ([{"type": "Bidirectional", "layer": {"type": "LSTM"}}], [4, 3], "layer.units", "units"),
        ([{"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2}], [4, 3], "inputs", "two or more"),
        (
            [{"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 2, "dropout": 1.0, "inputs": ["input"] * 2}],
            [4, 3],
            "dropout",
            "[0, 1)",
        ),
        ([{"type": "GRU", "units": 2, "use_mask": True, "inputs": ["input", "input"]}], [4, 3], "inputs", "mask"),
    ],
)
def test_errors_name_the_layer_and_field(layers, shape, field, words):
    with pytest.raises(ConfigError) as info:
        Model.from_spec({"input_shape": shape, "layers": layers})
    assert info.value.field == field and words in str(info.value) and info.value.layer


def test_sequence_layer_docstrings_run():
    for mod in (recurrent, attention):
        result = doctest.testmod(mod, raise_on_error=False, verbose=False)
        assert result.attempted >= 3 and result.failed == 0, mod.__name__

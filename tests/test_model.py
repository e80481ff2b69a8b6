"""Model assembly from specs, graph passes, determinism and the training runtime."""

import json

import numpy as np
import pytest

import regnet
from regnet import ConfigError, Model

MLP = {
    "format": "regnet.model",
    "version": 1,
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "units": 8, "activation": "tanh"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ],
}

# two branches summed (an operator dictionary + connectivity), then a residual block
GRAPH = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "a", "units": 6, "activation": "tanh", "inputs": ["input"]},
        {"type": "Dense", "name": "b", "units": 6, "activation": "elu", "inputs": ["input"]},
        {"type": "Add", "name": "sum", "inputs": ["a", "b"]},
        {"type": "Dense", "name": "res", "units": 6, "activation": "gelu"},
        {"type": "Add", "name": "skip", "inputs": ["sum", "res"]},
        {"type": "Concatenate", "name": "cat", "inputs": ["skip", "a"]},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


def _to_float64(model):
    for layer in model.layers:
        for d in (layer.params, layer.grads, layer.buffers):
            for k in d:
                d[k] = d[k].astype(np.float64)


def _model_gradcheck(model, x, y, eps=1e-6):
    """Max relative error of backprop vs central differences for every parameter and the input."""
    loss = model.training_loss
    fused = model.fused_loss is not None

    def value(xx):
        return loss.value_and_grad(model.forward(xx, training=True, logits=fused), y)[0]

    out = model.forward(x, training=True, logits=fused)
    _, g = loss.value_and_grad(out, y)
    dx = model.backward(g)
    worst = 0.0
    targets = [("input", x, dx)] + [(k, p, model.grads[k].copy()) for k, p in model.params.items()]
    for name, arr, analytic in targets:
        numeric = np.zeros_like(arr)
        flat, nflat = arr.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = value(x)
            flat[i] = old - eps
            down = value(x)
            flat[i] = old
            nflat[i] = (up - down) / (2 * eps)
        err = np.abs(numeric - analytic).max() / max(1e-8, np.abs(numeric).max() + np.abs(analytic).max())
        worst = max(worst, err)
        assert err < 1e-6, f"{name}: relative error {err:.3g}"
    return worst


def test_spec_builds_and_round_trips():
    m = Model.from_spec(MLP, seed=0)
    assert [layer.name for layer in m.layers] == ["dense_1", "dense_2"]
    assert m.output_shape == (3,)
    again = Model.from_spec(m.to_json(), seed=0)
    assert again.to_spec() == m.to_spec()
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, again.state_dict()[k])


def test_spec_accepts_bare_layer_list():
    spec = [{"type": "Input", "shape": [4]}, *MLP["layers"]]
    m = Model.from_spec(json.dumps(spec), seed=0)
    assert m.input_shape == (4,) and m.output_shape == (3,)


def test_graph_topology_and_output_shape():
    m = Model.from_spec(GRAPH, seed=1)
    assert m.get_layer("cat").output_shape == (12,)
    assert m.output_shape == (3,)
    names = [n.name for n in m.nodes]
    assert names.index("a") < names.index("sum") < names.index("skip") < names.index("cat")
    assert Model.from_spec(m.to_spec(), seed=1).to_spec() == m.to_spec()


def test_graph_gradients_sum_over_fan_out():
    m = Model.from_spec(GRAPH, seed=2)
    m.compile("categorical_crossentropy", "sgd")
    _to_float64(m)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    y = rng.integers(0, 3, 5)
    _model_gradcheck(m, x, y)


def test_graph_model_trains():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1)
    m = Model.from_spec(GRAPH, seed=3).compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.02})
    before = m.evaluate(x, y)["loss"]
    m.fit(x, y, epochs=20, batch_size=32, seed=0, verbose=0)
    after = m.evaluate(x, y)
    assert after["loss"] < 0.5 * before
    assert after["accuracy"] > 0.9


def test_conv_model_gradients():
    spec = {
        "input_shape": [2, 7, 7],
        "layers": [
            {"type": "Conv2D", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "tanh"},
            {"type": "MaxPool2D", "pool_size": 2},
            {"type": "BatchNorm"},
            {"type": "Conv2D", "name": "c2", "filters": 3, "kernel_size": 2, "strides": 1, "padding": 1},
            {"type": "AvgPool2D", "pool_size": 2, "padding": "same"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 2, "activation": "sigmoid"},
        ],
    }
    m = Model.from_spec(spec, seed=0).compile("binary_crossentropy", "sgd")
    _to_float64(m)
    rng = np.random.default_rng(1)
    _model_gradcheck(m, rng.standard_normal((3, 2, 7, 7)), rng.integers(0, 2, (3, 2)).astype(float))


def test_same_seed_same_weights_bit_for_bit():
    def run():
        spec = {**MLP, "layers": [MLP["layers"][0], {"type": "Dropout", "rate": 0.3}, MLP["layers"][1]]}
        m = Model.from_spec(spec, seed=7).compile("categorical_crossentropy", "adam")
        rng = np.random.default_rng(0)
        x = rng.standard_normal((100, 4)).astype(np.float32)
        y = rng.integers(0, 3, 100)
        m.fit(x, y, epochs=3, batch_size=16, seed=11, verbose=0)
        return m.state_dict()

    a, b = run(), run()
    for k in a:
        assert a[k].dtype == np.float32
        np.testing.assert_array_equal(a[k], b[k])


def test_different_seed_different_weights():
    a = Model.from_spec(MLP, seed=1).state_dict()["dense_1/kernel"]
    b = Model.from_spec(MLP, seed=2).state_dict()["dense_1/kernel"]
    assert not np.array_equal(a, b)


def test_fit_history_and_epoch_counter():
    m = Model.from_spec(MLP, seed=0).compile("categorical_crossentropy", "adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    h = m.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), verbose=0)
    assert h.epoch == [1, 2]
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    h2 = m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert h2.epoch == [3] and m.epoch == 3 and len(m.history) == 3


def test_evaluate_matches_predict():
    m = Model.from_spec(MLP, seed=0).compile("categorical_crossentropy", "adam")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 4)).astype(np.float32), rng.integers(0, 3, 50)
    p = m.predict(x, batch_size=7)
    assert p.dtype == np.float32 and p.shape == (50, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    expected = -np.log(p[np.arange(50), y]).mean()
    res = m.evaluate(x, y, batch_size=13)
    assert res["loss"] == pytest.approx(expected, rel=1e-4)
    assert res["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y))


def test_summary_lists_layers_and_totals():
    m = Model.from_spec(GRAPH, seed=0)
    lines = []
    assert m.summary(print_fn=lines.append) is None
    (text,) = lines
    for name in ("a", "b", "sum", "skip", "cat", "out"):
        assert f"{name} (" in text
    assert f"Total params: {m.count_params():,}" in text
    assert m.count_params() == (4 * 6 + 6) * 2 + (6 * 6 + 6) + (12 * 3 + 3)


def test_compile_accepts_names_dicts_and_instances():
    m = Model.from_spec(MLP, seed=0)
    m.compile("mse", {"type": "SGD", "lr": 0.5, "momentum": 0.9})
    assert m.optimizer.learning_rate == 0.5 and m.optimizer.momentum == 0.9
    m.compile(regnet.losses.CategoricalCrossentropy(), regnet.optimizers.Adam(learning_rate=0.1))
    assert isinstance(m.optimizer, regnet.optimizers.Adam)
    with pytest.raises(regnet.UnknownComponentError, match="adam"):
        m.compile("categorical_crossentropy", "adamm")


def test_fused_softmax_cross_entropy_is_used_and_exact():
    m = Model.from_spec(MLP, seed=0).compile("categorical_crossentropy", "sgd")
    assert m.training_loss.from_logits and not m.loss.from_logits
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
    p = m.predict(x)
    unfused = m.loss.value(p, y)
    assert m.evaluate(x, y)["loss"] == pytest.approx(unfused, rel=1e-5)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"type": "Dense"}, "units"),
        ({"type": "Dense", "units": 0}, "units"),
        ({"type": "Dense", "units": "8"}, "units"),
        ({"type": "Dense", "units": 8, "unitz": 3}, "unitz"),
        ({"type": "Dense", "units": 8, "activation": "relux"}, "activation"),
    ],
)
def test_bad_layer_config_names_layer_and_field(bad, field):
    spec = {**MLP, "layers": [MLP["layers"][0], bad, MLP["layers"][1]]}
    with pytest.raises(ConfigError) as info:
        Model.from_spec(spec)
    assert info.value.layer.startswith("#1") and info.value.field == field
    assert "#1" in str(info.value)


def test_predict_frees_each_activation_after_its_last_reader():
    """Inference keeps a few activations alive, not one per layer: with eight convolutions of
    equal output size, the peak traced memory stays under four activations' worth."""
    import tracemalloc

    layers = [{"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}] * 8
    model = Model(layers + [{"type": "Flatten"}, {"type": "Dense", "units": 2}], input_shape=(8, 16, 16), seed=0)
    x = np.random.default_rng(0).random((64, 8, 16, 16), dtype=np.float32)
    activation = x.nbytes
    model.predict(x, batch_size=64)  # buffers kept between batches are made here
    tracemalloc.start()
    try:
        model.predict(x, batch_size=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * activation, f"peak {peak / activation:.1f} activations"

"""Building models in Python as Keras and PyTorch users do: the functional API, Sequential, a
list of layers and a JSON spec give the same model, JSON and file; model(x); weights as lists;
composite blocks and forward-only layers without a hand-written backward."""

import json

import attrs
import numpy as np
import pytest

import regnet
from regnet import Block, ConfigError, DerivedLayer, Input, Model, Sequential, fields, registry
from regnet.layers import Add, Conv2D, Dense, Flatten, Layer, MaxPool2D, layer
from regnet.testing import check_layer

README_SPEC = {
    "format": "regnet.model",
    "version": 1,
    "input_shape": [1, 28, 28],
    "layers": [
        {"type": "Conv2D", "name": "conv1", "filters": 6, "kernel_size": 5, "padding": "same", "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "Conv2D", "name": "conv2", "filters": 6, "kernel_size": 3, "padding": "same"},
        {"type": "Add", "name": "residual", "inputs": ["conv2", "max_pool2d_1"], "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
}


def functional_readme_model(seed=0):
    x = Input((1, 28, 28))
    h = Conv2D(6, 5, padding="same", activation="relu", name="conv1")(x)
    p = MaxPool2D(2)(h)
    r = Add(activation="relu", name="residual")([Conv2D(6, 3, padding="same", name="conv2")(p), p])
    y = Dense(10, activation="softmax")(Flatten()(r))
    return Model(x, y, seed=seed)


def test_json_functional_and_layer_list_give_the_same_model_and_file(tmp_path):
    from_json = Model.from_spec(README_SPEC, seed=0)
    functional = functional_readme_model(seed=0)
    listed = Model([dict(e) for e in README_SPEC["layers"]], (1, 28, 28), seed=0)
    for other in (functional, listed):
        assert other.to_spec() == from_json.to_spec()
        assert list(other.state_dict()) == list(from_json.state_dict())
        for key, value in from_json.state_dict().items():
            assert other.state_dict()[key].tobytes() == value.tobytes(), key
    regnet.save(from_json, tmp_path / "a.h5")
    regnet.save(functional, tmp_path / "b.h5")
    a, b = regnet.load(tmp_path / "a.h5"), regnet.load(tmp_path / "b.h5")
    assert a.to_json() == b.to_json()


def test_sequential_matches_the_chain_spec_and_trains():
    spec = {
        "input_shape": [1, 8, 8],
        "layers": [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    }
    seq = Sequential(
        [Conv2D(4, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")], input_shape=(1, 8, 8), seed=3
    )
    with_input = Sequential(
        [Input((1, 8, 8)), Conv2D(4, 3, activation="relu"), Flatten(), Dense(3, activation="softmax")], seed=3
    )
    added = Sequential(seed=3)
    added.add(Conv2D(4, 3, activation="relu"))
    added.add({"type": "Flatten"})
    added.build((1, 8, 8))
    added.add(Dense(3, activation="softmax"))
    want = Model.from_spec(spec, seed=3)
    for model in (seq, with_input, added):
        assert model.to_spec()["layers"] == want.to_spec()["layers"]
    for key, value in want.state_dict().items():
        assert seq.state_dict()[key].tobytes() == value.tobytes()
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    added.compile(loss="categorical_crossentropy", optimizer="adam")
    history = added.fit(x, np.arange(16) % 3, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_sequential_errors_say_what_to_do():
    with pytest.raises(ConfigError, match="not built yet"):
        Sequential([Dense(2)]).count_params()
    with pytest.raises(ConfigError, match="no 'inputs'"):
        Sequential([{"type": "Dense", "units": 2, "inputs": ["x"]}], input_shape=(3,))
    with pytest.raises(ConfigError, match="duplicate layer name"):
        Sequential([Dense(2, name="d")], input_shape=(3,)).add(Dense(2, name="d"))


def test_functional_errors_name_the_layer():
    x = Input((4,))
    with pytest.raises(ConfigError, match=r"Conv2D \(called on \(N, 4\)\)"):
        Conv2D(3, 3)(x)
    d = Dense(2)
    d(x)
    with pytest.raises(ConfigError, match="already used in a graph"):
        d(x)
    with pytest.raises(ConfigError, match="two or more"):
        Add()(x)
    with pytest.raises(ConfigError, match="outputs must be the tensor a layer returned"):
        Model(x, x)
    y = Dense(2)(Input((4,)))
    with pytest.raises(ConfigError, match="not the model's input"):
        Model(x, y)


def test_model_is_callable_like_predict():
    model = functional_readme_model()
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(model(x), model.predict(x), rtol=1e-6)
    with pytest.raises(regnet.DataError):
        model(np.zeros((3, 28, 28), np.float32))


def test_get_and_set_weights_are_lists_in_layer_order():
    a, b = functional_readme_model(seed=0), functional_readme_model(seed=1)
    weights = a.get_weights()
    assert isinstance(weights, list) and [w.shape for w in weights] == [v.shape for v in a.state_dict().values()]
    weights[0][...] = 7  # copies: the model is not changed through them
    assert not (a.state_dict()["conv1/kernel"] == 7).all()
    b.set_weights(a.get_weights())
    x = np.random.default_rng(2).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(regnet.WeightsMismatchError, match="got 1 arrays"):
        b.set_weights(weights[:1])
    bad = a.get_weights()
    bad[0] = bad[0][:1]
    before = b.state_dict()["conv2/kernel"].copy()
    with pytest.raises(regnet.WeightsMismatchError):
        b.set_weights(bad)
    np.testing.assert_array_equal(b.state_dict()["conv2/kernel"], before)  # nothing changed


def test_summary_prints_the_table(capsys):
    model = functional_readme_model()
    assert model.summary() is None
    out = capsys.readouterr().out
    assert "residual (Add)" in out and "Total params:" in out


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Dense(unit=10), "has no field 'unit' \\(did you mean 'units'\\?\\)"),
        (lambda: Dense(), "needs field\\(s\\) units"),
        (lambda: Dense(10, "relu", True, "zeros", "zeros", 1), "at most 5 positional"),
        (lambda: regnet.optimizers.Adam(beta1=0.9), "did you mean 'beta_1'"),
        (lambda: Dense(units=0), "expected an integer >= 1"),
    ],
)
def test_wrong_keyword_arguments_are_config_errors(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_a_registered_class_must_be_an_attrs_class():
    class Plain(Layer):
        pass

    with pytest.raises(TypeError, match="not an attrs class"):
        registry.layers.register(Plain, name="PlainLayer")
    assert "PlainLayer" not in registry.layers


# -- a composite block and a forward-only layer, as a plugin writes them ---------------------------


@pytest.fixture(scope="module")
def custom_layers():
    @layer("TestResidualPair")
    class ResidualPair(Block):
        """``relu(x + conv(relu(conv(x))))`` with BatchNorm: a residual block."""

        filters: int = fields.integer(min=1, doc="channels of the inner convolution")

        test_config = {"filters": 3}
        test_input_shape = (2, 5, 5)

        def graph(self, x):
            h = Conv2D(self.filters, 3, padding="same", activation="relu")(x)
            h = regnet.layers.BatchNorm()(h)
            h = Conv2D(x.shape[0], 3, padding="same")(h)
            return Add(activation="relu")([x, h])

    @layer("TestGatedUnit")
    class GatedUnit(DerivedLayer):
        """``(x @ a + c) * sigmoid(x @ b)``: a gated linear unit (forward only)."""

        units: int = fields.integer(min=1, doc="output features")

        test_config = {"units": 3}
        test_input_shape = (4,)

        def build(self, input_shape, rng):
            self.add_weight("a", (input_shape[-1], self.units), "glorot_uniform", rng)
            self.add_weight("b", (input_shape[-1], self.units), "glorot_uniform", rng)
            self.add_weight("c", (self.units,), "zeros", rng)
            return (*input_shape[:-1], self.units)

        def compute(self, x, w, training=False):
            import autograd.numpy as anp

            return (x @ w["a"] + w["c"]) * (1 / (1 + anp.exp(-(x @ w["b"]))))

    yield ResidualPair, GatedUnit
    registry.layers.unregister("TestResidualPair")
    registry.layers.unregister("TestGatedUnit")


def test_blocks_and_derived_layers_pass_the_conformance_kit(custom_layers):
    pytest.importorskip("autograd")
    for cls in custom_layers:
        report = check_layer({"type": cls.registered_name, **cls.test_config}, cls.test_input_shape)
        assert "gradient" in report.passed and "hdf5" in report.passed, report


def test_a_block_and_a_derived_layer_train_save_and_load_from_json(custom_layers, tmp_path):
    pytest.importorskip("autograd")
    spec = {
        "input_shape": [2, 6, 6],
        "layers": [
            {"type": "TestResidualPair", "name": "block", "filters": 4},
            {"type": "Flatten"},
            {"type": "TestGatedUnit", "name": "glu", "units": 8},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    }
    model = Model.from_spec(json.dumps(spec), seed=0)
    assert "block/conv2d_1.kernel" in model.state_dict() and "block/batch_norm_1.moving_mean" in model.state_dict()
    rng = np.random.default_rng(0)
    x = rng.random((64, 2, 6, 6), dtype=np.float32)
    x[:, 0] += np.arange(64)[:, None, None] % 3 * 0.5  # the class shifts the first channel
    y = np.arange(64) % 3
    model.compile(loss="categorical_crossentropy", optimizer={"type": "adam", "learning_rate": 0.01})
    losses = model.fit(x, y, epochs=10, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0] * 0.5
    regnet.save(model, tmp_path / "m.h5")
    again = regnet.load(tmp_path / "m.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    again.fit(x, y, epochs=1, verbose=0)  # optimizer state restored for the inner weights too


def test_a_frozen_block_keeps_its_weights(custom_layers):
    model = Model(
        [{"type": "TestResidualPair", "name": "b", "filters": 2}, {"type": "Flatten"}, {"type": "Dense", "units": 2}],
        (2, 4, 4),
        seed=0,
    )
    model.freeze("b")
    model.compile(loss="mean_squared_error", optimizer="sgd")
    kernel = model.state_dict()["b/conv2d_1.kernel"].copy()
    model.fit(np.ones((4, 2, 4, 4), np.float32), np.ones((4, 2), np.float32), verbose=0)
    np.testing.assert_array_equal(model.state_dict()["b/conv2d_1.kernel"], kernel)
    assert attrs.has(type(model.get_layer("b")))


def test_a_block_computes_what_its_layers_compute_in_a_flat_graph(custom_layers):
    """The same seed draws the same weights, and training follows the same trajectory, bit for bit."""
    flat = [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "BatchNorm"},
        {"type": "Conv2D", "name": "c2", "filters": 2, "kernel_size": 3, "padding": "same"},
        {"type": "Add", "inputs": ["input", "c2"], "activation": "relu"},
    ]
    head = [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 2, 6, 6), dtype=np.float32), np.arange(32) % 3
    runs = []
    for layers in ([{"type": "TestResidualPair", "filters": 4}], flat):
        model = Model(layers + head, (2, 6, 6), seed=0)
        model.compile(loss="categorical_crossentropy", optimizer="adam")
        runs.append((model.fit(x, y, epochs=2, batch_size=8, verbose=0).history["loss"], model.predict(x)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


# -- the docs' examples run as written -------------------------------------------------------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _python_block(path, heading):
    text = (ROOT / path).read_text(encoding="utf-8")
    return text.split(heading, 1)[1].split("```python", 1)[1].split("```", 1)[0]


def test_the_readme_builds_its_spec_model_three_ways(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    scope = {}
    exec(_python_block("README.md", "### Three ways to build a model"), scope)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    spec = json.loads(text.split("## The JSON spec", 1)[1].split("```json", 1)[1].split("```", 1)[0])
    assert scope["model"].to_spec() == Model.from_spec(spec, seed=0).to_spec()
    assert "residual (Add)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("heading", "name", "config", "shape"),
    [
        ("### A block: a layer made of layers", "ResidualBlock", {"filters": 3}, (2, 5, 5)),
        ("### A forward-only layer", "GatedUnit", {"units": 3}, (4,)),
    ],
)
def test_the_plugin_guide_block_and_forward_only_layer_pass_the_kit_and_train(heading, name, config, shape):
    pytest.importorskip("autograd")
    scope = {}
    exec(_python_block("docs/plugins.md", heading), scope)
    registry.layers.register(scope[name], name=name)  # what the plugin's entry point does
    try:
        report = check_layer({"type": name, **config}, shape)
        assert {"gradient", "hdf5", "config"} <= set(report.passed)
        model = Model([{"type": name, **config}, {"type": "Flatten"}, {"type": "Dense", "units": 2}], shape, seed=0)
        model.compile(loss="mean_squared_error", optimizer="adam")
        x = np.random.default_rng(0).random((16, *shape), dtype=np.float32)
        losses = model.fit(x, np.ones((16, 2), np.float32), epochs=5, batch_size=4, verbose=0).history["loss"]
        assert losses[-1] < losses[0]
    finally:
        registry.layers.unregister(name)


def test_the_readme_transformer_encoder_block_trains():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    spec = json.loads(text.split("### A transformer encoder block", 1)[1].split("```json", 1)[1].split("```", 1)[0])
    model = Model.from_spec(spec, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 16, 32)).astype(np.float32)
    y = np.arange(48) % 10
    x[np.arange(48), y, :] += 2.0  # the class is the position of a louder token
    model.compile(loss="categorical_crossentropy", optimizer={"type": "adam", "learning_rate": 3e-3})
    losses = model.fit(x, y, epochs=6, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0] * 0.8


def test_a_merge_layer_that_reads_only_the_model_input_trains():
    """Attention on the input twice gets need_input_grad=False in training: nothing flows further back."""
    layers = [{"type": "MultiHeadAttention", "num_heads": 1, "key_dim": 4, "inputs": ["input", "input"]}]
    model = Model([*layers, {"type": "Flatten"}, {"type": "Dense", "units": 2}], (3, 4), seed=0)
    model.compile(loss="mean_squared_error", optimizer="sgd")
    model.fit(np.ones((4, 3, 4), np.float32), np.zeros((4, 2), np.float32), verbose=0)

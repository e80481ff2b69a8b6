"""Model inputs: several named inputs (float32 and int64 token ids), variable-length axes, in specs,
the functional API, training, files and ONNX."""

import copy

import numpy as np
import pytest

import regnet
from regnet import spec
from regnet.errors import ConfigError, DataError
from regnet.layers import Concatenate, Dense, Embedding, Flatten, GlobalAveragePooling1D

VOCAB, LENGTH, FEATURES = 12, 5, 3

TWO_INPUTS = {
    "format": "regnet.model",
    "version": 3,
    "inputs": [
        {"name": "input_ids", "shape": [LENGTH], "dtype": "int64"},
        {"name": "features", "shape": [FEATURES], "dtype": "float32"},
    ],
    "layers": [
        {"type": "Embedding", "name": "embed", "input_dim": VOCAB, "output_dim": 4, "inputs": ["input_ids"]},
        {"type": "Flatten", "name": "flat"},
        {"type": "Dense", "name": "feat", "units": 6, "activation": "tanh", "inputs": ["features"]},
        {"type": "Concatenate", "name": "joined", "inputs": ["flat", "feat"]},
        {"type": "Dense", "name": "out", "units": 2, "activation": "softmax"},
    ],
}


def data(n=64, seed=0):
    """Token ids and features whose class needs both: (first id < 6) or (first feature > 0.5)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (n, LENGTH)).astype(np.int64)
    feats = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = ((ids[:, 0] < VOCAB // 2) | (feats[:, 0] > 0.5)).astype(np.int64)
    return ids, feats, y


def two_input_model(seed=0):
    model = regnet.Model.from_spec(TWO_INPUTS, seed=seed)
    model.compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.03}, metrics=["accuracy"])
    return model


def functional_model(seed=0):
    ids = regnet.Input((LENGTH,), name="input_ids", dtype="int64")
    feats = regnet.Input((FEATURES,), name="features")
    flat = Flatten(name="flat")(Embedding(input_dim=VOCAB, output_dim=4, name="embed")(ids))
    feat = Dense(6, activation="tanh", name="feat")(feats)
    out = Dense(2, activation="softmax", name="out")(Concatenate(name="joined")([flat, feat]))
    return regnet.Model([ids, feats], out, seed=seed)


# -- specs ------------------------------------------------------------------------------------------
def test_spec_declares_named_inputs_with_dtypes():
    model = regnet.Model.from_spec(TWO_INPUTS, seed=0)
    assert model.input_names == ["input_ids", "features"]
    assert [i.dtype for i in model.inputs] == ["int64", "float32"]
    assert model.input_shape == [(LENGTH,), (FEATURES,)]
    assert model.output_shape == (2,)
    written = model.to_spec()
    assert written["version"] == spec.VERSION == 3 and "input_shape" not in written
    assert written["inputs"] == TWO_INPUTS["inputs"]
    again = regnet.Model.from_spec(written, seed=0)
    assert again.to_spec() == written
    lines = []
    model.summary(print_fn=lines.append)
    assert "Input input_ids: (N, 5) int64" in lines[0] and "Input features: (N, 3) float32" in lines[0]


def test_the_functional_api_gives_the_spec_model():
    a, b = functional_model(seed=3), regnet.Model.from_spec(TWO_INPUTS, seed=3)
    assert a.to_spec() == b.to_spec()
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_unnamed_functional_inputs_are_named_in_order():
    x1, x2 = regnet.Input((3,)), regnet.Input((3,))
    model = regnet.Model([x1, x2], regnet.layers.Add()([Dense(2)(x1), Dense(2)(x2)]))
    assert model.input_names == ["input", "input_2"]
    single = regnet.Model(x := regnet.Input((3,)), Dense(2)(x))
    assert single.to_spec()["input_shape"] == [3] and "inputs" not in single.to_spec()


def test_old_specs_migrate_to_named_inputs():
    layers = [{"type": "Dense", "units": 2, "activation": "gelu"}]
    for version in (1, 2):
        model = regnet.Model.from_spec({"version": version, "input_shape": [4], "layers": copy.deepcopy(layers)})
        assert model.inputs == [spec.InputSpec("input", (4,), "float32")]
        written = model.to_spec()
        assert written["version"] == 3 and written["input_shape"] == [4] and "inputs" not in written
        assert model.layers[0].activation_fn.approximate is (version == 1)  # version 1 meant the tanh gelu
    with pytest.raises(ConfigError, match="version 3 field"):
        regnet.Model.from_spec({"version": 2, "inputs": [{"shape": [4]}], "layers": layers})


def test_a_bare_layer_list_may_start_with_several_inputs():
    entries = [
        {"type": "Input", "name": "a", "shape": [3]},
        {"type": "Input", "name": "b", "shape": [3]},
        {"type": "Add", "inputs": ["a", "b"]},
    ]
    model = regnet.Model.from_spec(entries)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(model.predict({"a": x, "b": 2 * x}), 3 * x)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda s: s["inputs"][1].update(dtype="float64"), "'dtype' must be one of"),
        (lambda s: s["inputs"][1].update(name="input_ids"), "two model inputs are named 'input_ids'"),
        (lambda s: s["inputs"][1].update(shape=[0]), "positive integers"),
        (lambda s: s["inputs"][1].update(size=3), "unknown field(s) ['size']"),
        (lambda s: s["layers"][2].update(name="features"), "duplicate layer name 'features' (a model input's name)"),
        (lambda s: s["layers"][2].update(inputs=["flat"]), "model input 'features' is not connected"),
        (lambda s: s["layers"][2].update(inputs=["featurez"]), "not the name of any layer or model input"),
        (lambda s: s.update(input_shape=[3]), "not both"),
    ],
)
def test_bad_input_declarations_are_refused(change, fragment):
    bad = copy.deepcopy(TWO_INPUTS)
    change(bad)
    with pytest.raises(ConfigError) as info:
        regnet.Model.from_spec(bad)
    assert fragment in str(info.value)


# -- training and data ------------------------------------------------------------------------------
def test_fit_on_a_dict_and_on_a_list_evaluate_predict():
    ids, feats, y = data(128)
    model = two_input_model()
    before = model.evaluate({"input_ids": ids, "features": feats}, y)["loss"]
    model.fit({"input_ids": ids, "features": feats}, y, epochs=15, batch_size=16, verbose=0, seed=0)
    model.fit([ids, feats], y, epochs=15, batch_size=16, verbose=0, validation_split=0.25)
    logs = model.evaluate([ids, feats], y)
    assert logs["loss"] < before * 0.7 and logs["accuracy"] > 0.75
    out = model.predict({"features": feats, "input_ids": ids}, batch_size=7)  # key order does not matter
    assert out.shape == (128, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out, model.predict([ids, feats]))
    np.testing.assert_array_equal(out[:5], model([ids[:5], feats[:5]]))
    np.testing.assert_array_equal(out[:5], model.predict_on_batch({"input_ids": ids[:5], "features": feats[:5]}))
    np.testing.assert_array_equal(model.predict([ids.astype(np.float32), feats]), out)  # whole-number floats
    assert set(model.test_on_batch([ids[:8], feats[:8]], y[:8])) == {"loss", "accuracy"}
    assert set(model.train_on_batch([ids[:8], feats[:8]], y[:8])) == {"loss", "accuracy"}
    # a list of (x, y) batches whose x is a dict
    batches = [({"input_ids": ids[i : i + 32], "features": feats[i : i + 32]}, y[i : i + 32]) for i in (0, 32)]
    model.fit(batches, epochs=1, verbose=0)


def test_same_seed_same_training_whether_dict_or_list():
    ids, feats, y = data(48)
    a, b = two_input_model(seed=1), two_input_model(seed=1)
    a.fit({"input_ids": ids, "features": feats}, y, epochs=2, batch_size=8, verbose=0, seed=5)
    b.fit([ids, feats], y, epochs=2, batch_size=8, verbose=0, seed=5)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_save_and_load_keep_inputs_and_predictions_bit_identical(tmp_path):
    ids, feats, y = data(40)
    model = two_input_model()
    model.fit([ids, feats], y, epochs=2, batch_size=8, verbose=0, seed=0)
    regnet.save(model, tmp_path / "two.h5")
    loaded = regnet.load(tmp_path / "two.h5")
    assert loaded.inputs == model.inputs
    np.testing.assert_array_equal(loaded.predict([ids, feats]), model.predict([ids, feats]))
    model.save_weights(tmp_path / "w.h5")
    fresh = regnet.Model.from_spec(TWO_INPUTS, seed=9)
    fresh.load_weights(tmp_path / "w.h5")
    np.testing.assert_array_equal(fresh.predict([ids, feats]), model.predict([ids, feats]))
    loaded.fit([ids, feats], y, epochs=1, batch_size=8, verbose=0)  # training goes on


@pytest.mark.parametrize(
    ("x", "fragments"),
    [
        ({"input_ids": None}, ["no entry for model input 'features'"]),
        ({"input_ids": None, "features": None, "extra": None}, ["has an entry 'extra' that is not a model input"]),
        ([None], ["holds 1 arrays", "input_ids, features"]),
        ("fractions", ["x['input_ids']", "not whole numbers", "2.5", "input 'input_ids' takes int64"]),
        ("nan ids", ["x['input_ids']", "NaN"]),
        ("short", ["different numbers of samples", "input_ids: 4", "features: 3"]),
        ("wrong shape", ["x['features'] has shape (4, 2)", "(N, 3)"]),
        (np.zeros((4, LENGTH)), ["dict {name: array} or a list of arrays", "input_ids, features"]),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(x, fragments):
    ids, feats, y = data(4)
    ids_f = ids.astype(np.float64)
    if isinstance(x, np.ndarray):
        pass
    elif isinstance(x, dict):
        x = {k: {"input_ids": ids, "features": feats}.get(k, feats) for k in x}
    elif isinstance(x, list):
        x = [ids]
    elif x == "fractions":
        ids_f[1, 2] = 2.5
        x = {"input_ids": ids_f, "features": feats}
    elif x == "nan ids":
        ids_f[0, 0] = np.nan
        x = [ids_f, feats]
    elif x == "short":
        x = [ids, feats[:3]]
    elif x == "wrong shape":
        x = [ids, np.zeros((4, 2), np.float32)]
    model = two_input_model()
    for call in (model.predict, lambda v: model.fit(v, y, verbose=0), model):
        with pytest.raises(DataError) as info:
            call(x)
        for fragment in fragments:
            assert fragment in str(info.value), (fragment, str(info.value))


def test_single_input_models_keep_taking_plain_arrays_and_refuse_dicts():
    model = regnet.Model([{"type": "Dense", "units": 2}], (3,), seed=0)
    x = np.ones((2, 3))
    assert model.predict(x).shape == (2, 2)
    with pytest.raises(DataError, match="must be a NumPy array"):
        model.predict({"input": x})


def test_backward_gives_one_gradient_per_input_none_for_ids():
    x1, x2 = regnet.Input((3,), name="a"), regnet.Input((3,), name="b")
    merged = regnet.layers.Add()([Dense(3)(x1), Dense(3, activation="tanh")(x2)])
    model = regnet.Model([x1, x2], Dense(1, name="out")(merged), seed=0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32)
    model.forward([a, b], training=True)
    ga, gb = model.backward(np.ones((2, 1), np.float32))
    eps = 1e-2
    for g, which in ((ga, 0), (gb, 1)):
        for i in range(3):
            plus, minus = [a.copy(), b.copy()], [a.copy(), b.copy()]
            plus[which][0, i] += eps
            minus[which][0, i] -= eps
            numeric = (model.forward(plus).sum() - model.forward(minus).sum()) / (2 * eps)
            assert abs(numeric - g[0, i]) < 1e-2
    tokens = two_input_model()
    ids, feats, _ = data(2)
    tokens.forward([ids, feats], training=True)
    g_ids, g_feats = tokens.backward(np.ones((2, 2), np.float32))
    assert g_ids is None and g_feats.shape == (2, FEATURES)


# -- variable-length axes ---------------------------------------------------------------------------
def test_variable_length_token_ids_predict_on_two_lengths(tmp_path):
    spec_ = {
        "version": 3,
        "inputs": [{"name": "input_ids", "shape": [None], "dtype": "int64"}],
        "layers": [
            {"type": "Embedding", "name": "embed", "input_dim": VOCAB, "output_dim": 4},
            {"type": "Dense", "name": "mix", "units": 4, "activation": "relu"},
            {"type": "Dropout", "rate": 0.1},
            {"type": "Dense", "name": "out", "units": 3},
        ],
    }
    model = regnet.Model.from_spec(spec_, seed=0)
    assert model.input_shape == (None,) and model.output_shape == (None, 3)
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 9))
    short, long = model.predict(ids[:, :4]), model.predict(ids)
    assert short.shape == (2, 4, 3) and long.shape == (2, 9, 3)
    np.testing.assert_allclose(short, long[:, :4], rtol=1e-6)  # position-wise layers: the prefix agrees
    regnet.save(model, tmp_path / "var.h5")
    loaded = regnet.load(tmp_path / "var.h5")
    assert loaded.to_spec()["inputs"] == [{"name": "input_ids", "shape": [None], "dtype": "int64"}]
    with pytest.warns(UserWarning, match="never trained"):
        np.testing.assert_array_equal(loaded.predict(ids[:, :6]), model.predict(ids[:, :6]))
    with pytest.raises(DataError, match="length >= 1"):
        model.predict(np.zeros((2, 0), np.int64))


def test_variable_length_float_input_trains_and_pools_over_the_length():
    signal = regnet.Input((2, None), name="signal")
    out = Dense(1, name="out")(GlobalAveragePooling1D(name="pool")(signal))
    model = regnet.Model(signal, out, seed=0)
    model.compile("mse", {"type": "sgd", "learning_rate": 0.3}, metrics=[])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2, 7)).astype(np.float32)
    y = x.mean(axis=2) @ np.array([[1.0], [-2.0]], np.float32)
    model.fit(x, y, epochs=40, batch_size=8, verbose=0, seed=0)
    x_long = rng.normal(size=(4, 2, 13)).astype(np.float32)
    want = x_long.mean(axis=2) @ np.array([[1.0], [-2.0]], np.float32)
    np.testing.assert_allclose(model.predict(x_long), want, atol=0.05)


def test_a_layer_that_needs_a_fixed_length_names_itself_and_the_input():
    bad = {
        "version": 3,
        "inputs": [{"name": "tokens", "shape": [None], "dtype": "int64"}],
        "layers": [
            {"type": "Embedding", "name": "embed", "input_dim": VOCAB, "output_dim": 4},
            {"type": "Flatten", "name": "flat"},
            {"type": "Dense", "units": 2},
        ],
    }
    with pytest.raises(ConfigError) as info:
        regnet.Model.from_spec(bad)
    message = str(info.value)
    assert "#1 'flat'" in message and "Flatten" in message and "'tokens'" in message and "variable length" in message
    tokens = regnet.Input((None,), name="tokens", dtype="int64")
    with pytest.raises(ConfigError, match=r"Flatten cannot take an axis of variable length.*'tokens'"):
        Flatten()(Embedding(input_dim=VOCAB, output_dim=4)(tokens))


# -- ONNX -------------------------------------------------------------------------------------------
def test_onnx_export_of_int64_and_float_inputs_runs_and_imports_back(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ronnx = pytest.importorskip("regnet.onnx")
    ids, feats, y = data(16)
    model = two_input_model()
    model.fit([ids, feats], y, epochs=1, batch_size=8, verbose=0, seed=0)
    path = ronnx.export(model, tmp_path / "two.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    assert declared == [("input_ids", "tensor(int64)", ["N", LENGTH]), ("features", "tensor(float)", ["N", FEATURES])]
    got = session.run(None, {"input_ids": ids, "features": feats})[0]
    np.testing.assert_allclose(got, model.predict([ids, feats]), rtol=1e-5, atol=1e-6)
    back = ronnx.load(path)
    assert back.inputs == model.inputs
    np.testing.assert_allclose(back.predict([ids, feats]), model.predict([ids, feats]), rtol=1e-6, atol=1e-7)


def test_onnx_variable_length_axis_is_symbolic_and_imports_back(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ronnx = pytest.importorskip("regnet.onnx")
    tokens = regnet.Input((None,), name="tokens", dtype="int64")
    out = Dense(3, name="out")(Embedding(input_dim=VOCAB, output_dim=4, name="embed")(tokens))
    model = regnet.Model(tokens, out, seed=0)
    path = ronnx.export(model, tmp_path / "var.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["N", "tokens_length"]
    back = ronnx.load(path)
    assert back.inputs[0].shape == (None,) and back.inputs[0].dtype == "int64"
    rng = np.random.default_rng(1)
    for length in (3, 8):
        ids = rng.integers(0, VOCAB, (2, length))
        want = model.predict(ids)
        np.testing.assert_allclose(session.run(None, {"tokens": ids})[0], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(back.predict(ids), want, rtol=1e-6, atol=1e-7)


SEQUENCE_AND_FEATURES = {
    "format": "regnet.model",
    "version": 3,
    "inputs": [
        {"name": "input_ids", "shape": [None], "dtype": "int64"},
        {"name": "features", "shape": [FEATURES], "dtype": "float32"},
    ],
    "layers": [
        {"type": "Embedding", "name": "embed", "input_dim": VOCAB, "output_dim": 8, "inputs": ["input_ids"]},
        {"type": "Dense", "name": "mix", "units": 8, "activation": "relu"},
        {"type": "GlobalAveragePooling1D", "name": "pool", "data_format": "channels_last"},
        {"type": "Dense", "name": "feat", "units": 4, "activation": "relu", "inputs": ["features"]},
        {"type": "Concatenate", "name": "joined", "inputs": ["pool", "feat"]},
        {"type": "Dense", "name": "out", "units": 2, "activation": "softmax"},
    ],
}


def test_sequences_of_any_length_and_features_train_and_predict():
    model = regnet.Model.from_spec(SEQUENCE_AND_FEATURES, seed=0)
    assert model.get_layer("pool").output_shape == (8,) and model.output_shape == (2,)
    model.compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.03})
    rng = np.random.default_rng(0)
    for length in (4, 9):  # one length per fit call (one array per input)
        ids = rng.integers(0, VOCAB, (64, length))
        feats = rng.normal(size=(64, FEATURES)).astype(np.float32)
        y = ((ids < VOCAB // 2).mean(axis=1) > 0.5).astype(np.int64)
        model.fit({"input_ids": ids, "features": feats}, y, epochs=20, batch_size=16, verbose=0, seed=length)
    ids = rng.integers(0, VOCAB, (200, 7))
    feats = rng.normal(size=(200, FEATURES)).astype(np.float32)
    y = ((ids < VOCAB // 2).mean(axis=1) > 0.5).astype(np.int64)
    assert model.evaluate([ids, feats], y)["accuracy"] > 0.8  # a length it never saw
    short = model.predict([ids[:, :3], feats])
    assert short.shape == (200, 2)


def test_onnx_of_a_variable_length_pooled_two_input_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ronnx = pytest.importorskip("regnet.onnx")
    model = regnet.Model.from_spec(SEQUENCE_AND_FEATURES, seed=0)
    path = ronnx.export(model, tmp_path / "seq.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    back = ronnx.load(path)
    assert back.inputs == model.inputs
    assert back.get_layer("pool").data_format == "channels_last"
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(3, FEATURES)).astype(np.float32)
    for length in (2, 11):
        ids = rng.integers(0, VOCAB, (3, length))
        want = model.predict({"input_ids": ids, "features": feats})
        got = session.run(None, {"input_ids": ids, "features": feats})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(back.predict([ids, feats]), want, rtol=1e-6, atol=1e-7)


def test_only_layers_that_take_ids_read_an_int64_input():
    bad = {
        "version": 3,
        "inputs": [{"name": "ids", "shape": [4], "dtype": "int64"}],
        "layers": [{"type": "Dense", "units": 2}],
    }
    with pytest.raises(ConfigError, match=r"Dense reads the int64 model input 'ids'.*Embedding"):
        regnet.Model.from_spec(bad)


def test_int64_ids_on_disk_are_read_in_chunks_as_int64(tmp_path):
    model = regnet.Model.from_spec(
        {
            "version": 3,
            "inputs": [{"name": "ids", "shape": [LENGTH], "dtype": "int64"}],
            "layers": [
                {"type": "Embedding", "input_dim": VOCAB, "output_dim": 3},
                {"type": "Flatten"},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ],
        },
        seed=0,
    )
    model.compile("categorical_crossentropy", "adam", metrics=[])
    ids = np.random.default_rng(0).integers(0, VOCAB, (20, LENGTH))
    disk = np.lib.format.open_memmap(tmp_path / "ids.npy", mode="w+", dtype=np.int64, shape=ids.shape)
    disk[...] = ids
    disk.flush()
    y = ids[:, 0] % 2
    model.fit(disk, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.predict(disk), model.predict(ids))
    bad = np.lib.format.open_memmap(tmp_path / "bad.npy", mode="w+", dtype=np.float32, shape=ids.shape)
    bad[...] = ids + 0.5
    bad.flush()
    with pytest.raises(DataError, match="not whole numbers"):
        model.predict(bad)


def test_per_position_outputs_train_and_targets_must_match_the_batch_length():
    model = regnet.Sequential(
        [regnet.Input((None,), name="ids", dtype="int64"), Embedding(input_dim=VOCAB, output_dim=4), Dense(3)],
        seed=0,
    )
    assert model.inputs == [spec.InputSpec("ids", (None,), "int64")] and model.output_shape == (None, 3)
    model.compile("mse", {"type": "adam", "learning_rate": 0.05}, metrics=[])
    ids = np.random.default_rng(0).integers(0, VOCAB, (16, 6))
    y = np.eye(3, dtype=np.float32)[ids % 3]  # a target per position
    before = model.evaluate(ids, y)["loss"]
    model.fit(ids, y, epochs=30, batch_size=8, verbose=0, seed=0)
    assert model.evaluate(ids, y)["loss"] < before / 2
    with pytest.raises(DataError, match=r"targets of shape \(8, 2, 3\) do not match outputs of shape \(N, 6, 3\)"):
        model.test_on_batch(ids[:8], y[:8, :2])

"""HDF5 model files: round trips for every layer type and graph models, the file layout, weights
matched by name, strict and non-strict weight loading, missing plugins, format versions."""

import hashlib
import importlib
import json
import math
import sys

import attrs
import h5py
import numpy as np
import pytest

import regnet
from regnet import ConfigError, FileFormatError, Model, UnknownComponentError, WeightsMismatchError, io
from regnet.layers.base import Layer
from regnet.registry import Provider, activations, layers
from tests.specs import MLP

# a small configuration and input shape for each built-in layer type
LAYER_EXAMPLES = {
    "Dense": ({"units": 3, "activation": "tanh"}, (4,)),
    "Flatten": ({}, (2, 3, 3)),
    "Reshape": ({"target_shape": [3, -1]}, (2, 3, 3)),
    "Activation": ({"activation": "elu"}, (4,)),
    "Dropout": ({"rate": 0.4}, (4,)),
    "BatchNorm": ({"momentum": 0.9}, (2, 4, 4)),
    "Conv2D": ({"filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu"}, (2, 5, 5)),
    "DepthwiseConv2D": ({"kernel_size": 3, "depth_multiplier": 2, "padding": "same"}, (2, 5, 5)),
    "SeparableConv2D": ({"filters": 3, "kernel_size": 3, "activation": "relu"}, (2, 5, 5)),
    "Conv2DTranspose": ({"filters": 2, "kernel_size": 3, "strides": 2, "groups": 2}, (2, 3, 3)),
    "MaxPool2D": ({"pool_size": 2}, (2, 4, 4)),
    "AvgPool2D": ({"pool_size": 2}, (2, 4, 4)),
    "Add": ({}, (2, 3, 3)),
    "Concatenate": ({"axis": 1}, (2, 3, 3)),
    "LayerNormalization": ({"axis": [2, 3]}, (2, 3, 3)),
    "GroupNormalization": ({"groups": 2, "activation": "relu"}, (4, 3, 3)),
    "PReLU": ({"alpha_initializer": "glorot_uniform", "shared_axes": [2, 3]}, (2, 3, 3)),
    "Rescaling": ({"scale": 0.5, "offset": 1.0}, (4,)),
    "SpatialDropout2D": ({"rate": 0.3}, (2, 3, 3)),
    "Permute": ({"dims": [3, 1, 2]}, (2, 3, 4)),
    "SliceChannels": ({"start": 1, "stop": 3}, (4, 2, 2)),
    "Multiply": ({}, (2, 3, 3)),
    "SimpleRNN": ({"units": 3, "return_sequences": True}, (5, 4)),
    "LSTM": ({"units": 3}, (5, 4)),
    "GRU": ({"units": 3, "go_backwards": True}, (5, 4)),
    "Bidirectional": ({"layer": {"type": "LSTM", "units": 2, "return_sequences": True}}, (5, 4)),
    "MultiHeadAttention": ({"num_heads": 2, "key_dim": 3, "use_causal_mask": True}, (5, 4)),
    "MatMul": ({"transpose_b": True}, (2, 4, 3)),
    "Where": ({"true_value": -1.0}, (2, 3)),  # [condition, y]: one constant branch
}
GENERIC_SHAPES = [(2, 6, 6), (6,)]  # tried for layer types registered after this table was written


GRAPH = {  # two summed branches, a residual block, a concatenation
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "a", "units": 6, "activation": "tanh", "inputs": ["input"]},
        {"type": "Dense", "name": "b", "units": 6, "activation": "elu", "inputs": ["input"]},
        {"type": "Add", "name": "sum", "inputs": ["a", "b"]},
        {"type": "Dense", "name": "res", "units": 6, "activation": "relu"},
        {"type": "Add", "name": "skip", "inputs": ["sum", "res"]},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Concatenate", "name": "cat", "inputs": ["bn", "a"]},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


def data(n=40, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n)


def perturb(model, seed=1):
    """Move every tensor (buffers included) away from its initial value, keeping variances > 0."""
    rng = np.random.default_rng(seed)
    for w in model.state_dict().values():
        w[...] = w * rng.uniform(0.5, 1.5, w.shape).astype(np.float32) + rng.uniform(0, 0.1, w.shape).astype(np.float32)


def assert_same_weights(a, b):
    wa, wb = a.state_dict(), b.state_dict()
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype == np.float32
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def layer_model(name, seed=0):
    """A small model around one layer of type ``name`` (merge layers get two branches)."""
    cls = layers.get(name)
    if name in LAYER_EXAMPLES:
        candidates = [LAYER_EXAMPLES[name]]
    else:  # the layer's own test declarations (see regnet.testing), else generic shapes
        config = dict(getattr(cls, "test_config", None) or {})
        declared = getattr(cls, "test_input_shape", None)
        candidates = [(config, tuple(declared))] if declared is not None else []
        candidates += [(config, s) for s in GENERIC_SHAPES]
    errors = []
    for config, shape in candidates:
        entries = []
        if cls.n_inputs is None:
            entries += [
                {"type": "Activation", "name": "left", "activation": "tanh", "inputs": ["input"]},
                {"type": "Activation", "name": "right", "activation": "sigmoid", "inputs": ["input"]},
            ]
            entries.append({"type": name, "name": "subject", "inputs": ["left", "right"], **config})
        else:
            entries.append({"type": name, "name": "subject", **config})
        entries += [{"type": "Flatten", "name": "flat"}, {"type": "Dense", "name": "head", "units": 2}]
        try:
            return Model(entries, shape, seed=seed)
        except regnet.RegnetError as exc:
            errors.append(str(exc))
    pytest.fail(f"no example for layer type '{name}' in LAYER_EXAMPLES and the defaults fail: {errors}")


def inputs_for(model, n=5, seed=2):
    rng = np.random.default_rng(seed)
    first = model.layers[0]
    if getattr(first, "test_input_dtype", None):  # token ids (Embedding), as the float32 model input
        return rng.integers(*first.test_input_range, size=(n, *model.input_shape)).astype(np.float32)
    return rng.standard_normal((n, *model.input_shape)).astype(np.float32)


# -- round trips of every registered layer type ----------------------------------------------------
@pytest.mark.parametrize("name", layers.list())
def test_json_round_trip_every_layer(name):
    model = layer_model(name, seed=3)
    text = model.to_json()
    again = Model.from_spec(text, seed=3)
    assert again.to_spec() == model.to_spec()
    assert json.loads(again.to_json()) == json.loads(text)
    x = inputs_for(model)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


@pytest.mark.filterwarnings("ignore:.*never trained:UserWarning")  # saved untrained on purpose
@pytest.mark.parametrize("name", layers.list())
def test_hdf5_round_trip_every_layer(name, tmp_path):
    model = layer_model(name)
    perturb(model)
    path = tmp_path / f"{name}.h5"
    regnet.save(model, path)
    again = regnet.load(path)
    assert again.to_spec() == model.to_spec()
    assert_same_weights(model, again)
    x = inputs_for(model)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


@pytest.mark.parametrize("name", layers.list())
def test_weights_only_round_trip_every_layer(name, tmp_path):
    model = layer_model(name, seed=0)
    perturb(model)
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(path)
    fresh = layer_model(name, seed=99)
    report = fresh.load_weights(path)
    assert report.ok and sorted(report.loaded) == sorted(model.state_dict())
    x = inputs_for(model)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_every_layer_with_weights_is_exercised():
    """The tables above cover a layer with parameters and one with buffers."""
    with_params = [n for n in layers.list() if layer_model(n).get_layer("subject").params]
    with_buffers = [n for n in layers.list() if layer_model(n).get_layer("subject").buffers]
    assert "Dense" in with_params and "Conv2D" in with_params and "BatchNorm" in with_buffers


# -- graph models ---------------------------------------------------------------------------------
def test_graph_model_round_trip_after_training(tmp_path):
    x, y = data()
    model = Model.from_spec(GRAPH, seed=5).compile(optimizer="adam")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "graph.h5"
    model.save(path)
    again = regnet.load(path)
    assert again.to_spec() == model.to_spec()
    assert_same_weights(model, again)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.evaluate(x, y) == model.evaluate(x, y)


def test_weights_are_matched_by_name_not_position(tmp_path):
    """The same layers declared in another order (so stored and model orders differ)."""
    model = Model.from_spec(GRAPH, seed=1)
    perturb(model)
    model.save_weights(tmp_path / "w.h5")
    reordered = dict(GRAPH, layers=[GRAPH["layers"][1], GRAPH["layers"][0], *GRAPH["layers"][2:]])
    other = Model.from_spec(reordered, seed=2)
    assert [n.name for n in other.nodes][:2] != [n.name for n in model.nodes][:2] or list(other.state_dict()) != list(
        model.state_dict()
    )
    other.load_weights(tmp_path / "w.h5")
    assert_same_weights(model, other)
    x, _ = data()
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


# -- the file ---------------------------------------------------------------------------------------
def test_file_layout(tmp_path):
    x, y = data()
    model = Model.from_spec(MLP, seed=0).compile(optimizer={"type": "SGD", "momentum": 0.9, "learning_rate": 0.05})
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "m.h5"
    regnet.save(model, path, metadata={"note": "hello", "run": 3})
    with h5py.File(path, "r") as f:
        assert f.attrs["format"].decode() == "regnet.model.h5"  # fixed-length UTF-8 strings
        assert int(f.attrs["format_version"]) == 1
        assert f.attrs["regnet_version"].decode() == regnet.__version__
        assert int(f.attrs["epoch"]) == 2
        assert "T" in f.attrs["created"].decode()
        assert (
            f["weights/hidden/kernel"].attrs["sha256"].decode()
            == hashlib.sha256(model.get_layer("hidden").params["kernel"].astype("<f4").tobytes()).hexdigest()
        )
        assert json.loads(f["model_spec"][()].decode()) == model.to_spec()
        config = json.loads(f["training_config"][()].decode())
        assert config["optimizer"] == {
            "type": "SGD",
            "learning_rate": 0.05,
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 0.0,
        }
        assert config["metrics"] == ["accuracy"]
        assert sorted(f["weights"]) == ["hidden", "out"]
        assert sorted(f["weights/hidden"]) == ["bias", "kernel"]
        assert f["weights/hidden/kernel"].dtype == np.float32
        np.testing.assert_array_equal(f["weights/out/kernel"][()], model.get_layer("out").params["kernel"])
        assert int(f["optimizer"].attrs["iterations"]) == model.optimizer.iterations == 6
        np.testing.assert_array_equal(
            f["optimizer/momentum/out/bias"][()], model.optimizer.state_dict()["momentum/out/bias"]
        )
        assert json.loads(f["rng_state"][()].decode()) == model.rng.bit_generator.state
        assert json.loads(f["metadata/history"][()].decode()) == model.history
        assert json.loads(f["metadata/user"][()].decode()) == {"note": "hello", "run": 3}
        kinds = {(c["kind"], c["name"]) for c in json.loads(f["metadata/components"][()].decode())}
        assert {
            ("layers", "Dense"),
            ("activations", "relu"),
            ("activations", "softmax"),
            ("initializers", "glorot_uniform"),
            ("optimizers", "SGD"),
            ("losses", "categorical_crossentropy"),
        } <= kinds


def test_load_restores_training_state(tmp_path):
    x, y = data()
    y = np.eye(3, dtype=np.float32)[y]  # one-hot, so that the mse metric applies
    model = Model.from_spec(MLP, seed=0).compile(
        loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy", "mse"]
    )
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    path = tmp_path / "m.h5"
    model.save(path)
    again = regnet.load(path)
    assert again.epoch == 3 and again.history == model.history
    assert again.training_config() == model.training_config()
    assert again.optimizer.iterations == model.optimizer.iterations
    a, b = model.optimizer.state_dict(), again.optimizer.state_dict()
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert again.rng.bit_generator.state == model.rng.bit_generator.state
    bare = regnet.load(path, compile=False)
    assert bare.loss is None and bare.optimizer is None
    assert_same_weights(model, bare)


def test_uncompiled_model_round_trip(tmp_path):
    model = Model.from_spec(MLP, seed=4)
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "training_config" not in f and "optimizer" not in f
    again = regnet.load(tmp_path / "m.h5")
    assert again.loss is None
    assert_same_weights(model, again)


def test_load_weights_from_full_model_file(tmp_path):
    model = Model.from_spec(MLP, seed=0)
    perturb(model)
    model.save(tmp_path / "m.h5")
    other = Model.from_spec(MLP, seed=1)
    assert other.load_weights(tmp_path / "m.h5").ok
    assert_same_weights(model, other)


def test_load_refuses_weights_only_file(tmp_path):
    model = Model.from_spec(MLP, seed=0)
    model.save_weights(tmp_path / "w.h5")
    with pytest.raises(FileFormatError, match="weights-only"):
        regnet.load(tmp_path / "w.h5")


# -- strict and non-strict weight loading -----------------------------------------------------------
def _other_mlp():
    return Model(
        [
            {"type": "Dense", "name": "hidden", "units": 5, "activation": "relu"},  # shape differs
            {"type": "Dense", "name": "extra", "units": 5},  # not in the file
            {"type": "Dense", "name": "out", "units": 3, "use_bias": False},  # bias missing
        ],
        (4,),
        seed=9,
    )


def test_strict_load_weights_lists_every_mismatch_and_leaves_model_untouched(tmp_path):
    Model.from_spec(MLP, seed=0).save_weights(tmp_path / "w.h5")
    model = _other_mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as info:
        model.load_weights(tmp_path / "w.h5")
    msg = str(info.value)
    assert "w.h5" in msg
    assert "weights/hidden/kernel" in msg and "[4, 8]" in msg and "[4, 5]" in msg
    assert "weights/hidden/bias" in msg and "[8]" in msg
    assert "'extra/kernel' is missing" in msg and "'extra/bias' is missing" in msg
    assert "'out/bias' is in the file but not in the model" in msg
    assert "weights/out/kernel" in msg and "[8, 3]" in msg and "[5, 3]" in msg
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_non_strict_load_weights_reports_and_loads_the_rest(tmp_path):
    source = Model(
        [{"type": "Dense", "name": "hidden", "units": 8}, {"type": "Dense", "name": "out", "units": 3}], (4,), seed=0
    )
    perturb(source)
    source.save_weights(tmp_path / "w.h5")
    model = Model(
        [{"type": "Dense", "name": "hidden", "units": 8}, {"type": "Dense", "name": "other", "units": 2}], (4,), seed=1
    )
    report = model.load_weights(tmp_path / "w.h5", strict=False)
    assert sorted(report.loaded) == ["hidden/bias", "hidden/kernel"]
    assert report.missing == ["other/bias", "other/kernel"]
    assert report.skipped == ["out/bias", "out/kernel"]
    assert report.mismatched == [] and not report.ok
    np.testing.assert_array_equal(
        model.get_layer("hidden").params["kernel"], source.get_layer("hidden").params["kernel"]
    )
    assert "other/kernel" in str(report)

    report = _other_mlp().load_weights(tmp_path / "w.h5", strict=False)
    assert [m.name for m in report.mismatched] == ["weights/hidden/bias", "weights/hidden/kernel", "weights/out/kernel"]
    assert report.mismatched[1].file_shape == (4, 8) and report.mismatched[1].model_shape == (4, 5)


def test_dtype_mismatch_is_reported(tmp_path):
    model = Model.from_spec(MLP, seed=0)
    model.save_weights(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "r+") as f:
        data64 = f["weights/out/bias"][()].astype(np.float64)
        del f["weights/out/bias"]
        f["weights/out/bias"] = data64
    with pytest.raises(WeightsMismatchError, match=r"out/bias.*float64"):
        model.load_weights(tmp_path / "w.h5")


# -- plugins that are not installed -----------------------------------------------------------------
@attrs.define(slots=False, eq=False)
class Scale(Layer):
    factor: float = 2.0

    def build(self, input_shape, rng):
        self.add_weight("gain", input_shape, "ones", rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        return x * self.params["gain"] * self.factor

    def backward(self, grad):
        return grad * self.params["gain"] * self.factor


@pytest.fixture
def plugin_layer():
    prov = Provider("regnet-extra-layers", "1.2.3", "regnet_extra.layers:Scale")
    layers.register(Scale, name="ExtraScale", provider=prov)
    yield "ExtraScale"
    layers.unregister("ExtraScale")


def test_components_record_plugin_providers(plugin_layer, tmp_path):
    model = Model([{"type": plugin_layer, "name": "s"}, {"type": "Dense", "units": 2}], (3,), seed=0)
    perturb(model)
    model.save(tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5", "r") as f:
        entries = json.loads(f["metadata/components"][()].decode())
    entry = next(e for e in entries if e["name"] == plugin_layer)
    assert entry == {
        "kind": "layers",
        "name": "ExtraScale",
        "builtin": False,
        "distribution": "regnet-extra-layers",
        "version": "1.2.3",
        "entry_point": "regnet_extra.layers:Scale",
    }
    again = regnet.load(tmp_path / "p.h5")  # still installed: loads
    assert_same_weights(model, again)


def test_missing_plugin_layer_names_type_kind_group_and_distribution(plugin_layer, tmp_path):
    model = Model([{"type": plugin_layer}, {"type": "Dense", "units": 2}], (3,), seed=0)
    model.save(tmp_path / "p.h5")
    layers.unregister(plugin_layer)
    with pytest.raises(UnknownComponentError) as info:
        regnet.load(tmp_path / "p.h5")
    msg = str(info.value)
    for part in ("p.h5", "'ExtraScale'", "kind 'layers'", "regnet.layers", "regnet-extra-layers", "1.2.3"):
        assert part in msg


def test_missing_plugin_activation(tmp_path):
    @attrs.define
    class Cube(regnet.activations.Activation):
        def forward(self, x):
            return x**3

        def backward(self, grad, x, y):
            return grad * 3 * x**2

    activations.register(Cube, name="cube3", provider=Provider("regnet-cube", "0.1", "cube:Cube"))
    try:
        model = Model([{"type": "Dense", "units": 2, "activation": "cube3"}], (3,), seed=0)
        model.save(tmp_path / "a.h5")
    finally:
        activations.unregister("cube3")
    with pytest.raises(UnknownComponentError) as info:
        regnet.load(tmp_path / "a.h5")
    msg = str(info.value)
    assert "'cube3'" in msg and "kind 'activations'" in msg and "regnet.activations" in msg and "regnet-cube" in msg


def test_unknown_type_without_provider_record_is_not_imported(tmp_path, monkeypatch):
    """A type name that looks like an importable path stays a registry lookup: the module it
    names is importable (and would provide the class), yet loading never imports it."""
    marker = tmp_path / "imported"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "json_tool_module_x.py").write_text(
        f"import pathlib\nfrom regnet.layers.core import Dense\npathlib.Path({str(marker)!r}).write_text('imported')\n"
    )
    monkeypatch.syspath_prepend(str(modules))
    model = Model.from_spec(MLP, seed=0)
    model.save(tmp_path / "m.h5")
    spec = model.to_spec()
    spec["layers"][0]["type"] = "json_tool_module_x:Dense"
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        del f["model_spec"], f["metadata/components"]
        io._write_json(f, "model_spec", json.dumps(spec))
    with pytest.raises(UnknownComponentError, match="json_tool_module_x:Dense.*regnet.layers"):
        regnet.load(tmp_path / "m.h5")
    assert not marker.exists() and "json_tool_module_x" not in sys.modules
    importlib.import_module("json_tool_module_x")  # the detector works: an import leaves the marker
    monkeypatch.delitem(sys.modules, "json_tool_module_x")
    assert marker.exists()


# -- versions, formats, arguments -------------------------------------------------------------------
def test_future_format_version_is_refused(tmp_path):
    Model.from_spec(MLP, seed=0).save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as f:
        f.attrs["format_version"] = np.int64(2)
    with pytest.raises(FileFormatError, match=r"format_version 2 is newer.*\(up to 1\).*upgrade"):
        regnet.load(tmp_path / "m.h5")
    with pytest.raises(FileFormatError, match="format_version 2"):
        Model.from_spec(MLP).load_weights(tmp_path / "m.h5")


def test_other_format_is_refused(tmp_path):
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.attrs["format"] = np.bytes_("keras")  # fixed-length, as regnet writes its own
    with pytest.raises(FileFormatError, match="format is 'keras'"):
        regnet.load(tmp_path / "k.h5")
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.attrs["format"] = "keras"  # h5py's default: variable-length, never read
    with pytest.raises(FileFormatError, match="'format'.*variable-length string.*not a file regnet wrote"):
        regnet.load(tmp_path / "k.h5")
    with h5py.File(tmp_path / "e.h5", "w"):
        pass
    with pytest.raises(FileFormatError, match="attribute 'format'.*missing"):
        regnet.load(tmp_path / "e.h5")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        regnet.load(tmp_path / "nope.h5")
    with pytest.raises(FileFormatError, match="is a directory"):
        regnet.load(tmp_path)


def test_metadata_must_be_json(tmp_path):
    model = Model.from_spec(MLP, seed=0)
    with pytest.raises(ConfigError, match="metadata"):
        model.save(tmp_path / "m.h5", metadata={"when": object()})
    assert not list(tmp_path.iterdir())
    model.save(tmp_path / "m.h5", metadata={"arr": np.arange(3), "x": np.float32(1.5)})
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert json.loads(f["metadata/user"][()].decode()) == {"arr": [0, 1, 2], "x": 1.5}


def test_save_returns_path_and_history_survives_nan(tmp_path):
    model = Model.from_spec(MLP, seed=0)
    model.history = [{"epoch": 1, "loss": float("nan")}]
    model.epoch = 1
    assert regnet.save(model, tmp_path / "m.h5") == str(tmp_path / "m.h5")
    again = regnet.load(tmp_path / "m.h5")
    assert again.epoch == 1 and math.isnan(again.history[0]["loss"])


# -- the documented layout, read without regnet.io -------------------------------------------------
def test_plain_h5py_reader_following_format_doc(tmp_path):
    """docs/format.md is enough to read a saved MLP with h5py + NumPy and reproduce predictions."""
    spec = {
        "input_shape": [5],
        "layers": [
            {"type": "Dense", "name": "first", "units": 7, "activation": "relu"},
            {"type": "Dense", "name": "second", "units": 6, "activation": "tanh", "use_bias": False},
            {"type": "Dense", "name": "probs", "units": 3, "activation": "softmax"},
        ],
    }
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)).astype(np.float32)
    model = Model.from_spec(spec, seed=2).compile(optimizer="adam")
    model.fit(x, rng.integers(0, 3, 30), epochs=2, batch_size=10, verbose=0)
    model.save(tmp_path / "mlp.h5")

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    activation = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "softmax": softmax, "linear": lambda z: z}
    with h5py.File(tmp_path / "mlp.h5", "r") as f:
        assert f.attrs["format"].decode() == "regnet.model.h5" and f.attrs["format_version"] == 1
        text = f["model_spec"][()]
        assert hashlib.sha256(text).hexdigest() == f["model_spec"].attrs["sha256"].decode()
        stored_spec = json.loads(text.decode())
        weights = {}
        for layer, group in f["weights"].items():
            for name, ds in group.items():
                w = ds[()]
                assert w.dtype == np.float32
                assert hashlib.sha256(w.astype("<f4").tobytes()).hexdigest() == ds.attrs["sha256"].decode()
                weights[f"{layer}/{name}"] = w
        epoch = int(f.attrs["epoch"])
        iterations = int(f["optimizer"].attrs["iterations"])
        history = json.loads(f["metadata/history"][()].decode())
    assert epoch == 2 and iterations == 6 and [h["epoch"] for h in history] == [1, 2]
    assert sorted(weights) == ["first/bias", "first/kernel", "probs/bias", "probs/kernel", "second/kernel"]
    out = x
    for entry in stored_spec["layers"]:
        assert entry["type"] == "Dense" and "inputs" not in entry
        out = out @ weights[entry["name"] + "/kernel"] + weights.get(entry["name"] + "/bias", np.float32(0))
        out = activation[entry["activation"]](out)
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-5, atol=1e-6)
    assert (out.argmax(1) == model.predict(x).argmax(1)).all()


# -- the writer never saves a file its own reader refuses ---------------------------------------
def _saved_once(tmp_path):
    model = Model.from_spec(MLP, seed=0).compile(loss="categorical_crossentropy", optimizer="adam")
    path = tmp_path / "m.h5"
    model.save(path, metadata={"run": 1})
    return model, path, path.read_bytes()


@pytest.mark.parametrize("field", ["metadata", "history"])
def test_json_documents_over_the_reader_limit_are_refused_and_the_old_file_stays(tmp_path, monkeypatch, field):
    model, path, before = _saved_once(tmp_path)
    limit = 4096
    monkeypatch.setattr(io, "MAX_JSON_BYTES", limit)
    fits = {"blob": "x" * (limit - len('{"blob":""}'))}  # exactly the limit as compact JSON
    model.save(path, metadata=fits)
    assert io.read_metadata(path) == fits
    before = path.read_bytes()
    too_big = {"blob": "x" * limit}
    if field == "history":
        model.history = [too_big]
    size = len(json.dumps([too_big] if field == "history" else too_big, separators=(",", ":")))
    with pytest.raises(ConfigError, match=f"{field} is {size} bytes as JSON.*m\\.h5 is left as it was") as err:
        model.save(path, metadata=too_big if field == "metadata" else None)
    assert err.value.field == field
    assert path.read_bytes() == before
    assert regnet.load(path).state_dict().keys() == model.state_dict().keys()


def test_a_weights_file_with_a_spec_over_the_limit_is_refused(tmp_path, monkeypatch):
    model = Model.from_spec(MLP, seed=0)
    monkeypatch.setattr(io, "MAX_JSON_BYTES", 16)
    with pytest.raises(ConfigError, match="model spec is") as err:
        model.save_weights(tmp_path / "w.h5")
    assert err.value.field == "model spec" and not (tmp_path / "w.h5").exists()


def test_tensor_trees_over_the_entry_limit_are_refused_and_the_old_file_stays(tmp_path, monkeypatch):
    model, path, _ = _saved_once(tmp_path)
    entries = len(model.state_dict()) + len({k.split("/")[0] for k in model.state_dict()})
    monkeypatch.setattr(io, "MAX_ENTRIES", entries)  # the reader accepts exactly this many
    model.save(path)
    regnet.load(path, compile=False)
    before = path.read_bytes()
    monkeypatch.setattr(io, "MAX_ENTRIES", entries - 1)
    with pytest.raises(FileFormatError, match="more than"):
        regnet.load(path, compile=False)
    with pytest.raises(ConfigError, match=f"weights would take {entries} entries") as err:
        model.save(path)
    assert err.value.field == "weights" and path.read_bytes() == before


def test_open_file_reads_checked_bytes_with_the_same_checks(tmp_path):
    model = Model.from_spec(MLP, seed=0)
    model.save(tmp_path / "m.h5")
    data = io.FileData(str(tmp_path / "m.h5"), (tmp_path / "m.h5").read_bytes())
    (tmp_path / "m.h5").unlink()  # only the bytes are read
    assert_same_weights(model, regnet.load(data))
    with pytest.raises(FileFormatError, match=r"spec\.json is a model spec"):
        regnet.load(io.FileData(str(tmp_path / "spec.json"), json.dumps(MLP).encode()))
    broken = bytearray(data.data)
    broken[len(broken) // 2 :] = b"\0" * (len(broken) - len(broken) // 2)
    with pytest.raises(FileFormatError, match=r"m\.h5"):
        regnet.load(io.FileData(data.path, bytes(broken)))

"""The error hierarchy and what its messages say.

Every error regnet raises on purpose derives from ``regnet.RegnetError``; each category has its
own class; every message names what is at fault (layer, field, file, tensor, argument) and says
what was expected and what was found.
"""

import numpy as np
import pytest

import regnet
from regnet import (
    ConfigError,
    DataError,
    DownloadError,
    FileFormatError,
    IntegrityError,
    Model,
    PluginError,
    RegnetError,
    ShapeError,
    TrainingDivergedError,
    UnknownComponentError,
    WeightsMismatchError,
)
from regnet.layers.base import Layer
from regnet.layers.merge import Add
from regnet.registry import layers, optimizers
from tests.specs import MLP


def raised(fn, *args, **kwargs):
    with pytest.raises(RegnetError) as info:
        fn(*args, **kwargs)
    return info.value


# -- the hierarchy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, parents",
    [
        (ConfigError, (RegnetError, ValueError)),
        (UnknownComponentError, (ConfigError, LookupError)),
        (PluginError, (RegnetError,)),
        (ShapeError, (RegnetError, ValueError)),
        (WeightsMismatchError, (RegnetError, ValueError)),
        (FileFormatError, (RegnetError, OSError)),
        (IntegrityError, (FileFormatError,)),
        (DataError, (RegnetError, ValueError)),
        (DownloadError, (DataError,)),
        (TrainingDivergedError, (RegnetError, FloatingPointError)),
    ],
)
def test_one_hierarchy_rooted_at_regnet_error(cls, parents):
    for parent in parents:
        assert issubclass(cls, parent)
    assert cls.__name__ in regnet.__all__ and getattr(regnet, cls.__name__) is cls


def test_error_attributes_say_where():
    e = ConfigError("expected an integer >= 1, got 0", layer="#2 'dense_3'", field="units")
    assert (e.layer, e.field) == ("#2 'dense_3'", "units")
    assert str(e) == "layer #2 'dense_3', field 'units': expected an integer >= 1, got 0"
    d = TrainingDivergedError("the loss is nan", epoch=3, batch=7)
    assert (d.epoch, d.batch) == (3, 7)
    assert ShapeError("x", field="kernel_size").field == "kernel_size"


# -- configuration ------------------------------------------------------------------------------


def with_layer(entry, at=1):
    layers_ = list(MLP["layers"])
    layers_.insert(at, entry)
    return {**MLP, "layers": layers_}


def test_config_error_names_layer_field_expected_and_found():
    e = raised(Model.from_spec, with_layer({"type": "Dense", "name": "mid", "units": -3}))
    assert type(e) is ConfigError
    assert e.layer == "#1 'mid'" and e.field == "units"
    assert "expected an integer >= 1" in str(e) and "got -3" in str(e)


def test_unnamed_layer_is_named_as_it_would_be():
    e = raised(Model.from_spec, with_layer({"type": "Dense", "units": "eight"}))
    assert e.layer == "#1 'dense_1'" and e.field == "units"
    assert "expected an integer" in str(e) and "'eight'" in str(e) and "str" in str(e)


def test_unknown_component_suggests_close_names():
    e = raised(Model.from_spec, with_layer({"type": "Dnese", "units": 3}))
    assert type(e) is UnknownComponentError
    assert e.layer == "#1 (type 'Dnese')" and e.field == "type"
    assert "unknown layer 'Dnese'" in str(e) and "did you mean 'Dense'" in str(e)

    e = raised(Model.from_spec, with_layer({"type": "Dense", "units": 3, "activation": "rleu"}))
    assert isinstance(e, UnknownComponentError) and e.field == "activation"
    assert "unknown activation 'rleu'" in str(e) and "'relu'" in str(e)

    e = raised(Model.from_spec(MLP).compile, loss="crossentropyy")
    assert isinstance(e, UnknownComponentError)
    assert "unknown loss 'crossentropyy'" in str(e) and "categorical_crossentropy" in str(e)


def test_nested_component_field_is_named_with_its_parent():
    spec = with_layer({"type": "Dense", "units": 3, "activation": {"type": "leaky_relu", "alpha": -1}})
    e = raised(Model.from_spec, spec)
    assert e.field == "activation.alpha" and e.layer == "#1 'dense_1'"
    assert "expected a number >= 0" in str(e) and "got -1" in str(e)


def test_unknown_field_lists_the_known_ones():
    e = raised(Model.from_spec, with_layer({"type": "Dense", "units": 3, "unist": 4}))
    assert e.field == "unist"
    assert "has no field 'unist'" in str(e) and "did you mean 'units'" in str(e) and "use_bias" in str(e)


def test_wrong_component_instance_is_a_config_error():
    model = Model.from_spec(MLP)
    e = raised(model.compile, loss=3)
    assert type(e) is ConfigError and "loss" in str(e) and "int" in str(e)
    e = raised(model.compile, optimizer=object())
    assert "optimizer" in str(e) and "object" in str(e)


def test_shape_mismatch_in_a_spec_is_a_config_error_caused_by_a_shape_error():
    spec = {
        "input_shape": [1, 4, 4],
        "layers": [{"type": "MaxPool2D", "name": "pool", "pool_size": 5}, {"type": "Flatten"}],
    }
    e = raised(Model.from_spec, spec)
    assert type(e) is ConfigError and isinstance(e.__cause__, ShapeError)
    assert e.layer == "#0 'pool'" and e.field == "pool_size"
    assert "window [5, 5] does not fit input [1, 4, 4]" in str(e)


def test_shape_error_from_a_layer_names_the_shapes():
    e = raised(Add().setup, [(3,), (4,)], np.random.default_rng(0))
    assert type(e) is ShapeError and e.field == "inputs"
    assert "(N, 3), (N, 4)" in str(e) and "Add" in str(e)


def test_compile_and_fit_arguments_name_the_argument():
    model = Model.from_spec(MLP).compile(optimizer="sgd")
    x, y = np.zeros((4, 4), np.float32), np.zeros(4, np.int64)
    e = raised(model.fit, x, y, seed="abc", verbose=0)
    assert type(e) is ConfigError and e.field == "seed" and "'abc'" in str(e)
    e = raised(model.fit, x, y, callbacks=[print], verbose=0)
    assert e.field == "callbacks" and "on_epoch_end" in str(e)


# -- plugins ------------------------------------------------------------------------------------


def test_plugin_clash_names_both_providers():
    @__import__("attrs").define(slots=False, eq=False)
    class Impostor(Layer):
        pass

    e = raised(layers.register, Impostor, name="Dense")
    assert type(e) is PluginError
    assert "'Dense'" in str(e) and "regnet (built-in)" in str(e)
    assert layers.get("Dense").__name__ == "Dense"  # the built-in is untouched


# -- weights, files, data, training -------------------------------------------------------------


def test_weights_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    source = Model.from_spec(MLP, seed=0)
    path = tmp_path / "w.h5"
    source.save_weights(path)
    wider = Model.from_spec({**MLP, "layers": [{**MLP["layers"][0], "units": 16}, MLP["layers"][1]]})
    e = raised(wider.load_weights, path)
    assert type(e) is WeightsMismatchError
    assert "hidden/kernel" in str(e) and "16" in str(e) and "8" in str(e) and str(path) in str(e)


def test_optimizer_state_mismatch_names_the_slot():
    opt = optimizers.create("adam")
    e = raised(opt.load_state_dict, {"iterations": 1, "velocity/out/kernel": np.zeros(3)})
    assert type(e) is WeightsMismatchError and "velocity/out/kernel" in str(e) and "Adam" in str(e)


def test_file_format_error_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an HDF5 file")
    e = raised(regnet.load, path)
    assert isinstance(e, FileFormatError) and str(path) in str(e)
    missing = tmp_path / "missing.h5"
    e = raised(regnet.load, missing)
    assert isinstance(e, FileFormatError) and str(missing) in str(e)


def test_spec_file_errors_name_the_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_bytes(b'{"input_shape": [4], "layers": [}')
    e = raised(Model.from_spec, path)
    assert type(e) is ConfigError and str(path) in str(e) and "not valid JSON" in str(e)
    e = raised(Model.from_spec, tmp_path / "absent.json")
    assert "absent.json" in str(e) and "cannot read" in str(e)


def test_data_error_names_the_argument_expected_and_found():
    model = Model.from_spec(MLP).compile(optimizer="sgd")
    e = raised(model.fit, np.zeros((10, 5), np.float32), np.zeros(10, np.int64), verbose=0)
    assert type(e) is DataError
    assert "x has shape (10, 5)" in str(e) and "(N, 4)" in str(e)
    e = raised(model.fit, np.zeros((10, 4), np.float32), np.full(10, 7), verbose=0)
    assert "y:" in str(e) and "[0, 2]" in str(e) and "7" in str(e)
    e = raised(model.predict, np.full((3, 4), np.nan, np.float32))
    assert "x contains 12 NaN" in str(e) and "index 0" in str(e)


def test_training_diverged_error_names_epoch_batch_and_tensor():
    model = Model.from_spec(MLP, seed=0).compile(optimizer={"type": "sgd", "learning_rate": 1e38})
    rng = np.random.default_rng(0)
    x, y = 100 * rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    e = raised(model.fit, x, y, epochs=3, batch_size=16, verbose=0)
    assert type(e) is TrainingDivergedError
    assert e.epoch == 1 and e.batch == 1
    assert "epoch 1, batch 1/4" in str(e) and "hidden/kernel" in str(e)


def test_failed_compile_leaves_the_model_as_it_was():
    model = Model.from_spec(MLP).compile("categorical_crossentropy", "adam", metrics=["accuracy"])
    before = (model.loss, model.optimizer, model.metrics, model.training_loss)
    for bad in (
        dict(loss="mse", optimizer="adamm"),
        dict(loss="mse", metrics=[{"name": "f1"}]),
        dict(loss="mse", metrics=7),
    ):
        e = raised(model.compile, **bad)
        assert isinstance(e, ConfigError)
        assert (model.loss, model.optimizer, model.metrics, model.training_loss) == before
    assert "a metric given as a dict needs a 'type'" in str(raised(model.compile, metrics=[{"name": "f1"}]))
    assert "did you mean 'f1'" in str(raised(model.compile, metrics=["f11"]))
    assert model.compile(metrics="accuracy").metrics[0].name == "accuracy"


def test_augmentation_of_non_images_is_a_data_error():
    from regnet.datasets.augment import random_shift

    e = raised(random_shift, np.zeros((4, 28, 28), np.float32), 2, np.random.default_rng(0))
    assert type(e) is DataError and "[4, 28, 28]" in str(e) and "rank 4" in str(e)

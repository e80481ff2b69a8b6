"""What a new user meets first: real signatures and docstrings, hints for images in the wrong
layout, a warning for a model that was never trained, --out checked before training."""

import contextlib
import inspect
import os
import warnings

import numpy as np
import pytest

import regnet
from regnet import DataError, Model
from regnet.cli import main

LENET = {
    "input_shape": [1, 28, 28],
    "layers": [
        {"type": "Conv2D", "name": "c1", "filters": 2, "kernel_size": 3},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
}


@pytest.mark.parametrize(
    "method", ["fit", "evaluate", "predict", "train_on_batch", "test_on_batch", "predict_on_batch", "summary"]
)
def test_model_methods_have_real_signatures_and_docstrings(method):
    fn = getattr(Model, method)
    kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    assert fn.__doc__ and len(fn.__doc__) > 40
    assert set(inspect.signature(getattr(regnet.training, method, fn)).parameters) <= set(
        inspect.signature(fn).parameters
    ) | {"model"}


@pytest.mark.parametrize(
    ("x", "fragment"),
    [
        (np.zeros((28, 28)), "a single image without channel and batch axes: x.reshape(1, 1, 28, 28)"),
        (np.zeros((5, 28, 28)), "images without the channel axis: x[:, None] adds it"),
        (np.zeros((5, 28, 28, 1)), "channels-last (NHWC); regnet takes NCHW: x.transpose(0, 3, 1, 2)"),
        (np.zeros((5, 3, 28, 28)), "has shape (5, 3, 28, 28), the model expects (N, 1, 28, 28)"),
    ],
)
def test_predict_hints_at_the_layout_it_expects(x, fragment):
    with pytest.raises(DataError) as info:
        Model.from_spec(LENET).predict(x.astype(np.float32))
    assert fragment in str(info.value)


def test_a_model_file_that_was_never_trained_warns_once(tmp_path):
    model = Model.from_spec(LENET, seed=0).compile()
    model.save(tmp_path / "untrained.h5")
    x, y = np.zeros((2, 1, 28, 28), np.float32), np.zeros(2, np.int64)
    loaded = regnet.load(tmp_path / "untrained.h5")
    with pytest.warns(UserWarning, match="never trained"):
        loaded.predict(x)
    with warnings_as_errors():
        loaded.predict(x)  # once
        loaded.evaluate(x, y)
    again = regnet.load(tmp_path / "untrained.h5")
    with pytest.warns(UserWarning, match="never trained"):
        again.evaluate(x, y)
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "trained.h5")
    with warnings_as_errors():
        regnet.load(tmp_path / "trained.h5").predict(x)
    # weights taken from elsewhere are not "never trained", even at epoch 0 with no history
    taken = Model.from_spec(LENET, seed=1, weights_from=tmp_path / "trained.h5")
    taken.save(tmp_path / "taken.h5")
    with warnings_as_errors():
        regnet.load(tmp_path / "taken.h5").predict(x)
    # and a reloaded untrained model saved again is still untrained
    regnet.load(tmp_path / "untrained.h5").save(tmp_path / "again.h5")
    with pytest.warns(UserWarning, match="never trained"):
        regnet.load(tmp_path / "again.h5").predict(x)


@contextlib.contextmanager
def warnings_as_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only directory")
def test_train_refuses_an_unwritable_out_before_training(tmp_path, capsys):
    spec = tmp_path / "s.json"
    spec.write_text('{"input_shape": [2], "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]}')
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["train", str(spec), "--data", "moons", "--out", str(locked / "m.h5")])
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 1 and "cannot save to" in err and "epoch" not in err

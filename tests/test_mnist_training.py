"""End-to-end: an MLP trained with regnet on the full MNIST set (slow: about 15 s of training)."""

import importlib
from pathlib import Path

import numpy as np
import pytest

import regnet

mnist_module = importlib.import_module("regnet.datasets.mnist")  # the package exports the function
# the full set where mnist() finds it ($REGNET_DATA, the user cache), else in ../shared/data
FULL = mnist_module.locate([Path(__file__).resolve().parents[1].parent / "shared" / "data"])


@pytest.mark.slow
def test_mlp_reaches_97_5_percent_on_mnist():
    if FULL is None:
        pytest.skip("full MNIST not found in $REGNET_DATA, the user cache or ../shared/data")
    (xt, yt), (xv, yv) = mnist_module.load_files(FULL)
    assert xt.shape == (60000, 1, 28, 28) and xv.shape == (10000, 1, 28, 28)
    spec = {
        "input_shape": [1, 28, 28],
        "layers": [
            {"type": "Flatten"},
            {"type": "Dense", "units": 256, "activation": "relu"},
            {"type": "Dense", "units": 128, "activation": "relu"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
    }
    model = regnet.Model.from_spec(spec, seed=0).compile("categorical_crossentropy", "adam")
    model.fit(xt, yt, epochs=5, batch_size=64, seed=0, verbose=0)
    result = model.evaluate(xv, yv)
    assert result["accuracy"] >= 0.975, result
    assert np.isfinite(result["loss"])

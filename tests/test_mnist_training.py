"""End-to-end: an MLP trained with regnet on the full MNIST set (slow: about 15 s of training)."""

import os
from pathlib import Path

import numpy as np
import pytest

import regnet

DATA = Path(os.environ.get("REGNET_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.mark.slow
def test_mlp_reaches_97_5_percent_on_mnist():
    if not (DATA / "mnist").is_dir() and not DATA.is_dir():
        pytest.skip(f"full MNIST not found at {DATA} (set REGNET_DATA)")
    (xt, yt), (xv, yv) = regnet.datasets.mnist(DATA, download=False)
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

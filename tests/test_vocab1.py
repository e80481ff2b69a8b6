"""The first vocabulary round outside PyTorch agreement: the float32 erf against math.erf, GELU's
two forms and the files written before ``approximate`` existed (spec version 1: ``gelu`` was the
tanh form), names and aliases, and the new optimizers' state in a model file."""

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import regnet
from regnet import activations, losses, optimizers, spec
from regnet.ops import special

DATA = Path(__file__).parent / "data"


def test_erf_and_erfc_match_math_over_a_wide_grid():
    x = np.concatenate(
        [
            np.linspace(-30, 30, 120_001),
            np.geomspace(1e-30, 5, 4000),
            -np.geomspace(1e-30, 5, 4000),
            np.linspace(0.499, 0.501, 2001),  # where erf changes method
            [0.0, -0.0, np.inf, -np.inf],
        ]
    )
    want = np.array([math.erf(v) for v in x])
    got = special.erf(x)
    assert got.dtype == np.float64
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300)) < 1e-14
    want_c = np.array([math.erfc(v) for v in x])
    tiny = want_c > 1e-300
    assert np.max(np.abs(special.erfc(x)[tiny] - want_c[tiny]) / want_c[tiny]) < 1e-12
    x32 = x.astype(np.float32)
    got32 = special.erf(x32)
    want32 = np.array([math.erf(float(v)) for v in x32])
    assert got32.dtype == np.float32
    # float32-accurate: within one unit in the last place of float32 everywhere, 0 kept exactly
    assert np.all(np.abs(got32 - want32) <= np.spacing(np.abs(want32).astype(np.float32)))
    assert special.erf(np.float32(0.0)) == 0.0 and special.erf(np.array(-np.inf)) == -1.0
    assert special.erf(np.array(2.5, np.float32)).shape == ()


def test_gelu_forms_and_the_pytorch_spelling():
    x = np.linspace(-8, 8, 33, dtype=np.float32)
    exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    # float32 in single-precision passes: within a few float32 ulps where gelu is not negligible, and
    # within 1e-5 relative in the far negative tail (below 1e-6, next to nothing in float32 sums)
    got = activations.get("gelu").forward(x)
    assert got.dtype == np.float32
    big = np.abs(exact) >= 1e-6
    np.testing.assert_allclose(got[big], exact[big], rtol=4e-7, atol=0)
    np.testing.assert_allclose(got[~big], exact[~big], rtol=1e-5, atol=1e-30)
    # float64 (the conformance kit's gradient checks) keeps the accurate series
    np.testing.assert_allclose(activations.get("gelu").forward(x.astype(np.float64)), exact, rtol=1e-12, atol=1e-300)
    # against float64: float32's 1 + tanh cancels in the negative tail (up to 3e-7 off below 1e-6)
    x64 = x.astype(np.float64)
    tanh = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
    got = activations.get({"type": "gelu", "approximate": True}).forward(x)
    np.testing.assert_allclose(got, tanh, rtol=1e-6, atol=5e-7)
    assert activations.get({"type": "gelu", "approximate": "tanh"}).get_config() == {
        "type": "gelu",
        "approximate": True,
    }
    assert activations.get({"type": "gelu", "approximate": "none"}).approximate is False
    with pytest.raises(regnet.ConfigError, match="approximate"):
        activations.get({"type": "gelu", "approximate": "fast"})
    # far in the left tail the exact form stays relatively accurate (x * Phi(x), no cancellation)
    tail = activations.get("gelu").forward(np.array([-12.0], np.float32))[0]
    assert tail == pytest.approx(-12 * 0.5 * math.erfc(12 / math.sqrt(2)), rel=1e-6)


def _legacy_copy(tmp_path):
    path = tmp_path / "legacy.h5"
    shutil.copy(DATA / "legacy_gelu_v1.h5", path)
    return path


def test_a_file_written_before_approximate_existed_keeps_the_tanh_gelu(tmp_path):
    path = _legacy_copy(tmp_path)
    with h5py.File(path, "r") as f:  # written by the previous regnet: version 1, plain "gelu"
        old = json.loads(f["model_spec"][()])
    assert old["version"] == 1 and old["layers"][0]["activation"] == "gelu"
    model = regnet.load(path)
    hidden, act = model.get_layer("hidden"), model.get_layer("act")
    assert hidden.activation_fn.approximate is True and act.activation_fn.approximate is True
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(model.predict(x), np.load(DATA / "legacy_gelu_v1_predictions.npy"), rtol=1e-6)
    # saved again, the tanh form says so itself
    new = model.to_spec()
    assert new["version"] == spec.VERSION >= 2  # written as the current version (3 since named inputs)
    assert new["layers"][0]["activation"] == {"type": "gelu", "approximate": True}
    assert new["layers"][1]["activation"] == {"type": "gelu", "approximate": True}
    regnet.save(model, tmp_path / "again.h5")
    again = regnet.load(tmp_path / "again.h5")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.optimizer.iterations == model.optimizer.iterations == 2


def test_version_1_specs_by_hand_and_version_2_gelu_is_exact():
    layers = [
        {"type": "Dense", "units": 3, "activation": "gelu"},
        {"type": "Dense", "units": 3, "activation": {"type": "GELU"}},
        {"type": "Dense", "units": 3, "activation": {"type": "gelu", "approximate": False}},
        {"type": "Activation", "activation": "relu"},
    ]
    v1 = regnet.Model.from_spec({"format": "regnet.model", "version": 1, "input_shape": [2], "layers": layers})
    forms = [layer.activation_fn.approximate for layer in v1.layers[:3]]
    assert forms == [True, True, False]  # an explicit approximate is kept as written
    assert v1.layers[3].get_config()["activation"] == "relu"
    assert layers[0]["activation"] == "gelu"  # the caller's spec is not modified
    v2 = regnet.Model.from_spec({"format": "regnet.model", "version": 2, "input_shape": [2], "layers": layers})
    assert [layer.activation_fn.approximate for layer in v2.layers[:3]] == [False, False, False]
    with pytest.raises(regnet.ConfigError, match="newer"):
        regnet.Model.from_spec({"version": spec.VERSION + 1, "input_shape": [2], "layers": layers})


def test_names_and_aliases():
    for alias, name in [
        ("swish", "silu"),
        ("hard_silu", "hard_swish"),
        ("hardswish", "hard_swish"),
        ("hardsigmoid", "hard_sigmoid"),
        ("exp", "exponential"),
    ]:
        assert activations.get(alias).get_config()["type"] == name
    for alias, name in [
        ("mae", "mean_absolute_error"),
        ("L1Loss", "mean_absolute_error"),
        ("kld", "kl_divergence"),
        ("HuberLoss", "huber"),
        ("logcosh", "log_cosh"),
    ]:
        assert losses.get(alias).get_config()["type"] == name
    assert optimizers.get("NAdam").get_config()["type"] == "Nadam"
    assert optimizers.get("adafactor").get_config() == {
        "type": "Adafactor",
        "learning_rate": 0.01,
        "beta_2_decay": -0.8,
        "epsilon_1": None,
        "epsilon_2": 0.001,
        "clip_threshold": 1.0,
        "weight_decay": 0.0,
    }
    with pytest.raises(regnet.ConfigError, match="axis"):
        losses.get({"type": "cosine_similarity", "axis": 0})


def test_targets_the_new_losses_refuse():
    with pytest.raises(regnet.DataError, match="counts"):
        losses.get("poisson").check_target(np.array([[-1.0, 2.0]]), (1, 2))
    with pytest.raises(regnet.DataError, match="probabilities"):
        losses.get("kld").check_target(np.array([[2.0, 0.0]]), (1, 2))
    with pytest.raises(regnet.DataError, match="do not match"):
        losses.get("hinge").check_target(np.zeros((3, 4)), (3, 5))


@pytest.mark.parametrize("name", ["Adamax", "Nadam", "Adadelta", "Lion", "Adafactor"])
def test_training_resumes_bit_identically_from_a_file(name, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model_spec = {
        "input_shape": [3, 4, 4],
        "layers": [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "hard_swish"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
    }
    opt = {"type": name, "learning_rate": 0.01}

    def fresh():
        model = regnet.Model.from_spec(model_spec, seed=1)
        model.compile(loss="categorical_crossentropy", optimizer=opt, metrics=[])
        return model

    straight = fresh()
    straight.fit(x, y, epochs=2, batch_size=16, verbose=0, seed=3)
    first = fresh()
    first.fit(x, y, epochs=1, batch_size=16, verbose=0, seed=3)
    regnet.save(first, tmp_path / "half.h5")
    resumed = regnet.load(tmp_path / "half.h5")
    resumed.fit(x, y, epochs=1, batch_size=16, verbose=0)  # the file's generator state: no seed
    for key, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value, err_msg=key)
    for key, value in straight.optimizer.state_dict().items():
        np.testing.assert_array_equal(resumed.optimizer.state_dict()[key], value, err_msg=key)

"""regnet-extras: every component passes the conformance kit, and a model built from JSON with
them trains, saves to HDF5 and reloads in a fresh process with identical predictions."""

import importlib.metadata
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

regnet_extras = pytest.importorskip("regnet_extras")

import regnet  # noqa: E402
from regnet import registry  # noqa: E402
from regnet.testing import KINDS, component_cases, parametrize_components  # noqa: E402

DIST = "regnet-extras"


@parametrize_components(distribution=DIST)
def test_component_conforms(case):
    case.check()


def test_one_component_of_every_kind_comes_from_the_distribution():
    cases = component_cases(DIST)
    assert {c.kind for c in cases} == set(KINDS)
    assert not [c for c in cases if c.error], [c.error for c in cases if c.error]
    version = importlib.metadata.version(DIST)
    for kind, name in [
        ("layers", "RMSNorm"),
        ("activations", "squareplus"),
        ("losses", "pinball"),
        ("optimizers", "SignSGD"),
        ("initializers", "orthogonal"),
        ("initializers", "truncated_normal"),
        ("schedules", "inverse_sqrt"),
        ("metrics", "balanced_accuracy"),
    ]:
        prov = registry.REGISTRIES[kind].provider(name)
        assert (prov.distribution, prov.version) == (DIST, version)
        assert prov.entry_point.startswith("regnet_extras.")


def test_hand_checked_values():
    from regnet_extras import BalancedAccuracy, InverseSqrt, Pinball, SignSGD, Squareplus

    x = np.array([-1.5, 0.0, 2.0], dtype=np.float32)
    # (x + sqrt(x^2 + 4)) / 2: (-1.5 + 2.5) / 2 = 0.5, 2 / 2 = 1, (2 + sqrt 8) / 2
    np.testing.assert_allclose(Squareplus().forward(x), [0.5, 1.0, 1 + 2**0.5], rtol=1e-6)
    # q = 0.9, d = target - pred = [2, -1]: 0.9*2 = 1.8 and 0.1*1 = 0.1 -> mean 0.95; grad [-0.9, 0.1]/2
    value, grad = Pinball(quantile=0.9).value_and_grad(np.array([[0.0, 1.0]], np.float32), np.array([[2.0, 0.0]]))
    assert value == pytest.approx(0.95)
    np.testing.assert_allclose(grad, [[-0.45, 0.05]], rtol=1e-6)
    assert Pinball(quantile=0.9).per_sample(np.zeros((2, 1), np.float32), np.array([[1.0], [-1.0]])) == pytest.approx(
        [0.9, 0.1]
    )
    # SignSGD, lr 0.1: p = [1, -2] - 0.1*sign([3, -0.5]) = [0.9, -1.9]; a zero gradient moves nothing
    opt, p = SignSGD(learning_rate=0.1), np.array([1.0, -2.0], np.float32)
    opt.step({"w": p}, {"w": np.array([3.0, -0.5], np.float32)})
    np.testing.assert_allclose(p, [0.9, -1.9], rtol=1e-6)
    opt.step({"w": p}, {"w": np.zeros(2, np.float32)})
    np.testing.assert_allclose(p, [0.9, -1.9], rtol=1e-6)
    # Signum, momentum 0.5: m = 0.5*g1 = [0.5, 0.5]; then m = 0.25 + 0.5*[-1, -2] = [-0.25, -0.75]
    opt, p = SignSGD(learning_rate=0.1, momentum=0.5), np.zeros(2, np.float32)
    opt.step({"w": p}, {"w": np.array([1.0, 1.0], np.float32)})
    opt.step({"w": p}, {"w": np.array([-1.0, -2.0], np.float32)})
    np.testing.assert_allclose(opt.slots["m"]["w"], [-0.25, -0.75])
    np.testing.assert_allclose(p, [0.0, 0.0], atol=1e-7)
    # inverse_sqrt, peak 1, 4 warm-up steps: 0.25, 0.5, 0.75, 1, then sqrt(4/5), sqrt(4/9)
    rate = InverseSqrt(peak=1.0, warmup_steps=4)
    assert [rate(s) for s in (0, 1, 2, 3, 4, 8)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.8**0.5, (4 / 9) ** 0.5])
    # balanced accuracy: class 0 right 3 of 4, class 1 right 1 of 1 -> (0.75 + 1) / 2 (accuracy 0.8)
    pred = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]], np.float32)
    assert BalancedAccuracy()(pred, np.array([0, 0, 0, 0, 1])) == pytest.approx(0.875)


def test_the_schedule_and_the_metric_are_saved_with_a_model_and_come_back(tmp_path):
    x, y = _data()
    labels = (y[:, 0] > 0).astype(np.int64)
    model = regnet.Model.from_spec(
        {"input_shape": [2], "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]}, seed=0
    )
    rate = {"type": "inverse_sqrt", "peak": 0.05, "warmup_steps": 5}
    model.compile(optimizer={"type": "sgd", "learning_rate": rate}, metrics=["balanced_accuracy"])
    history = model.fit(x, labels, epochs=2, batch_size=32, verbose=0)
    assert 0 <= history.history["balanced_accuracy"][-1] <= 1
    regnet.save(model, tmp_path / "m.h5")
    loaded = regnet.load(tmp_path / "m.h5")
    assert loaded.optimizer.schedule == model.optimizer.schedule and loaded.metrics == model.metrics
    with h5py.File(tmp_path / "m.h5", "r") as f:
        recorded = {(c["kind"], c["name"]): c["distribution"] for c in json.loads(f["metadata/components"][()])}
    assert recorded[("schedules", "inverse_sqrt")] == recorded[("metrics", "balanced_accuracy")] == DIST


SPEC = json.dumps(
    {
        "format": "regnet.model",
        "version": 1,
        "input_shape": [2],
        "layers": [
            {"type": "Dense", "units": 16, "activation": "squareplus", "kernel_initializer": "orthogonal"},
            {"type": "RMSNorm"},
            {
                "type": "Dense",
                "units": 16,
                "activation": {"type": "squareplus", "b": 1.0},
                "kernel_initializer": {"type": "truncated_normal", "stddev": 0.3},
            },
            {"type": "Dense", "units": 1},
        ],
    }
)

RELOAD = """
import json, sys
import numpy as np
import regnet
model = regnet.load(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
print(json.dumps({"optimizer": model.optimizer.get_config(), "loss": model.loss.get_config(),
                  "iterations": model.optimizer.iterations}))
"""


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    y = (np.sin(3 * x[:, :1]) + x[:, 1:] ** 2).astype(np.float32)
    return x, y


def test_model_from_json_trains_saves_and_reloads_in_a_fresh_process(tmp_path):
    x, y = _data()
    model = regnet.Model.from_spec(SPEC, seed=0)
    model.compile(
        loss={"type": "pinball", "quantile": 0.7},
        optimizer={"type": "SignSGD", "learning_rate": 3e-3, "momentum": 0.9},
        metrics=[],
    )
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, epochs=8, batch_size=32, verbose=0, seed=0)
    after = model.evaluate(x, y)["loss"]
    assert after < 0.5 * before, (before, after)

    path = tmp_path / "extras.h5"
    regnet.save(model, path)
    with h5py.File(path, "r") as f:
        recorded = json.loads(f["metadata/components"][()])
    providers = {(c["kind"], c["name"]): c["distribution"] for c in recorded}
    for key in [
        ("layers", "RMSNorm"),
        ("activations", "squareplus"),
        ("losses", "pinball"),
        ("optimizers", "SignSGD"),
        ("initializers", "orthogonal"),
        ("initializers", "truncated_normal"),
    ]:
        assert providers.get(key) == DIST, (key, providers)

    np.save(tmp_path / "x.npy", x)
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(path), str(tmp_path / "x.npy"), str(tmp_path / "pred.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert out.returncode == 0, out.stderr
    assert np.array_equal(np.load(tmp_path / "pred.npy"), model.predict(x))
    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["optimizer"] == model.optimizer.get_config()
    assert state["loss"] == {"type": "pinball", "quantile": 0.7}
    assert state["iterations"] == model.optimizer.iterations


def test_safe_mode_names_the_missing_distribution(tmp_path):
    model = regnet.Model.from_spec(SPEC, seed=1)
    path = tmp_path / "extras.h5"
    regnet.save(model, path)
    code = "import sys, regnet; regnet.load(sys.argv[1])"
    env = {**os.environ, "REGNET_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("REGNET_PLUGINS", None)
    refused = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert refused.returncode != 0
    err = refused.stderr.strip().splitlines()[-1]
    assert "UnknownComponentError" in err and DIST in err and "regnet." in err, err
    allowed = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "REGNET_PLUGINS": "regnet_extras"},
    )
    assert allowed.returncode == 0, allowed.stderr

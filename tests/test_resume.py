"""Exact resume: fit 2 epochs, save, load, fit 1 more == fit 3 epochs straight, bit for bit."""

import numpy as np
import pytest

import regnet
from regnet import Model
from regnet.registry import optimizers

SPEC = {
    "input_shape": [6],
    "layers": [
        {"type": "Dense", "name": "h1", "units": 16, "activation": "relu"},
        {"type": "Dropout", "name": "drop", "rate": 0.3},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Dense", "name": "h2", "units": 8, "activation": "tanh"},
        {"type": "Dropout", "name": "drop2", "rate": 0.2},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}

OPTIMIZERS = [
    {"type": "SGD", "learning_rate": 0.05, "momentum": 0.9},
    {"type": "SGD", "learning_rate": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
    {"type": "Adam", "learning_rate": 0.01},
]
# every other registered optimizer with its defaults
OPTIMIZERS += [{"type": name} for name in optimizers.list() if name not in ("SGD", "Adam")]


def data(n=70, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def make(optimizer):
    return Model.from_spec(SPEC, seed=11).compile(optimizer=dict(optimizer), metrics=["accuracy"])


def weights_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_bit_identical(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def straight(optimizer, x, y, epochs=3, **kw):
    model = make(optimizer)
    model.fit(x, y, epochs=epochs, batch_size=16, seed=5, verbose=0, **kw)
    return model


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_fit_save_load_fit_equals_straight_run(optimizer, tmp_path):
    x, y = data()
    val = data(30, seed=1)
    reference = straight(optimizer, x, y, validation_data=val)

    first = make(optimizer)
    first.fit(x, y, epochs=2, batch_size=16, seed=5, verbose=0, validation_data=val)
    first.save(tmp_path / "half.h5")
    resumed = regnet.load(tmp_path / "half.h5")
    assert resumed.epoch == 2
    history = resumed.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_data=val)

    assert history.epoch == [3] and resumed.epoch == 3
    assert_bit_identical(weights_of(resumed), weights_of(reference))
    assert resumed.history == reference.history
    assert resumed.optimizer.iterations == reference.optimizer.iterations
    assert_bit_identical(resumed.optimizer.state_dict(), reference.optimizer.state_dict())
    assert resumed.rng.bit_generator.state == reference.rng.bit_generator.state


@pytest.mark.parametrize("optimizer", OPTIMIZERS[:1] + OPTIMIZERS[2:3], ids=["sgd-momentum", "adam"])
def test_resume_depends_on_the_restored_state(optimizer, tmp_path):
    """Controls: dropping the optimizer state or the generator state breaks exactness, so the
    test above really checks that both are stored."""
    x, y = data()
    reference = weights_of(straight(optimizer, x, y))
    first = make(optimizer)
    first.fit(x, y, epochs=2, batch_size=16, seed=5, verbose=0)
    first.save(tmp_path / "half.h5")

    no_optimizer_state = regnet.load(tmp_path / "half.h5", compile=False).compile(optimizer=dict(optimizer))
    no_optimizer_state.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert any(a.tobytes() != reference[k].tobytes() for k, a in weights_of(no_optimizer_state).items())

    fresh_generator = regnet.load(tmp_path / "half.h5")
    fresh_generator.fit(x, y, epochs=1, batch_size=16, verbose=0, seed=123)
    assert any(a.tobytes() != reference[k].tobytes() for k, a in weights_of(fresh_generator).items())


def test_dropout_uses_the_restored_generator(tmp_path):
    """The Dropout layers draw from model.rng, which load restores in place."""
    model = make(OPTIMIZERS[0])
    model.fit(*data(), epochs=1, batch_size=16, seed=2, verbose=0)
    model.save(tmp_path / "m.h5")
    again = regnet.load(tmp_path / "m.h5")
    x = data(8, seed=3)[0]
    np.testing.assert_array_equal(again.forward(x, training=True), model.forward(x, training=True))
    assert again.get_layer("drop")._rng is again.rng


def test_resume_twice_through_files(tmp_path):
    x, y = data()
    optimizer = {"type": "Adam", "learning_rate": 0.01}
    reference = straight(optimizer, x, y, epochs=4)
    model = make(optimizer)
    model.fit(x, y, epochs=1, batch_size=16, seed=5, verbose=0)
    for i in range(3):
        model.save(tmp_path / f"e{i}.h5")
        model = regnet.load(tmp_path / f"e{i}.h5")
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert model.epoch == 4
    assert_bit_identical(weights_of(model), weights_of(reference))

"""Gradient clipping in the optimizer base class, for every optimizer (plugin ones included), and an
exact resume of a run with a cosine schedule and clipping."""

import numpy as np
import pytest

import regnet
from regnet import ConfigError, Model, optimizer
from regnet.optimizers import SGD, Optimizer, clip, global_norm

G = {"a": np.array([3.0, 4.0], np.float32), "b": np.array([0.5, -12.0], np.float32)}  # norms 5 and ~12.01


def sgd_update(opt, grads):
    """The change of each parameter after one SGD step from zero (= -lr * the gradient used)."""
    params = {k: np.zeros_like(g) for k, g in grads.items()}
    opt.step(params, grads)
    return {k: -p / opt.learning_rate for k, p in params.items()}


def test_clipnorm_scales_each_tensor_to_the_norm():
    used = sgd_update(SGD(learning_rate=1.0, clipnorm=6.0), G)
    np.testing.assert_allclose(used["a"], G["a"])  # norm 5 <= 6: unchanged
    np.testing.assert_allclose(used["b"], G["b"] * 6.0 / np.linalg.norm(G["b"]), rtol=1e-6)
    assert np.linalg.norm(used["b"]) == pytest.approx(6.0, rel=1e-6)


def test_global_clipnorm_scales_all_tensors_together():
    total = np.sqrt(25 + np.linalg.norm(G["b"]) ** 2)
    assert global_norm(G) == pytest.approx(total, rel=1e-6)
    used = sgd_update(SGD(learning_rate=0.5, global_clipnorm=2.0), G)
    for k in G:
        np.testing.assert_allclose(used[k], G[k] * 2.0 / total, rtol=1e-6)
    assert global_norm(used) == pytest.approx(2.0, rel=1e-6)


def test_clipvalue_clips_elements():
    used = sgd_update(SGD(learning_rate=1.0, clipvalue=1.0), G)
    np.testing.assert_array_equal(used["a"], [1, 1])
    np.testing.assert_array_equal(used["b"], [0.5, -1])


def test_clipping_off_passes_the_gradients_through_and_never_modifies_them():
    assert clip(G, None, None, None) is G
    copies = {k: g.copy() for k, g in G.items()}
    clip(G, 1.0, None, None), clip(G, None, 1.0, None), clip(G, None, None, 1.0)
    for k in G:
        np.testing.assert_array_equal(G[k], copies[k])


def test_global_norm_of_huge_gradients_does_not_overflow():
    big = {"w": np.full(4, 3e20, np.float32)}
    assert global_norm(big) == pytest.approx(6e20, rel=1e-6)
    used = sgd_update(SGD(learning_rate=1.0, global_clipnorm=1.0), big)
    np.testing.assert_allclose(used["w"], 0.5, rtol=1e-6)


def test_at_most_one_clipping_field_and_values_are_checked():
    with pytest.raises(ConfigError, match="at most one"):
        SGD(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ConfigError) as info:
        regnet.optimizers.get({"type": "adam", "clipnorm": 0})
    assert info.value.field == "clipnorm"
    with pytest.raises(ConfigError):
        regnet.optimizers.get({"type": "adam", "clipvalue": float("inf")})


@optimizer("SignTest", register=False)
class SignTest(Optimizer):
    """A plugin-style optimizer that knows nothing about clipping: ``p -= lr * g``."""

    def update(self, p, g, state):
        p -= self.learning_rate * g


def test_an_optimizer_without_clipping_code_gets_it_from_the_base_class():
    used = sgd_update(SignTest(learning_rate=1.0, global_clipnorm=1.0), G)
    assert global_norm(used) == pytest.approx(1.0, rel=1e-6)
    assert SignTest(clipvalue=0.5).get_config() == {"type": "SignTest", "learning_rate": 0.01, "clipvalue": 0.5}
    assert "clipnorm" not in SignTest().get_config()


def test_a_plugin_optimizer_declaring_a_numeric_learning_rate_takes_a_schedule_and_clipping():
    sign_sgd = pytest.importorskip("regnet_extras.sign_sgd").SignSGD
    opt = sign_sgd(learning_rate={"type": "step", "initial": 1.0, "step_size": 1, "gamma": 0.5}, clipvalue=0.1)
    p = {"w": np.zeros(2, np.float32)}
    for expected in (1.0, 0.5, 0.25):
        opt.step(p, {"w": np.ones(2, np.float32)})
        assert opt.learning_rate == expected
    assert opt.get_config()["learning_rate"]["type"] == "step" and opt.get_config()["clipvalue"] == 0.1


SPEC = {
    "input_shape": [6],
    "layers": [
        {"type": "Dense", "name": "h", "units": 16, "activation": "relu"},
        {"type": "Dropout", "name": "drop", "rate": 0.2},
        {"type": "BatchNorm", "name": "bn"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


def data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def make(clipping):
    rate = {"type": "cosine", "initial": 0.05, "decay_steps": 25, "alpha": 0.1}
    opt = {"type": "SGD", "momentum": 0.9, "learning_rate": rate, **clipping}
    return Model.from_spec(SPEC, seed=3).compile(optimizer=opt)


@pytest.mark.parametrize("clipping", [{"clipnorm": 0.5}, {"global_clipnorm": 0.3}, {"clipvalue": 0.05}])
@pytest.mark.parametrize("how", ["load", "resume_from"])
def test_resumed_run_with_cosine_schedule_and_clipping_is_bit_identical(clipping, how, tmp_path):
    x, y = data()
    straight = make(clipping)
    straight.fit(x, y, epochs=4, batch_size=16, seed=1, verbose=0)

    first = make(clipping)
    first.fit(x, y, epochs=2, batch_size=16, seed=1, verbose=0)
    first.save(tmp_path / "half.h5")
    if how == "load":
        resumed = regnet.load(tmp_path / "half.h5")
        resumed.fit(x, y, epochs=2, batch_size=16, verbose=0)
    else:
        resumed = make(clipping)
        resumed.fit(x, y, epochs=4, batch_size=16, verbose=0, resume_from=tmp_path / "half.h5")
    assert resumed.epoch == 4 and resumed.optimizer.iterations == straight.optimizer.iterations == 24
    for k, v in straight.state_dict().items():
        assert v.tobytes() == resumed.state_dict()[k].tobytes(), k
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate
    assert resumed.history == straight.history

    # the control: clipping really changes this run (so the test above checks that it is resumed)
    unclipped = make({})
    unclipped.fit(x, y, epochs=4, batch_size=16, seed=1, verbose=0)
    assert not np.array_equal(unclipped.state_dict()["h/kernel"], straight.state_dict()["h/kernel"])

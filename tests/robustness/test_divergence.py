"""The divergence guard: a NaN or infinite loss, gradient or updated weight stops training with a
``TrainingDivergedError`` naming the epoch and the batch, and leaves every weight (parameters
and BatchNorm statistics) exactly as it was before the failing step.
"""

import numpy as np
import pytest

from regnet import Callback, LearningRateScheduler, Model, TrainingDivergedError, runtime

MLP = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 16, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
WITH_BN = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 16},
        {"type": "BatchNorm", "name": "bn", "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
RNG = np.random.default_rng(0)
X = RNG.standard_normal((128, 4)).astype(np.float32)
Y = RNG.integers(0, 3, 128)


class Recorder(Callback):
    """Copies of every weight before the first step and after each step."""

    def on_train_begin(self, logs=None):
        self.start_epoch = self.model.epoch
        self.weights = [self.copy()]

    def on_batch_end(self, batch, logs=None):
        self.weights.append(self.copy())

    def copy(self):
        return {k: v.copy() for k, v in self.model.get_weights().items()}


def build(spec=MLP, optimizer=None):
    return Model.from_spec(spec, seed=0).compile("categorical_crossentropy", optimizer or "sgd")


def weights_of(model):
    return {k: v.copy() for k, v in model.get_weights().items()}


def assert_weights_equal(model, expected):
    now = model.get_weights()
    assert now.keys() == expected.keys()
    for k in now:
        assert np.isfinite(now[k]).all(), f"{k} is not finite"
        assert np.array_equal(now[k], expected[k]), f"{k} differs from before the failing step"


def diverge(model, x=X, y=Y, epochs=20, batch_size=16, callbacks=()):
    recorder = Recorder()
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[recorder, *callbacks])
    e = info.value
    n_batches = -(-len(x) // batch_size)
    steps_done = len(recorder.weights) - 1
    failing_step = (e.epoch - recorder.start_epoch - 1) * n_batches + e.batch
    assert failing_step == steps_done + 1, "epoch/batch do not name the failing step"
    assert f"epoch {e.epoch}, batch {e.batch}/{n_batches}" in str(e)
    assert_weights_equal(model, recorder.weights[-1])
    return e


@pytest.mark.parametrize(
    "optimizer",
    [
        {"type": "sgd", "learning_rate": 1e6},
        {"type": "sgd", "learning_rate": 1e6, "momentum": 0.9},
        {"type": "sgd", "learning_rate": 1e38},
        {"type": "adam", "learning_rate": 1e38},
        {"type": "adamw", "learning_rate": 1e37},
        {"type": "rmsprop", "learning_rate": 1e38},
        {"type": "adagrad", "learning_rate": 1e38},
    ],
    ids=lambda o: f"{o['type']}-lr{o['learning_rate']:g}" + ("-momentum" if o.get("momentum") else ""),
)
def test_exploding_learning_rate_stops_at_the_last_finite_weights(optimizer):
    model = build(optimizer=optimizer)
    diverge(model, x=100 * X)


def test_exploding_learning_rate_with_batchnorm_restores_running_statistics():
    model = build(WITH_BN, {"type": "sgd", "learning_rate": 1e6})
    diverge(model, x=100 * X)
    assert set(model.get_layer("bn").buffers) == {"moving_mean", "moving_variance"}


def test_update_that_overflows_with_finite_gradients_is_undone():
    model = build(optimizer={"type": "sgd", "learning_rate": 0.01, "momentum": 0.9})
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    trained, iterations = weights_of(model), model.optimizer.iterations
    assert iterations == 16
    model.optimizer.learning_rate = 3e38
    e = diverge(model, x=100 * X)
    assert (e.epoch, e.batch) == (3, 1)
    assert "hidden/kernel" in str(e) and "the loss and gradients were finite" in str(e)
    assert_weights_equal(model, trained)
    # the failing step had already moved the momentum; the optimizer starts afresh
    assert model.optimizer.iterations == 0 and model.optimizer.state_dict().keys() == {"iterations"}


def test_non_finite_loss_is_refused_before_the_update():
    model = build(optimizer={"type": "adam", "learning_rate": 0.01})
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.get_layer("hidden").params["kernel"][...] *= np.float32(3e37)  # finite weights whose
    model.get_layer("out").params["kernel"][...] *= np.float32(1e10)  # logits overflow
    state = {k: v.copy() for k, v in model.optimizer.state_dict().items()}
    e = diverge(model)
    assert (e.epoch, e.batch) == (2, 1) and "the loss is nan" in str(e)
    after = model.optimizer.state_dict()  # the optimizer never saw the step
    assert after.keys() == state.keys() and all(np.array_equal(after[k], state[k]) for k in state)


def test_running_statistics_that_overflow_are_restored():
    model = build(WITH_BN, {"type": "adam", "learning_rate": 0.01})
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.get_layer("hidden").params["kernel"][...] *= np.float32(3e37)  # BatchNorm keeps the loss finite
    e = diverge(model)
    assert (e.epoch, e.batch) == (2, 1) and "bn/moving_variance became non-finite" in str(e)
    assert np.isfinite(model.get_layer("bn").buffers["moving_variance"]).all()


def test_non_finite_gradient_is_named_and_undone(monkeypatch):
    model = build(optimizer={"type": "adam", "learning_rate": 0.01})
    out = model.get_layer("out")
    backward = out.backward
    calls = []

    def poisoned(grad):
        gin = backward(grad)
        calls.append(1)
        if len(calls) == 5:  # the fifth step gets an infinite gradient
            out.grads["kernel"][0, 0] = np.inf
        return gin

    monkeypatch.setattr(out, "backward", poisoned)
    e = diverge(model, batch_size=32)
    assert (e.epoch, e.batch) == (2, 1)
    assert "the gradients of out/kernel are not finite" in str(e)
    assert model.optimizer.iterations == 0


def test_divergence_in_a_later_epoch_names_it():
    model = build(optimizer={"type": "sgd", "learning_rate": 0.01})
    schedule = LearningRateScheduler(lambda epoch, lr: 0.01 if epoch < 3 else 1e38)
    e = diverge(model, x=100 * X, callbacks=[schedule])
    assert e.epoch == 3 and model.epoch == 2 and len(model.history) == 2


def test_training_goes_on_after_a_divergence_with_a_sane_learning_rate():
    model = build(optimizer={"type": "sgd", "learning_rate": 1e38})
    diverge(model, x=100 * X)
    model.optimizer.learning_rate = 0.05
    history = model.fit(X, Y, epochs=3, batch_size=16, verbose=0)
    assert all(np.isfinite(v).all() for v in model.get_weights().values())
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_train_step_alone_restores_the_weights():
    model = build(optimizer={"type": "sgd", "learning_rate": 1e38})
    before = weights_of(model)
    with pytest.raises(TrainingDivergedError, match="the loss and gradients were finite"):
        runtime.train_step(model, 100 * X[:16], Y[:16])
    assert_weights_equal(model, before)


def test_guard_changes_nothing_when_training_is_finite():
    a, b = build(optimizer="adam"), build(optimizer="adam")
    a.fit(X, Y, epochs=2, batch_size=16, verbose=0, seed=1)
    # the same steps by hand, without the guard
    b.rng.bit_generator.state = np.random.default_rng(1).bit_generator.state
    for _ in range(2):
        order = b.rng.permutation(len(X))
        for s in range(0, len(X), 16):
            idx = order[s : s + 16]
            out = b.forward(X[idx], training=True, logits=True)
            _, grad = b.training_loss.value_and_grad(out, Y[idx])
            b.backward(grad, input_grad=False)
            b.optimizer.step(b.params, b.grads)
    assert_weights_equal(a, weights_of(b))


@pytest.mark.parametrize("spec", [MLP, WITH_BN], ids=["mlp", "batchnorm"])
def test_without_callbacks_the_same_last_finite_weights(spec):
    """fit without callbacks refreshes its snapshot at the end of each step (the fast path); it
    must stop on the same step at the same weights as a run recording them with a callback."""
    optimizer = {"type": "sgd", "learning_rate": 1e6}
    plain, recorded = build(spec, optimizer), build(spec, optimizer)
    with pytest.raises(TrainingDivergedError) as info:
        plain.fit(100 * X, Y, epochs=20, batch_size=16, verbose=0, seed=3)
    with pytest.raises(TrainingDivergedError) as again:
        recorded.fit(100 * X, Y, epochs=20, batch_size=16, verbose=0, seed=3, callbacks=[Recorder()])
    assert (info.value.epoch, info.value.batch) == (again.value.epoch, again.value.batch)
    assert_weights_equal(plain, weights_of(recorded))


def test_a_callback_that_changes_weights_is_respected():
    class Shrink(Callback):  # changes the weights between steps
        def on_batch_end(self, batch, logs=None):
            for v in self.model.params.values():
                v *= np.float32(0.5)

    model = build(optimizer={"type": "sgd", "learning_rate": 0.01})
    schedule = LearningRateScheduler(lambda epoch, lr: 0.01 if epoch < 2 else 3e38)
    recorder = Recorder()  # runs after Shrink: it sees the weights the next step starts from
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(100 * X, Y, epochs=5, batch_size=16, verbose=0, callbacks=[schedule, Shrink(), recorder])
    assert info.value.epoch == 2
    assert_weights_equal(model, recorder.weights[-1])

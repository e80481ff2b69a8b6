"""The divergence guard: a NaN or infinite loss, gradient or updated weight stops training with a
``TrainingDivergedError`` naming the epoch and the batch, and leaves the model exactly as it was
before the failing step: every weight (parameters and BatchNorm statistics), the optimizer state
and the generator, whether the guard rewinds from a checkpoint taken just before the step or
replays the steps since an older one.
"""

import numpy as np
import pytest

from regnet import Callback, LearningRateScheduler, Model, TrainingDivergedError
from regnet.training import divergence
from regnet.training import loop as runtime

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
        return {k: v.copy() for k, v in self.model.state_dict().items()}


def build(spec=MLP, optimizer=None):
    return Model.from_spec(spec, seed=0).compile("categorical_crossentropy", optimizer or "sgd")


def optimizer_state(model):
    return {k: np.array(v) for k, v in model.optimizer.state_dict().items()}


def assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"optimizer state {k} differs"


def weights_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_weights_equal(model, expected):
    now = model.state_dict()
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
    trained, state = weights_of(model), optimizer_state(model)
    assert model.optimizer.iterations == 16
    model.optimizer.learning_rate = 3e38
    e = diverge(model, x=100 * X)
    assert (e.epoch, e.batch) == (3, 1)
    assert "hidden/kernel" in str(e) and "the loss and gradients were finite" in str(e)
    assert_weights_equal(model, trained)
    assert_states_equal(optimizer_state(model), state)  # the momentum is rewound too


def test_non_finite_loss_is_refused_before_the_update():
    model = build(optimizer={"type": "adam", "learning_rate": 0.01})
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.get_layer("hidden").params["kernel"][...] *= np.float32(3e37)  # finite weights whose
    model.get_layer("out").params["kernel"][...] *= np.float32(1e10)  # logits overflow
    state = optimizer_state(model)
    e = diverge(model)
    assert (e.epoch, e.batch) == (2, 1) and "the loss is nan" in str(e)
    assert_states_equal(optimizer_state(model), state)


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

    def poisoned(grad, **kwargs):
        gin = backward(grad, **kwargs)
        calls.append(1)
        if len(calls) == 5:  # the fifth step gets an infinite gradient
            out.grads["kernel"][0, 0] = np.inf
        return gin

    monkeypatch.setattr(out, "backward", poisoned)
    e = diverge(model, batch_size=32)
    assert (e.epoch, e.batch) == (2, 1)
    assert "the gradients of out/kernel are not finite" in str(e)
    assert model.optimizer.iterations == 4


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
    assert all(np.isfinite(v).all() for v in model.state_dict().values())
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


WITH_DROPOUT = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 16, "activation": "relu"},
        {"type": "Dropout", "name": "drop", "rate": 0.3},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}


class StepLR(Callback):
    """A learning rate set before every batch (cycling through three values), huge from step
    ``fail_at`` on; it declares that it leaves the weights alone."""

    changes_weights = False

    def __init__(self, fail_at):
        self.step, self.fail_at = 0, fail_at

    def lr(self):
        return 3e38 if self.step >= self.fail_at else 0.01 * (1 + self.step % 3)

    def on_train_begin(self, logs=None):
        self.model.optimizer.learning_rate = self.lr()

    def on_batch_end(self, batch, logs=None):
        self.step += 1
        self.model.optimizer.learning_rate = self.lr()


@pytest.mark.parametrize("spec", [MLP, WITH_BN, WITH_DROPOUT], ids=["mlp", "batchnorm", "dropout"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_rewind_by_replay_ends_where_the_failing_step_began(spec, optimizer, monkeypatch):
    """Without weight-changing callbacks ``fit`` checkpoints every ``divergence.INTERVAL`` steps
    and a failure replays the steps since. It must end exactly where a run that checkpoints
    before every step (forced here by the recording callback) ends: same weights, optimizer state
    and generator state."""
    fail_at = divergence.INTERVAL + 13  # 64 steps per epoch: a checkpoint after step 32, 13+ replayed
    replayed = []
    rewind = divergence.Guard.rewind
    monkeypatch.setattr(
        divergence.Guard, "rewind", lambda self, step: (replayed.append(len(self._steps)), rewind(self, step))
    )
    runs = []
    for callbacks in ([StepLR(fail_at)], [StepLR(fail_at), Recorder()]):
        model = build(spec, {"type": optimizer, "learning_rate": 0.01})
        with pytest.raises(TrainingDivergedError) as info:
            model.fit(100 * X, Y, epochs=2, batch_size=2, verbose=0, seed=3, callbacks=callbacks)
        runs.append((model, info.value))
    (plain, e1), (recorded, e2) = runs
    assert (e1.epoch, e1.batch) == (e2.epoch, e2.batch)
    assert e1.epoch == 1 and e1.batch > fail_at  # Adam's steps are bounded: it may take two
    assert replayed == [e1.batch - 1 - divergence.INTERVAL, 0]
    assert_weights_equal(plain, weights_of(recorded))
    assert_states_equal(optimizer_state(plain), optimizer_state(recorded))
    assert plain.rng.bit_generator.state == recorded.rng.bit_generator.state
    assert plain.optimizer.learning_rate == recorded.optimizer.learning_rate == 3e38


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


def test_replay_memory_is_bounded(monkeypatch):
    """Large batches make the guard checkpoint sooner instead of keeping many of them."""
    monkeypatch.setattr(divergence, "MAX_REPLAY_BYTES", 3 * (16 * 4 * 4 + 16 * 8))  # three batches
    guard = divergence.Guard(build(), interval=32)
    guard.checkpoint()
    for _ in range(3):
        assert not guard.due()
        guard.record(X[:16], Y[:16], {})
    assert guard.due()
    guard.checkpoint()
    assert not guard.due()

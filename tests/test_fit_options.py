"""fit options: class and sample weights (the gradient as the formula says), validation_split,
initial_epoch, the History, the two halves of a step, the per-batch calls and bad arguments."""

import json

import numpy as np
import pytest

from regnet import ConfigError, DataError, History, Model
from regnet.training import loop as runtime

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "tanh"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
RNG = np.random.default_rng(0)
X = RNG.standard_normal((48, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def build(optimizer="sgd", **kw):
    return Model.from_spec(SPEC, seed=0).compile("categorical_crossentropy", optimizer, **kw)


def grads_of(model, x, y, weight=None):
    runtime.compute_gradients(model, x, y, weight)
    return {k: v.copy() for k, v in model.grads.items()}


def weights_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_class_weights_change_the_gradient_as_the_formula_says():
    """With weights w_i the gradient is sum_i w_i grad(loss_i) / N and the loss sum_i w_i loss_i / N."""
    model = build()
    x, y = X[:12], Y[:12]
    table = {0: 3.0, 1: 0.5, 2: 2.0}
    w = np.array([table[int(c)] for c in y], np.float32)
    per_sample = [grads_of(model, x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    expected = {k: sum(w[i] * g[k] for i, g in enumerate(per_sample)) / len(x) for k in per_sample[0]}
    losses = [model.training_loss.value(model.forward(x[i : i + 1], logits=True), y[i : i + 1]) for i in range(12)]

    # through fit: one SGD step on the whole batch moves each weight by -lr * that gradient
    lr = 0.1
    trained = build({"type": "sgd", "learning_rate": lr})
    before = weights_of(trained)
    history = trained.fit(x, y, batch_size=12, epochs=1, shuffle=False, class_weight=table, verbose=0)
    for k, g in expected.items():
        np.testing.assert_allclose(before[k] - trained.state_dict()[k], lr * g, rtol=1e-4, atol=1e-7)
    assert history.history["loss"][0] == pytest.approx(np.dot(w, losses) / len(x), rel=1e-5)
    # and the weighted gradient is not the unweighted one (the check above can fail)
    plain = grads_of(build(), x, y)
    assert not np.allclose(plain["out/kernel"], expected["out/kernel"], rtol=1e-3)


def test_sample_weights_multiply_class_weights_and_balanced_weights_invert_the_frequencies():
    model = build()
    sw = RNG.uniform(0, 2, len(X)).astype(np.float32)
    counts = np.bincount(Y, minlength=3)
    balanced = len(Y) / (3 * counts)
    w = sw * balanced[Y]
    reference = grads_of(build(), X, Y, w)
    a = build({"type": "sgd", "learning_rate": 1.0})
    b = build({"type": "sgd", "learning_rate": 1.0})
    a.fit(X, Y, batch_size=48, shuffle=False, class_weight="balanced", sample_weight=sw, verbose=0)
    b.fit(
        X,
        Y,
        batch_size=48,
        shuffle=False,
        class_weight={i: float(balanced[i]) for i in range(3)},
        sample_weight=sw,
        verbose=0,
    )
    for k, v in weights_of(a).items():
        np.testing.assert_allclose(v, weights_of(b)[k], rtol=1e-6)
        np.testing.assert_allclose(weights_of(model)[k] - v, reference[k], rtol=1e-4, atol=1e-6)


def test_evaluate_weights_the_loss_and_zero_weights_drop_samples():
    model = build()
    plain = model.evaluate(X, Y)
    assert model.evaluate(X, Y, sample_weight=np.full(len(X), 2.0))["loss"] == pytest.approx(
        2 * plain["loss"], rel=1e-6
    )
    keep = np.zeros(len(X))
    keep[:16] = 3.0  # three times the first 16 of 48 samples: the same mean loss as those 16 alone
    assert model.evaluate(X, Y, sample_weight=keep)["loss"] == pytest.approx(model.evaluate(X[:16], Y[:16])["loss"])
    assert model.evaluate(X, Y, sample_weight=keep)["accuracy"] == plain["accuracy"]  # metrics stay unweighted


def test_validation_split_takes_the_last_fraction_before_shuffling():
    a, b = build("adam"), build("adam")
    ha = a.fit(X, Y, epochs=3, batch_size=8, validation_split=0.25, seed=4, verbose=0)
    hb = b.fit(X[:36], Y[:36], epochs=3, batch_size=8, validation_data=(X[36:], Y[36:]), seed=4, verbose=0)
    assert ha == hb and set(ha.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for k, v in weights_of(a).items():
        assert v.tobytes() == weights_of(b)[k].tobytes()


def test_steps_per_epoch_applies_to_the_training_part_of_a_validation_split():
    model = build()
    history = model.fit(X, Y, epochs=2, batch_size=8, steps_per_epoch=3, validation_split=0.25, verbose=0)
    assert model.optimizer.iterations == 6  # 3 of the 5 batches of the 36 training samples, per epoch
    assert len(history.history["val_loss"]) == 2


@pytest.mark.parametrize(("n", "fraction", "n_val"), [(10, 0.25, 3), (5, 0.5, 3), (48, 0.001, 1), (48, 0.2, 10)])
def test_validation_split_sizes_follow_keras(n, fraction, n_val):
    """Keras 3 (``train_validation_split``): ``split_at = floor(n * (1 - validation_split))``, the
    last ``n - split_at`` samples validate."""
    model = build()
    history = model.fit(X[:n], Y[:n], epochs=1, batch_size=64, validation_split=fraction, shuffle=False, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(X[n - n_val : n], Y[n - n_val : n])["loss"])
    other = build()
    other.fit(X[: n - n_val], Y[: n - n_val], epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert all(v.tobytes() == weights_of(other)[k].tobytes() for k, v in weights_of(model).items())


def test_initial_epoch_sets_the_counter_and_epochs_is_the_total():
    model = build()
    history = model.fit(X, Y, epochs=5, initial_epoch=3, verbose=0)
    assert history.epoch == [4, 5] and model.epoch == 5 and model.history.epoch == [4, 5]
    assert model.fit(X, Y, epochs=5, initial_epoch=5, verbose=0).epoch == []


def test_history_is_consistent_between_fit_and_the_model():
    model = build(metrics=["accuracy", {"type": "f1", "average": "per_class"}])
    h1 = model.fit(X, Y, epochs=2, verbose=0)
    h2 = model.fit(X, Y, epochs=1, verbose=0)
    assert isinstance(model.history, History) and isinstance(h1, History)
    assert model.history == h1 + h2 and model.history.epoch == [1, 2, 3]
    assert model.history.history["loss"][-1] == h2.history["loss"][0]
    assert model.history[0]["epoch"] == 1 and len(model.history[0]["f1_per_class"]) == 3
    assert json.loads(json.dumps(model.history)) == model.history  # plain JSON data


def test_averaging_the_gradients_of_two_halves_equals_the_full_batch_step():
    """The split a data-parallel wrapper uses: compute_gradients on each part, average, apply."""
    full, halves = build({"type": "sgd", "learning_rate": 0.5}), build({"type": "sgd", "learning_rate": 0.5})
    runtime.compute_gradients(full, X, Y)
    runtime.apply_gradients(full)
    parts = [grads_of(halves, X[:24], Y[:24]), grads_of(halves, X[24:], Y[24:])]
    for k, g in halves.grads.items():
        g[...] = (parts[0][k] + parts[1][k]) / 2
    runtime.apply_gradients(halves)
    for k, v in weights_of(full).items():
        np.testing.assert_allclose(weights_of(halves)[k], v, rtol=1e-5, atol=1e-7)


def test_per_batch_calls_match_fit_evaluate_and_predict():
    a, b = build("adam"), build("adam")
    logs = a.train_on_batch(X[:16], Y[:16])
    b.fit(X[:16], Y[:16], batch_size=16, shuffle=False, verbose=0)
    for k, v in weights_of(a).items():
        assert v.tobytes() == weights_of(b)[k].tobytes()
    assert logs["loss"] == pytest.approx(b.history[0]["loss"]) and set(logs) == {"loss", "accuracy"}
    assert a.test_on_batch(X, Y) == pytest.approx(a.evaluate(X, Y))
    np.testing.assert_array_equal(a.predict_on_batch(X[:5]), a.predict(X[:5]))
    weighted = build("sgd").train_on_batch(X[:8], Y[:8], class_weight={0: 0.0, 1: 0.0, 2: 0.0})
    assert weighted["loss"] == 0.0


def state(model):
    return weights_of(model), model.epoch, list(model.history), model.optimizer.iterations


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"class_weight": {3: 1.0}}, ConfigError, "names class 3, but the model has 3 classes"),
        ({"class_weight": {-1: 1.0}}, ConfigError, "names class -1"),
        ({"class_weight": {0: -2.0}}, ConfigError, "weight of class 0 must be a finite number >= 0"),
        ({"class_weight": {0: float("nan")}}, ConfigError, "weight of class 0"),
        ({"class_weight": "equal"}, ConfigError, "or 'balanced'"),
        ({"sample_weight": -np.ones(48)}, DataError, "finite and >= 0"),
        ({"sample_weight": np.where(np.arange(48) == 7, np.inf, 1.0)}, DataError, "at index 7"),
        ({"sample_weight": np.ones(40)}, DataError, "one weight per sample, shape (48,)"),
        ({"sample_weight": np.array(["a"] * 48)}, DataError, "must hold numbers"),
        ({"validation_split": 1.0}, ConfigError, "strictly between 0 and 1"),
        ({"validation_split": 0}, ConfigError, "strictly between 0 and 1"),
        ({"validation_split": -0.2}, ConfigError, "strictly between 0 and 1"),
        ({"validation_split": 1e-17}, ConfigError, "leaves 48 for training and 0 for validation"),
        ({"validation_split": 0.99}, ConfigError, "leaves 0 for training and 48 for validation"),
        ({"validation_split": 0.2, "validation_data": (X, Y)}, ConfigError, "not both"),
        ({"initial_epoch": -1}, ConfigError, "initial_epoch"),
        ({"steps_per_epoch": 0}, ConfigError, "steps_per_epoch"),
        ({"steps_per_epoch": 99}, ConfigError, "more than the 2 batches"),
    ],
)
def test_bad_arguments_are_refused_before_anything_changes(kwargs, error, fragment):
    model = build()
    model.fit(X, Y, epochs=1, verbose=0)
    before = state(model)
    with pytest.raises(error, match=None) as info:
        model.fit(X, Y, epochs=2, batch_size=32, verbose=0, **kwargs)
    assert fragment in str(info.value)
    after = state(model)
    assert after[1:] == before[1:]
    assert all(v.tobytes() == after[0][k].tobytes() for k, v in before[0].items())


def test_class_weight_needs_class_outputs():
    model = Model.from_spec({"input_shape": [4], "layers": [{"type": "Reshape", "target_shape": [2, 2]}]})
    model.compile("mean_squared_error", "sgd", metrics=[])
    with pytest.raises(ConfigError, match="class_weight needs a classifier"):
        model.fit(X, X.reshape(-1, 2, 2), class_weight={0: 1.0}, verbose=0)


def test_progress_counts_resumed_epochs_consistently(capsys):
    model = build()
    model.fit(X, Y, epochs=2, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    model.fit(X, Y, epochs=1, verbose=1)
    assert "epoch 3 (1/1)" in capsys.readouterr().err

"""Callbacks: EarlyStopping, ReduceLROnPlateau, CSVLogger, TerminateOnNaN, LambdaCallback, and
their state saved with checkpoints and restored by fit(resume_from=...)."""

import csv
import json

import h5py
import numpy as np
import pytest

import regnet
from regnet import (
    Callback,
    ConfigError,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    Model,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from regnet.training import loop as runtime

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "tanh"},
        {"type": "Dropout", "name": "drop", "rate": 0.2},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
RNG = np.random.default_rng(0)
X = RNG.standard_normal((40, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def build(optimizer=None):
    return Model.from_spec(SPEC, seed=0).compile(optimizer=optimizer or {"type": "sgd", "learning_rate": 0.05})


class Script(Callback):
    """Puts ``values[epoch - 1]`` into the epoch logs as ``key`` (for the callbacks after it)."""

    def __init__(self, values, key="val_loss"):
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch - 1]


class Snapshots(Callback):
    """The weights at the end of every epoch."""

    def __init__(self):
        self.at = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at[epoch] = {k: v.copy() for k, v in self.model.state_dict().items()}


def same(weights, model):
    return all(v.tobytes() == model.state_dict()[k].tobytes() for k, v in weights.items())


LOSSES = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.0, 0.5, 0.1]


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights():
    model, snapshots = build(), Snapshots()
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(X, Y, epochs=10, batch_size=8, verbose=0, callbacks=[Script(LOSSES), snapshots, stop])
    assert history.epoch == [1, 2, 3, 4, 5] and model.epoch == 5  # 3.5 and 3.2 do not beat 3.0
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (3.0, 3, 5)
    assert same(snapshots.at[3], model) and not same(snapshots.at[5], model)


@pytest.mark.parametrize(
    ("values", "kwargs", "last_epoch"),
    [
        ([5.0, 4.8, 4.6, 4.4, 4.2], {"patience": 1, "min_delta": 0.3}, 2),  # 4.8 is not 0.3 better
        ([5.0, 4.8, 4.6, 4.4, 4.2], {"patience": 1}, 5),
        ([5.0, 5.0, 5.0, 5.0, 5.0], {"patience": 0}, 2),
        ([5.0, 4.0, 6.0, 6.0, 6.0], {"patience": 3}, 5),
        ([0.1, 0.2, 0.3, 0.2, 0.2], {"patience": 1, "monitor": "val_accuracy"}, 4),  # auto: higher is better
        ([0.1, 0.2, 0.3, 0.2, 0.2], {"patience": 1, "monitor": "val_accuracy", "mode": "min"}, 2),
        ([3.0, 2.5, 2.2, 2.1, 2.0], {"patience": 2, "baseline": 2.0}, 2),  # never beats the baseline
        ([5.0, 6.0, 7.0, 8.0, 9.0], {"patience": 0, "start_from_epoch": 3}, 5),
    ],
)
def test_early_stopping_patience_min_delta_mode_baseline(values, kwargs, last_epoch):
    monitor = kwargs.get("monitor", "val_loss")
    model = build()
    history = model.fit(X, Y, epochs=5, verbose=0, callbacks=[Script(values, monitor), EarlyStopping(**kwargs)])
    assert history.epoch[-1] == last_epoch


def checkpointed_run(tmp_path, epochs=10, resume_from=None, values=LOSSES):
    model = build()
    callbacks = [
        Script(values),
        EarlyStopping(patience=2, restore_best_weights=True),
        ModelCheckpoint(tmp_path / "ckpt-{epoch}.h5"),
        CSVLogger(tmp_path / "log.csv", append=resume_from is not None),
    ]
    model.fit(X, Y, epochs=epochs, batch_size=8, seed=3, verbose=0, callbacks=callbacks, resume_from=resume_from)
    return model, callbacks


@pytest.mark.parametrize("resume_at", [2, 4, 5])
def test_a_resumed_run_with_early_stopping_ends_bit_identical_to_the_uninterrupted_one(tmp_path, resume_at):
    (tmp_path / "a").mkdir()
    straight, _ = checkpointed_run(tmp_path / "a")
    assert straight.epoch == 5
    (tmp_path / "b").mkdir()
    first, _ = checkpointed_run(tmp_path / "b", epochs=resume_at)
    resumed, callbacks = checkpointed_run(tmp_path / "b", resume_from=tmp_path / "b" / f"ckpt-{resume_at}.h5")
    assert resumed.epoch == 5 and resumed.history == straight.history
    assert same(straight.state_dict(), resumed)
    assert callbacks[1].best_epoch == 3 and callbacks[1].stopped_epoch == 5
    with open(tmp_path / "b" / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5][: max(resume_at, 5)]
    assert [float(r["loss"]) for r in rows] == pytest.approx([h["loss"] for h in straight.history])


def test_the_checkpoint_file_holds_the_callback_state_and_the_best_weights(tmp_path):
    checkpointed_run(tmp_path, epochs=4)
    with h5py.File(tmp_path / "ckpt-4.h5", "r") as f:
        state = json.loads(f["callbacks/state"][()].decode())
        assert sorted(f["callbacks/weights/EarlyStopping"]) == ["hidden", "out"]
        best = f["callbacks/weights/EarlyStopping/hidden/kernel"][()]
    assert state["EarlyStopping"]["class"] == "EarlyStopping" and state["EarlyStopping"]["weights"] is True
    assert state["EarlyStopping"]["state"] == {
        "monitor": "val_loss",
        "mode": "min",
        "best": 3.0,
        "best_epoch": 3,
        "wait": 1,
        "stopped_epoch": None,
    }
    assert state["ModelCheckpoint"]["state"]["best"] is None
    np.testing.assert_array_equal(best, regnet.load(tmp_path / "ckpt-3.h5").state_dict()["hidden/kernel"])


def test_state_saved_by_another_watch_or_class_is_not_restored(tmp_path):
    checkpointed_run(tmp_path, epochs=4)
    model = build()
    other = EarlyStopping(monitor="val_accuracy", patience=0)
    with pytest.warns(RuntimeWarning, match="starting afresh"):
        model.fit(
            X,
            Y,
            epochs=5,
            verbose=0,
            callbacks=[Script([0.5] * 10, "val_accuracy"), other],
            resume_from=tmp_path / "ckpt-4.h5",
        )
    assert other.best == 0.5 and model.epoch == 5


def test_reduce_lr_on_plateau_patience_cooldown_and_min_lr():
    values = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0]
    rates = []
    model = build({"type": "sgd", "learning_rate": 1.0})
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.learning_rate))
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    model.fit(X[:8], Y[:8], epochs=10, verbose=0, callbacks=[Script(values), plateau, record])
    # epochs 3 and 4 do not improve: halve after epoch 4 (wait 2); epoch 5 is the cooldown; 6, 7
    # wait again; 8 improves; 9, 10 halve once more but not below min_lr
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2]


@pytest.mark.parametrize(
    ("patience", "cooldown", "rates"),
    [
        (0, 2, [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]),
        (0, 0, [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125]),
        (1, 1, [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625]),
        (2, 2, [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]),
    ],
)
def test_reduce_lr_on_plateau_cooldown_epochs_do_not_count_whatever_the_patience(patience, cooldown, rates):
    """The ``cooldown`` epochs after a reduction neither reduce nor count towards ``patience``,
    with ``patience=0`` too (a reduction at every other non-improving epoch). Keras decrements its
    cooldown counter before the patience test of the same epoch, so its ``cooldown=N`` holds off
    only N - 1 epochs (patience 0, cooldown 2: 1, .5, .5, .25, .25, .125, ...; cooldown 1 does
    nothing); regnet keeps the documented meaning, as PyTorch's ReduceLROnPlateau does."""
    model = build({"type": "sgd", "learning_rate": 1.0})
    got = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: got.append(model.optimizer.learning_rate))
    plateau = ReduceLROnPlateau(factor=0.5, patience=patience, cooldown=cooldown)
    model.fit(X[:8], Y[:8], epochs=8, verbose=0, callbacks=[Script([1.0] * 8), plateau, record])
    assert got == rates


def test_reduce_lr_on_plateau_state_resumes(tmp_path):
    values = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]

    def run(epochs, resume_from=None):
        model = build({"type": "sgd", "learning_rate": 1.0})
        callbacks = [
            Script(values),
            ReduceLROnPlateau(factor=0.5, patience=2),
            ModelCheckpoint(tmp_path / "c{epoch}.h5"),
        ]
        model.fit(X, Y, epochs=epochs, batch_size=8, seed=1, verbose=0, callbacks=callbacks, resume_from=resume_from)
        return model

    straight = run(8)
    resumed = run(8, resume_from=tmp_path / "c3.h5")
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate == 0.125  # halved at epochs 4, 6, 8
    assert same(straight.state_dict(), resumed)


def test_learning_rate_scheduler_state_resumes(tmp_path):
    def run(epochs, resume_from=None):
        model = build({"type": "sgd", "learning_rate": 0.05})
        callbacks = [LearningRateScheduler(lambda epoch, lr: lr * 0.7), ModelCheckpoint(tmp_path / "c{epoch}.h5")]
        model.fit(X, Y, epochs=epochs, batch_size=8, seed=1, verbose=0, callbacks=callbacks, resume_from=resume_from)
        return model

    straight = run(12)
    resumed = run(12, resume_from=tmp_path / "c7.h5")
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate == pytest.approx(0.05 * 0.7**12)
    assert resumed.epoch == straight.epoch == 12
    assert same(straight.state_dict(), resumed)


@pytest.mark.parametrize("bad", [None, "0.1", float("nan"), -1.0])
def test_learning_rate_scheduler_refuses_a_schedule_returning_no_learning_rate(bad):
    model = build()
    with pytest.raises(ConfigError, match="LearningRateScheduler") as info:
        model.fit(X, Y, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: bad)])
    assert info.value.field == "schedule"


def test_lr_callbacks_refuse_a_scheduled_optimizer():
    model = build({"type": "sgd", "learning_rate": {"type": "cosine", "initial": 0.1, "decay_steps": 10}})
    for cb in (ReduceLROnPlateau(), LearningRateScheduler(lambda epoch, lr: lr)):
        with pytest.raises(ConfigError, match="schedule"):
            model.fit(X, Y, verbose=0, callbacks=[cb])
    assert model.epoch == 0


def test_model_checkpoint_mode_auto_keeps_the_best_accuracy(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "c{epoch}.h5", monitor="val_accuracy", save_best_only=True)
    assert checkpoint.mode == "max"
    values = [0.5, 0.7, 0.6, 0.9, 0.8]
    build().fit(X, Y, epochs=5, verbose=0, callbacks=[Script(values, "val_accuracy"), checkpoint])
    assert checkpoint.saved == [str(tmp_path / f"c{e}.h5") for e in (1, 2, 4)] and checkpoint.best == 0.9
    assert ModelCheckpoint(tmp_path / "c.h5", monitor="val_loss").mode == "min"


def test_model_checkpoint_refuses_a_monitor_that_is_not_one_number(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "c.h5", monitor="val_f1")
    with pytest.raises(ConfigError, match="'val_f1', which is not a single number") as info:
        build().fit(X, Y, epochs=1, verbose=0, callbacks=[Script([[0.5, 0.25, 0.0]], "val_f1"), checkpoint])
    assert info.value.field == "monitor"


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    model = build()
    model.compile(metrics=["accuracy", {"type": "f1", "average": "per_class"}])
    model.fit(X, Y, epochs=3, verbose=0, validation_data=(X, Y), callbacks=[CSVLogger(tmp_path / "log.csv")])
    with open(tmp_path / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "epoch",
        "accuracy",
        "f1_per_class",
        "loss",
        "val_accuracy",
        "val_f1_per_class",
        "val_loss",
    ]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(model.history.history["val_loss"])
    assert json.loads(rows[2]["f1_per_class"]) == pytest.approx(model.history[2]["f1_per_class"])


def test_terminate_on_nan_stops_after_an_epoch_with_a_non_finite_log():
    model = build()
    with pytest.warns(RuntimeWarning, match="val_loss not finite"):
        history = model.fit(X, Y, epochs=5, verbose=0, callbacks=[Script([1.0, float("inf"), 1.0]), TerminateOnNaN()])
    assert history.epoch == [1, 2]


def test_lambda_callback_calls_its_functions_and_declares_whether_it_changes_weights():
    calls = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_batch_end=lambda batch, logs: calls.append(("batch", batch, round(logs["loss"], 6) > 0)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
        on_train_end=lambda logs: calls.append("train_end"),
        changes_weights=False,
    )
    build().fit(X, Y, epochs=1, batch_size=20, verbose=0, callbacks=[cb])
    assert calls == [
        "train_begin",
        ("epoch_begin", 1),
        ("batch", 0, True),
        ("batch", 1, True),
        ("epoch_end", 1, ["accuracy", "loss"]),
        "train_end",
    ]
    assert not runtime._changes_weights_between_steps([cb])
    assert runtime._changes_weights_between_steps([LambdaCallback(on_batch_end=print)])
    assert not runtime._changes_weights_between_steps([LambdaCallback(on_epoch_end=print)])


def test_two_callbacks_of_a_class_get_their_own_keys(tmp_path):
    a, b = EarlyStopping(patience=5), EarlyStopping(monitor="loss", patience=5)
    build().fit(X, Y, epochs=2, verbose=0, callbacks=[Script(LOSSES), a, b, ModelCheckpoint(tmp_path / "m.h5")])
    with h5py.File(tmp_path / "m.h5", "r") as f:
        state = json.loads(f["callbacks/state"][()].decode())
    assert state["EarlyStopping"]["state"]["monitor"] == "val_loss"
    assert state["EarlyStopping#2"]["state"]["monitor"] == "loss"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: EarlyStopping(patience=-1), "patience"),
        (lambda: EarlyStopping(min_delta=-0.1), "min_delta"),
        (lambda: EarlyStopping(mode="up"), "mode"),
        (lambda: EarlyStopping(monitor=""), "monitor"),
        (lambda: ReduceLROnPlateau(factor=1.5), "factor"),
        (lambda: ReduceLROnPlateau(min_lr=float("nan")), "min_lr"),
        (lambda: CSVLogger(7), "path"),
        (lambda: LambdaCallback(on_epoch_end=3), "on_epoch_end"),
        (lambda: LearningRateScheduler(0.1), "schedule"),
        (lambda: ModelCheckpoint("c.h5", monitor="val_loss", mode="up"), "mode"),
    ],
)
def test_bad_callback_arguments(make, field):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field


def test_a_monitor_missing_from_the_logs_is_named():
    with pytest.raises(ConfigError, match="'val_loss', which the epoch logs do not hold"):
        build().fit(X, Y, verbose=0, callbacks=[EarlyStopping()])

"""ModelCheckpoint and fit(resume_from=...): periodic / best-only atomic saves, exact resume,
and a checkpoint that survives kill -9 in the middle of the next checkpoint write."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import regnet
from regnet import ConfigError, FileFormatError, Model, ModelCheckpoint, WeightsMismatchError
from tests.specs import MLP_DROPOUT as SPEC

WORKER = Path(__file__).with_name("io_worker.py")


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def make(optimizer=None):
    return Model.from_spec(SPEC, seed=3).compile(optimizer=optimizer or {"type": "Adam", "learning_rate": 0.02})


def assert_bit_identical(a, b):
    wa, wb = a.state_dict(), b.state_dict()
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert wa[k].tobytes() == wb[k].tobytes(), f"{k} differs"


def test_checkpoint_every_n_epochs_with_template(tmp_path):
    x, y = data()
    ckpt = ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.h5"), every=2)
    model = make()
    model.fit(x, y, epochs=5, batch_size=16, seed=1, verbose=0, callbacks=[ckpt])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-02.h5", "ckpt-04.h5"]
    assert ckpt.saved == [str(tmp_path / "ckpt-02.h5"), str(tmp_path / "ckpt-04.h5")]
    four = regnet.load(tmp_path / "ckpt-04.h5")
    assert four.epoch == 4 and len(four.history) == 4 and four.history == model.history[:4]


def test_save_best_only_follows_the_monitored_value(tmp_path):
    x, y = data()
    val = data(40, seed=7)
    ckpt = ModelCheckpoint(tmp_path / "best-{epoch}.h5", monitor="val_loss", save_best_only=True)
    model = make({"type": "SGD", "learning_rate": 0.05, "momentum": 0.9})  # val_loss falls, then rises
    model.fit(x, y, epochs=8, batch_size=8, seed=2, verbose=0, callbacks=[ckpt], validation_data=val)
    best, expected = np.inf, []
    for entry in model.history:
        if entry["val_loss"] < best:
            best = entry["val_loss"]
            expected.append(entry["epoch"])
    assert 1 < len(expected) < len(model.history)  # some epochs improve, some do not
    assert ckpt.saved == [str(tmp_path / f"best-{e}.h5") for e in expected]
    assert ckpt.best == best
    last = regnet.load(ckpt.saved[-1])
    assert last.history[-1]["val_loss"] == best


def test_save_best_only_mode_max_and_resumed_best(tmp_path):
    x, y = data()
    path = tmp_path / "best.h5"
    ckpt = ModelCheckpoint(path, monitor="accuracy", mode="max", save_best_only=True)
    model = make()
    model.fit(x, y, epochs=3, batch_size=16, seed=2, verbose=0, callbacks=[ckpt])
    top = max(h["accuracy"] for h in model.history)
    assert regnet.load(path).history[-1]["accuracy"] == top
    # a new fit on the same model starts from the best value in its history
    again = ModelCheckpoint(path, monitor="accuracy", mode="max", save_best_only=True)
    again.model = model
    again.on_train_begin()
    assert again.best == top


def test_checkpoint_argument_errors(tmp_path):
    with pytest.raises(ConfigError, match="every"):
        ModelCheckpoint(tmp_path / "c.h5", every=0)
    with pytest.raises(ConfigError, match="mode"):
        ModelCheckpoint(tmp_path / "c.h5", mode="up")
    with pytest.raises(ConfigError, match="monitor"):
        ModelCheckpoint(tmp_path / "c.h5", save_best_only=True)
    x, y = data()
    with pytest.raises(ConfigError, match="val_loss.*validation data"):
        make().fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c.h5", monitor="val_loss")])


@pytest.mark.parametrize(
    "optimizer",
    [{"type": "SGD", "learning_rate": 0.1, "momentum": 0.9}, {"type": "Adam", "learning_rate": 0.02}],
    ids=["sgd-momentum", "adam"],
)
def test_resume_from_checkpoint_is_bit_identical(optimizer, tmp_path):
    x, y = data()
    reference = make(optimizer)
    reference.fit(x, y, epochs=4, batch_size=16, seed=9, verbose=0)

    path = tmp_path / "ckpt.h5"
    interrupted = make(optimizer)
    interrupted.fit(x, y, epochs=2, batch_size=16, seed=9, verbose=0, callbacks=[ModelCheckpoint(path)])
    # the same call as the uninterrupted run, on a new process' fresh model
    fresh = make(optimizer)
    history = fresh.fit(
        x, y, epochs=4, batch_size=16, seed=9, verbose=0, resume_from=path, callbacks=[ModelCheckpoint(path)]
    )
    assert history.epoch == [3, 4] and fresh.epoch == 4
    assert_bit_identical(fresh, reference)
    assert fresh.history == reference.history
    assert regnet.load(path).epoch == 4


def test_resume_from_compiles_an_uncompiled_model(tmp_path):
    x, y = data()
    reference = make()
    reference.fit(x, y, epochs=3, batch_size=16, seed=9, verbose=0)
    model = make()
    model.fit(x, y, epochs=1, batch_size=16, seed=9, verbose=0)
    model.save(tmp_path / "c.h5")
    bare = Model.from_spec(SPEC, seed=100)
    bare.fit(x, y, epochs=3, batch_size=16, verbose=0, resume_from=tmp_path / "c.h5")
    assert bare.training_config() == reference.training_config()
    assert_bit_identical(bare, reference)


def test_resume_from_reached_epochs_trains_nothing(tmp_path):
    x, y = data()
    model = make()
    model.fit(x, y, epochs=2, batch_size=16, seed=9, verbose=0)
    model.save(tmp_path / "c.h5")
    other = make()
    assert other.fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "c.h5").epoch == []
    assert_bit_identical(other, model)


def test_resume_from_incompatible_checkpoint_leaves_model_untouched(tmp_path):
    x, y = data()
    make().save(tmp_path / "c.h5")
    wider = dict(SPEC, layers=[dict(SPEC["layers"][0], units=13), *SPEC["layers"][1:]])
    model = Model.from_spec(wider, seed=0).compile()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = model.rng.bit_generator.state
    with pytest.raises(WeightsMismatchError, match=r"weights/h/kernel.*\[6, 12\].*\[6, 13\]"):
        model.fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "c.h5")
    assert model.epoch == 0 and model.rng.bit_generator.state == state
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(FileFormatError, match="does not exist"):
        model.fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "missing.h5")


def test_resume_into_compiled_model_with_other_optimizer_is_refused(tmp_path):
    x, y = data()
    model = make({"type": "Adam"})
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "c.h5")
    sgd = make({"type": "SGD", "momentum": 0.9})
    with pytest.raises(WeightsMismatchError, match="optimizer state does not fit SGD"):
        sgd.fit(x, y, epochs=2, verbose=0, resume_from=tmp_path / "c.h5")
    assert sgd.epoch == 0


def _run_until_paused(args, timeout=60):
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(timeout, proc.kill)  # a worker that never pauses fails the test
    watchdog.start()
    try:
        line = proc.stdout.readline()
        assert line.strip() == "PAUSED", f"worker said {line!r}; stderr: {proc.stderr.read()}"
    finally:
        watchdog.cancel()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return proc


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.h5"
    _run_until_paused(["fit", path, 3])
    strays = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(strays) == 1  # the half-written epoch-3 checkpoint, never renamed
    model = regnet.load(path)
    assert model.epoch == 2 and len(model.history) == 2
    # and it resumes: the same training run from the surviving checkpoint equals an uninterrupted one
    sys.path.insert(0, str(WORKER.parent))
    try:
        import io_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    x, y = io_worker.small_data()
    reference = Model.from_spec(io_worker.SMALL, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})
    reference.fit(x, y, epochs=4, batch_size=16, seed=4, verbose=0)
    fresh = Model.from_spec(io_worker.SMALL, seed=1).compile(optimizer={"type": "SGD", "momentum": 0.9})
    fresh.fit(x, y, epochs=4, batch_size=16, seed=4, verbose=0, resume_from=path)
    assert_bit_identical(fresh, reference)


def test_load_does_not_read_callback_snapshots_that_only_resuming_uses(tmp_path, monkeypatch):
    import h5py

    from regnet import io
    from regnet.training.callbacks import EarlyStopping

    x, y = data()
    model = make()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping(monitor="loss", restore_best_weights=True)])
    path = tmp_path / "cb.h5"
    model.save(path)
    with h5py.File(path, "r") as f:
        snapshots = []
        f["callbacks/weights"].visititems(
            lambda name, obj: snapshots.append(name) if isinstance(obj, h5py.Dataset) else None
        )
    assert snapshots, "the checkpoint should hold a weight snapshot"
    calls = []
    original = io.ModelFile.callback_weights
    monkeypatch.setattr(
        io.ModelFile, "callback_weights", lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1]
    )
    regnet.load(path)
    assert calls == []
    with h5py.File(path, "a") as f:
        del f["callbacks/weights/" + snapshots[0]]  # a damaged snapshot
    loaded = regnet.load(path)  # compile=True: weights, optimizer and history load as before
    assert loaded.optimizer is not None
    assert_bit_identical(loaded, regnet.load(path, compile=False))
    assert_bit_identical(loaded, model)
    assert_bit_identical(regnet.checkpoint.restore(Model.from_spec(SPEC, seed=0), path), model)
    with pytest.raises(WeightsMismatchError, match="callbacks' weight snapshots"):
        make().fit(x, y, epochs=3, verbose=0, resume_from=path, callbacks=[EarlyStopping(monitor="loss")])

"""Data that is not one array in memory: generators, batch datasets, numpy.memmap and h5py datasets
(read in shuffled chunks), and a 2 GB memmap trained on in bounded memory."""

import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from regnet import Callback, ConfigError, DataError, Model, TrainingDivergedError
from regnet.training import data
from regnet.training import loop as runtime
from regnet.training.data import Dataset

SPEC = {
    "input_shape": [4],
    "layers": [
        {"type": "Dense", "name": "hidden", "units": 8, "activation": "relu"},
        {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
    ],
}
N = 100
X = np.random.default_rng(0).standard_normal((N, 4)).astype(np.float32)
X[:, 3] = np.arange(N)  # a sample's index, to see which samples a batch holds
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def build():
    return Model.from_spec(SPEC, seed=0).compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.01})


def weights_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    for k, v in weights_of(a).items():
        assert v.tobytes() == weights_of(b)[k].tobytes(), k


class Seen(Callback):
    """The sample indices of every batch trained on."""

    def __init__(self, monkeypatch):
        self.batches = []
        step = runtime.train_step

        def recording(model, xb, yb, guard=None, **kw):
            self.batches.append(xb[:, 3].astype(int).tolist())
            return step(model, xb, yb, guard, **kw)

        monkeypatch.setattr(runtime, "train_step", recording)


def batches(x, y, size=16):
    for s in range(0, len(x), size):
        yield x[s : s + size], y[s : s + size]


class Batches(Dataset):
    def __init__(self, x, y, size=16):
        self.x, self.y, self.size, self.epochs_ended = x, y, size, 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        s = slice(i * self.size, (i + 1) * self.size)
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_a_generator_trains_like_the_arrays_in_order():
    a, b = build(), build()
    a.fit(X, Y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    b.fit(batches(X, Y), steps_per_epoch=7, epochs=1, verbose=0)
    assert_same_weights(a, b)
    c = build()  # a list of batches is sized and can be iterated again: no steps needed
    c.fit(list(batches(X, Y)), epochs=1, shuffle=False, verbose=0)
    assert_same_weights(a, c)


def test_a_generator_goes_on_across_epochs_and_a_one_shot_one_that_runs_out_stops_training():
    def endless():
        while True:
            yield from batches(X, Y)

    a, b = build(), build()
    a.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    b.fit(endless(), steps_per_epoch=7, epochs=2, verbose=0)
    assert_same_weights(a, b)
    c = build()
    with pytest.warns(RuntimeWarning, match="ran out after batch 2 of this epoch"):
        history = c.fit(batches(X, Y), steps_per_epoch=5, epochs=3, verbose=0)
    assert history.epoch == [1, 2] and c.optimizer.iterations == 7


def test_a_batch_dataset_is_shuffled_by_batch_and_told_when_an_epoch_ends(monkeypatch):
    ds = Batches(X, Y)
    seen = Seen(monkeypatch)
    model = build()
    model.fit(ds, epochs=2, verbose=0, callbacks=[seen])
    assert ds.epochs_ended == 2 and len(seen.batches) == 14
    as_list = model.fit(X, Y, verbose=0, validation_data=list(batches(X, Y, 50)))  # a list of two batches
    assert as_list.history["val_loss"][0] == pytest.approx(model.evaluate(X, Y)["loss"], rel=1e-5)
    first = [b[0] for b in seen.batches[:7]]
    assert sorted(first) == list(range(0, 100, 16)) and first != sorted(first)
    assert model.evaluate(ds) == pytest.approx(model.evaluate(X, Y))
    np.testing.assert_array_equal(model.predict(Batches(X, Y)), model.predict(X))


def memmap(tmp_path, array, name="x.bin"):
    path = tmp_path / name
    array.tofile(path)
    return np.memmap(path, dtype=array.dtype, mode="r", shape=array.shape)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 16 * 16 * 2)  # two batches of 16 samples of 16 bytes


def test_a_memmap_is_read_in_chunks_and_trains_like_the_array(tmp_path, small_chunks, monkeypatch):
    xm = memmap(tmp_path, X)
    a, b = build(), build()
    a.fit(X, Y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    b.fit(xm, Y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert_same_weights(a, b)
    seen = Seen(monkeypatch)
    build().fit(xm, Y, epochs=2, batch_size=16, verbose=0, callbacks=[seen], seed=1)
    epochs = [sum(seen.batches[:7], []), sum(seen.batches[7:], [])]
    for e in epochs:
        assert sorted(e) == list(range(N))  # every sample once per epoch
        assert e != sorted(e)  # shuffled
    assert epochs[0] != epochs[1]
    chunks = [{s // 32 for s in b} for b in seen.batches]
    assert all(len(c) == 1 for c in chunks)  # a batch comes from one chunk of 32 consecutive samples


def test_an_h5py_dataset_and_a_memmap_on_disk_evaluate_and_predict_like_the_array(tmp_path, small_chunks):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = X, Y
    model = build()
    model.fit(X, Y, epochs=2, verbose=0)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        assert model.evaluate(f["x"], f["y"], batch_size=16) == pytest.approx(model.evaluate(X, Y))
        np.testing.assert_array_equal(model.predict(f["x"], batch_size=16), model.predict(X))
        other = build()
        other.fit(f["x"], f["y"], epochs=1, batch_size=16, shuffle=False, verbose=0)
    reference = build()
    reference.fit(X, Y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert_same_weights(other, reference)
    xm = memmap(tmp_path, X)
    np.testing.assert_array_equal(model.predict(xm, batch_size=16), model.predict(X))


def test_validation_split_and_balanced_class_weights_on_a_memmap(tmp_path, small_chunks):
    xm = memmap(tmp_path, X)
    a, b = build(), build()
    ha = a.fit(xm, Y, epochs=2, batch_size=16, validation_split=0.2, class_weight="balanced", shuffle=False, verbose=0)
    hb = b.fit(X, Y, epochs=2, batch_size=16, validation_split=0.2, class_weight="balanced", shuffle=False, verbose=0)
    assert ha.history["val_loss"] == pytest.approx(hb.history["val_loss"], rel=1e-6)
    assert_same_weights(a, b)


def test_steps_per_epoch_applies_to_the_training_part_of_a_validation_split_on_a_memmap(tmp_path, small_chunks):
    model = build()
    model.fit(memmap(tmp_path, X), Y, epochs=2, batch_size=16, steps_per_epoch=3, validation_split=0.2, verbose=0)
    assert model.optimizer.iterations == 6  # 3 of the 5 batches of the 80 training samples, per epoch


def test_an_array_on_disk_without_targets_is_refused_naming_y(tmp_path):
    xm = memmap(tmp_path, X)
    model = build()
    for call in (lambda: model.fit(xm, verbose=0), lambda: model.evaluate(xm), lambda: model.fit(X, verbose=0)):
        with pytest.raises(DataError, match="^y is missing: x is an array"):
            call()
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = X
    with h5py.File(tmp_path / "d.h5", "r") as f:
        with pytest.raises(DataError, match="^y is missing: x is an array on disk"):
            model.evaluate(f["x"])
        with pytest.raises(DataError, match="^validation y is missing: validation x is an array on disk"):
            model.fit(X, Y, validation_data=(f["x"], None), verbose=0)
        assert model.predict(f["x"]).shape == (N, 3)  # predict needs no targets
    assert model.epoch == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc/self/fd")
def test_validation_split_on_a_memmap_leaves_no_file_open(tmp_path, small_chunks):
    xm, ym = memmap(tmp_path, X), memmap(tmp_path, Y, "y.bin")
    model = build()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        model.fit(xm, ym, epochs=1, batch_size=16, validation_split=0.2, verbose=0)
    assert len(os.listdir("/proc/self/fd")) == before


def test_bad_values_on_disk_are_named_by_index_and_leave_the_last_good_step(tmp_path, small_chunks):
    bad = X.copy()
    bad[70, 1] = np.nan
    model = build()
    steps = []
    with pytest.raises(DataError, match="index 70") as info:
        model.fit(memmap(tmp_path, bad), Y, epochs=1, batch_size=16, shuffle=False, verbose=0, callbacks=[Seen2(steps)])
    assert "epoch 1" in str(info.value) and model.epoch == 0
    assert len(steps) == 4 and all(v.tobytes() == steps[-1][k].tobytes() for k, v in model.state_dict().items())
    with pytest.raises(DataError, match="labels must be in"):  # targets are all checked before training
        build().fit(memmap(tmp_path, X, "x2.bin"), np.where(Y == 0, 7, Y), epochs=1, verbose=0)
    with pytest.raises(DataError, match=r"has shape \(100, 2, 2\), the model expects \(N, 4\)"):
        build().fit(memmap(tmp_path, X.reshape(N, 2, 2), "x3.bin"), Y, verbose=0)


class Seen2(Callback):
    changes_weights = False

    def __init__(self, out):
        self.out = out

    def on_batch_end(self, batch, logs=None):
        self.out.append({k: v.copy() for k, v in self.model.state_dict().items()})


def test_a_batch_of_the_wrong_shape_mid_epoch_is_refused_before_its_step():
    def broken():
        yield X[:16], Y[:16]
        yield X[16:32], Y[16:32]
        yield X[32:48, :3], Y[32:48]

    model = build()
    after = []
    with pytest.raises(DataError) as info:
        model.fit(broken(), steps_per_epoch=3, verbose=0, callbacks=[Seen2(after)])
    message = str(info.value)
    assert "epoch 1" in message and "batch 3" in message and "has shape (16, 3), the model expects (N, 4)" in message
    assert len(after) == 2 and model.optimizer.iterations == 2
    assert all(v.tobytes() == after[-1][k].tobytes() for k, v in model.state_dict().items())


def test_a_loader_that_refills_one_buffer_is_replayed_from_the_batches_it_gave():
    """The divergence guard keeps the batches since its last checkpoint to replay them; a loader
    that yields the same buffers every time (refilled) must not change them under it."""
    bx, by, bw = np.empty((8, 4), np.float32), np.empty(8, np.int64), np.empty(8, np.float32)

    def loader():
        for b in range(10):
            bx[:], by[:], bw[:] = X[b * 8 : (b + 1) * 8], Y[b * 8 : (b + 1) * 8], 1.0 + 0.1 * b
            if b == 6:
                bx[:], bw[0] = 3e38, 3e38  # batch 7 diverges (its gradients overflow)
            yield bx, by, bw

    model = build()
    after = []
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(loader(), steps_per_epoch=10, shuffle=False, verbose=0, callbacks=[Seen2(after)])
    assert info.value.batch == 7 and len(after) == 6
    assert all(v.tobytes() == after[-1][k].tobytes() for k, v in model.state_dict().items())


class Bare(Dataset):
    """Batches without targets."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return X[:4]


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda m: m.fit(iter(batches(X, Y)), verbose=0), ConfigError, "give steps_per_epoch"),
        (lambda m: m.fit(batches(X, Y), Y, steps_per_epoch=2, verbose=0), DataError, "y must be None"),
        (lambda m: m.fit(Batches(X, Y), sample_weight=np.ones(N), verbose=0), DataError, "inside each batch"),
        (lambda m: m.fit(Batches(X, Y), validation_split=0.2, verbose=0), ConfigError, "validation_split needs arrays"),
        (lambda m: m.fit(Batches(X, Y), class_weight="balanced", verbose=0), ConfigError, "give a dict"),
        (lambda m: m.fit([(X[:4],)], verbose=0), DataError, "has no targets"),
        (lambda m: m.fit(Bare(), verbose=0), DataError, "expected a batch (x, y)"),
        (lambda m: m.fit({"x": X}, verbose=0), DataError, "x must be a NumPy array"),
        (lambda m: m.fit(Batches(X, Y), steps_per_epoch=9, verbose=0), ConfigError, "more than the dataset's 7"),
    ],
)
def test_bad_streaming_arguments(call, error, fragment):
    model = build()
    before = weights_of(model)
    with pytest.raises(error) as info:
        call(model)
    assert fragment in str(info.value)
    assert model.optimizer.iterations == 0 and all(
        v.tobytes() == before[k].tobytes() for k, v in weights_of(model).items()
    )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.fit(X, Y, verbose=0, validation_data=iter(batches(X, Y))), "validation_steps"),
        (lambda m: m.fit(X, Y, verbose=0, validation_data=Batches(X, Y), validation_steps=99), "validation_steps"),
        (lambda m: m.fit(X, Y, verbose=0, validation_data=(X, Y), validation_steps=99), "validation_steps"),
        (lambda m: m.evaluate(iter(batches(X, Y)))["loss"], "steps"),
        (lambda m: m.evaluate(Batches(X, Y), steps=99)["loss"], "steps"),
        (lambda m: m.evaluate(X, Y, steps=99)["loss"], "steps"),
        (lambda m: m.predict(iter(batches(X, Y))), "steps"),
        (lambda m: m.fit(Batches(X, Y), steps_per_epoch=99, verbose=0), "steps_per_epoch"),
    ],
)
def test_errors_about_the_number_of_batches_name_the_argument_given(call, field):
    with pytest.raises(ConfigError) as info:
        call(build())
    assert info.value.field == field and "steps_per_epoch" not in str(info.value).replace(field, "")


PEAK_SCRIPT = """
import sys, time
import numpy as np
import regnet

def peak_mib():  # VmHWM: the peak resident memory of this process since it started (exec)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024

path, n = sys.argv[1], int(sys.argv[2])
x = np.memmap(path, dtype=np.float32, mode="r", shape=(n, 1, 64, 64))
y = np.arange(n) % 2
model = regnet.Model.from_spec({"input_shape": [1, 64, 64], "layers": [
    {"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]}, seed=0)
model.compile(optimizer={"type": "sgd", "learning_rate": 1e-4}, metrics=["accuracy"])
before = peak_mib()
t0 = time.perf_counter()
history = model.fit(x, y, epochs=1, batch_size=256, verbose=0)
seconds = time.perf_counter() - t0
print(peak_mib(), before, model.optimizer.iterations, history.history["loss"][0], seconds)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak memory from /proc/self/status")
def test_training_on_a_2gb_memmap_keeps_peak_memory_under_300mb(tmp_path):
    """2 GiB of float32 samples (131 072 images of 64x64) on disk, one epoch of training in a fresh
    process: its peak resident memory (VmHWM, imports included) stays under 300 MB. (ru_maxrss
    would not do: Linux carries the parent's peak over into a child across fork and exec.) On the
    NumPy path: the compiled accelerator's numba and LLVM take about 130 MB of their own, the same
    whatever the data (docs/performance.md)."""
    n = 2 * 1024**3 // (64 * 64 * 4)
    if shutil.disk_usage(tmp_path).free < 3 * 1024**3:
        pytest.skip("needs 3 GB of free disk space for a 2 GB file")
    path = tmp_path / "big.bin"
    block = np.random.default_rng(0).random((8192, 64 * 64), dtype=np.float32)
    with open(path, "wb") as fh:
        for i in range(n // 8192):  # written in 32 MiB pieces: this process stays small too
            fh.write((block + np.float32(i)).tobytes())
    assert os.path.getsize(path) == 2 * 1024**3
    try:
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PEAK_SCRIPT), str(path), str(n)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "REGNET_ACCEL": "0"},
        )
    finally:
        os.remove(path)
    assert run.returncode == 0, run.stderr
    peak, before, steps, loss, seconds = run.stdout.split()
    assert int(steps) == n // 256 and np.isfinite(float(loss))
    assert float(peak) < 300 / 1.048576, f"peak resident memory {peak} MiB ({before} MiB before fit)"

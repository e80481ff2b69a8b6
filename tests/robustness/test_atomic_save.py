"""Atomic saves: a failed or killed save never replaces the previous file with a partial one."""

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import regnet
from regnet import FileFormatError, Model, io
from tests.specs import MLP as SPEC

WORKER = Path(__file__).parents[1] / "io_worker.py"
sys.path.insert(0, str(WORKER.parent))
import io_worker  # noqa: E402

sys.path.remove(str(WORKER.parent))


@pytest.fixture
def existing(tmp_path):
    """A saved model and its bytes, about to be overwritten by another model's save."""
    path = tmp_path / "model.h5"
    Model.from_spec(SPEC, seed=0).save(path)
    return path, path.read_bytes()


def strays(directory):
    return [p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp")]


def oserror(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def fail_on_second_tensor(original):
    calls = {"n": 0}

    def write(group, key, value):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(group, key, value)

    return write


def fail_creating_temp(original):
    def open_(path, flags, *args, **kwargs):
        if flags & os.O_EXCL:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return original(path, flags, *args, **kwargs)

    return open_


FAILURES = {
    "disk full while writing a tensor": (
        io,
        "_write_array",
        lambda: fail_on_second_tensor(io._write_array),
        "No space left on device",
    ),
    "disk full at fsync": (os, "fsync", lambda: oserror(errno.ENOSPC), "No space left on device"),
    "permission denied at rename": (os, "replace", lambda: oserror(errno.EACCES), "Permission denied"),
    "permission denied creating the temporary file": (
        os,
        "open",
        lambda: fail_creating_temp(os.open),
        "Permission denied",
    ),
    "h5py cannot create the file": (io.h5py, "File", lambda: oserror(errno.EROFS), "Read-only file system"),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_failed_save_keeps_previous_file_and_cleans_up(existing, failure, monkeypatch):
    path, before = existing
    target, name, make, reason = FAILURES[failure]
    monkeypatch.setattr(target, name, make())
    other = Model.from_spec(SPEC, seed=5)
    with pytest.raises(FileFormatError) as info:
        other.save(path)
    msg = str(info.value)
    assert str(path) in msg and reason in msg and "previous file is left unchanged" in msg
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert strays(path.parent) == []
    regnet.load(path)


def test_failed_weights_save_keeps_previous_file(existing, monkeypatch):
    path, before = existing
    monkeypatch.setattr(os, "fsync", oserror(errno.EIO))
    with pytest.raises(FileFormatError, match="Input/output error"):
        Model.from_spec(SPEC, seed=5).save_weights(path)
    assert path.read_bytes() == before and strays(path.parent) == []


def test_interrupt_during_save_removes_temp_file(existing, monkeypatch):
    path, before = existing

    def interrupt(group, key, value):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_write_array", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Model.from_spec(SPEC, seed=5).save(path)
    assert path.read_bytes() == before and strays(path.parent) == []


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", oserror(errno.ENOSPC))
    with pytest.raises(FileFormatError, match="no file was written"):
        Model.from_spec(SPEC).save(tmp_path / "new.h5")
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileFormatError, match="cannot save to .*No such file or directory"):
        Model.from_spec(SPEC).save(tmp_path / "no" / "such" / "dir.h5")


def test_save_over_a_directory(tmp_path):
    (tmp_path / "taken.h5").mkdir()
    with pytest.raises(FileFormatError, match="cannot save to"):
        Model.from_spec(SPEC).save(tmp_path / "taken.h5")
    assert strays(tmp_path) == []


def test_atomic_write_keeps_file_mode_default(tmp_path):
    Model.from_spec(SPEC).save(tmp_path / "m.h5")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.h5").stat().st_mode & 0o777 == 0o666 & ~umask


# -- kill -9 --------------------------------------------------------------------------------------
def spawn(*args):
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(proc, word, timeout=60):
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        line = proc.stdout.readline()
    finally:
        watchdog.cancel()
    if line.strip() != word:
        proc.kill()
        proc.wait()
        pytest.fail(f"worker said {line!r} instead of {word}; stderr: {proc.stderr.read()}")


def kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_kill_in_the_middle_of_saving_over_an_existing_file(tmp_path):
    path = tmp_path / "model.h5"
    old = io_worker.large_model(seed=1)
    old.save(path)
    before = path.read_bytes()
    proc = spawn("save", path, "pause")
    wait_for(proc, "PAUSED")  # three tensors of the new model are written to the temporary file
    kill(proc)
    assert path.read_bytes() == before
    assert len(strays(tmp_path)) == 1  # the half file, under a temporary name
    again = regnet.load(path)
    for k, v in old.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_at_a_random_moment_of_repeated_saves(tmp_path, seed):
    """Whenever the kill lands, the file is either the old model or a complete new one."""
    path = tmp_path / "model.h5"
    old, new = io_worker.large_model(seed=1), io_worker.large_model(seed=2)
    old.save(path)
    proc = spawn("save", path, "loop")
    wait_for(proc, "READY")
    time.sleep(random.Random(seed).uniform(0.0, 0.8))
    kill(proc)
    assert len(strays(tmp_path)) <= 1
    loaded = regnet.load(path).state_dict()
    matches = [all(np.array_equal(loaded[k], v) for k, v in m.state_dict().items()) for m in (old, new)]
    assert any(matches), "the file holds neither the old nor a complete new model"

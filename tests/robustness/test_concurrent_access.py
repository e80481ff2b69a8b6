"""Readers while a save runs: a load never fails because a save holds a lock, and never sees a
partial file (tools/stress_save_load.py is the stress run; here it runs for a few seconds)."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import regnet
from regnet import Model, atomic
from tests.specs import MLP as SPEC

fcntl = pytest.importorskip("fcntl")
ROOT = Path(__file__).parents[2]


def test_the_renamed_file_is_not_locked(tmp_path, monkeypatch):
    """At the moment the new file takes the target's name no save holds a lock on it: a reader's
    HDF5 lock (or anyone's) must succeed."""
    seen = []
    replace = os.replace

    def check(src, dst):
        fd = os.open(src, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # raises BlockingIOError while a save holds it
            seen.append(src)
        finally:
            os.close(fd)
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", check)
    Model.from_spec(SPEC, seed=1).save(tmp_path / "m.h5")
    assert len(seen) == 1


def test_load_while_another_process_holds_a_lock_on_the_file(tmp_path):
    """A reader takes no HDF5 file lock: a lock held on the file (by a save of an older regnet, a
    backup tool, ...) does not make a load fail."""
    path = tmp_path / "m.h5"
    Model.from_spec(SPEC, seed=1).save(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        regnet.load(path)
        regnet.io.read_metadata(path)
    finally:
        os.close(fd)


def test_a_clean_up_waits_for_a_rename_in_progress(tmp_path, monkeypatch):
    """Between releasing its lock and the rename, a save's temporary file is unlocked; another
    save's clean-up must not remove it then (both hold the directory's lock)."""
    path = tmp_path / "m.h5"
    replace = os.replace
    outcome = {}

    def slow_replace(src, dst):
        key = atomic.temp_key(os.path.basename(dst))
        cleaner = threading.Thread(
            target=lambda: outcome.setdefault("removed", atomic.remove_stale(str(tmp_path), key))
        )
        cleaner.start()
        cleaner.join(0.3)
        outcome["blocked"] = cleaner.is_alive()
        replace(src, dst)
        cleaner.join(5)

    monkeypatch.setattr(atomic.os, "replace", slow_replace)
    Model.from_spec(SPEC, seed=1).save(path)
    assert outcome == {"blocked": True, "removed": []}
    regnet.load(path)


def test_stress_readers_and_writers_on_one_path(tmp_path):
    """Two writers save over one path while two readers load it: no save or load fails, every
    load is one writer's complete model and no temporary file is left."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "stress_save_load.py"), "--seconds", "2", "--writers", "2"]
        + ["--readers", "2", "--path", str(tmp_path / "model.h5")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    summary = json.loads(run.stdout)
    assert run.returncode == 0, summary
    assert summary["saves"] > 0 and summary["loads"] > 0
    assert summary["load_failures"] == summary["save_failures"] == summary["foreign_loads"] == 0

"""What a save may touch: only its own target, a regular file, replaced atomically.

Special files (devices, FIFOs, sockets, directories) are refused and left as they were; symbolic
links are followed and the file they name is replaced, the link staying a link; hard-linked files
are refused; permissions and ownership survive a re-save; temporary names fit any valid target
name, are recognisable, cleaned up by the next save and refused by load; paths with a NUL byte or
that cannot be encoded raise regnet errors. A hypothesis property checks the invariants over
generated directory layouts (counted with ``fuzz_cases``).
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regnet
from regnet import ConfigError, DataError, FileFormatError, Model, RegnetError, atomic, cli, io
from regnet.datasets import idx, read_inputs, sources

WORKER = Path(__file__).parents[1] / "io_worker.py"
sys.path.insert(0, str(WORKER.parent))
import io_worker  # noqa: E402

sys.path.remove(str(WORKER.parent))

SPEC = {"input_shape": [3], "layers": [{"type": "Dense", "name": "out", "units": 2}]}
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def model(seed=0):
    return Model.from_spec(SPEC, seed=seed)


def same_weights(path, m):
    loaded = regnet.load(path).state_dict()
    return all(np.array_equal(loaded[k], v) for k, v in m.state_dict().items())


@pytest.fixture
def short_dir():
    """A directory with a short path (a socket's path must fit in about 100 bytes)."""
    d = tempfile.mkdtemp(prefix="rgs", dir="/tmp" if os.path.isdir("/tmp") else None)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def snapshot(directory):
    """Everything observable about a directory's entries (lstat, link targets, file contents)."""
    out = {}
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        info = os.lstat(path)
        kind = stat.S_IFMT(info.st_mode)
        extra = None
        if stat.S_ISLNK(info.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as fh:
                extra = hashlib.sha256(fh.read()).hexdigest()
        elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
            extra = info.st_rdev
        out[entry] = (kind, stat.S_IMODE(info.st_mode), info.st_ino, info.st_nlink, extra)
    return out


def strays(directory):
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def make_char_device(path):
    """A character device node like /dev/null (needs CAP_MKNOD); ``None`` when not allowed."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (OSError, AttributeError):
        return None
    return path


def make_block_device(path):
    try:
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    except (OSError, AttributeError):
        return None
    return path


def make_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    return path


SPECIAL = {
    "character device": make_char_device,
    "block device": make_block_device,
    "FIFO": lambda p: os.mkfifo(p) or p,
    "socket": make_socket,
    "directory": lambda p: os.mkdir(p) or p,
}


# -- special files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("via_link", [False, True], ids=["direct", "through a symlink"])
@pytest.mark.parametrize("kind", SPECIAL)
def test_special_files_are_refused_and_left_untouched(short_dir, kind, via_link, time_limit):
    target = short_dir / "target"
    if SPECIAL[kind](target) is None:
        pytest.skip(f"cannot create a {kind} here")
    path = target
    if via_link:
        path = short_dir / "link"
        os.symlink("target", path)
    before = snapshot(short_dir)
    for save in (lambda: model().save(path), lambda: model().save_weights(path)):
        with time_limit(20), pytest.raises(FileFormatError, match="cannot save to") as info:  # a FIFO must not block
            save()
        assert kind.split()[0] in str(info.value) or "not a regular file" in str(info.value)
        assert snapshot(short_dir) == before
        assert strays(short_dir) == []


def test_dev_null_stays_a_character_device(tmp_path):
    """Where device nodes cannot be made, the real /dev/null is the device under test."""
    if make_char_device(tmp_path / "probe") is not None:
        pytest.skip("covered with a device node of our own")
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    with pytest.raises(FileFormatError):
        model().save("/dev/null")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


# -- links ------------------------------------------------------------------------------------------
def test_symlink_chain_replaces_the_final_file_and_stays_a_link(short_dir):
    real = short_dir / "store" / "model.h5"
    real.parent.mkdir()
    model(0).save(real)
    os.symlink(os.path.join("store", "model.h5"), short_dir / "middle")  # relative
    os.symlink(short_dir / "middle", short_dir / "front")  # absolute, to a link
    new = model(7)
    new.save(short_dir / "front")
    assert os.readlink(short_dir / "front") == str(short_dir / "middle")
    assert os.readlink(short_dir / "middle") == os.path.join("store", "model.h5")
    assert same_weights(real, new) and same_weights(short_dir / "front", new)
    assert strays(short_dir) == [] and strays(real.parent) == []


def linked_run(short_dir):
    """``work/run`` is a link to ``data/runs/run1``, so ``work/run/..`` is ``data/runs``, not ``work``;
    ``work/shared`` exists too, to catch a save that simplifies ``..`` textually."""
    (short_dir / "data" / "runs" / "run1").mkdir(parents=True)
    (short_dir / "data" / "runs" / "shared").mkdir()
    (short_dir / "work" / "shared").mkdir(parents=True)
    os.symlink(short_dir / "data" / "runs" / "run1", short_dir / "work" / "run")
    return short_dir / "work", short_dir / "data" / "runs" / "shared"


def spy_temp_directories(monkeypatch):
    used = []
    original = atomic._create_temp

    def spy(given, directory, *args):
        used.append(os.path.realpath(directory))
        return original(given, directory, *args)

    monkeypatch.setattr(atomic, "_create_temp", spy)
    return used


def test_dot_dot_after_a_symlinked_directory_is_resolved_like_the_kernel(short_dir, monkeypatch):
    work, shared = linked_run(short_dir)
    monkeypatch.chdir(work)
    used = spy_temp_directories(monkeypatch)
    m = model(5)
    m.save("run/../shared/m.h5")
    assert used == [str(shared)]
    assert same_weights(shared / "m.h5", m)
    assert not (work / "shared" / "m.h5").exists()
    assert io.check_writable("run/../shared/m.h5") == "run/../shared/m.h5"
    assert strays(shared) == [] and strays(work / "shared") == []


def test_relative_link_inside_a_symlinked_directory(short_dir, monkeypatch):
    work, shared = linked_run(short_dir)
    monkeypatch.chdir(work)
    os.symlink(os.path.join("..", "shared", "model.h5"), "run/model.h5")
    used = spy_temp_directories(monkeypatch)
    first, second = model(1), model(2)
    first.save("run/model.h5")  # creates the file the dangling link names
    second.save("run/model.h5")  # and replaces it
    assert used == [str(shared), str(shared)]
    assert os.path.islink(short_dir / "data" / "runs" / "run1" / "model.h5")
    assert same_weights(shared / "model.h5", second)
    assert not (work / "shared" / "model.h5").exists()
    assert strays(shared) == [] and strays(work / "shared") == []


def test_check_writable_probes_the_real_directory(short_dir, monkeypatch):
    work, shared = linked_run(short_dir)
    monkeypatch.chdir(work)
    os.rmdir(shared)  # "run/../shared" does not exist, though "work/shared" does
    with pytest.raises(FileFormatError, match="does not exist"):
        io.check_writable("run/../shared/m.h5")
    with pytest.raises(FileFormatError):
        model().save("run/../shared/m.h5")
    assert list((work / "shared").iterdir()) == []


def test_dangling_symlink_creates_the_file_it_names(short_dir):
    os.symlink("made.h5", short_dir / "link.h5")
    m = model(3)
    m.save(short_dir / "link.h5")
    assert os.path.islink(short_dir / "link.h5") and (short_dir / "made.h5").is_file()
    assert same_weights(short_dir / "made.h5", m)


def test_symlink_loop_is_refused(short_dir):
    os.symlink("b", short_dir / "a")
    os.symlink("a", short_dir / "b")
    before = snapshot(short_dir)
    with pytest.raises(FileFormatError, match="levels of symbolic links"):
        model().save(short_dir / "a")
    assert snapshot(short_dir) == before


@pytest.mark.skipif(not ROOT, reason="needs to create a link owned by another user")
def test_symlink_planted_by_another_user_in_a_sticky_directory_is_not_followed(short_dir):
    shared = short_dir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    victim = short_dir / "victim.h5"
    victim.write_bytes(b"someone else's file")
    os.symlink(victim, shared / "model.h5")
    os.lchown(shared / "model.h5", 4321, 4321)
    with pytest.raises(FileFormatError, match="owned by another user"):
        model().save(shared / "model.h5")
    assert victim.read_bytes() == b"someone else's file" and os.path.islink(shared / "model.h5")


def test_hard_linked_file_is_refused_and_both_names_keep_the_old_model(short_dir):
    first, second = short_dir / "a.h5", short_dir / "b.h5"
    model(0).save(first)
    os.link(first, second)
    before = snapshot(short_dir)
    with pytest.raises(FileFormatError, match="2 hard links"):
        model(1).save(second)
    assert snapshot(short_dir) == before
    assert os.path.samefile(first, second)


# -- permissions and owner -------------------------------------------------------------------------
def test_resave_keeps_a_private_mode(tmp_path):
    path = tmp_path / "private.h5"
    model(0).save(path)
    os.chmod(path, 0o600)
    model(1).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    model(2).save_weights(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_new_files_follow_the_umask(tmp_path, mask):
    with umask(mask):
        model().save(tmp_path / "new.h5")
    assert stat.S_IMODE((tmp_path / "new.h5").stat().st_mode) == 0o666 & ~mask


def test_modes_survive_a_resave(fuzz_cases, short_dir):
    path = short_dir / "m.h5"
    model(0).save(path)

    @settings(max_examples=60, deadline=None, database=None)
    @given(mode=st.integers(0, 0o777), mask=st.integers(0, 0o777))
    def keeps(mode, mask):
        fuzz_cases("modes")
        os.chmod(path, mode)
        with umask(mask):  # the umask applies to new files only
            model(1).save(path)
        assert stat.S_IMODE(path.stat().st_mode) == mode

    keeps()


@pytest.mark.skipif(not ROOT, reason="changing a file's owner needs root")
def test_resave_keeps_owner_and_group(tmp_path):
    path = tmp_path / "owned.h5"
    model(0).save(path)
    os.chown(path, 1234, 5678)
    os.chmod(path, 0o640)
    model(1).save(path)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 5678, 0o640)


# -- temporary names --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["m" * 247 + ".h5", "x" * 255, "é" * 126 + "abc", "model with spaces.h5", "-starts-with-dash.h5"],
    ids=["250 bytes", "255 bytes", "255 bytes of UTF-8", "spaces", "dash"],
)
def test_any_valid_file_name_can_be_saved(tmp_path, name):
    assert len(name.encode()) <= 255
    path = tmp_path / name
    m = model(4)
    m.save(path)
    m.save(path)  # and replaced
    assert same_weights(path, m) and strays(tmp_path) == []
    with atomic.atomic_write(path) as tmp:
        assert len(os.path.basename(tmp).encode()) == 37 and atomic.is_temporary(tmp)
        Path(tmp).write_bytes(b"not a model")
    assert path.read_bytes() == b"not a model"


def test_killed_save_leaves_a_recognisable_temp_that_the_next_save_removes(tmp_path):
    path = tmp_path / "model.h5"
    io_worker.large_model(seed=1).save(path)
    before = path.read_bytes()
    proc = io_worker_spawn("save", path, "pause")
    try:
        line = proc.stdout.readline().strip()
        assert line == "PAUSED", proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert path.read_bytes() == before
    [stale] = strays(tmp_path)
    assert atomic.TEMP_NAME.fullmatch(stale) and atomic.is_temporary(stale)
    assert stale.startswith(f".regnet.{atomic.temp_key('model.h5')}.")
    with pytest.raises(FileFormatError, match="temporary file of a save"):
        regnet.load(tmp_path / stale)
    with pytest.raises(FileFormatError, match="temporary file of a save"):
        model().load_weights(tmp_path / stale)
    m = io_worker.large_model(seed=2)
    m.save(path)
    assert strays(tmp_path) == [] and same_weights(path, m)


def io_worker_spawn(*args):
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cleanup_spares_running_saves_and_other_targets(tmp_path):
    key = atomic.temp_key("model.h5")
    stale = tmp_path / f".regnet.{key}.00000001.tmp"
    running = tmp_path / f".regnet.{key}.00000002.tmp"
    other = tmp_path / f".regnet.{atomic.temp_key('other.h5')}.00000003.tmp"
    lookalike = tmp_path / f".regnet.{key}.notatemp.tmp"
    for p in (stale, running, other, lookalike):
        p.write_bytes(b"half a model")
    fd = os.open(running, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a save in progress holds it
        model().save(tmp_path / "model.h5")
        assert not stale.exists()
        assert running.exists() and other.exists() and lookalike.exists()
    finally:
        os.close(fd)
    model().save(tmp_path / "model.h5")
    assert not running.exists() and other.exists()


def test_concurrent_saves_to_one_path_all_succeed_and_leave_one_complete_file(tmp_path):
    """A save's clean-up never removes the temporary file of a save still running."""
    path = tmp_path / "shared.h5"
    models = [model(seed) for seed in range(4)]
    errors = []

    def save_repeatedly(m):
        try:
            for _ in range(5):
                m.save(path)
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=save_repeatedly, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert strays(tmp_path) == []
    assert any(same_weights(path, m) for m in models)


@pytest.mark.parametrize("setting", ["TRUE", "1", "BEST_EFFORT", "FALSE"])
def test_saves_work_whatever_hdf5_file_locking_says(tmp_path, monkeypatch, setting):
    """HDF5_USE_FILE_LOCKING overrides h5py's locking=False; the save must still open its file."""
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", setting)
    m = model(2)
    m.save(tmp_path / "m.h5")
    m.save(tmp_path / "m.h5")
    m.save_weights(tmp_path / "w.h5")
    assert same_weights(tmp_path / "m.h5", m) and strays(tmp_path) == []


def test_cli_predict_output_uses_the_same_rules(short_dir, capsys):
    m = model(0)
    m.save(short_dir / "m.h5")
    np.save(short_dir / "x.npy", np.ones((2, 3), np.float32))
    os.mkfifo(short_dir / "out.npy")
    code = cli.main(["predict", str(short_dir / "m.h5"), str(short_dir / "x.npy"), "--out", str(short_dir / "out.npy")])
    assert code == 1 and "FIFO" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(short_dir / "out.npy").st_mode)


# -- paths that cannot be paths ---------------------------------------------------------------------
def write_bytes_atomically(path):
    with atomic.atomic_write(path) as tmp, open(tmp, "wb") as fh:
        fh.write(b"bytes")


def path_users(tmp_path):
    good = tmp_path / "good.h5"
    model().save(good)
    return {
        "save": lambda p: model().save(p),
        "save_weights": lambda p: model().save_weights(p),
        "load": lambda p: regnet.load(p),
        "load_weights": lambda p: model().load_weights(p),
        "restore": lambda p: regnet.checkpoint.restore(model().compile(), p),
        "read_metadata": lambda p: io.read_metadata(p),
        "atomic_write": write_bytes_atomically,
        "read_inputs": lambda p: read_inputs(p, (3,)),
        "idx.read": lambda p: idx.read(p),
        "sources.load": lambda p: sources.load(p),
        "load_npz": lambda p: sources.load_npz(p),
        "Model.from_spec": lambda p: Model.from_spec(Path(p) if isinstance(p, str) else p),  # bytes are JSON text
    }


BAD_PATHS = {
    "NUL": "model\0.h5",
    "NUL at the end": "model.h5\0",
    "lone surrogate": "model\ud800.h5",
    "NUL in bytes": b"model\0.h5",
    "empty": "",
}


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_unusable_paths_raise_regnet_errors(tmp_path, bad, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for what, use in path_users(tmp_path).items():
        with pytest.raises((FileFormatError, ConfigError, DataError)) as info:
            use(BAD_PATHS[bad])
        assert isinstance(info.value, RegnetError), (what, info.value)
    assert strays(tmp_path) == []


def test_generated_paths_never_escape_the_error_hierarchy(fuzz_cases, short_dir, monkeypatch):
    monkeypatch.chdir(short_dir)
    users = path_users(short_dir)
    # no '/': every generated name stays inside the directory ('.' and '..' are directories)
    alphabet = st.characters(exclude_characters="/") | st.sampled_from(["\0", "\ud800", "\udcff", ".", "\x1b"])

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(name=st.text(alphabet, min_size=0, max_size=12), use=st.sampled_from(sorted(users)))
    def never_raw(name, use):
        if use == "sources.load" and name.partition(":")[0] in sources.NAMES:
            return  # a data set name, not a path (mnist would download)
        fuzz_cases("paths")
        try:
            users[use](name)
        except RegnetError:
            fuzz_cases("paths, refused")
        except Exception as exc:  # the property is what escapes
            raise AssertionError(f"{use}({name!r}) raised {type(exc).__name__}: {exc}") from exc
        else:
            fuzz_cases("paths, accepted")
        for n in os.listdir(short_dir):
            if n not in ("good.h5",):
                p = short_dir / n
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()

    never_raw()


# -- the property: over generated layouts -----------------------------------------------------------
FINAL_KINDS = ["absent", "regular", "hardlinked", "directory", "FIFO", "socket", "character device", "loop"]


@st.composite
def layouts(draw):
    return {
        "final": draw(st.sampled_from(FINAL_KINDS + ["absent", "regular"] * 3)),  # as many saves as refusals
        "links": draw(st.integers(0, 3)),  # symlinks between the given path and the final file
        "absolute": draw(st.booleans()),
        "mode": draw(st.sampled_from([0o600, 0o640, 0o644, 0o400, 0o666])),
        "subdir": draw(st.booleans()),  # the final file lives in another directory
        "bystanders": draw(st.integers(0, 3)),
    }


def build(root, layout):
    """Make the layout under ``root``; returns the path to save to."""
    final_dir = root / "elsewhere" if layout["subdir"] else root
    final_dir.mkdir(exist_ok=True)
    for i in range(layout["bystanders"]):
        (root / f"bystander{i}.h5").write_bytes(os.urandom(32))
    final = final_dir / "final.h5"
    kind = layout["final"]
    if kind in ("regular", "hardlinked"):
        model(0).save(final)
        os.chmod(final, layout["mode"])
        if kind == "hardlinked":
            os.link(final, root / "other-name.h5")
    elif kind == "loop":
        os.symlink("final.h5", final_dir / "loop.h5")
        os.symlink("loop.h5", final)
    elif kind != "absent":
        if SPECIAL[kind](final) is None:
            return None
    path = final
    for i in range(layout["links"]):
        link = root / f"link{i}"
        os.symlink(path if layout["absolute"] else os.path.relpath(path, root), link)
        path = link
    return path


def test_saves_touch_nothing_but_their_target(fuzz_cases, time_limit):
    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(layout=layouts())
    def property_(layout):
        root = Path(tempfile.mkdtemp(prefix="rgp", dir="/tmp" if os.path.isdir("/tmp") else None))
        try:
            path = build(root, layout)
            if path is None:
                fuzz_cases("layouts, not buildable here")
                return
            fuzz_cases("layouts")
            dirs = [root] + ([root / "elsewhere"] if layout["subdir"] else [])
            before = {d: snapshot(d) for d in dirs}
            new = model(9)
            replaceable = layout["final"] in ("absent", "regular")
            with time_limit(20):
                try:
                    new.save(path)
                    saved = True
                except FileFormatError:
                    saved = False
            assert saved == replaceable, layout
            after = {d: snapshot(d) for d in dirs}
            if not saved:
                fuzz_cases("layouts, refused")
                assert after == before
                return
            fuzz_cases("layouts, saved")
            final = (root / "elsewhere" if layout["subdir"] else root) / "final.h5"
            assert same_weights(final, new) and same_weights(path, new)
            for d in dirs:  # only final.h5 changed; links, bystanders and other names kept
                changed = {k for k in set(before[d]) | set(after[d]) if before[d].get(k) != after[d].get(k)}
                assert changed <= {"final.h5"}, (layout, changed)
                assert strays(d) == []
            if layout["final"] == "regular":
                assert stat.S_IMODE(final.stat().st_mode) == layout["mode"]
        finally:
            shutil.rmtree(root, ignore_errors=True)

    property_()

"""Replacing a file atomically, and nothing but that file.

``atomic_write(path)`` yields a temporary path in the directory of the file a save replaces;
when the block succeeds the temporary file is flushed, given the old file's permissions and
owner, and renamed over the target, so the target holds either the old or the complete new
contents. docs/format.md ("Writing") states the rules:

* the target must be a regular file or not exist: a directory, device, FIFO or socket is
  refused with a ``FileFormatError`` and left untouched (nothing is opened, so a FIFO cannot
  block);
* a symbolic link is followed (up to ``MAX_LINKS`` hops; a dangling link creates the file it
  names) and the file it points to is replaced, so the link stays a link; a link in a
  world-writable sticky directory (``/tmp``) that belongs to neither the caller nor the
  directory's owner is refused, as the kernel's ``protected_symlinks`` rule does for ``open``;
* a regular file with more than one hard link is refused: a rename would give only this name
  the new contents while the other names keep the old ones;
* re-saving keeps the file's permission bits (``0600`` stays ``0600``) and, where the caller
  may, its owner and group; a new file is created with mode ``0666`` minus the umask;
* the temporary name is ``.regnet.<16 hex>.<8 hex>.tmp`` (``TEMP_NAME``): a hash of the
  target's name, so any valid target name works, and a random part. The temporary file is
  locked (``flock``) while the save runs; a save removes the unlocked ones (left by a killed
  save) for the same target, and ``is_temporary`` lets readers refuse them;
* the lock is released before the rename, so the file a reader opens is never locked by a
  save (HDF5 locks the files it opens, and a reader would collide with a save's lock). The
  moment between the release and the rename, and each clean-up, hold an ``flock`` on the
  directory, so a clean-up never takes a temporary file whose save is about to rename it.
"""

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator

from .errors import ConfigError, FileFormatError, RegnetError
from .text import escape

try:
    import fcntl
except ImportError:  # no advisory locks: stale temporary files are then left for the user
    fcntl = None  # type: ignore[assignment]

#: ``.regnet.<hash of the target's name>.<random>.tmp``
TEMP_NAME = re.compile(r"\.regnet\.([0-9a-f]{16})\.([0-9a-f]{8})\.tmp")
#: symbolic links followed from the given path to the file replaced (as the kernel's ELOOP limit)
MAX_LINKS = 40
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def checked_path(path: object, *, error: type[Exception] = FileFormatError, what: str = "a model file") -> str:
    """``path`` as ``str`` (``os.PathLike`` and ``bytes`` accepted); a NUL byte or a name the
    file system cannot encode raises ``error`` (a ``RegnetError``), a non-path ``ConfigError``."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise ConfigError(
            f"the path of {what} must be a string or os.PathLike, got {type(path).__name__}", field="path"
        )
    try:
        text = os.fsdecode(os.fspath(path))
    except (TypeError, UnicodeError) as exc:
        raise error(f"the path of {what} cannot be used: {exc}") from None
    if not text:
        raise error(f"the path of {what} is empty")
    if "\0" in text:
        raise error(f"the path of {what} {escape(text, 300)} contains a NUL byte")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise error(f"the path of {what} {escape(text, 300)} cannot be encoded for the file system") from None
    return text


def real_directory(path: str) -> str:
    """The real (symbolic-link free, absolute) directory that holds the file ``path`` names,
    resolved the way the kernel does: each link is followed before a following ``..`` applies,
    which ``os.path.abspath`` (a textual simplification) gets wrong."""
    return os.path.realpath(os.path.dirname(path) or os.curdir)


def save_directory(path: "str | os.PathLike[str]") -> str:
    """The real directory a save to ``path`` writes its temporary file in: that of the file
    ``path`` names once its own symbolic links are followed (see ``real_directory``)."""
    return real_directory(_resolve(checked_path(path)))


def is_temporary(path: "str | os.PathLike[str]") -> bool:
    """Whether ``path`` names the temporary file of a save (finished or not)."""
    return TEMP_NAME.fullmatch(os.path.basename(os.fspath(path))) is not None


def temp_key(name: str) -> str:
    """The 16 hex digits that tie a temporary file to the name of the file it replaces."""
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:16]


@contextlib.contextmanager
def atomic_write(path: "str | os.PathLike[str]", *, lock: bool = True) -> Iterator[str]:
    """Yield a temporary path next to the file that ``path`` names; on success, rename it over
    that file (see the module docstring). On any failure the temporary file is removed, the
    target is left as it was and a ``FileFormatError`` says why.

    With ``lock`` the temporary file is locked with ``flock`` while the block runs: a writer that
    locks files itself must not (h5py: ``h5py.File(tmp, "w", locking=False)``), or pass
    ``lock=False`` (the file is then not protected from another save's clean-up).
    """
    given = checked_path(path)
    target = _resolve(given)
    old = _check_target(given, target)
    # The directory the kernel resolves: symbolic links in it are followed before any "..", so
    # "run/../shared" is the "shared" beside the directory that "run" points to.
    directory = real_directory(target)
    key = temp_key(os.path.basename(target))
    remove_stale(directory, key)
    fd, tmp = _create_temp(given, directory, key, old, lock)
    try:
        yield tmp
        _fsync(tmp)
        _finish(given, target, fd, tmp, old)
        with _directory_lock(directory):
            _unlock(fd)  # the file readers open must not be locked: HDF5 would refuse to open it
            os.replace(tmp, target)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, RegnetError) or not isinstance(exc, Exception):
            raise
        raise _save_error(given, exc, old is not None) from exc
    finally:
        os.close(fd)  # releases the lock if a failure left it held
    _fsync_directory(directory)


def remove_stale(directory: str, key: str) -> list[str]:
    """Remove the temporary files for the target ``key`` in ``directory`` that no running save
    holds (``flock``); returns their paths."""
    if fcntl is None:
        return []
    removed = []
    prefix = f".regnet.{key}."
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix) and TEMP_NAME.fullmatch(e.name)]
    except OSError:
        return []
    if not entries:
        return []
    with _directory_lock(directory):  # no save is between releasing its lock and its rename
        for entry in entries:
            if _remove_if_unlocked(entry.path):
                removed.append(entry.path)
    return removed


@contextlib.contextmanager
def _directory_lock(directory: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (a save's rename against the clean-ups of
    other saves); where directories cannot be locked, the block simply runs."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


# -- what a save may replace --------------------------------------------------------------------
def _resolve(path: str) -> str:
    """The file a save to ``path`` replaces: ``path`` with its symbolic links followed."""
    current = path
    for _ in range(MAX_LINKS):
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return current
        except OSError as exc:
            raise _save_error(path, exc, False) from exc
        if not stat.S_ISLNK(info.st_mode):
            return current
        _check_link_owner(path, current, info)
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    raise FileFormatError(f"cannot save to {escape(path)}: more than {MAX_LINKS} levels of symbolic links")


def _check_link_owner(path: str, link: str, info: os.stat_result) -> None:
    """Refuse a link another user planted in a world-writable sticky directory (``/tmp``)."""
    if not hasattr(os, "geteuid"):
        return
    try:
        parent = os.stat(os.path.dirname(link) or ".")
    except OSError:
        return
    shared = parent.st_mode & stat.S_ISVTX and parent.st_mode & stat.S_IWOTH
    if shared and info.st_uid not in (os.geteuid(), parent.st_uid):
        raise FileFormatError(
            f"cannot save to {escape(path)}: {escape(link)} is a symbolic link owned by another user "
            f"(uid {info.st_uid}) in a world-writable sticky directory; it is not followed"
        )


def _describe(given: str, target: str) -> str:
    return escape(given) if given == target else f"{escape(given)} (a symbolic link to {escape(target)})"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _check_target(given: str, target: str) -> os.stat_result | None:
    """The target's status if it is a regular file with one link, ``None`` if it does not
    exist; anything else raises ``FileFormatError`` (and is left untouched)."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _save_error(given, exc, False) from exc
    where = _describe(given, target)
    if not stat.S_ISREG(info.st_mode):
        raise FileFormatError(
            f"cannot save to {where}: it is {_kind(info.st_mode)}, not a regular file; only regular "
            "files are replaced, and it is left untouched"
        )
    if info.st_nlink > 1:
        raise FileFormatError(
            f"cannot save to {where}: the file has {info.st_nlink} hard links, and replacing it would give "
            "only this name the new model while the other names keep the old one; save to a new path, "
            "or remove the other links first; the file is left unchanged"
        )
    return info


# -- the temporary file -------------------------------------------------------------------------
def _create_temp(given: str, directory: str, key: str, old: os.stat_result | None, lock: bool) -> tuple[int, str]:
    """``(fd, path)`` of a new temporary file (locked if ``lock``): mode ``0666`` minus the umask
    for a new target, else private (``0600``) until ``_finish`` gives it the old file's mode."""
    mode = 0o666 if old is None else 0o600
    for _ in range(3):
        tmp = os.path.join(directory, f".regnet.{key}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _save_error(given, exc, old is not None) from exc
        try:
            if lock:
                _lock(fd)
        except BlockingIOError:  # another save's clean-up took it before us: it removes it
            os.close(fd)
            continue
        try:
            if _same_file(fd, tmp):  # not removed by another save's clean-up before the lock
                if old is not None:
                    _copy_owner(fd, old)
                return fd, tmp
        except OSError as exc:
            os.close(fd)
            _remove_quietly(tmp)
            raise _save_error(given, exc, old is not None) from exc
        os.close(fd)
    raise _save_error(given, OSError(errno.EEXIST, "cannot create a temporary file"), old is not None)


def _lock(fd: int) -> None:
    """Hold an exclusive ``flock`` on ``fd``; on a file system without locks the file simply
    stays unlocked (clean-ups then never remove it)."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError:
        pass


def _unlock(fd: int) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _copy_owner(fd: int, old: os.stat_result) -> None:
    """Give the temporary file the old file's owner and group, as far as the caller may."""
    if not hasattr(os, "fchown") or (old.st_uid, old.st_gid) == (os.geteuid(), os.getegid()):
        return
    for uid in (old.st_uid, -1):
        try:
            os.fchown(fd, uid, old.st_gid)
            return
        except OSError:
            pass


def _finish(given: str, target: str, fd: int, tmp: str, old: os.stat_result | None) -> None:
    """Before the rename: the old file's mode on the temporary file, and the target still one
    a save may replace."""
    if not _same_file(fd, tmp):
        raise FileFormatError(f"cannot save to {escape(given)}: the temporary file {escape(tmp)} was replaced")
    if old is not None and hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
    _check_target(given, target)


def _remove_if_unlocked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not (_same_file(fd, path) and stat.S_ISREG(os.fstat(fd).st_mode)):
            return False
        os.remove(path)
        return True
    except OSError:  # locked by a running save, or gone
        return False
    finally:
        os.close(fd)


def _save_error(path: str, exc: BaseException, existed: bool) -> FileFormatError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    kept = "the previous file is left unchanged" if existed else "no file was written"
    return FileFormatError(f"cannot save to {escape(path)}: {escape(reason)}; {kept}")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename itself is already atomic
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# -- outputs that must not replace inputs -------------------------------------------------------
def same_file(a: "str | os.PathLike[str]", b: "str | os.PathLike[str]") -> bool:
    """Whether ``a`` and ``b`` name one existing file (symbolic links followed, hard links and
    any spelling of the path alike): the files are compared, not the strings."""
    try:
        x, y = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def refuse_input(output: "str | os.PathLike[str]", inputs: dict[str, object], *, what: str = "output") -> None:
    """Raise ``FileFormatError`` when the file ``output`` names is one of ``inputs``
    (``{"the model spec": path, ...}``; entries that are not paths, or name no file, are skipped):
    writing it would destroy what the command reads. The file is left untouched."""
    for role, path in inputs.items():
        if isinstance(path, (str, bytes, os.PathLike)) and path and same_file(output, path):  # type: ignore[arg-type]
            raise FileFormatError(
                f"the {what} {escape(os.fsdecode(os.fspath(output)))} is the same file as {role} "
                f"{escape(os.fsdecode(os.fspath(path)))}; writing it would destroy its input, so nothing is written "
                "and the file is left untouched: choose another output path"
            )

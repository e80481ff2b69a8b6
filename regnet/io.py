"""One HDF5 file per trained model: spec, weights, optimizer state, RNG state and metadata.

docs/format.md describes the layout; in short::

    /                       attrs: format, format_version, regnet_version, created, epoch
    /model_spec             JSON text (the model spec)
    /training_config        JSON text (loss, optimizer, metrics); absent when not compiled
    /rng_state              JSON text (model.rng.bit_generator.state)
    /weights/<layer>/<name> float32 (parameters and buffers)
    /optimizer              attrs: type, iterations
    /optimizer/<slot>/<layer>/<name>  float32 optimizer slots
    /metadata/history, /metadata/components, /metadata/user   JSON text

This module is the file format only: ``write`` stores a ``ModelRecord`` (plain data: JSON
documents and named float32 arrays) and ``open_file`` gives checked read access by section. It
knows nothing of models; ``regnet.checkpoint`` moves state between a model and a file.

Reading is defensive: nothing is unpickled, no name from the file is imported, links, external
storage and virtual datasets are refused, every declared shape and dtype is checked against what
the caller expects before anything is read, and every low-level failure becomes a
``FileFormatError`` naming the file.
"""

import contextlib
import datetime
import hashlib
import json
import os
import secrets
import shlex

import attrs
import h5py
import numpy as np

from ._version import __version__
from .errors import ConfigError, FileFormatError, IntegrityError, RegnetError, WeightsMismatchError
from .text import escape

FORMAT = "regnet.model.h5"
WEIGHTS_FORMAT = "regnet.weights.h5"
FORMAT_VERSION = 1
#: HDF5 features up to 1.8 only: readable by any HDF5 >= 1.8, with checksummed metadata
LIBVER = ("v108", "v108")
#: refuse JSON documents larger than this (a spec or a history is a few kB to a few MB)
MAX_JSON_BYTES = 64 << 20
#: refuse trees deeper / wider than this under /weights or /optimizer
MAX_DEPTH = 8
MAX_ENTRIES = 1 << 16
#: how much of a file that is not HDF5 is read to tell whether it is a JSON spec
_SNIFF = 4 << 20


# -- writing ------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path in ``path``'s directory; on success fsync it and rename it over
    ``path``. On any failure the temporary file is removed, ``path`` is left as it was and a
    ``FileFormatError`` says why."""
    path = _path(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    existed = os.path.exists(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _save_error(path, exc, existed) from exc
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, RegnetError) or not isinstance(exc, Exception):
            raise
        raise _save_error(path, exc, existed) from exc
    _fsync_directory(directory)


def _path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"a model file path must be a string or os.PathLike, got {type(path).__name__}", field="path")
    path = os.fspath(path)
    return path if isinstance(path, str) else os.fsdecode(path)


def _save_error(path, exc, existed):
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    kept = "the previous file is left unchanged" if existed else "no file was written"
    return FileFormatError(f"cannot save to {path}: {reason}; {kept}")


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory):
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


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _dumps(value, what):
    try:
        return json.dumps(value, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{what} must be plain JSON data (dicts, lists, strings, numbers): {exc}", field=what
        ) from exc


def _text(value):
    """A fixed-length UTF-8 string value (as an attribute it lives in the object header, which
    HDF5 checksums)."""
    data = value.encode("utf-8")
    return np.array(data, dtype=h5py.string_dtype("utf-8", max(len(data), 1)))


def _set_attr(obj, name, value):
    obj.attrs.create(name, _text(value) if isinstance(value, str) else np.int64(value))


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _write_json(group, name, text):
    data = text.encode("utf-8")
    ds = group.create_dataset(name, data=_text(text))
    _set_attr(ds, "sha256", _sha256(data))


def _write_array(group, key, value):
    """One float32 tensor at ``group/key`` (``key`` may hold '/') with the sha256 of its
    little-endian C-order bytes."""
    value = np.ascontiguousarray(value, dtype="<f4")
    ds = group.create_dataset(key, data=value)
    _set_attr(ds, "sha256", _sha256(value.tobytes()))


def _write_header(f, fmt, epoch):
    _set_attr(f, "format", fmt)
    _set_attr(f, "format_version", FORMAT_VERSION)
    _set_attr(f, "regnet_version", __version__)
    _set_attr(f, "created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    _set_attr(f, "epoch", epoch)


@attrs.define
class ModelRecord:
    """Everything one model file holds, as plain data (the file format knows nothing more).

    ``weights`` maps ``"layer/tensor"`` to float32 arrays; ``optimizer_state`` (with
    ``optimizer_type``) maps ``"iterations"`` to the step count and ``"<slot>/<layer>/<tensor>"``
    to arrays; the rest is JSON data.
    """

    spec: dict
    weights: dict
    rng_state: dict | None = None
    epoch: int = 0
    history: list = attrs.Factory(list)
    components: list = attrs.Factory(list)
    metadata: dict = attrs.Factory(dict)
    training_config: dict | None = None
    optimizer_type: str | None = None
    optimizer_state: dict | None = None


def write(path: "str | os.PathLike[str]", record: ModelRecord) -> str:
    """Write ``record`` to one HDF5 file at ``path``, atomically (see ``atomic_write``)."""
    docs = {
        "model_spec": _dumps(record.spec, "model spec"),
        "rng_state": _dumps(record.rng_state, "rng state"),
        "metadata/history": _dumps(record.history, "history"),
        "metadata/components": _dumps(record.components, "components"),
        "metadata/user": _dumps({} if record.metadata is None else record.metadata, "metadata"),
    }
    if record.training_config is not None:
        docs["training_config"] = _dumps(record.training_config, "training config")
    state = None if record.optimizer_state is None else dict(record.optimizer_state)
    with atomic_write(path) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f:
        _write_header(f, FORMAT, record.epoch)
        for name, text in docs.items():
            _write_json(f, name, text)
        _write_tensors(f.create_group("weights"), record.weights)
        if state is not None:
            opt = f.create_group("optimizer")
            _set_attr(opt, "type", record.optimizer_type or "")
            _set_attr(opt, "iterations", int(state.pop("iterations", 0)))
            _write_tensors(opt, state)
    return _path(path)


def write_weights(path: "str | os.PathLike[str]", spec: dict, weights: dict, epoch: int = 0) -> str:
    """Write a weights-only file (the spec for reference, and the tensors by name), atomically."""
    text = _dumps(spec, "model spec")
    with atomic_write(path) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f:
        _write_header(f, WEIGHTS_FORMAT, epoch)
        _write_json(f, "model_spec", text)
        _write_tensors(f.create_group("weights"), weights)
    return _path(path)


def _write_tensors(group, tensors):
    for key in sorted(tensors):
        _write_array(group, key, tensors[key])


# -- reading ------------------------------------------------------------------------------------
@attrs.frozen
class Mismatch:
    """A stored tensor whose shape or dtype differs from the model's."""

    name: str
    file_shape: tuple | None
    file_dtype: str
    model_shape: tuple

    def __str__(self):
        found = "no shape (empty dataspace)" if self.file_shape is None else f"shape {list(self.file_shape)}"
        return (
            f"'{self.name}': file has {found} {self.file_dtype}, model expects shape {list(self.model_shape)} float32"
        )


@attrs.frozen
class WeightsReport:
    """What ``load_weights`` did: tensors loaded, missing from the file, skipped (in the file but
    not in the model) and mismatched (shape or dtype)."""

    loaded: list
    missing: list
    skipped: list
    mismatched: list

    @property
    def ok(self):
        return not (self.missing or self.skipped or self.mismatched)

    def problems(self):
        out = [f"'{k}' is missing from the file" for k in self.missing]
        out += [f"'{k}' is in the file but not in the model" for k in self.skipped]
        out += [str(m) for m in self.mismatched]
        return out

    def __str__(self):
        head = f"{len(self.loaded)} tensor(s) loaded"
        return head if self.ok else head + "; " + "; ".join(self.problems())


class ModelFile:
    """Checked access to an open model file: every failure is a ``FileFormatError`` naming it.

    Low-level (``attr``, ``node``, ``dataset``, ``tensors``, ``json``, ``read``) and by section
    (``spec``, ``training_config``, ``weights``, ``optimizer_state``, ...). Nothing is read
    before its declared shape and type are checked.
    """

    def __init__(self, f, path):
        self.f = f
        self.path = path

    def fail(self, message):
        return FileFormatError(f"{self.path}: {message}")

    # attributes
    def attr(self, obj, name, kind, default=None, required=True):
        if name not in obj.attrs:
            if required:
                raise self.fail(f"attribute '{name}' of '{obj.name}' is missing")
            return default
        aid = obj.attrs.get_id(name)
        if aid.shape not in ((), (1,)):
            shape = "no value (empty dataspace)" if aid.shape is None else f"shape {list(aid.shape)}"
            raise self.fail(f"attribute '{name}' of '{obj.name}' must be a scalar, has {shape}")
        dt = aid.dtype
        if kind == "str":
            if h5py.check_string_dtype(dt) is None or dt.itemsize > 4096:
                raise self.fail(f"attribute '{name}' of '{obj.name}' must be a string, found {dt}")
        elif dt.kind not in "iu":
            raise self.fail(f"attribute '{name}' of '{obj.name}' must be an integer, found {dt}")
        value = obj.attrs[name]
        value = value.reshape(()).item() if isinstance(value, np.ndarray) else value
        if kind == "str":
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return int(value)

    # tree
    def node(self, where, required=True):
        """The group or dataset at ``where``, reached through hard links only."""
        obj = self.f
        for part in where.split("/"):
            if not isinstance(obj, h5py.Group):
                raise self.fail(f"'{obj.name}' should be a group, found a dataset")
            link = obj.get(part, getlink=True)
            if link is None:
                if required:
                    raise self.fail(f"'{where}' is missing")
                return None
            self._check_link(link, f"{obj.name.rstrip('/')}/{part}")
            obj = obj[part]
        return obj

    def _check_link(self, link, where):
        if isinstance(link, h5py.SoftLink):
            raise self.fail(f"'{where}' is a soft link to '{link.path}'; links are refused")
        if isinstance(link, h5py.ExternalLink):
            raise self.fail(f"'{where}' is an external link to '{link.filename}:{link.path}'; links are refused")
        if not isinstance(link, h5py.HardLink):
            raise self.fail(f"'{where}' is a {type(link).__name__}; links are refused")

    def dataset(self, where, required=True):
        ds = self.node(where, required)
        if ds is None:
            return None
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(f"'{where}' should be a dataset, found {type(ds).__name__}")
        self._check_storage(ds, where)
        return ds

    def _check_storage(self, ds, where):
        if ds.is_virtual:
            raise self.fail(f"'{where}' is a virtual dataset (data from other files); refused")
        if ds.id.get_create_plist().get_external_count() > 0:
            raise self.fail(f"'{where}' stores its data in external raw files; refused")

    def tensors(self, where, required=True):
        """``{key: Dataset}`` for every dataset below group ``where`` (keys relative, '/'-joined);
        nothing is read."""
        root = self.node(where, required)
        if root is None:
            return {}
        if not isinstance(root, h5py.Group):
            raise self.fail(f"'{where}' should be a group, found a dataset")
        out, stack, seen = {}, [("", root, 1)], 0
        while stack:
            prefix, group, depth = stack.pop()
            for name in group:
                seen += 1
                if seen > MAX_ENTRIES:
                    raise self.fail(f"'{where}' holds more than {MAX_ENTRIES} entries")
                key = prefix + name
                self._check_link(group.get(name, getlink=True), f"{where}/{key}")
                obj = group[name]
                if isinstance(obj, h5py.Group):
                    if depth >= MAX_DEPTH:
                        raise self.fail(f"'{where}/{key}' is nested deeper than {MAX_DEPTH} levels")
                    stack.append((key + "/", obj, depth + 1))
                elif isinstance(obj, h5py.Dataset):
                    self._check_storage(obj, f"{where}/{key}")
                    out[key] = obj
                else:
                    raise self.fail(f"'{where}/{key}' is neither a group nor a dataset")
        return out

    # contents
    def json(self, where, required=True, default=None):
        ds = self.dataset(where, required)
        if ds is None:
            return default
        info = h5py.check_string_dtype(ds.dtype)
        if info is None or info.length is None or ds.shape != ():
            raise self.fail(
                f"'{where}' must be a scalar fixed-length string dataset, found {ds.dtype} of shape {ds.shape}"
            )
        if ds.dtype.itemsize > MAX_JSON_BYTES:
            raise self.fail(f"'{where}' declares {ds.dtype.itemsize} bytes (limit {MAX_JSON_BYTES})")
        raw = ds[()]
        data = raw if isinstance(raw, bytes) else bytes(raw)
        data = data.rstrip(b"\0")  # fixed-length strings may be padded with NULs
        self.verify(ds, where, data)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self.fail(f"'{where}' is not valid JSON: {exc}") from None

    def read(self, ds, where):
        """The float32 contents of a dataset whose shape was already checked."""
        out = np.empty(ds.shape, dtype=np.float32)
        if out.size:
            ds.read_direct(out)
        self.verify(ds, where, out.astype("<f4", copy=False).tobytes())
        return out

    def verify(self, ds, where, data):
        """Check ``data`` against the dataset's ``sha256`` attribute (when it has one)."""
        digest = self.attr(ds, "sha256", "str", required=False)
        if digest is not None and digest != _sha256(data):
            raise IntegrityError(f"{self.path}: '{where}' does not match its sha256 checksum (the file is corrupted)")

    def header(self, formats):
        fmt = self.attr(self.f, "format", "str")
        if fmt not in formats:
            known = " or ".join(repr(x) for x in formats)
            hint = " (a weights-only file: use model.load_weights)" if fmt == WEIGHTS_FORMAT else ""
            raise self.fail(f"format is {fmt!r}, expected {known}{hint}")
        version = self.attr(self.f, "format_version", "int")
        if version > FORMAT_VERSION:
            raise self.fail(
                f"format_version {version} is newer than this regnet reads (up to {FORMAT_VERSION}); upgrade regnet"
            )
        if version < 1:
            raise self.fail(f"format_version {version} is not a valid version")
        return fmt

    # sections
    def spec(self):
        return self.json("model_spec")

    def training_config(self):
        """The JSON training config (``None`` when the model was saved uncompiled)."""
        config = self.json("training_config", required=False)
        if config is not None and (not isinstance(config, dict) or not {"loss", "optimizer"} <= set(config)):
            raise self.fail("training_config must be an object with 'loss', 'optimizer' and 'metrics'")
        return config

    def components(self):
        entries = self.json("metadata/components", required=False, default=[])
        if not isinstance(entries, list):
            raise self.fail("metadata/components must be a list")
        return entries

    def metadata(self):
        value = self.json("metadata/user", required=False, default={})
        if not isinstance(value, dict):
            raise self.fail("metadata/user must be an object")
        return value

    def rng_state(self):
        return self.json("rng_state")

    def progress(self):
        """``(epoch, history)``: epochs trained and the per-epoch logs."""
        epoch = self.attr(self.f, "epoch", "int", default=0, required=False)
        history = self.json("metadata/history", required=False, default=[])
        if epoch < 0 or not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise self.fail("epoch must be >= 0 and metadata/history a list of objects")
        return epoch, history

    def weights(self, expected, *, strict=True):
        """``(values, report)``: the tensors under ``/weights`` whose names and shapes match
        ``expected`` (``{"layer/tensor": shape}``), checked before anything is read. ``strict``
        raises ``WeightsMismatchError`` listing every missing, extra and mismatched tensor."""
        found = self.tensors("weights")
        report = _match(self, "weights", found, expected)
        if strict and not report.ok:
            raise _mismatch_error(self.path, report, "the stored weights do not fit the model")
        return {k: self.read(found[k], f"weights/{k}") for k in report.loaded}, report

    def optimizer_state(self, expected, what="the optimizer"):
        """The optimizer state (``{"iterations": int64, "<slot>/<layer>/<tensor>": array}``) or
        ``None`` when the file has none. Slots missing from the file are fine (an optimizer
        creates them on first use); extra or mismatched ones raise."""
        group = self.node("optimizer", required=False)
        if group is None:
            return None
        if not isinstance(group, h5py.Group):
            raise self.fail("'optimizer' should be a group")
        iterations = self.attr(group, "iterations", "int")
        if iterations < 0:
            raise self.fail(f"optimizer iterations is {iterations}")
        found = self.tensors("optimizer")
        report = _match(self, "optimizer", found, expected)
        if report.skipped or report.mismatched:
            bad = WeightsReport(report.loaded, [], report.skipped, report.mismatched)
            raise _mismatch_error(self.path, bad, f"the optimizer state does not fit {what} on this model")
        state = {k: self.read(found[k], f"optimizer/{k}") for k in report.loaded}
        state["iterations"] = np.int64(iterations)
        return state


_LOW_LEVEL = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError, OverflowError)


@contextlib.contextmanager
def open_file(path: "str | os.PathLike[str]", formats: tuple = (FORMAT,)):
    """Open a model file for checked reading (a context manager yielding a ``ModelFile``); the
    root ``format`` must be one of ``formats`` and the version one this regnet reads."""
    path = _path(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise FileFormatError(f"{path} {what}")
    try:
        f = h5py.File(path, "r")
    except _LOW_LEVEL as exc:
        raise FileFormatError(_not_hdf5(path, exc)) from None
    try:
        reader = ModelFile(f, path)
        reader.header(formats)
        yield reader
    except RegnetError:
        raise
    except _LOW_LEVEL as exc:
        raise FileFormatError(f"{path} is corrupted or unreadable: {type(exc).__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            f.close()


def _not_hdf5(path, exc):
    """Why ``path`` cannot be opened as a model file, in a user's words when it is a JSON spec."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF).lstrip()
    except OSError:
        head = b""
    if head.startswith((b"{", b"[")):
        try:
            doc = json.loads(head.decode("utf-8"))
        except ValueError:
            doc = None
        shown = escape(path)
        if isinstance(doc, dict) and "layers" in doc:
            return (
                f"{shown} is a model spec (JSON), not a trained model file; train it first with: "
                f"regnet train {escape(shlex.quote(path))} --out model.h5"
            )
        return f"{shown} is a JSON file, not a regnet model file (HDF5)"
    return f"{escape(path)} is not a readable HDF5 file: {exc}"


def _is_f32(dtype):
    return dtype.kind == "f" and dtype.itemsize == 4


def _match(r, where, found, expected):
    """Compare datasets with ``expected`` shapes by name; returns a ``WeightsReport`` (nothing read)."""
    missing = sorted(set(expected) - set(found))
    skipped = sorted(set(found) - set(expected))
    loaded, mismatched = [], []
    for key in sorted(set(found) & set(expected)):
        ds, want = found[key], tuple(expected[key])
        shape = None if ds.shape is None else tuple(ds.shape)
        if shape != want or not _is_f32(ds.dtype):
            mismatched.append(Mismatch(f"{where}/{key}", shape, str(ds.dtype), want))
        else:
            loaded.append(key)
    return WeightsReport(loaded, missing, skipped, mismatched)


def _mismatch_error(path, report, what):
    lines = report.problems()
    return WeightsMismatchError(f"{path}: {what} ({len(lines)} problem(s)): " + "; ".join(lines))


def read_metadata(path: "str | os.PathLike[str]") -> dict:
    """The user ``metadata`` a model or weights file was saved with, through the safe reader."""
    with open_file(path, (FORMAT, WEIGHTS_FORMAT)) as f:
        return f.metadata()


__all__ = [
    "ModelRecord",
    "ModelFile",
    "WeightsReport",
    "Mismatch",
    "write",
    "write_weights",
    "open_file",
    "read_metadata",
    "atomic_write",
    "FORMAT",
    "WEIGHTS_FORMAT",
    "FORMAT_VERSION",
]

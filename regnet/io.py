"""One HDF5 file per trained model: spec, weights, optimizer state, RNG state and metadata.

docs/format.md describes the layout; in short::

    /                       attrs: format, format_version, regnet_version, created, epoch
    /model_spec             JSON text (Model.to_spec())
    /training_config        JSON text (loss, optimizer, metrics); absent when not compiled
    /rng_state              JSON text (model.rng.bit_generator.state)
    /weights/<layer>/<name> float32 (parameters and buffers)
    /optimizer              attrs: type, iterations
    /optimizer/<slot>/<layer>/<name>  float32 optimizer slots
    /metadata/history, /metadata/components, /metadata/user   JSON text

Loading is defensive: nothing is unpickled, no name from the file is imported (types resolve
through the registries only), links, external storage and virtual datasets are refused, every
declared shape and dtype is checked against the built model before anything is read or
assigned, and every low-level failure becomes a ``FileFormatError`` naming the file.
"""

import contextlib
import datetime
import hashlib
import json
import os
import secrets
import warnings

import attrs
import h5py
import numpy as np

from . import losses, metrics as _metrics, optimizers
from .errors import (
    ConfigError, FileFormatError, IntegrityError, PluginError, RegnetError, UnknownComponentError, WeightsMismatchError,
)
from .registry import REGISTRIES, registered_name, to_plain

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
        raise ConfigError(f"{what} must be plain JSON data (dicts, lists, strings, numbers): {exc}", field=what) from exc


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


def _write_header(f, fmt, model):
    from . import __version__

    _set_attr(f, "format", fmt)
    _set_attr(f, "format_version", FORMAT_VERSION)
    _set_attr(f, "regnet_version", __version__)
    _set_attr(f, "created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    _set_attr(f, "epoch", model.epoch)


def save(model, path, *, metadata=None):
    """Save ``model`` (spec, weights, training config, optimizer and RNG state, epoch, history and
    ``metadata``, a JSON-able dict) to one HDF5 file at ``path``, atomically."""
    docs = {
        "model_spec": _dumps(model.to_spec(), "model spec"),
        "rng_state": _dumps(model.rng.bit_generator.state, "rng state"),
        "metadata/history": _dumps(to_plain(model.history), "history"),
        "metadata/components": _dumps(components(model), "components"),
        "metadata/user": _dumps({} if metadata is None else metadata, "metadata"),
    }
    config = model.training_config()
    if config is not None:
        docs["training_config"] = _dumps(config, "training config")
    state = model.optimizer.state_dict() if model.optimizer is not None else None
    weights = model.get_weights()
    with atomic_write(path) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f:
        _write_header(f, FORMAT, model)
        for name, text in docs.items():
            _write_json(f, name, text)
        _write_tensors(f.create_group("weights"), weights)
        if state is not None:
            opt = f.create_group("optimizer")
            _set_attr(opt, "type", registered_name(model.optimizer))
            _set_attr(opt, "iterations", int(state.pop("iterations")))
            _write_tensors(opt, state)
    return _path(path)


def save_weights(model, path):
    """Save only the weights (parameters and buffers, by name) to an HDF5 file, atomically."""
    weights = model.get_weights()
    spec = _dumps(model.to_spec(), "model spec")
    with atomic_write(path) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f:
        _write_header(f, WEIGHTS_FORMAT, model)
        _write_json(f, "model_spec", spec)
        _write_tensors(f.create_group("weights"), weights)
    return _path(path)


def _write_tensors(group, tensors):
    for key in sorted(tensors):
        _write_array(group, key, tensors[key])


# -- components and their providers ------------------------------------------------------------
def components(model):
    """Every component the model uses: ``[{"kind", "name", "distribution", "version", ...}]``."""
    used = set()
    for layer in model.layers:
        used.add(("layers", registered_name(layer)))
        _collect_fields(layer, used)
    for kind, obj in (("losses", model.loss), ("optimizers", model.optimizer)):
        if obj is not None:
            used.add((kind, registered_name(obj)))
            _collect_fields(obj, used)
    out = []
    for kind, name in sorted(used):
        reg = REGISTRIES[kind]
        try:
            prov = reg.provider(name)
        except RegnetError:
            continue
        out.append({"kind": kind, "name": reg.canonical(name), "builtin": prov.builtin,
                    "distribution": prov.distribution, "version": prov.version,
                    "entry_point": prov.entry_point})
    return out


def _collect_fields(obj, used):
    if not attrs.has(type(obj)):
        return
    for a in attrs.fields(type(obj)):
        if a.name == "name":  # a layer's own name, not a component
            continue
        value = getattr(obj, a.name, None)
        name = value.get("type") if isinstance(value, dict) else value
        if not isinstance(name, str):
            continue
        for kind in _field_kinds(a, name):
            used.add((kind, name))


def _field_kinds(attribute, name):
    """The registry a component field draws from (from its validator), else every registry
    other than layers that knows ``name``."""
    check = attribute.validator
    code = getattr(check, "__code__", None)
    if code is not None and "registry_name" in code.co_freevars:
        kind = check.__closure__[code.co_freevars.index("registry_name")].cell_contents
        if kind in REGISTRIES:
            return [kind]
    return [k for k, reg in REGISTRIES.items() if k != "layers" and name in reg]


def _require_components(entries, path):
    """Raise naming the type, kind, entry-point group and distribution of the first component
    the file records that no installed package provides."""
    if not isinstance(entries, list):
        raise FileFormatError(f"{path}: metadata/components must be a list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry.get("kind") not in REGISTRIES:
            raise FileFormatError(f"{path}: metadata/components holds a malformed entry {entry!r:.200}")
        kind, name = entry["kind"], entry["name"]
        reg = REGISTRIES[kind]
        dist, version = entry.get("distribution"), entry.get("version")
        hint = ""
        if isinstance(dist, str) and dist != "regnet":
            pin = f"=={version}" if isinstance(version, str) and version else ""
            hint = f"; the file was saved with it from distribution '{dist}' {version or ''}: pip install '{dist}{pin}'"
        try:
            reg.get(name)
        except UnknownComponentError:
            raise UnknownComponentError(
                f"{path}: {kind[:-1]} type '{name}' (kind '{kind}') is not available: no installed "
                f"package registers it in the entry-point group '{reg.group}'{hint}"
            ) from None
        except PluginError as exc:
            raise PluginError(f"{path}: {kind[:-1]} type '{name}' (kind '{kind}', group '{reg.group}'): {exc}{hint}") from exc


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
        return f"'{self.name}': file has {found} {self.file_dtype}, model expects shape {list(self.model_shape)} float32"


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


class _Reader:
    """Checked access to an open file: every failure is a ``FileFormatError`` naming it."""

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
            raise self.fail(f"'{where}' must be a scalar fixed-length string dataset, found {ds.dtype} of shape {ds.shape}")
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


_LOW_LEVEL = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError, OverflowError)


@contextlib.contextmanager
def _open(path):
    path = _path(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise FileFormatError(f"{path} {what}")
    try:
        f = h5py.File(path, "r")
    except _LOW_LEVEL as exc:
        raise FileFormatError(f"{path} is not a readable HDF5 file: {exc}") from None
    try:
        yield _Reader(f, path)
    except RegnetError:
        raise
    except _LOW_LEVEL as exc:
        raise FileFormatError(f"{path} is corrupted or unreadable: {type(exc).__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            f.close()


def _is_f32(dtype):
    return dtype.kind == "f" and dtype.itemsize == 4


def _match(r, where, found, expected):
    """Compare datasets with ``expected`` arrays by name; returns a ``WeightsReport`` (nothing read)."""
    missing = sorted(set(expected) - set(found))
    skipped = sorted(set(found) - set(expected))
    loaded, mismatched = [], []
    for key in sorted(set(found) & set(expected)):
        ds, want = found[key], expected[key]
        shape = None if ds.shape is None else tuple(ds.shape)
        if shape != want.shape or not _is_f32(ds.dtype):
            mismatched.append(Mismatch(f"{where}/{key}", shape, str(ds.dtype), want.shape))
        else:
            loaded.append(key)
    return WeightsReport(loaded, missing, skipped, mismatched)


def _mismatch_error(path, report, what):
    lines = report.problems()
    return WeightsMismatchError(f"{path}: {what} ({len(lines)} problem(s)): " + "; ".join(lines))


@attrs.define
class _State:
    """Everything read from a file, checked and staged before any of it touches a model."""

    weights: dict
    loss: object = None
    optimizer: object = None
    metrics: list = attrs.Factory(list)
    optimizer_state: dict | None = None
    rng_state: dict | None = None
    epoch: int = 0
    history: list = attrs.Factory(list)


def _read_weights(r, model):
    found = r.tensors("weights")
    report = _match(r, "weights", found, model.get_weights())
    if not report.ok:
        raise _mismatch_error(r.path, report, "the stored weights do not fit the model")
    return {k: r.read(found[k], f"weights/{k}") for k in report.loaded}


def _read_training(r, model, optimizer=None):
    """Loss, optimizer and metrics from /training_config (or ``optimizer`` given), plus the
    optimizer state checked against the model's parameters."""
    if optimizer is None:
        config = r.json("training_config", required=False)
        if config is None:
            return None
    loss, metric_objs = None, []
    if optimizer is None:  # build them from the file
        if not isinstance(config, dict) or not {"loss", "optimizer"} <= set(config):
            raise r.fail("training_config must be an object with 'loss', 'optimizer' and 'metrics'")
        try:
            loss = losses.get(config["loss"])
            optimizer = optimizers.get(config["optimizer"])
        except (UnknownComponentError, PluginError):
            raise
        except ConfigError as exc:
            raise r.fail(f"training_config is invalid: {exc}") from exc
        metric_objs = _metrics_from(config.get("metrics") or [], r)
    return loss, optimizer, metric_objs, _read_optimizer_state(r, model, optimizer)


def _metrics_from(names, r):
    if not isinstance(names, list):
        raise r.fail("training_config 'metrics' must be a list of names")
    out = []
    for name in names:
        try:
            out.append(_metrics.get(name))
        except (ConfigError, TypeError):
            warnings.warn(f"{r.path}: metric {name!r} is not known here and is left out", RuntimeWarning, stacklevel=4)
    return out


def _read_optimizer_state(r, model, optimizer):
    group = r.node("optimizer", required=False)
    if group is None:
        return None
    if not isinstance(group, h5py.Group):
        raise r.fail("'optimizer' should be a group")
    iterations = r.attr(group, "iterations", "int")
    if iterations < 0:
        raise r.fail(f"optimizer iterations is {iterations}")
    found = r.tensors("optimizer")
    params = model.params
    expected = {f"{slot}/{key}": p for slot in optimizer.slot_names for key, p in params.items()}
    report = _match(r, "optimizer", found, expected)
    if report.skipped or report.mismatched:
        # missing slots are fine (an optimizer creates them on first use); extra or odd ones are not
        bad = WeightsReport(report.loaded, [], report.skipped, report.mismatched)
        raise _mismatch_error(r.path, bad, f"the optimizer state does not fit {registered_name(optimizer)} on this model")
    state = {k: r.read(found[k], f"optimizer/{k}") for k in report.loaded}
    state["iterations"] = np.int64(iterations)
    return state


def _read_rng(r, model):
    state = r.json("rng_state")
    kind = type(model.rng.bit_generator).__name__
    if not isinstance(state, dict) or state.get("bit_generator") != kind:
        raise r.fail(f"rng_state is not a {kind} state")
    probe = type(model.rng.bit_generator)()
    try:
        probe.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise r.fail(f"rng_state is invalid: {exc}") from None
    return state


def _read_progress(r):
    epoch = r.attr(r.f, "epoch", "int", default=0, required=False)
    history = r.json("metadata/history", required=False, default=[])
    if epoch < 0 or not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise r.fail("epoch must be >= 0 and metadata/history a list of objects")
    return epoch, history


def _read_state(r, model, *, training, optimizer=None):
    state = _State(_read_weights(r, model))
    if training:
        staged = _read_training(r, model, optimizer)
        if staged is not None:
            state.loss, state.optimizer, state.metrics, state.optimizer_state = staged
    state.rng_state = _read_rng(r, model)
    state.epoch, state.history = _read_progress(r)
    return state


def _apply(model, state):
    for key, value in model.get_weights().items():
        np.copyto(value, state.weights[key])
    if state.loss is not None:
        model.compile(loss=state.loss, optimizer=state.optimizer, metrics=state.metrics)
    if state.optimizer_state is not None:
        model.optimizer.load_state_dict(state.optimizer_state)
    model.rng.bit_generator.state = state.rng_state
    model.epoch = state.epoch
    model.history = list(state.history)


def _build(r):
    from .model import Model

    spec = r.json("model_spec")
    _require_components(r.json("metadata/components", required=False, default=[]), r.path)
    try:
        return Model.from_spec(spec)
    except (UnknownComponentError, PluginError) as exc:
        raise type(exc)(f"{r.path}: {exc}") from exc
    except RegnetError as exc:
        raise r.fail(f"model_spec does not describe a valid model: {exc}") from exc


def load(path, compile=True):
    """The model saved at ``path``: weights, epoch, history and RNG state; with ``compile`` also
    its loss, optimizer (with its state) and metrics, so that training resumes exactly."""
    with _open(path) as r:
        r.header((FORMAT,))
        model = _build(r)
        state = _read_state(r, model, training=compile)
    _apply(model, state)
    return model


def restore(model, path):
    """Load a checkpoint saved by ``save`` into ``model`` (same layers and shapes): weights,
    optimizer state, RNG state, epoch and history. An uncompiled model is compiled from the
    file's training config; a compiled one keeps its optimizer and receives the stored state.
    Everything is checked before the model is changed."""
    with _open(path) as r:
        r.header((FORMAT,))
        state = _read_state(r, model, training=True, optimizer=model.optimizer)
    if state.loss is None and model.optimizer is None:
        raise FileFormatError(f"{path}: holds no training config; compile the model before resuming")
    _apply(model, state)
    return model


def load_weights(model, path, strict=True):
    """Assign tensors stored in ``path`` (a weights or a full model file) to ``model`` by name.

    Shapes and dtypes are checked before anything is read or assigned. ``strict`` raises
    ``WeightsMismatchError`` listing every missing, extra and mismatched tensor; otherwise the
    matching tensors are loaded and the returned ``WeightsReport`` lists the rest.
    """
    with _open(path) as r:
        r.header((FORMAT, WEIGHTS_FORMAT))
        found = r.tensors("weights")
        report = _match(r, "weights", found, model.get_weights())
        if strict and not report.ok:
            raise _mismatch_error(r.path, report, "the stored weights do not fit the model")
        values = {k: r.read(found[k], f"weights/{k}") for k in report.loaded}
    targets = model.get_weights()
    for key, value in values.items():
        np.copyto(targets[key], value)
    return report


__all__ = [
    "save", "load", "save_weights", "load_weights", "restore", "atomic_write", "components",
    "WeightsReport", "Mismatch", "FORMAT", "WEIGHTS_FORMAT", "FORMAT_VERSION",
]

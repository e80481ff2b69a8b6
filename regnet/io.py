"""One HDF5 file per trained model: spec, weights, optimizer state, RNG state and metadata.

docs/format.md describes the layout; in short::

    /                       attrs: format, format_version, regnet_version, created, epoch
    /model_spec             JSON text (the model spec)
    /training_config        JSON text (loss, optimizer, metrics); absent when not compiled
    /rng_state              JSON text (model.rng.bit_generator.state)
    /weights/<layer>/<name> float32 (parameters and buffers)
    /optimizer              attrs: type, iterations
    /optimizer/<slot>/<layer>/<name>  float32 optimizer slots
    /callbacks/state        JSON text (the state of fit's callbacks); absent when there is none
    /callbacks/weights/<key>/<layer>/<name>  float32 weight snapshots of callbacks (best weights)
    /metadata/history, /metadata/components, /metadata/user   JSON text

This module is the file format only: ``write`` stores a ``ModelRecord`` (plain data: JSON
documents and named float32 arrays) and ``open_file`` gives checked read access by section. It
knows nothing of models; ``regnet.checkpoint`` moves state between a model and a file.

Reading is defensive: nothing is unpickled, no name from the file is imported, links, external
storage, virtual datasets and any storage but contiguous unfiltered data (chunked or compressed
datasets could expand without bound) are refused, every declared shape and dtype is checked
against what the caller expects before anything is read, tensors holding NaN or infinities are
refused unless asked for, and every low-level failure becomes a ``FileFormatError`` naming the
file. Writing goes through ``regnet.atomic.atomic_write``, and every tensor key must be made of
names of the one grammar (``regnet.names``).
"""

import contextlib
import datetime
import hashlib
import io as stdio
import json
import os
import secrets
import shlex
import stat
from collections.abc import Iterator
from typing import Any

import attrs
import h5py
import numpy as np

from . import names
from ._version import __version__
from .atomic import atomic_write, checked_path, is_temporary, save_directory
from .errors import ConfigError, FileFormatError, IntegrityError, RegnetError, WeightsMismatchError
from .text import escape

FORMAT = "regnet.model.h5"
WEIGHTS_FORMAT = "regnet.weights.h5"
FORMAT_VERSION = 1
#: HDF5 features up to 1.8 only: readable by any HDF5 >= 1.8, with checksummed metadata
LIBVER = ("v108", "v108")
#: refuse JSON documents larger than this (a spec or a history is a few kB to a few MB)
MAX_JSON_BYTES = 64 << 20
#: refuse string attributes longer than this (regnet writes names, versions and 64-digit checksums)
MAX_ATTR_BYTES = 4096
#: refuse trees deeper / wider than this under /weights or /optimizer
MAX_DEPTH = 8
MAX_ENTRIES = 1 << 16
#: the environment variable that lets a file without ``sha256`` attributes load (hand-made files)
ALLOW_MISSING_CHECKSUMS = "REGNET_ALLOW_MISSING_CHECKSUMS"
#: how much of a file that is not HDF5 is read to tell whether it is a JSON spec
_SNIFF = 4 << 20


# -- writing ------------------------------------------------------------------------------------
#: the temporary file of a save is locked by ``atomic_write``: HDF5 must not lock it again
_H5_WRITE = {"libver": LIBVER, "locking": False}


def _hdf5_forces_locks() -> bool:
    """Whether ``HDF5_USE_FILE_LOCKING`` makes HDF5 lock every file it opens, whatever h5py asks
    (then ``atomic_write`` must leave the temporary file unlocked, or HDF5 could not open it)."""
    return os.environ.get("HDF5_USE_FILE_LOCKING", "").strip().upper() in ("TRUE", "1", "BEST_EFFORT")


def missing_checksums_allowed() -> bool:
    """Whether ``REGNET_ALLOW_MISSING_CHECKSUMS`` is set (to anything but ``""`` or ``0``)."""
    return os.environ.get(ALLOW_MISSING_CHECKSUMS, "") not in ("", "0")


def _path(path: object) -> str:
    return checked_path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{what} must be plain JSON data (dicts, lists, strings, numbers): {exc}", field=what
        ) from exc


def _text(value: str) -> np.ndarray:
    """A fixed-length UTF-8 string value (as an attribute it lives in the object header, which
    HDF5 checksums)."""
    data = value.encode("utf-8")
    return np.array(data, dtype=h5py.string_dtype("utf-8", max(len(data), 1)))


def _set_attr(obj: Any, name: str, value: "str | int") -> None:
    obj.attrs.create(name, _text(value) if isinstance(value, str) else np.int64(value))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_json(group: h5py.Group, name: str, text: str) -> None:
    data = text.encode("utf-8")
    ds = group.create_dataset(name, data=_text(text))
    _set_attr(ds, "sha256", _sha256(data))


def _write_array(group: h5py.Group, key: str, value: np.ndarray) -> None:
    """One float32 tensor at ``group/key`` (``key`` may hold '/') with the sha256 of its
    little-endian C-order bytes."""
    value = np.ascontiguousarray(value, dtype="<f4")
    ds = group.create_dataset(key, data=value)
    _set_attr(ds, "sha256", _sha256(value.tobytes()))


def _write_header(f: h5py.File, fmt: str, epoch: int) -> None:
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
    to arrays; ``callback_weights`` maps ``"<callback key>/<layer>/<tensor>"`` to arrays (weight
    snapshots such as EarlyStopping's best weights); the rest is JSON data (``callbacks``:
    ``{key: state}``, each key a valid name).
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
    callbacks: dict | None = None
    callback_weights: dict = attrs.Factory(dict)
    untrained: bool = False  # the weights are still those the initializers drew


def write(path: "str | os.PathLike[str]", record: ModelRecord) -> str:
    """Write ``record`` to one HDF5 file at ``path``, atomically (see ``atomic_write``). Anything
    the reader would refuse (a JSON document over ``MAX_JSON_BYTES``, a tree over ``MAX_ENTRIES``
    entries, an attribute over ``MAX_ATTR_BYTES``) raises ``ConfigError`` before the file is
    touched, so a file that was there stays as it was."""
    docs = {
        "model_spec": _dumps(record.spec, "model spec"),
        "rng_state": _dumps(record.rng_state, "rng state"),
        "metadata/history": _dumps(record.history, "history"),
        "metadata/components": _dumps(record.components, "components"),
        "metadata/user": _dumps({} if record.metadata is None else record.metadata, "metadata"),
    }
    if record.training_config is not None:
        docs["training_config"] = _dumps(record.training_config, "training config")
    if record.callbacks:
        _check_keys(record.callbacks, "callbacks", 1)
        docs["callbacks/state"] = _dumps(record.callbacks, "callback state")
    state = None if record.optimizer_state is None else dict(record.optimizer_state)
    _check_keys(record.weights, "weights", 2)
    _check_keys(record.callback_weights, "callback weights", 3)
    slots = {} if state is None else {k: v for k, v in state.items() if k != "iterations"}
    if state is not None:
        _check_keys(slots, "optimizer", 3)
    _check_readable(
        path, docs, {"weights": record.weights, "optimizer": slots, "callback weights": record.callback_weights}
    )
    if state is not None:
        _check_attr(path, "optimizer type", record.optimizer_type or "")
    with atomic_write(path, lock=not _hdf5_forces_locks()) as tmp, h5py.File(tmp, "w", **_H5_WRITE) as f:
        _write_header(f, FORMAT, record.epoch)
        _set_attr(f, "untrained", int(record.untrained))
        for name, text in docs.items():
            _write_json(f, name, text)
        _write_tensors(f.create_group("weights"), record.weights)
        if state is not None:
            opt = f.create_group("optimizer")
            _set_attr(opt, "type", record.optimizer_type or "")
            _set_attr(opt, "iterations", int(state.pop("iterations", 0)))
            _write_tensors(opt, state)
        if record.callback_weights:
            _write_tensors(f.require_group("callbacks").create_group("weights"), record.callback_weights)
    return _path(path)


def write_weights(path: "str | os.PathLike[str]", spec: dict, weights: dict, epoch: int = 0) -> str:
    """Write a weights-only file (the spec for reference, and the tensors by name), atomically."""
    text = _dumps(spec, "model spec")
    _check_keys(weights, "weights", 2)
    _check_readable(path, {"model_spec": text}, {"weights": weights})
    with atomic_write(path, lock=not _hdf5_forces_locks()) as tmp, h5py.File(tmp, "w", **_H5_WRITE) as f:
        _write_header(f, WEIGHTS_FORMAT, epoch)
        _write_json(f, "model_spec", text)
        _write_tensors(f.create_group("weights"), weights)
    return _path(path)


#: the record field each JSON document of a file comes from (what a ``ConfigError`` names)
_DOC_FIELDS = {
    "model_spec": "model spec",
    "rng_state": "rng state",
    "metadata/history": "history",
    "metadata/components": "components",
    "metadata/user": "metadata",
    "training_config": "training config",
    "callbacks/state": "callback state",
}


def _not_saved(path: "str | os.PathLike[str]") -> str:
    return f"it is not saved (the reader would refuse the file) and {escape(str(path))} is left as it was"


def _check_readable(path: "str | os.PathLike[str]", docs: dict[str, str], trees: dict[str, dict]) -> None:
    """Raise ``ConfigError`` if the reader would refuse what is about to be written: a JSON
    document over ``MAX_JSON_BYTES`` or a tensor tree over ``MAX_ENTRIES`` entries (groups and
    datasets, as ``ModelFile.tensors`` counts them)."""
    for name, text in docs.items():
        size = len(text.encode("utf-8"))
        if size > MAX_JSON_BYTES:
            field = _DOC_FIELDS.get(name, name)
            raise ConfigError(
                f"{field} is {size} bytes as JSON, more than the {MAX_JSON_BYTES} bytes a file may hold "
                f"(io.MAX_JSON_BYTES); {_not_saved(path)}",
                field=field,
            )
    for field, tensors in trees.items():
        groups = {key.rsplit("/", i)[0] for key in tensors for i in range(1, key.count("/") + 1)}
        entries = len(tensors) + len(groups)
        if entries > MAX_ENTRIES:
            raise ConfigError(
                f"{field} would take {entries} entries (tensors and the groups that hold them), more than the "
                f"{MAX_ENTRIES} a file may hold (io.MAX_ENTRIES); {_not_saved(path)}",
                field=field,
            )


def _check_attr(path: "str | os.PathLike[str]", field: str, value: str) -> None:
    size = len(value.encode("utf-8"))
    if size > MAX_ATTR_BYTES:
        raise ConfigError(
            f"{field} is {size} bytes, more than the {MAX_ATTR_BYTES} a file attribute may hold "
            f"(io.MAX_ATTR_BYTES); {_not_saved(path)}",
            field=field,
        )


def _check_keys(tensors: dict, where: str, parts: int) -> None:
    """Every key is ``parts`` valid names joined by '/' (``layer/tensor``, ``slot/layer/tensor``):
    each becomes a link name in the file (``regnet.names``), so nothing is lost or merged."""
    for key in tensors:
        segments = key.split("/") if isinstance(key, str) else [key]
        bad = next((p for p in map(names.problem, segments) if p is not None), None)
        if len(segments) != parts or bad is not None:
            form = "/".join(("slot", "layer", "tensor")[-parts:]) if parts > 1 else "name"
            raise ConfigError(
                f"{where} key {escape(repr(key), 200)} cannot be stored: it must be '{form}', each part a valid "
                f"name{'' if bad is None else f' ({bad})'}",
                field=where,
            )


def _write_tensors(group: h5py.Group, tensors: dict) -> None:
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

    def __str__(self) -> str:
        found = "no shape (empty dataspace)" if self.file_shape is None else f"shape {list(self.file_shape)}"
        return (
            f"'{escape(self.name, 300)}': file has {found} {self.file_dtype}, model expects shape "
            f"{list(self.model_shape)} float32"
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
    def ok(self) -> bool:
        return not (self.missing or self.skipped or self.mismatched)

    def problems(self) -> list[str]:
        """One line per missing, skipped and mismatched tensor (names from the file escaped)."""
        out = [f"'{escape(k, 300)}' is missing from the file" for k in self.missing]
        out += [f"'{escape(k, 300)}' is in the file but not in the model" for k in self.skipped]
        out += [str(m) for m in self.mismatched]
        return out

    def __str__(self) -> str:
        head = f"{len(self.loaded)} tensor(s) loaded"
        return head if self.ok else head + "; " + "; ".join(self.problems())


class ModelFile:
    """Checked access to an open model file: every failure is a ``FileFormatError`` naming it.

    Low-level (``attr``, ``node``, ``dataset``, ``tensors``, ``json``, ``read``) and by section
    (``spec``, ``training_config``, ``weights``, ``optimizer_state``, ...). Nothing is read
    before its declared shape, type and storage layout are checked. ``path`` is the file's path,
    ``shown`` the same for messages (control characters escaped).
    """

    def __init__(self, f: h5py.File, path: str) -> None:
        self.f = f
        self.path = path
        self.shown = escape(path)

    def fail(self, message: str) -> FileFormatError:
        """A ``FileFormatError`` naming the file."""
        return FileFormatError(f"{self.shown}: {message}")

    # attributes
    def attr(self, obj: Any, name: str, kind: str, default: Any = None, required: bool = True) -> Any:
        """The scalar attribute ``name`` of ``obj``, a ``"str"`` or an ``"int"`` (checked first)."""
        where = escape(obj.name, 300)
        if name not in obj.attrs:
            if required:
                raise self.fail(f"attribute '{name}' of '{where}' is missing")
            return default
        aid = obj.attrs.get_id(name)
        if aid.shape not in ((), (1,)):
            shape = "no value (empty dataspace)" if aid.shape is None else f"shape {list(aid.shape)}"
            raise self.fail(f"attribute '{name}' of '{where}' must be a scalar, has {shape}")
        dt = aid.dtype
        if kind == "str":
            info = h5py.check_string_dtype(dt)
            # a variable-length string declares no length: its itemsize is that of a pointer, and
            # reading it would allocate whatever the file holds, so only fixed-length is read
            if info is None or info.length is None or dt.itemsize > MAX_ATTR_BYTES:
                found = (
                    "not a string"
                    if info is None
                    else "a variable-length string, which regnet never writes: not a file regnet wrote, or one "
                    "another program edited; it is not read"
                    if info.length is None
                    else f"{dt.itemsize} bytes"
                )
                raise self.fail(
                    f"attribute '{name}' of '{where}' must be a string of at most {MAX_ATTR_BYTES} bytes, stored "
                    f"fixed-length (found {found})"
                )
        elif dt.kind not in "iu":
            raise self.fail(f"attribute '{name}' of '{where}' must be an integer, found {dt}")
        value = obj.attrs[name]
        value = value.reshape(()).item() if isinstance(value, np.ndarray) else value
        if kind == "str":
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return int(value)

    # tree
    def node(self, where: str, required: bool = True) -> Any:
        """The group or dataset at ``where``, reached through hard links only."""
        obj = self.f
        for part in where.split("/"):
            if not isinstance(obj, h5py.Group):
                raise self.fail(f"'{escape(obj.name, 300)}' should be a group, found a dataset")
            link = obj.get(part, getlink=True)
            if link is None:
                if required:
                    raise self.fail(f"'{where}' is missing")
                return None
            self._check_link(link, f"{obj.name.rstrip('/')}/{part}")
            obj = obj[part]
        return obj

    def _check_link(self, link: Any, where: str) -> None:
        where = escape(where, 300)
        if isinstance(link, h5py.SoftLink):
            raise self.fail(f"'{where}' is a soft link to '{escape(link.path, 300)}'; links are refused")
        if isinstance(link, h5py.ExternalLink):
            target = escape(f"{link.filename}:{link.path}", 300)
            raise self.fail(f"'{where}' is an external link to '{target}'; links are refused")
        if not isinstance(link, h5py.HardLink):
            raise self.fail(f"'{where}' is a {type(link).__name__}; links are refused")

    def dataset(self, where: str, required: bool = True) -> h5py.Dataset | None:
        """The dataset at ``where`` (hard links only), its storage checked, nothing read."""
        ds = self.node(where, required)
        if ds is None:
            return None
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(f"'{where}' should be a dataset, found {type(ds).__name__}")
        self._check_storage(ds, where)
        return ds

    def _check_storage(self, ds: h5py.Dataset, where: str) -> None:
        """Refuse every storage but the format's: contiguous (or compact) data in this file,
        without filters. Chunked or compressed data could expand far beyond the file's size."""
        where = escape(where, 300)
        if ds.is_virtual:
            raise self.fail(f"'{where}' is a virtual dataset (data from other files); refused")
        plist = ds.id.get_create_plist()
        if plist.get_external_count() > 0:
            raise self.fail(f"'{where}' stores its data in external raw files; refused")
        layout = plist.get_layout()
        if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
            how = f"with storage layout {layout}"
            if layout == h5py.h5d.CHUNKED:
                how = f"chunked (chunk shape {list(ds.chunks or ())})"
            raise self.fail(
                f"'{where}' is stored {how}; the format stores datasets contiguously and without filters, "
                "so it is refused before anything is read"
            )
        if plist.get_nfilters() > 0:
            raise self.fail(f"'{where}' has {plist.get_nfilters()} filter(s) (compression); refused")

    def tensors(self, where: str, required: bool = True) -> dict[str, h5py.Dataset]:
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
                        raise self.fail(f"'{escape(where + '/' + key, 300)}' is nested deeper than {MAX_DEPTH} levels")
                    stack.append((key + "/", obj, depth + 1))
                elif isinstance(obj, h5py.Dataset):
                    self._check_storage(obj, f"{where}/{key}")
                    out[key] = obj
                else:
                    raise self.fail(f"'{escape(where + '/' + key, 300)}' is neither a group nor a dataset")
        return out

    # contents
    def json(self, where: str, required: bool = True, default: Any = None) -> Any:
        """The JSON document at ``where`` (a scalar fixed-length string of at most
        ``MAX_JSON_BYTES``, checked against its sha256), or ``default`` when optional and absent."""
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

    def read(self, ds: h5py.Dataset, where: str) -> np.ndarray:
        """The float32 contents of a dataset whose shape was already checked."""
        out = np.empty(ds.shape, dtype=np.float32)
        if out.size:
            ds.read_direct(out)
        self.verify(ds, where, out.astype("<f4", copy=False).tobytes())
        return out

    def verify(self, ds: h5py.Dataset, where: str, data: bytes) -> None:
        """Check ``data`` against the dataset's ``sha256`` attribute. Every writer adds one, so a
        missing one is refused (``IntegrityError``) unless ``REGNET_ALLOW_MISSING_CHECKSUMS=1``
        (for files made by hand, see docs/format.md)."""
        digest = self.attr(ds, "sha256", "str", required=False)
        if digest is None:
            if missing_checksums_allowed():
                return
            raise IntegrityError(
                f"{self.shown}: '{escape(where, 300)}' has no sha256 attribute; every JSON document and tensor of "
                f"the format has one, so the file was altered or made by hand (set {ALLOW_MISSING_CHECKSUMS}=1 to "
                "load a hand-made file without them)"
            )
        if digest != _sha256(data):
            raise IntegrityError(
                f"{self.shown}: '{escape(where, 300)}' does not match its sha256 checksum (the file is corrupted)"
            )

    def check_finite(self, tensors: dict[str, np.ndarray]) -> None:
        """Refuse tensors (``{"weights/...": array}``) holding NaN or infinities, naming every one;
        a checksum only proves that they were stored so."""
        bad = {k: v for k, v in tensors.items() if not np.isfinite(v).all()}
        if not bad:
            return
        parts = []
        for key in sorted(bad)[:10]:
            v = bad[key]
            nan, inf = int(np.isnan(v).sum()), int(np.isinf(v).sum())
            parts.append(f"'{escape(key, 300)}' ({nan} NaN, {inf} infinite of {v.size})")
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise self.fail(
            f"{len(bad)} tensor(s) hold NaN or infinite values: {', '.join(parts)}{more}; a model with them "
            "computes NaN. Pass allow_non_finite=True to load them anyway"
        )

    def header(self, formats: tuple[str, ...]) -> str:
        """The root ``format`` (one of ``formats``), after checking ``format_version``."""
        fmt = self.attr(self.f, "format", "str")
        if fmt not in formats:
            known = " or ".join(repr(x) for x in formats)
            hint = " (a weights-only file: use model.load_weights)" if fmt == WEIGHTS_FORMAT else ""
            raise self.fail(f"format is {escape(repr(fmt), 200)}, expected {known}{hint}")
        version = self.attr(self.f, "format_version", "int")
        if version > FORMAT_VERSION:
            raise self.fail(
                f"format_version {version} is newer than this regnet reads (up to {FORMAT_VERSION}); upgrade regnet"
            )
        if version < 1:
            raise self.fail(f"format_version {version} is not a valid version")
        return fmt

    # sections
    def spec(self) -> Any:
        """The model spec (JSON; the caller builds and so checks it)."""
        return self.json("model_spec")

    def training_config(self) -> dict | None:
        """The JSON training config (``None`` when the model was saved uncompiled)."""
        config = self.json("training_config", required=False)
        if config is not None and (not isinstance(config, dict) or not {"loss", "optimizer"} <= set(config)):
            raise self.fail("training_config must be an object with 'loss', 'optimizer' and 'metrics'")
        return config

    def components(self) -> list:
        """The ``metadata/components`` list (entries are checked by their reader)."""
        entries = self.json("metadata/components", required=False, default=[])
        if not isinstance(entries, list):
            raise self.fail("metadata/components must be a list")
        return entries

    def metadata(self) -> dict:
        """The user metadata object (``{}`` when absent)."""
        value = self.json("metadata/user", required=False, default={})
        if not isinstance(value, dict):
            raise self.fail("metadata/user must be an object")
        return value

    def rng_state(self) -> Any:
        """The stored generator state (JSON; the caller checks it against its generator)."""
        return self.json("rng_state")

    def untrained(self) -> bool:
        """Whether the file says its weights were never trained nor loaded (the ``untrained``
        attribute; files without it: epoch 0 and an empty history)."""
        flag = self.attr(self.f, "untrained", "int", default=None, required=False)
        if flag is not None:
            return bool(flag)
        epoch, history = self.progress()
        return epoch == 0 and not history

    def progress(self) -> tuple[int, list]:
        """``(epoch, history)``: epochs trained and the per-epoch logs."""
        epoch = self.attr(self.f, "epoch", "int", default=0, required=False)
        history = self.json("metadata/history", required=False, default=[])
        if epoch < 0 or not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise self.fail("epoch must be >= 0 and metadata/history a list of objects")
        return epoch, history

    def callback_state(self) -> dict:
        """``{key: state}`` of the callbacks saved with the model (``{}`` when there is none)."""
        states = self.json("callbacks/state", required=False, default={})
        if not isinstance(states, dict) or not all(
            names.problem(k) is None and isinstance(v, dict) for k, v in states.items()
        ):
            raise self.fail("callbacks/state must be an object of {key: state object}")
        return states

    def callback_weights(self, expected: dict[str, tuple], *, allow_non_finite: bool = False) -> dict:
        """The weight snapshots under ``/callbacks/weights``: exactly the tensors of ``expected``
        (``{"<key>/<layer>/<tensor>": shape}``), checked before anything is read."""
        found = self.tensors("callbacks/weights", required=False)
        report = _match(self, "callbacks/weights", found, expected)
        if not report.ok:
            raise _mismatch_error(self.shown, report, "the callbacks' weight snapshots do not fit the model")
        values = {k: self.read(found[k], f"callbacks/weights/{k}") for k in report.loaded}
        if not allow_non_finite:
            self.check_finite({f"callbacks/weights/{k}": v for k, v in values.items()})
        return values

    def weights(
        self, expected: dict[str, tuple], *, strict: bool = True, allow_non_finite: bool = False
    ) -> tuple[dict[str, np.ndarray], "WeightsReport"]:
        """``(values, report)``: the tensors under ``/weights`` whose names and shapes match
        ``expected`` (``{"layer/tensor": shape}``), checked before anything is read. ``strict``
        raises ``WeightsMismatchError`` listing every missing, extra and mismatched tensor;
        tensors holding NaN or infinities are refused unless ``allow_non_finite``."""
        found = self.tensors("weights")
        report = _match(self, "weights", found, expected)
        if strict and not report.ok:
            raise _mismatch_error(self.shown, report, "the stored weights do not fit the model")
        values = {k: self.read(found[k], f"weights/{k}") for k in report.loaded}
        if not allow_non_finite:
            self.check_finite({f"weights/{k}": v for k, v in values.items()})
        return values, report

    def optimizer_state(
        self, expected: dict[str, tuple], what: str = "the optimizer", *, allow_non_finite: bool = False
    ) -> dict[str, Any] | None:
        """The optimizer state (``{"iterations": int64, "<slot>/<layer>/<tensor>": array}``) or
        ``None`` when the file has none. Slots missing from the file are fine (an optimizer
        creates them on first use); extra or mismatched ones raise, and so do NaN or infinite
        values unless ``allow_non_finite``."""
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
            raise _mismatch_error(self.shown, bad, f"the optimizer state does not fit {what} on this model")
        state: dict[str, Any] = {k: self.read(found[k], f"optimizer/{k}") for k in report.loaded}
        if not allow_non_finite:
            self.check_finite({f"optimizer/{k}": v for k, v in state.items()})
        state["iterations"] = np.int64(iterations)
        return state


_LOW_LEVEL = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError, OverflowError)


@attrs.frozen
class FileData:
    """The bytes of a model file, read once (and checked by whoever read them, e.g. against a
    SHA-256), with the path they came from. ``open_file`` reads a ``FileData`` from memory, so
    what is loaded is exactly what was checked, whatever happens to the file afterwards."""

    path: str
    data: bytes = attrs.field(repr=False)


@contextlib.contextmanager
def open_file(path: "str | os.PathLike[str] | FileData", formats: tuple[str, ...] = (FORMAT,)) -> Iterator[ModelFile]:
    """Open a model file for checked reading (a context manager yielding a ``ModelFile``); the
    root ``format`` must be one of ``formats`` and the version one this regnet reads. A path
    that is not a regular file, or names the temporary file of a save, is refused. A
    ``FileData`` is read from its bytes, with the same checks of everything inside."""
    data = path.data if isinstance(path, FileData) else None
    path = path.path if isinstance(path, FileData) else _path(path)
    shown = escape(path)
    if data is None:
        _check_readable_path(path, shown)
    try:
        # no HDF5 file lock: saves replace a file by a rename and never change it in place, so a
        # reader needs none, and a lock would collide with whatever holds one on the file
        f = h5py.File(path if data is None else stdio.BytesIO(data), "r", locking=False)
    except _LOW_LEVEL as exc:
        raise FileFormatError(_not_hdf5(path, exc, data)) from None
    try:
        reader = ModelFile(f, path)
        reader.header(formats)
        yield reader
    except RegnetError:
        raise
    except _LOW_LEVEL as exc:
        raise FileFormatError(f"{shown} is corrupted or unreadable: {type(exc).__name__}: {escape(exc)}") from exc
    finally:
        with contextlib.suppress(Exception):
            f.close()


def _check_readable_path(path: str, shown: str) -> None:
    """Refuse a path that is not a regular file, or that names the temporary file of a save."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileFormatError(f"{shown} does not exist") from None
    except OSError as exc:
        raise FileFormatError(f"{shown} cannot be opened: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise FileFormatError(f"{shown} is {what}")
    if is_temporary(path) or is_temporary(os.path.realpath(path)):
        raise FileFormatError(
            f"{shown} is the temporary file of a save that did not finish (a name like "
            ".regnet.<hash>.<random>.tmp); load the file the save was writing instead"
        )


def _not_hdf5(path: str, exc: BaseException, data: bytes | None = None) -> str:
    """Why ``path`` (or its ``data``) cannot be opened as a model file, in a user's words when it
    is a JSON spec."""
    if data is not None:
        head = data[:_SNIFF].lstrip()
    else:
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
    return f"{escape(path)} is not a readable HDF5 file: {escape(exc)}"


def _is_f32(dtype: np.dtype) -> bool:
    return dtype.kind == "f" and dtype.itemsize == 4


def _match(r: ModelFile, where: str, found: dict, expected: dict) -> WeightsReport:
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


def _mismatch_error(path: str, report: WeightsReport, what: str) -> WeightsMismatchError:
    lines = report.problems()
    return WeightsMismatchError(f"{path}: {what} ({len(lines)} problem(s)): " + "; ".join(lines))


def path_text(path: "str | os.PathLike[str]") -> str:
    """A path argument as text (``ConfigError`` for anything that is not a path)."""
    return _path(path)


def check_writable(path: "str | os.PathLike[str]") -> str:
    """Raise ``FileFormatError`` now if a file cannot be saved at ``path`` (its directory is
    missing or not writable, or ``path`` is a directory): commands check this before long work.
    Probes by creating and removing a temporary file next to ``path``."""
    path = _path(path)
    directory = save_directory(path)
    if os.path.isdir(path):
        raise FileFormatError(f"cannot save to {escape(path)}: it is a directory")
    if not os.path.isdir(directory):
        raise FileFormatError(f"cannot save to {escape(path)}: the directory {escape(directory)} does not exist")
    probe = os.path.join(directory, f".regnet-probe.{secrets.token_hex(8)}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise FileFormatError(f"cannot save to {escape(path)}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        os.remove(probe)
    return path


#: the first bytes of every HDF5 file (the superblock signature at offset 0, as regnet writes it)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_model_file(path: "str | os.PathLike[str]") -> bool:
    """Whether ``path`` is a regnet model or weights file (its root ``format`` says so)."""
    try:
        if not os.path.isfile(path):  # nothing but a regular file is opened (a FIFO would block)
            return False
        with open(path, "rb") as fh:
            if fh.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                return False
        with h5py.File(path, "r", locking=False) as f:
            fmt = f.attrs.get("format")
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        return False
    if isinstance(fmt, np.ndarray):
        fmt = fmt.reshape(-1)[0] if fmt.size else None
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    return fmt in (FORMAT, WEIGHTS_FORMAT)


def check_model_target(path: "str | os.PathLike[str]") -> str:
    """Raise ``FileFormatError`` if ``path`` names an existing file that a model must not replace:
    anything but a regnet model or weights file (or an empty file). ``--out picture.png`` then
    fails with the picture untouched instead of turning it into HDF5."""
    path = _path(path)
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return path  # no file (the save reports any other problem)
    if stat.S_ISREG(info.st_mode) and info.st_size > 0 and not is_model_file(path):
        raise FileFormatError(
            f"cannot save a model to {escape(path)}: the file exists and is not a regnet model file (HDF5); "
            "it is not replaced and is left untouched: remove it first or choose another path"
        )
    return path


def read_metadata(path: "str | os.PathLike[str]") -> dict:
    """The user ``metadata`` a model or weights file was saved with, through the safe reader."""
    with open_file(path, (FORMAT, WEIGHTS_FORMAT)) as f:
        return f.metadata()


__all__ = [
    "FileData",
    "ModelRecord",
    "ModelFile",
    "WeightsReport",
    "Mismatch",
    "write",
    "write_weights",
    "open_file",
    "read_metadata",
    "atomic_write",
    "check_writable",
    "check_model_target",
    "is_model_file",
    "path_text",
    "FORMAT",
    "WEIGHTS_FORMAT",
    "FORMAT_VERSION",
]

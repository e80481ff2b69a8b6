"""Moving a model's state to and from a file: the bridge between a model and ``regnet.io``.

``io`` knows the file format and nothing of models; a model knows its spec and its state
(``to_spec``, ``state_dict``, the optimizer's ``state_dict``, ``rng``, ``epoch``, ``history``) and
nothing of files. The functions here combine the two: ``save``/``save_weights`` capture a model
into an ``io.ModelRecord``; ``restore``/``load_weights`` put a file's state into an existing
model; ``load`` builds a model from a file's spec (given the model class) and restores it.

Everything read is checked and staged before the model is touched: a file that does not fit
leaves the model exactly as it was.
"""

import os
import warnings
from typing import Any, TypeAlias

import attrs
import numpy as np

from . import io, losses, metrics, optimizers
from .errors import (
    ConfigError,
    FileFormatError,
    PluginError,
    RegnetError,
    UnknownComponentError,
    WeightsMismatchError,
)
from .fields import kind_of
from .history import History
from .registry import BUILTIN, REGISTRIES, Registry, autoload_hint, install_command, registered_name
from .text import escape

PathLike: TypeAlias = str | os.PathLike[str]


# -- capture ------------------------------------------------------------------------------------
def record(model: Any, metadata: dict | None = None) -> io.ModelRecord:
    """Everything ``save`` writes for ``model``, as an ``io.ModelRecord``."""
    optimizer = model.optimizer
    states, snapshots = callback_states(getattr(model, "training_callbacks", ()))
    return io.ModelRecord(
        spec=model.to_spec(),
        weights=model.state_dict(),
        rng_state=model.rng.bit_generator.state,
        epoch=model.epoch,
        history=History(model.history).to_list(),
        components=components(model),
        metadata={} if metadata is None else metadata,
        training_config=model.training_config(),
        optimizer_type=None if optimizer is None else registered_name(optimizer),
        optimizer_state=None if optimizer is None else optimizer.state_dict(),
        callbacks=states or None,
        callback_weights=snapshots,
        untrained=bool(getattr(model, "initial_weights", False)) and model.epoch == 0,
    )


def save(model: Any, path: PathLike, *, metadata: dict | None = None) -> str:
    """Save ``model`` (spec, weights, training config, optimizer and RNG state, epoch, history and
    ``metadata``, a JSON-able dict) to one HDF5 file at ``path``, atomically."""
    return io.write(path, record(model, metadata))


def save_weights(model: Any, path: PathLike) -> str:
    """Save only the weights (parameters and buffers, by name) to an HDF5 file, atomically."""
    return io.write_weights(path, model.to_spec(), model.state_dict(), model.epoch)


def components(model: Any) -> list[dict]:
    """Every component the model uses: ``[{"kind", "name", "distribution", "version", ...}]``."""
    used: set[tuple[str, str]] = set()
    for layer in model.layers:
        used.add(("layers", registered_name(layer)))
        _collect_fields(layer, used)
    schedule = getattr(model.optimizer, "schedule", None)
    named = [("losses", model.loss), ("optimizers", model.optimizer), ("schedules", schedule)]
    for kind, obj in named + [("metrics", m) for m in model.metrics]:
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
        out.append(
            {
                "kind": kind,
                "name": reg.canonical(name),
                "builtin": prov.builtin,
                "distribution": prov.distribution,
                "version": prov.version,
                "entry_point": prov.entry_point,
            }
        )
    return out


def _collect_fields(obj: Any, used: set) -> None:
    """Add the components named by ``obj``'s component fields (those made by ``fields.component``)."""
    if not attrs.has(type(obj)):
        return
    for a in attrs.fields(type(obj)):
        kind = kind_of(a)
        value = getattr(obj, a.name, None)
        if kind is None or value is None:
            continue
        if isinstance(value, (str, dict)):
            name = value.get("type") if isinstance(value, dict) else value
            if isinstance(name, str):
                used.add((kind, name))
        else:  # a component instance (a schedule inside a schedule)
            used.add((kind, registered_name(value)))
            _collect_fields(value, used)


# -- staging what a file holds ------------------------------------------------------------------
@attrs.define
class Staged:
    """A file's state, checked against a model and not yet applied to it."""

    weights: dict
    loss: Any = None
    optimizer: Any = None
    metrics: list = attrs.Factory(list)
    optimizer_state: dict | None = None
    rng_state: dict | None = None
    epoch: int = 0
    history: list = attrs.Factory(list)
    callbacks: dict = attrs.Factory(dict)


def stage(
    model: Any,
    f: io.ModelFile,
    *,
    training: bool,
    optimizer: Any = None,
    allow_non_finite: bool = False,
    callbacks: bool = False,
) -> Staged:
    """Read and check everything ``apply`` needs for ``model`` from the open file ``f``.

    With ``training``, the loss, optimizer and metrics come from the file's training config
    (or, when ``optimizer`` is given, the model keeps its own and receives the stored state).
    With ``callbacks`` (resuming training: nothing else uses them) the callbacks' saved state and
    weight snapshots are read too. Tensors holding NaN or infinities are refused unless
    ``allow_non_finite``.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    staged = Staged(f.weights(expected, allow_non_finite=True)[0])
    if training:
        if optimizer is None:
            config = f.training_config()
            if config is not None:
                staged.loss, optimizer, staged.metrics = _training_components(config, f)
                staged.optimizer = optimizer
        if optimizer is not None:
            slots = {
                f"{slot}/{key}": shape
                for key, p in model.params.items()
                for slot, shape in optimizer.slot_shapes(p.shape).items()
            }
            staged.optimizer_state = f.optimizer_state(slots, registered_name(optimizer), allow_non_finite=True)
    if not allow_non_finite:  # one error naming every bad tensor, weights and optimizer state
        tensors = {f"weights/{k}": v for k, v in staged.weights.items()}
        tensors.update({f"optimizer/{k}": v for k, v in (staged.optimizer_state or {}).items() if k != "iterations"})
        f.check_finite(tensors)
    staged.rng_state = _rng_state(f, model.rng)
    staged.epoch, staged.history = f.progress()
    if callbacks:
        staged.callbacks = _callback_states(f, expected, allow_non_finite)
    return staged


def _callback_states(f: io.ModelFile, shapes: dict, allow_non_finite: bool = False) -> dict:
    """The callbacks' saved state, with their weight snapshots (shaped like the model's weights)."""
    raw = f.callback_state()
    expected = {}
    for key, entry in raw.items():
        if not isinstance(entry.get("class"), str) or not isinstance(entry.get("state"), dict):
            raise f.fail(f"callbacks/state '{key}' must hold 'class' (a name) and 'state' (an object)")
        if entry.get("weights"):
            expected.update({f"{key}/{k}": shape for k, shape in shapes.items()})
    arrays = f.callback_weights(expected, allow_non_finite=allow_non_finite)
    out = {}
    for key, entry in raw.items():
        state = dict(entry["state"])
        if entry.get("weights"):
            state["weights"] = {k: arrays[f"{key}/{k}"] for k in shapes}
        out[key] = {"class": entry["class"], "state": state}
    return out


def _training_components(config: dict, f: io.ModelFile) -> tuple:
    try:
        loss, optimizer = losses.get(config["loss"]), optimizers.get(config["optimizer"])
    except (UnknownComponentError, PluginError):
        raise
    except ConfigError as exc:
        raise f.fail(f"training_config is invalid: {exc}") from exc
    names = config.get("metrics") or []
    if not isinstance(names, list):
        raise f.fail("training_config 'metrics' must be a list of names or configs")
    found = []
    for name in names:
        try:
            found.append(metrics.get(name))
        except (ConfigError, PluginError, TypeError) as exc:
            warnings.warn(
                f"{f.shown}: metric {escape(repr(name), 200)} is left out: {exc}",
                RuntimeWarning,
                stacklevel=4,
            )
    return loss, optimizer, found


def _rng_state(f: io.ModelFile, rng: np.random.Generator) -> dict:
    state = f.rng_state()
    kind = type(rng.bit_generator).__name__
    if not isinstance(state, dict) or state.get("bit_generator") != kind:
        raise f.fail(f"rng_state is not a {kind} state")
    probe = type(rng.bit_generator)()
    try:
        probe.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise f.fail(f"rng_state is invalid: {exc}") from None
    return state


def apply(model: Any, staged: Staged) -> None:
    """Put a staged state into ``model`` (nothing here can fail on a checked state)."""
    model.load_state_dict(staged.weights)
    if staged.loss is not None:
        model.compile(loss=staged.loss, optimizer=staged.optimizer, metrics=staged.metrics)
    if staged.optimizer_state is not None:
        model.optimizer.load_state_dict(staged.optimizer_state)
    model.rng.bit_generator.state = staged.rng_state
    model.epoch = staged.epoch
    model.history = History(staged.history)


# -- the public entry points --------------------------------------------------------------------
def load(
    model_class: Any, path: "PathLike | io.FileData", *, compile: bool = True, allow_non_finite: bool = False
) -> Any:
    """The model saved at ``path``, built with ``model_class.from_spec``: weights, epoch, history
    and RNG state; with ``compile`` also its loss, optimizer (with its state) and metrics, so that
    training resumes exactly. ``regnet.load(path)`` is this with ``regnet.Model``. A file whose
    tensors hold NaN or infinities is refused unless ``allow_non_finite``. ``path`` may also be
    ``"zoo:NAME"``, or a zoo model's bare name when no file of that name exists (``source_path``)."""
    with io.open_file(source_path(path)) as f:
        spec = f.spec()
        require_components(f.components(), f.path)
        try:
            model = model_class.from_spec(spec)
        except (UnknownComponentError, PluginError) as exc:
            raise type(exc)(f"{f.shown}: {exc}") from exc
        except RegnetError as exc:
            raise f.fail(f"model_spec does not describe a valid model: {exc}") from exc
        staged = stage(model, f, training=compile, allow_non_finite=allow_non_finite)
        untrained = f.untrained()
    apply(model, staged)
    if untrained:
        model.initial_weights = True  # saved again, it is still untrained
        model.untrained_warning = (
            f"{f.shown} holds a model that was never trained (its weights are the initial ones): its outputs "
            f"mean nothing yet"
        )
    return model


def restore(model: Any, path: PathLike, *, allow_non_finite: bool = False) -> Any:
    """Load a checkpoint saved by ``save`` into ``model`` (same layers and shapes): weights,
    optimizer state, RNG state, epoch and history. An uncompiled model is compiled from the
    file's training config; a compiled one keeps its optimizer and receives the stored state.
    Everything is checked before the model is changed (NaN or infinities are refused unless
    ``allow_non_finite``)."""
    restore_training(model, path, allow_non_finite=allow_non_finite, callbacks=False)
    return model


def restore_training(model: Any, path: PathLike, *, allow_non_finite: bool = False, callbacks: bool = True) -> dict:
    """``restore``, returning the saved state of the callbacks (``{key: state}``, for
    ``apply_callback_states``; ``{}`` without ``callbacks``, which leaves them unread): what
    ``fit(resume_from=path)`` does first."""
    with io.open_file(path) as f:
        staged = stage(
            model, f, training=True, optimizer=model.optimizer, allow_non_finite=allow_non_finite, callbacks=callbacks
        )
        shown = f.shown
    if staged.loss is None and model.optimizer is None:
        raise FileFormatError(f"{shown}: holds no training config; compile the model before resuming")
    apply(model, staged)
    return staged.callbacks


# -- the state of callbacks ---------------------------------------------------------------------
def callback_keys(callbacks: Any) -> list[tuple[str, Any]]:
    """``(key, callback)`` for each callback that has a ``state_dict``: the key is its
    ``state_key``, else its class name, numbered from the second of a kind (``EarlyStopping#2``)."""
    counts: dict[str, int] = {}
    out = []
    for cb in callbacks:
        if not callable(getattr(cb, "state_dict", None)):
            continue
        base = getattr(cb, "state_key", None) or type(cb).__name__
        counts[base] = counts.get(base, 0) + 1
        out.append((base if counts[base] == 1 else f"{base}#{counts[base]}", cb))
    return out


def callback_states(callbacks: Any) -> tuple[dict, dict]:
    """``({key: {"class", "state", "weights"}}, {"<key>/<layer>/<tensor>": array})``: what the
    file stores of the callbacks' ``state_dict()`` (a ``"weights"`` entry of a state, a snapshot
    of the model's weights, is stored as tensors)."""
    states, snapshots = {}, {}
    for key, cb in callback_keys(callbacks):
        state = cb.state_dict()
        if state is None:
            continue
        state = dict(state)
        weights = state.pop("weights", None)
        if weights is not None:
            snapshots.update({f"{key}/{k}": v for k, v in weights.items()})
        states[key] = {"class": type(cb).__name__, "state": state, "weights": weights is not None}
    return states, snapshots


def apply_callback_states(callbacks: Any, states: dict) -> None:
    """Give each callback the state saved under its key (``load_state_dict``); a state saved by
    a callback of another class is left alone, with a warning."""
    for key, cb in callback_keys(callbacks):
        entry = states.get(key)
        if entry is None:
            continue
        if entry["class"] != type(cb).__name__:
            warnings.warn(
                f"the saved state '{key}' belongs to a {escape(entry['class'], 100)}, not to this "
                f"{type(cb).__name__}; it is not restored",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        cb.load_state_dict(entry["state"])


def load_state(model: Any, state: dict[str, Any], *, strict: bool = True) -> io.WeightsReport:
    """Copy ``{"layer/tensor": array}`` into ``model``'s weights by name (``Model.load_state_dict``).

    Every name, shape and dtype (a real floating-point type) is checked before anything is
    assigned; ``strict`` raises ``WeightsMismatchError`` listing every problem, otherwise the
    matching tensors are copied and the returned ``WeightsReport`` lists the rest."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    loaded, mismatched = [], []
    for key in sorted(set(own) & set(state)):
        value = np.asarray(state[key])
        if value.shape != own[key].shape or value.dtype.kind != "f":
            mismatched.append(io.Mismatch(key, value.shape, str(value.dtype), own[key].shape))
        else:
            loaded.append(key)
    report = io.WeightsReport(loaded, missing, unexpected, mismatched)
    if strict and not report.ok:
        raise WeightsMismatchError(
            f"the state does not fit the model ({len(report.problems())} problem(s)): " + "; ".join(report.problems())
        )
    for key in loaded:
        np.copyto(own[key], state[key], casting="same_kind")
    if loaded:
        model.initial_weights = False
    return report


def load_weights(
    model: Any, path: PathLike, strict: bool = True, *, allow_non_finite: bool = False
) -> io.WeightsReport:
    """Assign tensors stored in ``path`` (a weights or a full model file) to ``model`` by name.

    Shapes and dtypes are checked before anything is read or assigned. ``strict`` raises
    ``WeightsMismatchError`` listing every missing, extra and mismatched tensor; otherwise the
    matching tensors are loaded and the returned ``WeightsReport`` lists the rest. Tensors
    holding NaN or infinities are refused unless ``allow_non_finite``.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    with io.open_file(source_path(path), (io.FORMAT, io.WEIGHTS_FORMAT)) as f:
        values, report = f.weights(expected, strict=strict, allow_non_finite=allow_non_finite)
    model.load_state_dict(values, strict=False)
    return report


#: schemes of model and weight sources other than paths: ``"zoo:NAME"`` (registered by ``regnet.zoo``)
SOURCES: dict[str, Any] = {}
#: what a path that does not exist may name instead (``regnet.zoo`` registers its models' bare
#: names): each takes the text and returns the checked file (``io.FileData``), raises a clear
#: error, or returns ``None`` (the text stays a path)
RESOLVERS: list[Any] = []


def source_path(source: "PathLike | io.FileData") -> "str | io.FileData":
    """The file behind a model or weight source: a path; ``"<scheme>:<name>"``
    (``"zoo:lenet5-mnist"``), which a scheme may give as the checked bytes of its file
    (``io.FileData``); or, when no file of that name exists, a bare name a resolver knows
    (``"lenet5-mnist"``, a zoo model). A file that exists always wins."""
    if isinstance(source, io.FileData):
        return source
    text = io.path_text(source)
    if os.path.lexists(text):
        return text
    scheme, sep, name = text.partition(":")
    if sep and scheme in SOURCES:
        return SOURCES[scheme](name)
    for resolve in RESOLVERS:
        found = resolve(text)
        if found is not None:
            return found
    return text


def transfer(model: Any, source: PathLike, *, skip_mismatch: bool = False) -> io.WeightsReport:
    """Copy into ``model`` every tensor of the model or weights file ``source`` whose name
    (``"layer/tensor"``) it shares: a new model takes a trained one's layers by name, and layers
    that are new (or renamed) keep their initial weights; tensors only the file has are ignored.

    A shared tensor of another shape raises ``WeightsMismatchError`` (before anything changes)
    unless ``skip_mismatch``, which keeps the model's own and warns. So does a file sharing no
    tensor with the model. Returns the ``WeightsReport``."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    with io.open_file(source_path(source), (io.FORMAT, io.WEIGHTS_FORMAT)) as f:
        values, report = f.weights(expected, strict=False)
        path = f.shown
    if not report.loaded and not report.mismatched:
        raise WeightsMismatchError(
            f"{path}: no tensor of the file has a name of the model (the file's layers are named otherwise)"
        )
    if report.mismatched:
        problems = "; ".join(str(m) for m in report.mismatched)
        if not skip_mismatch:
            raise WeightsMismatchError(
                f"{path}: {len(report.mismatched)} tensor(s) differ in shape: {problems} (skip_mismatch=True keeps "
                f"the model's own for them)"
            )
        warnings.warn(f"{path}: kept the model's own weights for {problems}", UserWarning, stacklevel=3)
    model.load_state_dict(values, strict=False)
    return report


def require_components(entries: list, path: str) -> None:
    """Raise one error naming every component the file records that cannot be used here: for
    each, its type, kind and entry-point group, and why (not installed, installed but withheld
    by ``REGNET_DISABLE_PLUGIN_AUTOLOAD``, or broken, e.g. by a name clash). An install command
    is suggested only for a distribution name and version that are valid (PEP 508, PEP 440);
    every string taken from the file is escaped."""
    shown = escape(path)
    problems, broken = [], False
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry.get("kind") not in REGISTRIES:
            raise FileFormatError(f"{shown}: metadata/components holds a malformed entry {escape(repr(entry), 200)}")
        reg = REGISTRIES[entry["kind"]]
        what = f"{reg.noun} type '{escape(entry['name'], 200)}' (kind '{reg.kind}', group '{reg.group}')"
        if entry["kind"] == "metrics":  # a metric that is not available is left out with a warning
            continue
        try:
            reg.get(entry["name"])
        except UnknownComponentError:
            problems.append(f"{what} {_why_missing(reg, entry)}")
        except PluginError as exc:
            broken = True
            problems.append(f"{what} is installed but unusable: {escape(exc)}")
    if problems:
        head = f"{shown}: " + (f"{len(problems)} components are not available: " if len(problems) > 1 else "")
        raise (PluginError if broken else UnknownComponentError)(head + "; ".join(problems))


def _why_missing(reg: Registry, entry: dict) -> str:
    """Why a component the file names is not registered, and what would make it available."""
    withheld = reg.withheld(entry["name"])
    if withheld is not None:
        installed = escape(withheld.distribution, 200)
        return f"is installed (distribution {installed}) but not loaded: {autoload_hint(withheld)}"
    why = f"is not available: no installed package registers it in the entry-point group '{reg.group}'"
    dist, version = entry.get("distribution"), entry.get("version")
    if dist is None or dist == BUILTIN:
        if isinstance(version, str):
            why += f"; the file was written by regnet {escape(version, 40)}, which has it built in"
        return why
    saved = f"the file records distribution {escape(repr(dist), 200)} version {escape(repr(version), 60)}"
    command = install_command(dist, version)
    if command is None:
        return f"{why}; {saved}, which is not a valid package name, so no install command is suggested"
    return f"{why}; {saved}: {command}"

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
from .errors import ConfigError, FileFormatError, PluginError, RegnetError, UnknownComponentError
from .fields import kind_of
from .registry import REGISTRIES, registered_name, to_plain
from .text import escape

PathLike: TypeAlias = str | os.PathLike[str]


# -- capture ------------------------------------------------------------------------------------
def record(model: Any, metadata: dict | None = None) -> io.ModelRecord:
    """Everything ``save`` writes for ``model``, as an ``io.ModelRecord``."""
    optimizer = model.optimizer
    return io.ModelRecord(
        spec=model.to_spec(),
        weights=model.state_dict(),
        rng_state=model.rng.bit_generator.state,
        epoch=model.epoch,
        history=to_plain(model.history),
        components=components(model),
        metadata={} if metadata is None else metadata,
        training_config=model.training_config(),
        optimizer_type=None if optimizer is None else registered_name(optimizer),
        optimizer_state=None if optimizer is None else optimizer.state_dict(),
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
        name = value.get("type") if isinstance(value, dict) else value
        if kind is not None and isinstance(name, str):
            used.add((kind, name))


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


def stage(model: Any, f: io.ModelFile, *, training: bool, optimizer: Any = None) -> Staged:
    """Read and check everything ``apply`` needs for ``model`` from the open file ``f``.

    With ``training``, the loss, optimizer and metrics come from the file's training config
    (or, when ``optimizer`` is given, the model keeps its own and receives the stored state).
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    staged = Staged(f.weights(expected)[0])
    if training:
        if optimizer is None:
            config = f.training_config()
            if config is not None:
                staged.loss, optimizer, staged.metrics = _training_components(config, f)
                staged.optimizer = optimizer
        if optimizer is not None:
            slots = {f"{slot}/{key}": p.shape for slot in optimizer.slot_names for key, p in model.params.items()}
            staged.optimizer_state = f.optimizer_state(slots, registered_name(optimizer))
    staged.rng_state = _rng_state(f, model.rng)
    staged.epoch, staged.history = f.progress()
    return staged


def _training_components(config: dict, f: io.ModelFile) -> tuple:
    try:
        loss, optimizer = losses.get(config["loss"]), optimizers.get(config["optimizer"])
    except (UnknownComponentError, PluginError):
        raise
    except ConfigError as exc:
        raise f.fail(f"training_config is invalid: {exc}") from exc
    names = config.get("metrics") or []
    if not isinstance(names, list):
        raise f.fail("training_config 'metrics' must be a list of names")
    found = []
    for name in names:
        try:
            found.append(metrics.get(name))
        except (ConfigError, TypeError):
            warnings.warn(
                f"{f.path}: metric {escape(repr(name), 200)} is not known here and is left out",
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
    model.history = list(staged.history)


# -- the public entry points --------------------------------------------------------------------
def load(model_class: Any, path: PathLike, *, compile: bool = True) -> Any:
    """The model saved at ``path``, built with ``model_class.from_spec``: weights, epoch, history
    and RNG state; with ``compile`` also its loss, optimizer (with its state) and metrics, so that
    training resumes exactly. ``regnet.load(path)`` is this with ``regnet.Model``."""
    with io.open_file(path) as f:
        spec = f.spec()
        require_components(f.components(), f.path)
        try:
            model = model_class.from_spec(spec)
        except (UnknownComponentError, PluginError) as exc:
            raise type(exc)(f"{f.path}: {exc}") from exc
        except RegnetError as exc:
            raise f.fail(f"model_spec does not describe a valid model: {exc}") from exc
        staged = stage(model, f, training=compile)
    apply(model, staged)
    return model


def restore(model: Any, path: PathLike) -> Any:
    """Load a checkpoint saved by ``save`` into ``model`` (same layers and shapes): weights,
    optimizer state, RNG state, epoch and history. An uncompiled model is compiled from the
    file's training config; a compiled one keeps its optimizer and receives the stored state.
    Everything is checked before the model is changed."""
    with io.open_file(path) as f:
        staged = stage(model, f, training=True, optimizer=model.optimizer)
    if staged.loss is None and model.optimizer is None:
        raise FileFormatError(f"{path}: holds no training config; compile the model before resuming")
    apply(model, staged)
    return model


def load_weights(model: Any, path: PathLike, strict: bool = True) -> io.WeightsReport:
    """Assign tensors stored in ``path`` (a weights or a full model file) to ``model`` by name.

    Shapes and dtypes are checked before anything is read or assigned. ``strict`` raises
    ``WeightsMismatchError`` listing every missing, extra and mismatched tensor; otherwise the
    matching tensors are loaded and the returned ``WeightsReport`` lists the rest.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    with io.open_file(path, (io.FORMAT, io.WEIGHTS_FORMAT)) as f:
        values, report = f.weights(expected, strict=strict)
    model.load_state_dict(values, strict=False)
    return report


def require_components(entries: list, path: str) -> None:
    """Raise naming the type, kind, entry-point group and distribution of the first component
    the file records that no installed package provides."""
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry.get("kind") not in REGISTRIES:
            raise FileFormatError(f"{path}: metadata/components holds a malformed entry {escape(repr(entry), 200)}")
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
            raise PluginError(
                f"{path}: {kind[:-1]} type '{name}' (kind '{kind}', group '{reg.group}'): {exc}{hint}"
            ) from exc

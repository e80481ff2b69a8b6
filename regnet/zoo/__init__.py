"""The model zoo: trained models listed in manifests, checked before loading.

The built-in zoo is ``model_zoo/`` of the regnet repository: a wheel carries a copy of it inside
the package (``regnet/zoo/models/``), an editable install reads ``model_zoo/`` itself, and
``$REGNET_ZOO`` (a folder holding a ``manifest.json``) replaces it. Installed distributions add
models through the entry-point group ``regnet.zoo`` (see ``regnet.zoo.providers``); a built-in
name always wins, a name two providers claim is refused, and a broken provider never breaks
the rest.

``load`` verifies the weights file's size and SHA-256 first: a modified or truncated file raises
``IntegrityError`` and is never opened.
"""

import builtins
import copy
import difflib
import hashlib
import os
from pathlib import Path

import attrs

from .. import checkpoint, io
from .._version import __version__
from ..datasets import sources
from ..errors import FileFormatError, IntegrityError, PluginError, RegnetError, UnknownComponentError
from ..model import Model
from ..registry import Broken, Provider
from ..text import show
from . import providers
from .manifest import MANIFEST, REQUIRED, resolve
from .manifest import read as read_manifest

__all__ = [
    "root",
    "manifest",
    "list",
    "info",
    "broken",
    "verify",
    "verified",
    "load",
    "evaluate",
    "MANIFEST",
    "REQUIRED",
]

#: where a wheel keeps the built-in zoo (copied there from model_zoo/ at build time, see setup.py)
SHIPPED = Path(__file__).resolve().parent / "models"
#: the repository's zoo, next to the package (editable installs and source checkouts)
REPOSITORY = Path(__file__).resolve().parents[2] / "model_zoo"


@attrs.frozen
class Entry:
    """A zoo model: its manifest entry, the folder its paths are relative to, and its provider."""

    data: dict
    folder: Path
    provider: Provider


@attrs.frozen
class Catalog:
    """Every usable model by name, plus broken providers and names refused as clashes."""

    models: dict
    broken: builtins.list
    clashes: dict
    withheld: builtins.list


def root() -> Path:
    """The built-in zoo folder: ``$REGNET_ZOO``, else the models shipped in the package, else
    ``model_zoo/`` next to the package."""
    env = os.environ.get("REGNET_ZOO")
    if env:
        return Path(env)
    return SHIPPED if (SHIPPED / MANIFEST).is_file() else REPOSITORY


def manifest() -> dict:
    """The built-in manifest: ``{"format": "regnet.zoo", "version": 1, "models": [...]}``."""
    return {"format": "regnet.zoo", "version": 1, "models": read_manifest(root() / MANIFEST)}


def catalog() -> Catalog:
    """The built-in models, then those of every ``regnet.zoo`` provider that does not clash."""
    builtin = Provider(version=__version__)
    folder = root()
    models = {e["name"]: Entry(e, folder, builtin) for e in read_manifest(folder / MANIFEST)}
    found = providers.discover()
    broken = builtins.list(found.broken)
    claims: dict = {}
    for source in found.sources:
        for e in source.models:
            claims.setdefault(e["name"], []).append(Entry(e, source.path.parent, source.provider))
    clashes = {}
    for name, entries in claims.items():
        if name in models:
            for entry in entries:
                broken.append(
                    Broken(name, entry.provider, f"name clash: zoo model '{name}' is built in; the built-in is kept")
                )
        elif len(entries) > 1:
            who = " and ".join(describe(entry.provider) for entry in entries)
            clashes[name] = f"name clash: zoo model '{name}' is provided by {who}"
            broken += [Broken(name, entry.provider, clashes[name]) for entry in entries]
        else:
            models[name] = entries[0]
    return Catalog(models, broken, clashes, found.withheld)


def describe(provider: Provider) -> str:
    """``regnet (built-in)`` or ``distribution version``."""
    if provider.builtin:
        return "regnet (built-in)"
    return f"{provider.distribution} {provider.version or ''}".strip()


def list() -> builtins.list[str]:
    """Names of the zoo's models (built-in and from providers), sorted."""
    return sorted(catalog().models)


def broken() -> builtins.list[dict]:
    """Every ``regnet.zoo`` provider (or provided model) that could not be used, with the reason:
    ``{"name", "distribution", "version", "entry_point", "error"}``."""
    return [
        {
            "name": b.name,
            "distribution": b.provider.distribution,
            "version": b.provider.version,
            "entry_point": b.provider.entry_point,
            "error": b.error,
        }
        for b in catalog().broken
    ]


def info(name: str) -> dict:
    """A copy of ``name``'s manifest entry, with absolute ``spec_path`` and ``weights_path`` and
    its ``provider`` (``{"distribution", "version", "entry_point"}``)."""
    found = catalog()
    entry = found.models.get(name)
    if entry is None:
        raise _unknown(name, found)
    out = copy.deepcopy(entry.data)
    where = f"zoo model '{name}' of {describe(entry.provider)}"
    out["spec_path"] = str(resolve(entry.folder, entry.data["spec"], where))
    out["weights_path"] = str(resolve(entry.folder, entry.data["weights"], where))
    prov = entry.provider
    out["provider"] = {"distribution": prov.distribution, "version": prov.version, "entry_point": prov.entry_point}
    return out


def _unknown(name, found):
    if name in found.clashes:
        return PluginError(found.clashes[name])
    names = sorted(found.models)
    close = difflib.get_close_matches(name, names, n=2) if isinstance(name, str) else []
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    notes = [f"the zoo holds {', '.join(names)}"]
    if found.broken:
        notes.append("broken providers: " + ", ".join(sorted({describe(b.provider) for b in found.broken})))
    if found.withheld:
        notes.append(
            "REGNET_DISABLE_PLUGIN_AUTOLOAD leaves out the zoo of "
            + ", ".join(sorted({describe(p) for p in found.withheld}))
        )
    return UnknownComponentError(f"no zoo model {show(name)}{hint} ({'; '.join(notes)})")


def verify(name: str) -> str:
    """Check the weights file's size and SHA-256 against the manifest; returns its path. (To
    load what was checked, use ``verified``: the file could change after this returns.)"""
    return verified(name).path


def verified(name: str) -> io.FileData:
    """The bytes of zoo model ``name``'s weights file, read once (no more than the manifest's
    size) and checked against the manifest's size and SHA-256. Loading these bytes, not the path
    again, means what is loaded is what was checked, even if the file is replaced meanwhile."""
    entry = info(name)
    path = entry["weights_path"]
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(entry["size"] + 1) if size == entry["size"] else b""
    except OSError as exc:
        raise FileFormatError(f"zoo model '{name}': cannot read {path}: {exc.strerror or exc}") from None
    if size != entry["size"] or len(data) != entry["size"]:
        found = size if size != entry["size"] else len(data)
        raise IntegrityError(
            f"zoo model '{name}': {path} holds {found} bytes, the manifest records "
            f"{entry['size']} (truncated or modified file, not loaded)"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise IntegrityError(
            f"zoo model '{name}': SHA-256 of {path} is {digest}, the manifest records "
            f"{entry['sha256']} (modified file, not loaded)"
        )
    return io.FileData(os.fspath(path), data)


def load(name: str, compile: bool = True) -> Model:
    """The zoo model ``name``, loaded from the very bytes whose SHA-256 was checked."""
    return Model.load(verified(name), compile=compile)


def evaluate(name: str, data: "str | None" = None, split: str = "test") -> dict:
    """``{"loss", "accuracy"}`` of zoo model ``name`` on ``data`` (default: its data set)."""
    entry = info(name)
    model = load(name)
    (xtr, ytr), (xte, yte) = sources.load(data or entry["dataset"])
    x, y = (xte, yte) if split == "test" else (xtr, ytr)
    return model.evaluate(x, y)


#: endings of the files commands take: a missing ``cnn-mnist.h5`` is a file, not a zoo name
FILE_SUFFIXES = (".h5", ".hdf5", ".json", ".onnx", ".npz", ".npy")


def resolve_missing(text: str) -> "io.FileData | None":
    """What ``text``, a path that does not exist, names in the zoo: a bare zoo model name gives the
    model's checked bytes; a bare name the zoo lacks raises ``UnknownComponentError`` naming the
    zoo's models close to it; a missing ``NAME.h5`` whose ``NAME`` is a zoo model raises an error
    saying so; anything else (a path with a folder or a file ending) is ``None``, a path."""
    if not text or "/" in text or os.sep in text or (os.altsep and os.altsep in text):
        return None
    stem, suffix = os.path.splitext(text)
    if suffix.lower() in FILE_SUFFIXES:
        try:
            known = stem in catalog().models
        except RegnetError:  # an unreadable $REGNET_ZOO: the file's own error is the one to give
            known = False
        if known:
            raise FileFormatError(
                f"{show(text)} does not exist; the zoo model '{stem}' is named without '{suffix}' "
                f"(e.g. 'regnet predict {stem} ...', regnet.load('{stem}') or 'zoo:{stem}')"
            )
        return None
    found = catalog()
    if text in found.models:
        return verified(text)
    error = _unknown(text, found)
    raise type(error)(f"no file named {show(text)} here and {error}")


# ``Model.from_spec(spec, weights_from="zoo:NAME")``, ``regnet.load("zoo:NAME")`` and every command
# that takes a model file accept zoo models (the bytes checked by ``verified``), by bare name too
checkpoint.SOURCES["zoo"] = verified
checkpoint.RESOLVERS.append(resolve_missing)

"""The model zoo: trained models listed in ``model_zoo/manifest.json``, checked before loading.

Each entry records the model's task, data set, spec and weights files, the weights file's
SHA-256 and size, its parameter count, measured test accuracy, training time and the exact
``regnet train`` command that produced it. ``load`` verifies the hash first: a modified or
truncated file raises ``IntegrityError`` and is never loaded. The zoo folder is
``$REGNET_ZOO`` if set, else ``model_zoo/`` next to the package.
"""

import builtins
import copy
import difflib
import json
import os
from pathlib import Path

from . import checkpoint
from .datasets import sources
from .datasets.download import sha256_file
from .errors import FileFormatError, IntegrityError, UnknownComponentError
from .model import Model

MANIFEST = "manifest.json"
FORMAT = "regnet.zoo"
REQUIRED = (
    "name",
    "task",
    "dataset",
    "spec",
    "weights",
    "sha256",
    "size",
    "params",
    "test_accuracy",
    "train_seconds",
    "command",
)


def root():
    """The zoo folder."""
    env = os.environ.get("REGNET_ZOO")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "model_zoo"


def manifest():
    """The parsed manifest: ``{"format": "regnet.zoo", "version": 1, "models": [...]}``."""
    path = root() / MANIFEST
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise FileFormatError(f"cannot read the zoo manifest {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise FileFormatError(f"the zoo manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("models"), builtins.list):
        raise FileFormatError(f"{path} is not a regnet zoo manifest (format '{FORMAT}' with a 'models' list)")
    for i, entry in enumerate(doc["models"]):
        missing = [k for k in REQUIRED if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise FileFormatError(f"{path}: model entry {i} lacks {', '.join(missing)}")
    return doc


def list():
    """Names of the zoo's models, sorted."""
    return sorted(e["name"] for e in manifest()["models"])


def info(name):
    """A copy of ``name``'s manifest entry, with absolute ``spec_path`` and ``weights_path``."""
    for entry in manifest()["models"]:
        if entry["name"] == name:
            out = copy.deepcopy(entry)
            out["spec_path"] = str(root() / entry["spec"])
            out["weights_path"] = str(root() / entry["weights"])
            return out
    names = list()
    close = difflib.get_close_matches(name, names, n=2)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownComponentError(f"no zoo model '{name}'{hint} (the zoo holds {', '.join(names)})")


def verify(name):
    """Check the weights file's size and SHA-256 against the manifest; returns its path."""
    entry = info(name)
    path = entry["weights_path"]
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise FileFormatError(f"zoo model '{name}': cannot read {path}: {exc.strerror or exc}") from None
    if size != entry["size"]:
        raise IntegrityError(
            f"zoo model '{name}': {path} holds {size} bytes, the manifest records "
            f"{entry['size']} (truncated or modified file, not loaded)"
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise IntegrityError(
            f"zoo model '{name}': SHA-256 of {path} is {digest}, the manifest records "
            f"{entry['sha256']} (modified file, not loaded)"
        )
    return path


def load(name, compile=True):
    """The zoo model ``name``, after verifying its file."""
    return Model.load(verify(name), compile=compile)


def evaluate(name, data=None, split="test"):
    """``{"loss", "accuracy"}`` of zoo model ``name`` on ``data`` (default: its data set)."""
    entry = info(name)
    model = load(name)
    (xtr, ytr), (xte, yte) = sources.load(data or entry["dataset"])
    x, y = (xte, yte) if split == "test" else (xtr, ytr)
    return model.evaluate(x, y)


# ``Model.from_spec(spec, weights_from="zoo:NAME")`` and ``regnet train --init-from NAME`` take
# weights from a zoo model (checked by ``verify``)
checkpoint.SOURCES["zoo"] = verify

"""One zoo manifest: ``{"format": "regnet.zoo", "version": 1, "models": [...]}``, read and checked.

Each model entry records its name, task, data set, spec and weights files (paths relative to the
manifest's folder, which they may not leave), the weights file's SHA-256 and size, parameter count,
measured test accuracy, training time and the exact ``regnet train`` command that produced it.
"""

import builtins
import json
import os
import re
from pathlib import Path

from ..errors import FileFormatError
from ..text import escape, show

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
#: model names: what ``regnet zoo`` commands take and print
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
#: a manifest is a short JSON file; anything larger is refused unread
MAX_BYTES = 4 << 20


def read(path: "str | os.PathLike[str]") -> builtins.list[dict]:
    """The checked model entries of the manifest file ``path``."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise FileFormatError(f"the zoo manifest {path} is larger than {MAX_BYTES} bytes")
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"cannot read the zoo manifest {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise FileFormatError(f"the zoo manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("models"), builtins.list):
        raise FileFormatError(f"{path} is not a regnet zoo manifest (format '{FORMAT}' with a 'models' list)")
    names = set()
    for i, entry in enumerate(doc["models"]):
        missing = [k for k in REQUIRED if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise FileFormatError(f"{path}: model entry {i} lacks {', '.join(missing)}")
        check_entry(entry, path, i)
        if entry["name"] in names:
            raise FileFormatError(f"{path}: model '{escape(entry['name'])}' is listed twice")
        names.add(entry["name"])
    return doc["models"]


def check_entry(entry: dict, path: Path, index: int) -> None:
    """Types of the fields ``regnet.zoo`` relies on (names and paths are strings, sizes integers)."""
    for key in ("name", "task", "dataset", "spec", "weights", "sha256", "command"):
        if not isinstance(entry[key], str) or not entry[key]:
            raise FileFormatError(
                f"{path}: model entry {index}, field '{key}': expected a string, got {show(entry[key])}"
            )
    if not NAME.fullmatch(entry["name"]):
        raise FileFormatError(
            f"{path}: model entry {index}, field 'name': {show(entry['name'])} is not a model name "
            f"(letters, digits and . _ + -, at most 100 characters)"
        )
    for key in ("size", "params"):
        if not isinstance(entry[key], int) or isinstance(entry[key], bool) or entry[key] < 0:
            raise FileFormatError(
                f"{path}: model entry {index}, field '{key}': expected an integer >= 0, got {show(entry[key])}"
            )
    for key in ("test_accuracy", "train_seconds"):
        if not isinstance(entry[key], (int, float)) or isinstance(entry[key], bool):
            raise FileFormatError(
                f"{path}: model entry {index}, field '{key}': expected a number, got {show(entry[key])}"
            )


def resolve(folder: Path, relative: str, what: str) -> Path:
    """``folder / relative``, refusing absolute paths and paths that leave ``folder``."""
    candidate = Path(relative)
    if candidate.is_absolute() or not (folder / candidate).resolve().is_relative_to(folder.resolve()):
        raise FileFormatError(f"{what}: {escape(relative)} is not a path inside the zoo folder {folder}")
    return folder / candidate

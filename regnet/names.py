"""The one grammar for names that become part of a path in a model file.

Layer names, tensor names (``add_weight``) and optimizer slot names are HDF5 link names in the
file (``/weights/<layer>/<tensor>``, ``/optimizer/<slot>/<layer>/<tensor>``), so each must be a
name HDF5 stores and gives back unchanged, and that no tool reads as path syntax. A name is
valid when it is

* a ``str`` of at most ``MAX_NAME_BYTES`` bytes in UTF-8;
* made of printable characters only (``str.isprintable``): no control characters (C0, DEL,
  C1), no lone surrogates, no format characters such as bidirectional overrides or zero-width
  joiners, no private-use or unassigned code points, no line or paragraph separators, and no
  space other than U+0020;
* free of ``/``, the HDF5 path separator;
* in Unicode normalisation form C (NFC): a name is stored as given, never normalised, so two
  spellings that look the same cannot both exist; a name that is not NFC is refused and the
  error gives its NFC form;
* not empty, ``.`` or ``..`` and free of ``/`` even after compatibility normalisation (NFKC)
  and with surrounding spaces removed, so that look-alikes of path syntax (``U+FF0F``
  fullwidth solidus, ``U+2024`` one dot leader) are refused too.

``check`` enforces it with a ``ConfigError``; ``problem`` says what is wrong (or ``None``).
"""

import unicodedata

from .errors import ConfigError
from .text import show

#: the longest name, in UTF-8 bytes (the file-name limit of common file systems)
MAX_NAME_BYTES = 255


def problem(name: object) -> str | None:
    """Why ``name`` is not a valid name, or ``None`` when it is."""
    if not isinstance(name, str):
        return f"a name must be a string, got {type(name).__name__}"
    if not name:
        return "a name must not be empty"
    if len(name) > MAX_NAME_BYTES:  # every character takes at least one byte
        return f"a name may hold at most {MAX_NAME_BYTES} bytes in UTF-8, this one has {len(name)} characters"
    if not name.isprintable():
        i, c = next((i, c) for i, c in enumerate(name) if not c.isprintable())
        return f"character {i} (U+{ord(c):04X}, {_category(c)}) is not printable"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"a name may hold at most {MAX_NAME_BYTES} bytes in UTF-8, this one holds {size}"
    if "/" in name:
        return "a name must be written without '/' (the path separator of the file)"
    if not unicodedata.is_normalized("NFC", name):
        return f"a name must be in Unicode normal form NFC (write {show(unicodedata.normalize('NFC', name))})"
    folded = unicodedata.normalize("NFKC", name)
    if "/" in folded:
        return "a name must not contain a character that normalises to '/'"
    if folded.strip() in ("", ".", ".."):
        return "a name must not be blank, '.' or '..' (after NFKC normalisation)"
    return None


def check(name: object, *, field: str = "name", layer: str | None = None) -> str:
    """``name`` if it is valid, else a ``ConfigError`` (for ``field`` of ``layer``) saying why."""
    why = problem(name)
    if why is not None:
        raise ConfigError(f"invalid name {show(name)}: {why}", field=field, layer=layer)
    return name  # type: ignore[return-value]


def _category(c: str) -> str:
    kind = unicodedata.category(c)
    return {
        "Cc": "a control character",
        "Cs": "a lone surrogate",
        "Cf": "a format character",
        "Co": "a private-use character",
        "Cn": "an unassigned code point",
        "Zl": "a line separator",
        "Zp": "a paragraph separator",
        "Zs": "a space other than U+0020",
    }.get(kind, kind)

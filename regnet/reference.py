"""The component reference, generated from the registry: every kind, every component, its
aliases, what it is, and each field with its type, default, what it accepts and its one-line doc.

``docs/components.md`` is ``markdown(builtin_entries())`` (``python -m regnet describe --all
--markdown`` writes it; a test fails when it is stale); ``regnet describe NAME`` prints one
component's entry, plugins' included.
"""

import inspect
import json
from typing import Any

import attrs

from . import fields, registry
from .errors import UnknownComponentError
from .text import show

#: the kinds in the order the reference lists them
KINDS = ("layers", "activations", "losses", "optimizers", "initializers", "schedules", "metrics")


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return ""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(a: attrs.Attribute) -> str:
    if a.default is attrs.NOTHING:
        return "required"
    default = a.default.factory() if isinstance(a.default, attrs.Factory) else a.default  # type: ignore[call-arg]
    try:
        return json.dumps(registry.to_plain(default))
    except (TypeError, ValueError):
        return show(default)


def field_rows(cls: type) -> list[dict[str, str]]:
    """One row per config field of ``cls``: name, type, default, accepts, doc."""
    if not attrs.has(cls):
        return []
    rows = []
    for a in attrs.fields(cls):
        if not a.init or a.name.startswith("_"):
            continue
        rows.append(
            {
                "name": a.alias or a.name,
                "type": _type_name(a.type),
                "default": _default(a),
                "accepts": fields.accepts_of(a),
                "doc": fields.doc_of(a),
            }
        )
    return rows


def _summary(cls: type) -> str:
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")  # its own, not a base class's
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def entry(kind: str, name: str) -> dict[str, Any]:
    """One component's reference entry (``name`` may be an alias or differ in case)."""
    reg = registry.REGISTRIES[kind]
    key = reg.canonical(name)
    cls = reg.get(key)
    cls = cls if isinstance(cls, type) else type(cls)
    prov = reg.provider(key)
    return {
        "kind": kind,
        "name": key,
        "aliases": reg.aliases(key),
        "provider": "regnet (built-in)" if prov.builtin else f"{prov.distribution} {prov.version or ''}".strip(),
        "summary": _summary(cls),
        "fields": field_rows(cls),
    }


def find(name: str) -> list[dict[str, Any]]:
    """Every component called ``name`` (or with it as an alias), across kinds."""
    found = []
    for kind in KINDS:
        reg = registry.REGISTRIES[kind]
        try:
            found.append(entry(kind, name))
        except UnknownComponentError:
            continue
        except registry.PluginError:
            if name in reg:
                raise
    if not found:
        close = sorted({n for k in KINDS for n in registry.REGISTRIES[k].list() if name.lower() in n.lower()})
        hint = f"; names containing it: {', '.join(close[:10])}" if close else ""
        raise UnknownComponentError(f"no component is called {show(name)}{hint} (regnet plugins lists them all)")
    return found


def builtin_entries() -> list[dict[str, Any]]:
    out = []
    for kind in KINDS:
        reg = registry.REGISTRIES[kind]
        for name in reg.list():
            if reg.provider(name).builtin:
                out.append(entry(kind, name))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_entry(e: dict[str, Any]) -> str:
    lines = [f"### `{e['name']}`", ""]
    if e["summary"]:
        lines += [e["summary"], ""]
    meta = [f"{e['kind'][:-1]}", f"provided by {e['provider']}"]
    if e["aliases"]:
        meta.append("aliases " + ", ".join(f"`{a}`" for a in e["aliases"]))
    lines += ["*" + "; ".join(meta) + "*", ""]
    if e["fields"]:
        lines += ["| field | type | default | accepts | meaning |", "|---|---|---|---|---|"]
        for f in e["fields"]:
            cells = [
                f"`{f['name']}`",
                _cell(f["type"]),
                _cell(f"`{f['default']}`"),
                _cell(f["accepts"]),
                _cell(f["doc"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("No fields.")
    return "\n".join(lines) + "\n"


HEADER = """# Components

Every built-in component, generated from the registry by `python -m regnet describe --all
--markdown > docs/components.md` (a test fails when this file is stale). `regnet describe NAME`
prints one entry, for plugins' components too. Names are matched without regard to case, and an
alias (PyTorch's spelling, an older name) is accepted wherever the name is: in a JSON spec, in
Python (`{"type": "Linear", ...}`) and on the command line. A field left out takes its default;
`required` fields must be given.
"""


def markdown(entries: list[dict[str, Any]]) -> str:
    parts = [HEADER]
    for kind in KINDS:
        mine = [e for e in entries if e["kind"] == kind]
        if mine:
            parts.append(f"## {kind.capitalize()}\n")
            parts += [markdown_entry(e) for e in mine]
    return "\n".join(parts)


def text_entry(e: dict[str, Any]) -> str:
    """One entry as plain text for the terminal."""
    aliases = f" (aliases: {', '.join(e['aliases'])})" if e["aliases"] else ""
    lines = [f"{e['name']}: {e['kind'][:-1]} from {e['provider']}{aliases}"]
    if e["summary"]:
        lines.append(f"  {e['summary']}")
    for f in e["fields"]:
        lines.append(f"  {f['name']}: {f['type']} = {f['default']}")
        if f["doc"]:
            lines.append(f"      {f['doc']}")
        if f["accepts"]:
            lines.append(f"      accepts {f['accepts']}")
    return "\n".join(lines)

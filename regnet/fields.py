"""Typed config fields for attrs components: each check raises ``ConfigError`` naming the field.

Components declare their configuration as attrs fields built with these helpers::

    units: int = fields.integer(min=1)
    padding: str | int = fields.padding()
"""

import json
import math
import numbers
from typing import Any

import attrs

from . import registry
from .errors import ConfigError
from .text import show

__all__ = [
    "MAX_SIZE",
    "KIND",
    "show",
    "integer",
    "number",
    "boolean",
    "choice",
    "string",
    "pair",
    "shape",
    "component",
    "activation",
    "initializer",
    "kind_of",
    "field",
    "doc_of",
    "accepts_of",
]

#: upper bound on any size-like integer in a config (units, filters, kernel sizes, ...)
MAX_SIZE = 1 << 24
#: the attrs metadata key under which a component field records its registry kind
KIND = "regnet_kind"
#: the attrs metadata key of a field's one-line documentation (``doc=`` on every helper)
DOC = "regnet_doc"
#: the attrs metadata key of what a field accepts, in words ("an integer >= 1", "'same' or 'valid'")
ACCEPTS = "regnet_accepts"


def _meta(doc, accepts, **more):
    meta = {DOC: doc, ACCEPTS: accepts}
    meta.update(more)
    return meta


def field(
    default: Any = attrs.NOTHING, *, doc: str = "", accepts: str = "", validator=None, converter=None, kw_only=False
) -> Any:
    """A config field with a custom ``validator`` (and ``converter``), documented like the others."""
    return attrs.field(
        default=default, validator=validator, converter=converter, kw_only=kw_only, metadata=_meta(doc, accepts)
    )


def doc_of(attribute: attrs.Attribute) -> str:
    """A field's one-line documentation ('' where none was given)."""
    return attribute.metadata.get(DOC, "")


def accepts_of(attribute: attrs.Attribute) -> str:
    """What a field accepts, in words ('' where the helper records nothing)."""
    return attribute.metadata.get(ACCEPTS, "")


def _range(kind, min, max, min_open=False):
    lo = None if min is None else f"{'>' if min_open else '>='} {min}"
    hi = None if max is None or max == MAX_SIZE else f"<= {max}"
    return f"{kind} " + " and ".join(p for p in (lo, hi) if p) if (lo or hi) else kind


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _fail(attribute, message):
    raise ConfigError(message, field=attribute.name)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(default=attrs.NOTHING, *, min=None, max=MAX_SIZE, doc="", kw_only=False):
    def check(_, attribute, value):
        if not _is_int(value):
            _fail(attribute, f"expected an integer, got {show(value)} ({type(value).__name__})")
        if min is not None and value < min:
            _fail(attribute, f"expected an integer >= {min}, got {show(value)}")
        if max is not None and value > max:
            _fail(attribute, f"expected an integer <= {max}, got {show(value)}")

    return attrs.field(
        default=default,
        validator=check,
        converter=_int_if_integral,
        kw_only=kw_only,
        metadata=_meta(doc, _range("an integer", min, max)),
    )


def number(default=attrs.NOTHING, *, min=None, max=None, min_open=False, optional=False, kw_only=False, doc=""):
    """A finite real number in ``[min, max]`` (``(min, max]`` with ``min_open``); ``None`` too if
    ``optional``."""

    def check(_, attribute, value):
        if value is None and optional:
            return
        if not _is_number(value) or not _finite(value):
            _fail(attribute, f"expected a finite number, got {show(value)}")
        if min is not None and (value < min or (min_open and value == min)):
            op = ">" if min_open else ">="
            _fail(attribute, f"expected a number {op} {min}, got {show(value)}")
        if max is not None and value > max:
            _fail(attribute, f"expected a number <= {max}, got {show(value)}")

    accepts = _range("a number", min, max, min_open) + (" or null" if optional else "")
    return attrs.field(
        default=default, validator=check, converter=_float_if_number, kw_only=kw_only, metadata=_meta(doc, accepts)
    )


def boolean(default=attrs.NOTHING, *, kw_only=False, doc=""):
    def check(_, attribute, value):
        if not isinstance(value, bool):
            _fail(attribute, f"expected true or false, got {show(value)}")

    return attrs.field(default=default, validator=check, kw_only=kw_only, metadata=_meta(doc, "true or false"))


def choice(default, *options, doc=""):
    def check(_, attribute, value):
        if value not in options:
            _fail(attribute, f"expected one of {', '.join(map(repr, options))}, got {show(value)}")

    accepts = "one of " + ", ".join(json.dumps(o) for o in options)
    return attrs.field(default=default, validator=check, metadata=_meta(doc, accepts, regnet_choices=options))


def string(default=attrs.NOTHING, *, optional=False, doc=""):
    def check(_, attribute, value):
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            _fail(attribute, f"expected a non-empty string, got {show(value)}")

    accepts = "a non-empty string" + (" or null" if optional else "")
    return attrs.field(default=default, validator=check, metadata=_meta(doc, accepts))


def pair(default=attrs.NOTHING, *, min=1, max=MAX_SIZE, optional=False, doc=""):
    """An int or a pair of ints (kernel sizes, strides), stored as a tuple (or None if optional)."""

    def convert(value):
        if _is_int(value):
            return (int(value), int(value))
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_int, value)):
            return (int(value[0]), int(value[1]))
        return value

    def check(_, attribute, value):
        if value is None and optional:
            return
        if not (isinstance(value, tuple) and len(value) == 2 and all(map(_is_int, value))):
            _fail(attribute, f"expected an integer or a pair of integers, got {show(value)}")
        if any(v < min or v > max for v in value):
            _fail(attribute, f"expected values in [{min}, {max}], got {show(list(value))}")

    accepts = f"an integer or a pair of integers, each {_range('', min, max).strip()}" + (
        " or null" if optional else ""
    )
    return attrs.field(default=default, validator=check, converter=convert, metadata=_meta(doc, accepts))


def shape(default=attrs.NOTHING, *, allow_minus_one=False, doc=""):
    """A tuple of positive ints (a target shape, without the batch axis)."""

    def convert(value):
        if isinstance(value, list):
            return tuple(value)
        return value

    def check(_, attribute, value):
        ok = isinstance(value, tuple) and len(value) >= 1 and all(map(_is_int, value))
        if ok:
            ok = all(v >= 1 or (allow_minus_one and v == -1) for v in value)
            ok = ok and sum(v == -1 for v in value) <= 1 and all(v <= MAX_SIZE for v in value)
        if not ok:
            _fail(attribute, f"expected a non-empty list of positive integers, got {show(value)}")

    accepts = "a list of positive integers" + (" (one may be -1)" if allow_minus_one else "")
    return attrs.field(default=default, validator=check, converter=convert, metadata=_meta(doc, accepts))


def component(kind: str, default: Any = attrs.NOTHING, *, optional: bool = False, doc: str = "") -> Any:
    """A component of registry ``kind`` given by name or ``{"type": ..., **config}``
    (activations, initializers); the field records its kind (see ``kind_of``)."""
    if kind not in registry.REGISTRIES:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {sorted(registry.REGISTRIES)}")

    def check(_: object, attribute: attrs.Attribute, value: Any) -> None:
        if value is None and optional:
            return
        reg = registry.REGISTRIES[kind]
        if isinstance(value, dict) and not isinstance(value.get("type"), str):
            _fail(attribute, f"a component given as a dict needs a 'type' name, got {show(value)}")
        if isinstance(value, (str, dict)):
            try:
                reg.get(value) if isinstance(value, str) else reg.create(value)
            except ConfigError as exc:  # name the nested field: 'activation.alpha'
                field = attribute.name if exc.field is None else f"{attribute.name}.{exc.field}"
                message = str(exc) if exc.field is None else getattr(exc, "message", str(exc))
                raise type(exc)(message, field=field) from exc
        else:
            _fail(attribute, f"expected the name of one of the {kind} or a dict with a 'type', got {show(value)}")

    accepts = f"the name of one of the {kind} or a dict with a 'type'" + (" or null" if optional else "")
    return attrs.field(default=default, validator=check, metadata={KIND: kind, **_meta(doc, accepts)})


def activation(default: Any = "linear", *, doc: str = "the activation applied to the output") -> Any:
    """A layer's ``activation``: applied by the base ``Layer`` after ``forward``."""
    return component("activations", default, doc=doc)


def initializer(default: Any, *, doc: str = "") -> Any:
    """A weight initializer by name or ``{"type": ..., **config}``."""
    return component("initializers", default, doc=doc)


def kind_of(attribute: attrs.Attribute) -> str | None:
    """The registry kind a config field draws its component from, or ``None``."""
    return attribute.metadata.get(KIND)


def _int_if_integral(value):
    # JSON "3.0" for an integer field is refused by the check; numpy ints become Python ints
    if _is_int(value):
        return int(value)
    return value


def _float_if_number(value):
    if _is_number(value) and _finite(value):
        return float(value)
    return value

"""Typed config fields for attrs components: each check raises ``ConfigError`` naming the field.

Components declare their configuration as attrs fields built with these helpers::

    units: int = fields.integer(min=1)
    padding: str | int = fields.padding()
"""

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
]

#: upper bound on any size-like integer in a config (units, filters, kernel sizes, ...)
MAX_SIZE = 1 << 24
#: the attrs metadata key under which a component field records its registry kind
KIND = "regnet_kind"


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


def integer(default=attrs.NOTHING, *, min=None, max=MAX_SIZE):
    def check(_, attribute, value):
        if not _is_int(value):
            _fail(attribute, f"expected an integer, got {show(value)} ({type(value).__name__})")
        if min is not None and value < min:
            _fail(attribute, f"expected an integer >= {min}, got {show(value)}")
        if max is not None and value > max:
            _fail(attribute, f"expected an integer <= {max}, got {show(value)}")

    return attrs.field(default=default, validator=check, converter=_int_if_integral)


def number(default=attrs.NOTHING, *, min=None, max=None, min_open=False, optional=False, kw_only=False):
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

    return attrs.field(default=default, validator=check, converter=_float_if_number, kw_only=kw_only)


def boolean(default=attrs.NOTHING, *, kw_only=False):
    def check(_, attribute, value):
        if not isinstance(value, bool):
            _fail(attribute, f"expected true or false, got {show(value)}")

    return attrs.field(default=default, validator=check, kw_only=kw_only)


def choice(default, *options):
    def check(_, attribute, value):
        if value not in options:
            _fail(attribute, f"expected one of {', '.join(map(repr, options))}, got {show(value)}")

    return attrs.field(default=default, validator=check)


def string(default=attrs.NOTHING, *, optional=False):
    def check(_, attribute, value):
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            _fail(attribute, f"expected a non-empty string, got {show(value)}")

    return attrs.field(default=default, validator=check)


def pair(default=attrs.NOTHING, *, min=1, max=MAX_SIZE, optional=False):
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

    return attrs.field(default=default, validator=check, converter=convert)


def shape(default=attrs.NOTHING, *, allow_minus_one=False):
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

    return attrs.field(default=default, validator=check, converter=convert)


def component(kind: str, default: Any = attrs.NOTHING, *, optional: bool = False) -> Any:
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

    return attrs.field(default=default, validator=check, metadata={KIND: kind})


def activation(default: Any = "linear") -> Any:
    """A layer's ``activation``: applied by the base ``Layer`` after ``forward``."""
    return component("activations", default)


def initializer(default: Any) -> Any:
    """A weight initializer by name or ``{"type": ..., **config}``."""
    return component("initializers", default)


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

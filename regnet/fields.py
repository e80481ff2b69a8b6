"""Typed config fields for attrs components: each check raises ``ConfigError`` naming the field.

Components declare their configuration as attrs fields built with these helpers::

    units: int = fields.integer(min=1)
    padding: str | int = fields.padding()
"""

import math
import numbers
import reprlib

import attrs

from .errors import ConfigError

#: upper bound on any size-like integer in a config (units, filters, kernel sizes, ...)
MAX_SIZE = 1 << 24


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 40, 40, 40


def show(value, limit=80):
    """A short repr of ``value`` for error messages, whatever it is (deep, huge, odd)."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # ints beyond the str-conversion limit, deep nesting
        size = f" of {value.bit_length()} bits" if isinstance(value, int) else ""
        text = f"<{type(value).__name__}{size}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def number(default=attrs.NOTHING, *, min=None, max=None, min_open=False):
    def check(_, attribute, value):
        if not _is_number(value) or not _finite(value):
            _fail(attribute, f"expected a finite number, got {show(value)}")
        if min is not None and (value < min or (min_open and value == min)):
            op = ">" if min_open else ">="
            _fail(attribute, f"expected a number {op} {min}, got {show(value)}")
        if max is not None and value > max:
            _fail(attribute, f"expected a number <= {max}, got {show(value)}")

    return attrs.field(default=default, validator=check, converter=_float_if_number)


def boolean(default=attrs.NOTHING):
    def check(_, attribute, value):
        if not isinstance(value, bool):
            _fail(attribute, f"expected true or false, got {show(value)}")

    return attrs.field(default=default, validator=check)


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


def component(registry_name, default=attrs.NOTHING, *, optional=False):
    """A component given by name or ``{"type": ..., **config}`` (activations, initializers)."""

    def check(_, attribute, value):
        from . import registry

        if value is None and optional:
            return
        reg = registry.REGISTRIES[registry_name]
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
            _fail(attribute, f"expected the name of one of the {registry_name} or a dict with a 'type', got {show(value)}")

    return attrs.field(default=default, validator=check)


def _int_if_integral(value):
    # JSON "3.0" for an integer field is refused by the check; numpy ints become Python ints
    if _is_int(value):
        return int(value)
    return value


def _float_if_number(value):
    if _is_number(value) and _finite(value):
        return float(value)
    return value

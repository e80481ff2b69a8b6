"""Text for messages: short reprs of any value, shapes as tuples, and strings from files made safe
to print (control characters escaped, so a hostile file cannot drive the terminal)."""

import reprlib
from collections.abc import Iterable

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 40, 40, 40


def show(value: object, limit: int = 80) -> str:
    """A short repr of ``value`` for error messages, whatever it is (deep, huge, odd)."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # ints beyond the str-conversion limit, deep nesting
        size = f" of {value.bit_length()} bits" if isinstance(value, int) else ""
        text = f"<{type(value).__name__}{size}>"
    return escape(text if len(text) <= limit else text[: limit - 3] + "...")


def escape(text: object, limit: int | None = None) -> str:
    """``text`` with every control character (C0, DEL, C1, and Unicode line/paragraph
    separators) written as an escape, and cut to ``limit`` characters if given."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text
    )


def shape(dims: Iterable[object], batch: bool = True) -> str:
    """A shape as people write it: ``(N, 6, 28, 28)`` (``batch`` adds the leading ``N``)."""
    parts = (["N"] if batch else []) + [str(d) for d in dims]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"

"""Checks on user data before any work: clear ``DataError``s instead of deep NumPy failures."""

import numbers

import numpy as np

from .errors import ConfigError, DataError
from .fields import show


def batch_size(value, what="batch_size"):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise DataError(f"{what} must be a positive integer, got {show(value)}")
    return int(value)


def _numeric(a, what):
    """Refuse object, string, complex, date and time arrays."""
    if a.dtype.kind == "c":
        raise DataError(f"{what} must be real, got dtype {a.dtype}")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric (bool, integer or float), got dtype {a.dtype}")


def _finite(a, what):
    if a.dtype.kind != "f" or (np.isfinite(a.max(initial=0)) and np.isfinite(a.min(initial=0))):
        return  # NaN propagates through max and min, and an infinity is one of them: no mask needed
    ok = np.isfinite(a)
    if not ok.all():
        bad = ~ok.reshape(len(a), -1).all(axis=1)
        raise DataError(
            f"{what} contains {int(ok.size - ok.sum())} NaN or infinite value(s) in "
            f"{int(bad.sum())} sample(s), the first at index {int(np.argmax(bad))}; expected finite numbers"
        )


def seed(value):
    if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"expected None or an integer >= 0, got {show(value)}", field="seed")
    return value


def flag(value, what):
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"expected True or False, got {show(value)}", field=what)
    return bool(value)


def verbosity(value):
    if not isinstance(value, (numbers.Integral, np.bool_)) or value < 0:
        raise ConfigError(f"expected an integer >= 0, got {show(value)}", field="verbose")
    return int(value)


HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


def callbacks(value):
    """A list of callbacks, each with every hook of ``regnet.Callback``."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected a list of callbacks, got {show(value)}", field="callbacks")
    for i, cb in enumerate(value):
        missing = [h for h in HOOKS if not callable(getattr(cb, h, None))]
        if missing:
            raise ConfigError(
                f"callback #{i} ({show(cb)}) lacks {', '.join(missing)}; subclass regnet.Callback",
                field="callbacks",
            )
    return list(value)


def validation_data(model, value):
    """``(x_val, y_val)`` checked like ``x`` and ``y``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        if isinstance(value, (tuple, list)):
            kind = f"a {type(value).__name__} of length {len(value)}"
        else:
            kind = f"{type(value).__name__}" + (
                f" of shape {list(value.shape)}" if isinstance(value, np.ndarray) else ""
            )
        raise DataError(f"validation_data must be a pair (x_val, y_val), got {kind}")
    vx = inputs(model, value[0], "validation x")
    return vx, targets(model, value[1], len(vx), "validation y")


def inputs(model, x, what="x"):
    """``x`` as a float32 batch of the model's input shape (copied only if needed)."""
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError as exc:
            raise DataError(f"{what} is a ragged sequence, not an array: {exc}") from None
    if isinstance(x, np.generic):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise DataError(f"{what} must be a NumPy array, got {type(x).__name__}")
    _numeric(x, what)
    want = tuple(model.input_shape)
    if x.ndim == len(want) and x.shape == want:
        raise DataError(f"{what} has shape {list(x.shape)}: a single sample; add the batch axis ({['N', *want]})")
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DataError(f"{what} has shape {list(x.shape)}, the model expects {['N', *want]}")
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty (0 samples)")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        x = np.ascontiguousarray(x, dtype=np.float32)
    _finite(x, what)
    return x


def targets(model, y, n, what="y"):
    """Check ``y`` against ``n`` samples and the compiled loss; return it as an array."""
    if isinstance(y, (list, tuple)):
        try:
            y = np.asarray(y)
        except ValueError as exc:
            raise DataError(f"{what} is a ragged sequence, not an array: {exc}") from None
    if isinstance(y, (numbers.Number, np.generic)):
        y = np.asarray(y)
    if not isinstance(y, np.ndarray):
        raise DataError(f"{what} must be a NumPy array, got {type(y).__name__}")
    _numeric(y, what)
    if y.ndim == 0:
        raise DataError(f"{what} is a single value; expected one target per sample ({n} samples)")
    if y.shape[0] != n:
        raise DataError(f"{what} holds {y.shape[0]} samples (shape {list(y.shape)}) but x holds {n}")
    if y.dtype.kind == "f":
        _finite(y, what)
    if y.dtype == bool:
        y = y.astype(np.float32)
    try:
        model.loss.check_target(y, (n, *model.output_shape))
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    return y

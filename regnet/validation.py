"""Checks on user data before any work: clear ``DataError``s instead of deep NumPy failures."""

import numbers

import numpy as np

from .errors import DataError


def batch_size(value, what="batch_size"):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise DataError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def inputs(model, x, what="x"):
    """``x`` as a float32 batch of the model's input shape (copied only if needed)."""
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError as exc:
            raise DataError(f"{what} is a ragged sequence, not an array: {exc}") from None
    if not isinstance(x, np.ndarray):
        raise DataError(f"{what} must be a NumPy array, got {type(x).__name__}")
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{what} must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{what} must be real, got dtype {x.dtype}")
    want = tuple(model.input_shape)
    if x.ndim == len(want) and x.shape == want:
        raise DataError(f"{what} has shape {list(x.shape)}: a single sample; add the batch axis ({['N', *want]})")
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DataError(f"{what} has shape {list(x.shape)}, the model expects {['N', *want]}")
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty (0 samples)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise DataError(f"{what} contains {bad} NaN or infinite value(s)")
    return x


def targets(model, y, n, what="y"):
    """Check ``y`` against ``n`` samples and the compiled loss; return it as an array."""
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    if not isinstance(y, np.ndarray):
        raise DataError(f"{what} must be a NumPy array, got {type(y).__name__}")
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DataError(f"{what} must be numeric, got dtype {y.dtype}")
    if y.ndim == 0 or y.shape[0] != n:
        raise DataError(f"{what} holds {y.shape[0] if y.ndim else 'no'} samples but x holds {n}")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{what} contains NaN or infinite values")
    if y.dtype == bool:
        y = y.astype(np.float32)
    try:
        model.loss.check_target(y, (n, *model.output_shape))
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    return y

"""Checks on user data before any work: clear ``DataError``s instead of deep NumPy failures."""

import numbers
import warnings

import numpy as np

from ..errors import ConfigError, DataError
from ..text import shape as shape_text
from ..text import show


def batch_size(value, what="batch_size"):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise DataError(f"{what} must be a positive integer, got {show(value)}")
    return int(value)


def check_dtype(dtype, what):
    """Refuse object, string, complex, date and time arrays."""
    if dtype.kind == "c":
        raise DataError(f"{what} must be real, got dtype {dtype}")
    if dtype.kind not in "biuf":
        raise DataError(f"{what} must be numeric (bool, integer or float), got dtype {dtype}")


def _numeric(a, what):
    check_dtype(a.dtype, what)


def warn_integer_images(dtype, ndim, what):
    """Warn that integer image data (uint8, or integers with an image's 3+ axes) is taken as it is,
    0-255, by a model that computes in float32: most models, regnet's MNIST ones included, were
    trained on [0, 1]. Float inputs are never warned about nor changed."""
    if dtype.kind in "ui" and (dtype == np.uint8 or ndim >= 3):
        where = what.split(" of ")[0]  # "x of batch 3" -> "x": one warning, not one per batch
        warnings.warn(
            f"{where} holds {dtype} integers (image pixels in 0-255?): they are taken as they are; a model "
            f"trained on [0, 1] (regnet.datasets, every MNIST model of the zoo) wants {where} / 255, "
            f"and {where}.astype('float32') keeps 0-255 without this warning",
            UserWarning,
            stacklevel=6,  # the caller of fit / evaluate / predict
        )


def finite(a, what, first_index=0):
    """Raise ``DataError`` naming the first sample holding a NaN or an infinity (samples are
    counted from ``first_index``)."""
    if a.dtype.kind != "f" or (np.isfinite(a.max(initial=0)) and np.isfinite(a.min(initial=0))):
        return  # NaN propagates through max and min, and an infinity is one of them: no mask needed
    ok = np.isfinite(a)
    if not ok.all():
        bad = ~ok.reshape(len(a), -1).all(axis=1)
        raise DataError(
            f"{what} contains {int(ok.size - ok.sum())} NaN or infinite value(s) in "
            f"{int(bad.sum())} sample(s), the first at index {first_index + int(np.argmax(bad))}; expected "
            f"finite numbers"
        )


def _hint(shape, want):
    """Advice for inputs of ``shape`` that a model taking ``want`` (no batch axis) cannot use."""
    n_want = len(want)
    if shape == want:
        return f"a single sample; add the batch axis: x[None] has shape {shape_text((1, *want), False)}"
    if n_want == 3 and want[0] == 1 and shape == want[1:]:
        return f"a single image without channel and batch axes: x.reshape{shape_text((1, *want), False)}"
    if n_want == 3 and want[0] == 1 and len(shape) == 3 and shape[1:] == want[1:]:
        return "images without the channel axis: x[:, None] adds it"
    if n_want == 3 and len(shape) == 4 and shape[1:] == (want[1], want[2], want[0]) and want[0] != want[2]:
        return "this looks like channels-last (NHWC); regnet takes NCHW: x.transpose(0, 3, 1, 2)"
    return ""


def check_shape(model, shape, what):
    """Raise ``DataError`` (with a hint where one helps) unless ``shape`` is a batch of the
    model's inputs."""
    shape, want = tuple(shape), tuple(model.input_shape)
    if len(shape) == len(want) + 1 and shape[1:] == want:
        return
    hint = _hint(shape, want)
    message = f"{what} has shape {shape_text(shape, False)}, the model expects {shape_text(want)}"
    raise DataError(f"{message}: {hint}" if hint else message)


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


def validation_parts(value):
    """``(x_val, y_val, sample_weight_val)`` of a ``validation_data`` pair or triple (the weights
    may be ``None``), or ``(value, None, None)`` for a batch dataset or an iterable of batches."""
    if isinstance(value, (tuple, list)):
        if len(value) in (2, 3):
            return value[0], value[1], value[2] if len(value) == 3 else None
        kind = f"a {type(value).__name__} of length {len(value)}"
    elif isinstance(value, np.ndarray):
        kind = f"ndarray of shape {shape_text(value.shape, False)}"
    elif isinstance(value, dict) or not (hasattr(value, "__iter__") or hasattr(value, "__getitem__")):
        kind = type(value).__name__
    else:
        return value, None, None
    raise DataError(
        f"validation_data must be a pair (x_val, y_val), a triple (x_val, y_val, sample_weight_val), a "
        f"regnet.data.Dataset or an iterable of batches; got {kind}"
    )


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
    check_shape(model, x.shape, what)
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty (0 samples)")
    warn_integer_images(x.dtype, x.ndim, what)
    if x.dtype == np.float32:
        x = np.ascontiguousarray(x)
    else:
        with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
            x = np.ascontiguousarray(x, dtype=np.float32)
    finite(x, what)
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
        raise DataError(f"{what} holds {y.shape[0]} samples (shape {shape_text(y.shape, False)}) but x holds {n}")
    if y.dtype.kind == "f":
        finite(y, what)
    if y.dtype == bool:
        y = y.astype(np.float32)
    try:
        model.loss.check_target(y, (n, *model.output_shape))
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    return y

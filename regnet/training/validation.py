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


def _fits(shape, want):
    """Whether a batch of ``shape`` holds samples of ``want`` (``None``: any length >= 1)."""
    if len(shape) != len(want) + 1:
        return False
    return shape[1:] == want or all(w is None or s == w for s, w in zip(shape[1:], want))


def check_shape(model, shape, what, declared=None):
    """Raise ``DataError`` (with a hint where one helps) unless ``shape`` is a batch of the
    model's input (``declared``: that input's ``spec.InputSpec``, the only one by default)."""
    declared = model.inputs[0] if declared is None else declared
    shape, want = tuple(shape), tuple(declared.shape)
    if _fits(shape, want):
        if 0 in shape[1:]:
            raise DataError(f"{what} has shape {shape_text(shape, False)}: a variable-length axis needs length >= 1")
        return
    hint = "" if None in want else _hint(shape, want)
    message = f"{what} has shape {shape_text(shape, False)}, the model expects {shape_text(want)}"
    raise DataError(f"{message}: {hint}" if hint else message)


class Inputs:
    """The checked batches of a model's several inputs, in declaration order: ``len`` is the
    number of samples and indexing (a slice, an index array) takes the same rows of each."""

    __slots__ = ("arrays",)

    def __init__(self, arrays):
        self.arrays = tuple(arrays)

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return Inputs(a[index] for a in self.arrays)

    def copy(self):
        return Inputs(a.copy() for a in self.arrays)

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self.arrays)

    def __repr__(self):
        return f"Inputs({', '.join(shape_text(a.shape, False) + ' ' + str(a.dtype) for a in self.arrays)})"


def nbytes(x):
    """The bytes of a batch of inputs (an array or ``Inputs``)."""
    return x.nbytes if isinstance(x, Inputs) else np.asarray(x).nbytes


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


def _array(x, what):
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError as exc:
            raise DataError(f"{what} is a ragged sequence, not an array: {exc}") from None
    if isinstance(x, np.generic):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise DataError(f"{what} must be a NumPy array, got {type(x).__name__}")
    return x


def convert(declared, x, what, first_index=0):
    """``x`` (a numeric array) as the dtype of input ``declared``: float32 (finite), or int64
    (whole numbers within int64's range; NaN, infinities and fractions refused naming the input)."""
    if declared.dtype == "float32":
        if x.dtype == np.float32:
            x = np.ascontiguousarray(x)
        else:
            with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
                x = np.ascontiguousarray(x, dtype=np.float32)
        finite(x, what, first_index)
        return x
    if x.dtype.kind == "f":
        finite(x, what, first_index)
        whole = np.floor(x) == x
        if not whole.all():
            bad = ~whole.reshape(len(x), -1).all(axis=1)
            i = int(np.argmax(bad))
            value = x[i][~whole[i]].flat[0].item()
            raise DataError(
                f"{what} holds {int(x.size - whole.sum())} value(s) that are not whole numbers, the first "
                f"{value!r} in sample {first_index + i}; input '{declared.name}' takes int64 ids"
            )
        big = np.abs(x) >= 2.0**63
        if big.any():
            raise DataError(f"{what} holds values beyond the int64 range; input '{declared.name}' takes int64 ids")
    elif x.dtype.kind == "u" and x.dtype.itemsize == 8 and x.size and x.max() > np.iinfo(np.int64).max:
        raise DataError(f"{what} holds values beyond the int64 range; input '{declared.name}' takes int64 ids")
    return np.ascontiguousarray(x, dtype=np.int64)


def _one(model, declared, x, what):
    x = _array(x, what)
    _numeric(x, what)
    check_shape(model, x.shape, what, declared)
    if x.shape[0] == 0:
        raise DataError(f"{what} is empty (0 samples)")
    if declared.dtype == "float32":
        warn_integer_images(x.dtype, x.ndim, what)
    return convert(declared, x, what)


def _by_input(model, x, what):
    """The arrays of a multi-input batch (a dict by name, or a list in declaration order)."""
    names = model.input_names
    if isinstance(x, dict):
        odd = [k for k in x if not isinstance(k, str) or k not in names]
        if odd:
            raise DataError(
                f"{what} has an entry {show(odd[0])} that is not a model input (the inputs are {', '.join(names)})"
            )
        missing = [n for n in names if n not in x]
        if missing:
            raise DataError(f"{what} has no entry for model input '{missing[0]}' (the inputs are {', '.join(names)})")
        return [x[n] for n in names]
    if isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise DataError(
                f"{what} holds {len(x)} arrays; the model has {len(names)} inputs ({', '.join(names)}): give one "
                f"array per input in that order, or a dict {{name: array}}"
            )
        return list(x)
    raise DataError(
        f"{what} must be a dict {{name: array}} or a list of arrays for a model with inputs "
        f"{', '.join(names)}; got {type(x).__name__}"
    )


def inputs(model, x, what="x"):
    """``x`` checked as a batch of the model's inputs: for one input an array of its dtype
    (float32 or int64; copied only if needed), for several an ``Inputs`` made from a dict
    ``{name: array}`` or a list of arrays in declaration order."""
    if len(model.inputs) == 1:
        return _one(model, model.inputs[0], x, what)
    arrays = [_one(model, d, a, f"{what}['{d.name}']") for d, a in zip(model.inputs, _by_input(model, x, what))]
    counts = {len(a) for a in arrays}
    if len(counts) > 1:
        sizes = ", ".join(f"{d.name}: {len(a)}" for d, a in zip(model.inputs, arrays))
        raise DataError(f"the inputs of {what} hold different numbers of samples ({sizes})")
    return Inputs(arrays)


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
    out_shape = model.output_shape
    if None in out_shape:  # a variable-length output: each batch is checked again against its outputs
        out_shape = tuple(y.shape[i + 1] if d is None and i + 1 < y.ndim else d for i, d in enumerate(out_shape))
    try:
        model.loss.check_target(y, (n, *out_shape))
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    return y

"""Per-sample weights for the loss: ``sample_weight`` arrays and ``class_weight`` tables.

The weighted loss of a batch of ``N`` samples is ``sum_i w_i * loss_i / N`` (``loss_i`` is sample
``i``'s loss, the mean over its outputs), so its gradient with respect to sample ``i``'s output
is ``w_i`` times the unweighted one. ``class_weight`` gives each sample the weight of its class
(``{class: weight}``, classes not named weigh 1, or ``"balanced"``: ``n / (k * n_class)`` for
the ``k`` classes that occur), multiplied by its ``sample_weight`` when both are given.
"""

import math
import numbers

import numpy as np

from ..errors import ConfigError, DataError
from ..text import shape as shape_text
from ..text import show


def sample_weights(value: object, n: int, what: str = "sample_weight") -> np.ndarray:
    """``value`` checked as one finite weight >= 0 per sample: a float32 array ``(n,)``."""
    try:
        w = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what} is not an array of numbers: {exc}") from None
    if w.dtype.kind not in "biuf":
        raise DataError(f"{what} must hold numbers, got dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or len(w) != n:
        raise DataError(f"{what} must hold one weight per sample, shape ({n},); got shape {shape_text(w.shape, False)}")
    with np.errstate(over="ignore"):
        w = w.astype(np.float32)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{what} must be finite and >= 0; {int(bad.sum())} weight(s) are not, the first "
            f"{show(np.asarray(value).reshape(-1)[i].item())} at index {i}"
        )
    return w


def n_classes(output_shape: tuple) -> int | None:
    """The number of classes of a model with outputs of ``output_shape`` (2 for one sigmoid
    output), or ``None`` when the outputs are not class scores."""
    if len(output_shape) != 1:
        return None
    return output_shape[0] if output_shape[0] > 1 else 2


def class_indices(y: np.ndarray, k: int) -> np.ndarray:
    """The class of each target: integer labels, the argmax of rows, ``> 0.5`` of binary targets."""
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        return y.astype(np.intp)
    if k == 2 and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        return (y.reshape(len(y)) > 0.5).astype(np.intp)
    if y.ndim == 1:
        return y.astype(np.intp)
    return y.reshape(len(y), -1).argmax(axis=1)


def class_table(value: object, output_shape: tuple) -> "np.ndarray | str | None":
    """``class_weight`` checked against the model's classes: a float32 table of one weight per
    class, the string ``"balanced"`` (resolved by ``balanced`` once the targets are known) or
    ``None``."""
    if value is None:
        return None
    k = n_classes(tuple(output_shape))
    if k is None:
        raise ConfigError(
            f"class_weight needs a classifier (outputs of shape (N, K) or (N, 1)); the model outputs "
            f"{shape_text(output_shape)}",
            field="class_weight",
        )
    if isinstance(value, str):
        if value != "balanced":
            raise ConfigError(
                f"expected a dict {{class: weight}} or 'balanced', got {show(value)}", field="class_weight"
            )
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"expected a dict {{class: weight}} or 'balanced', got {show(value)}", field="class_weight")
    table = np.ones(k, np.float32)
    for key, weight in value.items():
        cls = key
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():  # JSON object keys
            cls = int(key)
        if not isinstance(cls, numbers.Integral) or isinstance(cls, bool) or not 0 <= int(cls) < k:
            raise ConfigError(
                f"class_weight names class {show(key)}, but the model has {k} classes (0 to {k - 1})",
                field="class_weight",
            )
        if not isinstance(weight, numbers.Real) or isinstance(weight, bool) or not 0 <= float(weight) < math.inf:
            raise ConfigError(
                f"the weight of class {cls} must be a finite number >= 0, got {show(weight)}", field="class_weight"
            )
        table[int(cls)] = weight
    return table


def balanced(counts: np.ndarray) -> np.ndarray:
    """``n / (k * count)`` per class from class counts (``k``: the classes that occur; 1 for the
    others)."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    table = np.ones(len(counts), np.float64)
    table[present] = counts.sum() / (present.sum() * counts[present])
    return table.astype(np.float32)


def combine(table: "np.ndarray | None", y: np.ndarray, weight: "np.ndarray | None") -> "np.ndarray | None":
    """The weights of a batch: its class weights (looked up from its targets) times ``weight``."""
    if table is None:
        return weight
    w = table[class_indices(y, len(table))]
    return w if weight is None else w * weight

"""The divergence guard: training stops at the first NaN or infinity and keeps the last finite weights.

A ``Snapshot`` holds a copy of every weight (trainable parameters and buffers such as BatchNorm's
running statistics, which the forward pass updates) in buffers allocated once; it is refreshed
after each successful step, while the weights are still in cache (and by ``fit`` at each epoch
start and after callbacks that may change weights). After the update ``non_finite`` checks the
weights, one BLAS pass each. The guard's cost is thus one read and one copy of the weights per
step: O(parameters), against O(batch x parameters) for the step (``benchmarks/divergence_guard.py``
measures it). A step whose loss is not
finite is refused before the update; a step that leaves a weight NaN or infinite (a gradient that
is not finite, or finite gradients with a learning rate far too large) is undone with
``Snapshot.restore``, and the optimizer, whose moments have absorbed the failing step, is reset
to a fresh state with ``reset``. Either way the weights end exactly as they were before the step.
"""

import numpy as np


def all_finite(a):
    """True when ``a`` holds no NaN and no infinity (call under ``np.errstate(all="ignore")``)."""
    flat = a.reshape(-1)
    # fast path, one BLAS pass: any NaN or infinity makes the sum of squares NaN or infinite
    if np.isfinite(np.dot(flat, flat)):
        return True
    return bool(np.isfinite(flat).all())  # the sum may also overflow on huge finite values


def non_finite(arrays):
    """Names of the arrays in ``{name: array}`` holding a NaN or an infinity."""
    with np.errstate(all="ignore"):
        return [k for k, a in arrays.items() if not all_finite(a)]


def reset(optimizer):
    """Forget an optimizer's moments and step count (as freshly built)."""
    if hasattr(optimizer, "load_state_dict"):
        optimizer.load_state_dict({"iterations": np.int64(0)})


class Snapshot:
    """Copies of a model's weights, refreshed in place before each step."""

    def __init__(self, model):
        self.model = model
        self._copies = {}

    def save(self):
        for key, arr in self.model.get_weights().items():
            copy = self._copies.get(key)
            if copy is None or copy.shape != arr.shape or copy.dtype != arr.dtype:
                copy = self._copies[key] = np.empty_like(arr)
            np.copyto(copy, arr)

    def restore(self):
        """Put back every weight as ``save`` copied it (in place: layers keep their arrays)."""
        for key, arr in self.model.get_weights().items():
            np.copyto(arr, self._copies[key])

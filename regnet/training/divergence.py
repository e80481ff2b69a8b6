"""The divergence guard: training stops at the first NaN or infinity, and the model is put back
exactly as it was before the failing step: weights, BatchNorm statistics, optimizer state and
the random generator.

After each update ``non_finite`` checks every weight (one BLAS pass each). Copying the weights
before every step to be able to undo one would cost about as much memory traffic as a small-batch
step itself, so the ``Guard`` instead keeps a checkpoint (weights, optimizer state, generator
state) taken every ``interval`` steps, or once the batches kept reach ``MAX_REPLAY_BYTES``, and
the batches trained since. ``Guard.rewind`` restores the checkpoint and replays those batches:
steps are deterministic, so this ends bit for bit where the failing step began. The cost is one
read of the weights per step plus one copy every ``interval`` steps
(``benchmarks/divergence_guard.py`` measures it).

What a replay cannot redo is work done outside the step: ``fit`` therefore takes a checkpoint at
each epoch start and after every step when a callback with its own ``on_batch_end`` may change
the weights (one that only sets optimizer hyperparameters says so with ``changes_weights =
False``; those hyperparameters are recorded with each step and replayed).
"""

import copy

import attrs
import numpy as np

#: steps between two checkpoints; a failure replays at most this many minus one
INTERVAL = 32
#: a checkpoint is also taken once the batches kept for a replay hold this many bytes
MAX_REPLAY_BYTES = 64 << 20


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


def _copy_into(buffers, arrays):
    """Copy ``{name: array}`` into ``buffers`` (allocated on first use, reused after)."""
    for key, arr in arrays.items():
        arr = np.asarray(arr)
        buf = buffers.get(key)
        if buf is None or buf.shape != arr.shape or buf.dtype != arr.dtype:
            buf = buffers[key] = np.empty_like(arr)
        np.copyto(buf, arr)
    for key in set(buffers) - set(arrays):
        del buffers[key]


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls):
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(a.name for a in attrs.fields(cls) if a.init)
    return names


def hyperparameters(optimizer):
    """The optimizer's configuration (learning rate, ...) as set now, to be replayed."""
    if attrs.has(type(optimizer)):
        return {name: getattr(optimizer, name) for name in _field_names(type(optimizer))}
    return {"learning_rate": optimizer.learning_rate} if hasattr(optimizer, "learning_rate") else {}


class Guard:
    """A checkpoint of a model's training state and the steps taken since, to rewind to any of them."""

    def __init__(self, model, interval=INTERVAL):
        self.model = model
        self.interval = interval
        self._weights, self._optimizer = {}, {}
        self._rng = None
        self._steps = []
        self._bytes = 0

    @property
    def replayable(self):
        return hasattr(self.model.optimizer, "state_dict") and hasattr(self.model.optimizer, "load_state_dict")

    def checkpoint(self):
        model = self.model
        _copy_into(self._weights, model.state_dict())
        if self.replayable:
            _copy_into(self._optimizer, model.optimizer.state_dict())
        self._rng = copy.deepcopy(model.rng.bit_generator.state)
        self._steps = []
        self._bytes = 0

    def due(self):
        """True when the next step should start from a fresh checkpoint."""
        if not self._steps:
            return False
        return len(self._steps) >= self.interval or self._bytes >= MAX_REPLAY_BYTES or not self.replayable

    def record(self, xb, yb, hyper, sample_weight=None):
        """A step that succeeded: its batch (and sample weights) and the optimizer
        hyperparameters it ran with."""
        self._steps.append((xb, yb, sample_weight, hyper))
        x_bytes = xb.nbytes if hasattr(xb, "nbytes") else np.asarray(xb).nbytes  # an array or several inputs
        self._bytes += x_bytes + np.asarray(yb).nbytes

    def rewind(self, step):
        """Back to the state before the step in progress: restore the checkpoint, then replay the
        recorded steps with ``step(model, xb, yb, sample_weight)`` (each under the hyperparameters
        it had)."""
        model, opt = self.model, self.model.optimizer
        for key, arr in model.state_dict().items():
            np.copyto(arr, self._weights[key])
        if self.replayable:
            opt.load_state_dict(self._optimizer)
        model.rng.bit_generator.state = copy.deepcopy(self._rng)
        current = hyperparameters(opt)
        for xb, yb, weight, hyper in self._steps:
            _set(opt, hyper)
            step(model, xb, yb, weight)
        _set(opt, current)


def _set(optimizer, hyper):
    for name, value in hyper.items():
        setattr(optimizer, name, value)

"""The initializer check: the exact shape, float32 finite values, determinism under a seed, only
the given Generator used, and a variance that does not blow activations up."""

from typing import Any

import numpy as np

from ..initializers import fans
from .report import Fail, Report, Run, Skip, max_diff, requested_properties
from .subjects import config_round_trips, resolve

#: what ``check_initializer`` checks, in the order it runs
PROPERTIES = ("config", "shape", "dtype", "determinism", "global_state", "variance")


def _has_the_shape(init, shape, seed):
    w = init(shape, np.random.default_rng(seed))
    if not isinstance(w, np.ndarray) or w.shape != shape:
        raise Fail(f"asked for shape {list(shape)}, got {type(w).__name__} of shape {list(np.shape(w))}")


def _gives_finite_float32(init, shape, seed):
    w = np.asarray(init(shape, np.random.default_rng(seed)))
    if w.dtype != np.float32:
        raise Fail(f"shape {list(shape)}: got {w.dtype} values, expected float32")
    if not np.all(np.isfinite(w)):
        raise Fail(f"shape {list(shape)}: {int(np.sum(~np.isfinite(w)))} non-finite values")


def _same_seed_same_values(init, shape, seed):
    a = init(shape, np.random.default_rng(seed))
    b = init(shape, np.random.default_rng(seed))
    if not np.array_equal(a, b):
        raise Fail(f"shape {list(shape)}: the same seed gave different values ({max_diff(a, b)})")


def _leaves_global_state_alone(init, shape, seed):
    before = np.random.get_state()
    init(shape, np.random.default_rng(seed))
    after = np.random.get_state()
    if not (before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]):
        raise Fail("the initializer drew from numpy's global random state instead of the given Generator")


def _variance_is_bounded(init, shape, seed, max_gain):
    if len(shape) < 2:
        raise Skip(f"shape {list(shape)} is not a kernel (rank < 2), so it has no fan-in to scale by")
    w = np.asarray(init(shape, np.random.default_rng(seed)), dtype=np.float64)
    fan_in = fans(shape)[0]
    gain = float(np.var(w)) * fan_in
    if not gain <= max_gain:
        raise Fail(
            f"shape {list(shape)}: variance {np.var(w):.4g} times fan_in {fan_in} is {gain:.4g} "
            f"(above {max_gain}: activations would grow layer after layer)"
        )


def check_initializer(
    initializer: Any,
    shapes: Any = ((64, 32), (16, 8, 3, 3), (128,)),
    *,
    seed: int = 0,
    checks: Any = None,
    max_gain: float = 8.0,
) -> Report:
    """Check an initializer: exact shape, float32 and finite, deterministic under a seed, only the
    given Generator used, and ``variance * fan_in <= max_gain`` for kernels (rank >= 2; skipped
    for other shapes). ``checks`` names the properties to run (``PROPERTIES``; all by default)."""
    requested = requested_properties("initializers", PROPERTIES, checks)
    subject = resolve("initializers", initializer)
    run = Run(subject.label, requested)
    run("config", config_round_trips, subject)
    init = subject.make()
    for shape in map(tuple, shapes):
        run("shape", _has_the_shape, init, shape, seed)
        run("dtype", _gives_finite_float32, init, shape, seed)
        run("determinism", _same_seed_same_values, init, shape, seed)
        run("global_state", _leaves_global_state_alone, init, shape, seed)
        run("variance", _variance_is_bounded, init, shape, seed, max_gain)
    run.skip_rest("no shapes given (shapes is empty)")
    return run.finish()

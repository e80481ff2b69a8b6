"""The activation check: shapes kept, float32 throughout, inputs left alone, the derivative
against central differences, and samples independent of each other."""

from typing import Any

import numpy as np

from .gradients import gradient_error, numerical_gradient
from .report import Fail, Report, Run, max_diff, requested_properties
from .subjects import config_round_trips, resolve

#: what ``check_activation`` checks, in the order it runs
PROPERTIES = ("config", "shape", "dtype", "inputs_unchanged", "gradient", "batch_independence")


def activation_input(act: Any, shape: tuple, rng: np.random.Generator, dtype: Any) -> np.ndarray:
    """Random inputs in the activation's ``test_input_range`` (default ``(-2.5, 2.5)``), kept
    0.05 away from the kink at 0 that many activations have."""
    lo, hi = getattr(act, "test_input_range", (-2.5, 2.5))
    u = rng.uniform(lo, hi, shape)
    if lo < 0 < hi:
        u = np.where(np.abs(u) < 0.05, np.sign(u + 1e-12) * 0.05 + u, u)
    return np.ascontiguousarray(u, dtype=dtype)


def _shapes_kept(act, shape, seed):
    x = activation_input(act, shape, np.random.default_rng(seed), np.float32)
    y = act.forward(x)
    if np.shape(y) != x.shape:
        raise Fail(f"forward turned input {list(x.shape)} into output {list(np.shape(y))}")
    g = act.backward(np.ones_like(y), x, y)
    if np.shape(g) != x.shape:
        raise Fail(f"backward gave a gradient of shape {list(np.shape(g))} for input {list(x.shape)}")


def _stays_float32(act, shape, seed):
    x = activation_input(act, shape, np.random.default_rng(seed), np.float32)
    y = act.forward(x)
    g = act.backward(np.ones_like(y), x, y)
    if np.asarray(y).dtype != np.float32 or np.asarray(g).dtype != np.float32:
        raise Fail(
            f"float32 input gave a {np.asarray(y).dtype} output and a {np.asarray(g).dtype} gradient (expected float32)"
        )


def _leaves_inputs_unchanged(act, shape, seed):
    rng = np.random.default_rng(seed)
    x = activation_input(act, shape, rng, np.float32)
    x0 = x.copy()
    y = act.forward(x)
    y0 = np.array(y, copy=True)
    g = rng.standard_normal(np.shape(y)).astype(np.float32)
    g0 = g.copy()
    act.backward(g, x, y)
    for what, a, b in (("input", x, x0), ("output", y, y0), ("incoming gradient", g, g0)):
        if not np.array_equal(a, b):
            raise Fail(f"forward or backward modified its {what} in place ({max_diff(a, b)})")


def _gradient_matches_central_differences(act, shape, seed, atol, rtol, eps):
    rng = np.random.default_rng(seed)
    x = activation_input(act, shape, rng, np.float64)
    r = rng.standard_normal(shape)
    y = act.forward(x)
    analytic = act.backward(r.copy(), x.copy(), np.array(y, copy=True))
    numeric = numerical_gradient(lambda: float(np.sum(act.forward(x) * r)), x, eps=eps)
    err = gradient_error(analytic, numeric, atol=atol, rtol=rtol, shape=x.shape)
    if err:
        raise Fail(f"backward on input {list(shape)} disagrees with central differences (float64): {err}")


def _samples_are_independent(act, shape, seed):
    rng = np.random.default_rng(seed)
    x = activation_input(act, shape, rng, np.float32)
    x2 = x.copy()
    x2[1:] = activation_input(act, x2[1:].shape, rng, np.float32)
    a, b = act.forward(x)[0], act.forward(x2)[0]
    if not np.allclose(a, b, rtol=1e-6, atol=1e-7):
        raise Fail(f"the output for sample 0 changed when other samples changed ({max_diff(a, b)})")


def check_activation(
    activation: Any,
    shapes: Any = ((3, 5), (2, 3, 2, 2)),
    *,
    seed: int = 0,
    checks: Any = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    eps: float = 1e-6,
) -> Report:
    """Check an activation: element-wise or along an axis (softmax), on each shape in ``shapes``
    (batch axis first). ``checks`` names the properties to run (``PROPERTIES``; all by default)."""
    requested = requested_properties("activations", PROPERTIES, checks)
    subject = resolve("activations", activation)
    run = Run(subject.label, requested)
    run("config", config_round_trips, subject)
    act = subject.make()
    for shape in map(tuple, shapes):
        run("shape", _shapes_kept, act, shape, seed)
        run("dtype", _stays_float32, act, shape, seed)
        run("inputs_unchanged", _leaves_inputs_unchanged, act, shape, seed)
        run("gradient", _gradient_matches_central_differences, act, shape, seed, atol, rtol, eps)
        run("batch_independence", _samples_are_independent, act, shape, seed)
    run.skip_rest("no input shapes given (shapes is empty)")
    return run.finish()

"""The optimizer check: in-place float32 updates, descent on a convex quadratic, an exact resume
from ``state_dict()``, and identical runs from identical starts."""

import json
import math
from typing import Any

import attrs
import numpy as np

from .report import Fail, Report, Run, Skip, max_diff, requested_properties
from .subjects import Subject, config_of, config_round_trips, resolve

#: what ``check_optimizer`` checks, in the order it runs
PROPERTIES = ("config", "dtype", "descent", "state", "determinism")


@attrs.define
class Quadratic:
    """``f(p) = sum(a * (p - c)**2) / 2`` over two named parameters, scaled to the learning rate.

    Curvatures are ``10/(lr*steps)`` times U(0.5, 2) so plain SGD contracts by about ``e^-5`` over
    ``steps``; starting points lie ``lr*sqrt(steps)/2`` times U(0.5, 1) from the minimum so
    sign-like rules (Adam, Lion) and decaying ones (AdaGrad) can reach it.
    """

    a: dict
    c: dict
    start: dict

    @classmethod
    def make(cls, lr: float, steps: int, seed: int) -> "Quadratic":
        """A random quadratic that ``steps`` steps of size about ``lr`` can minimise."""
        rng = np.random.default_rng(seed)
        shapes = {"quad/kernel": (3, 2), "quad/bias": (2,)}
        a = {k: rng.uniform(0.5, 2, s) * 10 / (lr * steps) for k, s in shapes.items()}
        c = {k: rng.uniform(-1, 1, s) for k, s in shapes.items()}
        dist = lr * math.sqrt(steps) / 2
        start = {
            k: (c[k] + rng.choice([-1, 1], s) * rng.uniform(0.5, 1, s) * dist).astype(np.float32)
            for k, s in shapes.items()
        }
        return cls(a, c, start)

    def params(self) -> dict:
        """Fresh copies of the starting point."""
        return {k: v.copy() for k, v in self.start.items()}

    def value(self, params: dict) -> float:
        """``f(params)``."""
        return float(sum(np.sum(self.a[k] * (params[k] - self.c[k]) ** 2) / 2 for k in params))

    def grads(self, params: dict) -> dict:
        """The float32 gradient of ``f`` at ``params``."""
        return {k: (self.a[k] * (params[k] - self.c[k])).astype(np.float32) for k in params}


def learning_rate(opt: Any) -> float:
    """The optimizer's learning rate, which the quadratic is scaled to (skips if not positive)."""
    lr = float(getattr(opt, "learning_rate", 0.01))
    if not lr > 0:
        raise Skip(f"learning_rate is {lr}; the problem is scaled to a positive learning rate")
    return lr


def _descends(subject, steps, seed):
    opt = subject.make()
    quad = Quadratic.make(learning_rate(opt), steps, seed)
    params = quad.params()
    f0 = quad.value(params)
    for _ in range(steps):
        opt.step(params, quad.grads(params))
    f1 = quad.value(params)
    if not math.isfinite(f1) or not f1 < 0.5 * f0:
        raise Fail(
            f"{steps} steps on a convex quadratic took the loss from {f0:.6g} to {f1:.6g} "
            f"(expected below half the start)"
        )


def _updates_float32_in_place(subject, seed):
    opt = subject.make()
    quad = Quadratic.make(learning_rate(opt), 100, seed)
    params = quad.params()
    ids = {k: id(v) for k, v in params.items()}
    for _ in range(3):
        opt.step(params, quad.grads(params))
    for k, v in params.items():
        if id(v) != ids[k]:
            raise Fail(f"step() replaced params['{k}'] instead of updating it in place")
        if v.dtype != np.float32:
            raise Fail(f"step() turned float32 params['{k}'] into {v.dtype}")
        if np.array_equal(v, quad.start[k]):
            raise Fail(f"three steps with non-zero gradients left params['{k}'] unchanged")
    _state_is_float32(opt)
    opt.step(params, {k: np.zeros_like(v) for k, v in params.items()})
    if not all(np.all(np.isfinite(v)) for v in params.values()):
        raise Fail("a step with zero gradients made parameters non-finite")


def _state_is_float32(opt):
    state = opt.state_dict()
    bad = [
        f"'{k}' is {np.asarray(v).dtype}"
        for k, v in state.items()
        if k != "iterations" and np.asarray(v).dtype != np.float32
    ]
    if bad:
        raise Fail(f"optimizer state must be float32: {', '.join(bad)}")


def _resumes_from_state_dict(subject: Subject, seed):
    a = subject.make()
    quad = Quadratic.make(learning_rate(a), 100, seed)
    pa = quad.params()
    for _ in range(3):
        a.step(pa, quad.grads(pa))
    state = {k: np.array(v, copy=True) for k, v in a.state_dict().items()}
    if "iterations" not in state or int(state["iterations"]) != 3:
        raise Fail(f"state_dict() iterations is {state.get('iterations')!r} after 3 steps, expected 3")
    b = subject.from_config(json.loads(json.dumps(config_of(subject.make()))))
    b.load_state_dict(state)
    pb = {k: v.copy() for k, v in pa.items()}
    for step in range(3):
        a.step(pa, quad.grads(pa))
        b.step(pb, quad.grads(pb))
        for k in pa:
            if not np.array_equal(pa[k], pb[k]):
                raise Fail(
                    f"an optimizer restored from state_dict() diverges at step {step + 4} on '{k}' "
                    f"({max_diff(pa[k], pb[k])})"
                )


def _same_start_same_run(subject, seed):
    runs = []
    for _ in range(2):
        opt = subject.make()
        quad = Quadratic.make(learning_rate(opt), 100, seed)
        params = quad.params()
        for _ in range(5):
            opt.step(params, quad.grads(params))
        runs.append(params)
    for k in runs[0]:
        if not np.array_equal(runs[0][k], runs[1][k]):
            raise Fail(f"two identical runs end with different '{k}' ({max_diff(runs[0][k], runs[1][k])})")


def check_optimizer(optimizer: Any, *, seed: int = 0, steps: int = 500, checks: Any = None) -> Report:
    """Check an optimizer: it minimises a convex quadratic, updates float32 params in place, and
    resumes exactly from ``state_dict()``. ``checks`` names the properties to run (``PROPERTIES``)."""
    requested = requested_properties("optimizers", PROPERTIES, checks)
    subject = resolve("optimizers", optimizer)
    run = Run(subject.label, requested)
    run("config", config_round_trips, subject)
    run("dtype", _updates_float32_in_place, subject, seed)
    run("descent", _descends, subject, steps, seed)
    run("state", _resumes_from_state_dict, subject, seed)
    run("determinism", _same_start_same_run, subject, seed)
    return run.finish()

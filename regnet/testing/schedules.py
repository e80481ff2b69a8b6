"""The schedule check: finite non-negative rates, a pure function of the step (evaluation order,
repeats and fresh instances change nothing), a config that rebuilds the same rates, and an
optimizer resumed from ``state_dict()`` that goes on with the same rates."""

import json
import math
import numbers
from typing import Any

import numpy as np

from ..optimizers import SGD
from .report import Fail, Report, Run, requested_properties
from .subjects import Subject, config_of, config_round_trips, resolve

#: what ``check_schedule`` checks, in the order it runs
PROPERTIES = ("config", "values", "pure", "resume")

#: steps every property evaluates: the first few hundred and some far ones
STEPS = (*range(0, 300), 1_000, 12_345, 10**6, 10**8)


def _rates(schedule: Any, steps: Any) -> list:
    return [schedule(int(s)) for s in steps]


def _valid_rates(subject: Subject) -> None:
    schedule = subject.make()
    for step in STEPS:
        rate = schedule(step)
        if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
            raise Fail(f"schedule({step}) returned {type(rate).__name__} {rate!r}, expected a float")
        if not (math.isfinite(rate) and rate >= 0):
            raise Fail(f"schedule({step}) is {rate}, expected a finite number >= 0")
    rebuilt = subject.from_config(json.loads(json.dumps(config_of(schedule))))
    a, b = _rates(schedule, STEPS), _rates(rebuilt, STEPS)
    for step, x, y in zip(STEPS, a, b):
        if x != y:
            raise Fail(f"a schedule rebuilt from its config gives {y} at step {step}, the original {x}")


def _pure(subject: Subject, seed: int) -> None:
    forward = _rates(subject.make(), STEPS)
    shuffled = np.random.default_rng(seed).permutation(len(STEPS))
    one = subject.make()
    backwards = dict(zip((STEPS[i] for i in shuffled), _rates(one, (STEPS[i] for i in shuffled))))
    again = _rates(one, STEPS)
    for step, rate, other, repeat in zip(STEPS, forward, (backwards[s] for s in STEPS), again):
        if not rate == other == repeat:
            raise Fail(
                f"schedule({step}) is {rate} evaluated in order, {other} in a shuffled order and {repeat} "
                f"evaluated again: a schedule must be a function of the step alone (no state)"
            )


def _optimizer_resumes(subject: Subject) -> None:
    config = config_of(subject.make())
    a = SGD(learning_rate=subject.make())
    params = {"w": np.ones(3, np.float32)}
    grads = {"w": np.full(3, 1e-3, np.float32)}
    for _ in range(7):
        a.step(params, grads)
    b = SGD(learning_rate=subject.from_config(json.loads(json.dumps(config))))
    b.load_state_dict({k: np.array(v) for k, v in a.state_dict().items()})
    pb = {k: v.copy() for k, v in params.items()}
    for step in range(7, 12):
        a.step(params, grads)
        b.step(pb, grads)
        if a.learning_rate != b.learning_rate or not np.array_equal(params["w"], pb["w"]):
            raise Fail(
                f"an optimizer resumed from state_dict() with the schedule rebuilt from its config uses "
                f"rate {b.learning_rate} at step {step}, the original {a.learning_rate}"
            )
    if a.learning_rate != subject.make()(11):
        raise Fail(f"the optimizer's 12th update used {a.learning_rate}, the schedule gives {subject.make()(11)}")


def check_schedule(schedule: Any, *, seed: int = 0, checks: Any = None) -> Report:
    """Check a learning-rate schedule: finite rates >= 0 at every step tried, the same rates in
    any evaluation order and from its config, and an exact resume of an optimizer that follows
    it. ``checks`` names the properties to run (``PROPERTIES``)."""
    requested = requested_properties("schedules", PROPERTIES, checks)
    subject = resolve("schedules", schedule)
    run = Run(subject.label, requested)
    run("config", config_round_trips, subject)
    run("values", _valid_rates, subject)
    run("pure", _pure, subject, seed)
    run("resume", _optimizer_resumes, subject)
    return run.finish()

"""The metric check: on the outputs a metric accepts (classes, a binary output, real values),
streaming over batches gives the value of the whole set, totals are arrays that add up across
parts, weights behave as repetitions, inputs are left alone, and the config rebuilds the same
metric."""

import json
import numbers
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .report import Fail, Report, Run, max_diff, requested_properties
from .subjects import Subject, config_of, config_round_trips, resolve

#: what ``check_metric`` checks, in the order it runs
PROPERTIES = ("config", "outputs", "streaming", "totals", "weights", "inputs_unchanged", "determinism")

#: the kinds of outputs and targets a metric is tried on: (name, output shape, targets)
OUTPUT_KINDS = (("classes", (4,), "labels"), ("binary", (1,), "binary"), ("real", (3,), "real"))


def _data(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (probabilities, or real values) and targets of one output kind."""
    rng = np.random.default_rng(seed)
    if kind == "classes":
        logits = rng.standard_normal((n, 4))
        pred = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        target = np.where(rng.random(n) < 0.6, pred.argmax(axis=1), rng.integers(0, 4, n))
        return pred.astype(np.float32), target
    if kind == "binary":
        target = rng.integers(0, 2, n)
        pred = np.clip(rng.normal(0.35 + 0.3 * target, 0.25), 0, 1)[:, None]
        return pred.astype(np.float32), target.astype(np.float32)[:, None]
    target = rng.standard_normal((n, 3))
    return (target + 0.3 * rng.standard_normal((n, 3))).astype(np.float32), target.astype(np.float32)


def _close(a: Any, b: Any, rtol: float = 1e-9) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True))


def _value(subject: Subject, pred: np.ndarray, target: np.ndarray, weight: Any = None) -> Any:
    return subject.make()(pred, target, weight)


def accepted_kinds(subject: Subject, seed: int) -> list[str]:
    """The output kinds the metric takes: its ``check`` accepts the shape and its statistics
    accept the targets (``DataError`` means they do not)."""
    kinds = []
    for kind, shape, _ in OUTPUT_KINDS:
        m = subject.make()
        try:
            m.check(shape)
        except ConfigError:
            continue
        pred, target = _data(kind, 8, seed)
        try:
            m(pred, target)
        except DataError:
            continue
        kinds.append(kind)
    return kinds


def _outputs(kinds: list[str]) -> None:
    if not kinds:
        names = ", ".join(f"{k} {shape}" for k, shape, _ in OUTPUT_KINDS)
        raise Fail(f"the metric takes none of the test outputs ({names}): check() or statistics() refuse them all")


def _value_type(value: Any, what: str) -> None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return
    raise Fail(f"{what} is {type(value).__name__} {value!r}; expected a float or a float array")


def _streaming(subject: Subject, kinds: list[str], seed: int) -> None:
    for kind in kinds:
        pred, target = _data(kind, 101, seed)
        whole = _value(subject, pred, target)
        _value_type(whole, f"the value on {kind} outputs")
        m = subject.make()
        start = 0
        for size in (7, 16, 1, 40, 37):  # uneven batches
            m.update(pred[start : start + size], target[start : start + size])
            start += size
        streamed = m.result()
        if not _close(streamed, whole):
            raise Fail(
                f"on {kind} outputs, the value over 5 uneven batches is {streamed}, over the whole set at once "
                f"{whole} ({max_diff(streamed, whole)}): statistics must be sums over samples"
            )


def _totals(subject: Subject, kinds: list[str], seed: int) -> None:
    for kind in kinds:
        pred, target = _data(kind, 60, seed)
        a, b = subject.make(), subject.make()
        a.update(pred[:25], target[:25])
        b.update(pred[25:], target[25:])
        for name, value in a.totals.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise Fail(f"totals['{name}'] is {type(value).__name__}, expected a float array (summable)")
        a.merge({k: v.copy() for k, v in b.totals.items()})
        whole = _value(subject, pred, target)
        if not _close(a.result(), whole):
            raise Fail(f"on {kind} outputs, merging the totals of two parts gives {a.result()}, the whole set {whole}")
        a.reset()
        a.update(pred[:25], target[:25])
        if not _close(a.result(), _value(subject, pred[:25], target[:25])):
            raise Fail(f"after reset() the value on {kind} outputs still counts the batches before")


def _weights(subject: Subject, kinds: list[str], seed: int) -> None:
    for kind in kinds:
        pred, target = _data(kind, 30, seed)
        plain = _value(subject, pred, target)
        ones = _value(subject, pred, target, np.ones(len(pred)))
        if not _close(ones, plain):
            raise Fail(f"on {kind} outputs, weights of 1 give {ones}, no weights {plain}")
        w = np.random.default_rng(seed + 1).integers(0, 4, len(pred))
        w[0] = max(w[0], 1)
        repeated = np.repeat(np.arange(len(pred)), w)
        weighted = _value(subject, pred, target, w.astype(np.float64))
        expected = _value(subject, pred[repeated], target[repeated])
        if not _close(weighted, expected):
            raise Fail(
                f"on {kind} outputs, integer weights give {weighted}, repeating each sample that many times "
                f"{expected} ({max_diff(weighted, expected)})"
            )


def _inputs_unchanged(subject: Subject, kinds: list[str], seed: int) -> None:
    for kind in kinds:
        pred, target = _data(kind, 20, seed)
        p, t, w = pred.copy(), target.copy(), np.ones(len(pred))
        m = subject.make()
        m.update(pred, target, w)
        m.result()
        if not (np.array_equal(p, pred) and np.array_equal(t, target) and np.all(w == 1)):
            raise Fail(f"update() modified its inputs ({kind} outputs)")


def _determinism(subject: Subject, kinds: list[str], seed: int) -> None:
    for kind in kinds:
        pred, target = _data(kind, 50, seed)
        a = _value(subject, pred, target)
        rebuilt = subject.from_config(json.loads(json.dumps(config_of(subject.make()))))
        b, c = _value(subject, pred, target), rebuilt(pred, target)
        if not (_close(a, b, 0) and _close(a, c, 0)):
            raise Fail(f"the same outputs give {a}, then {b}, and {c} from a metric rebuilt from its config")


def check_metric(metric: Any, *, seed: int = 0, checks: Any = None) -> Report:
    """Check a metric on every kind of outputs it takes (``OUTPUT_KINDS``): streaming over
    batches equals the whole set, totals are float arrays that add up across parts and reset,
    integer weights equal repetitions, inputs stay unchanged, and the config rebuilds the same
    metric. ``checks`` names the properties to run (``PROPERTIES``)."""
    requested = requested_properties("metrics", PROPERTIES, checks)
    subject = resolve("metrics", metric)
    run = Run(subject.label, requested)
    run("config", config_round_trips, subject)
    try:
        kinds = accepted_kinds(subject, seed)
    except Exception as exc:  # a metric under test may fail in any way
        run.fail("outputs", f"raised {type(exc).__name__}: {exc}")
        return run.finish()
    run("outputs", _outputs, kinds)
    if not kinds:
        run.skip_rest("the metric takes none of the test outputs")
        return run.finish()
    run("streaming", _streaming, subject, kinds, seed)
    run("totals", _totals, subject, kinds, seed)
    run("weights", _weights, subject, kinds, seed)
    run("inputs_unchanged", _inputs_unchanged, subject, kinds, seed)
    run("determinism", _determinism, subject, kinds, seed)
    return run.finish()

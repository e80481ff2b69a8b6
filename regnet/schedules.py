"""Learning-rate schedules: the learning rate as a function of the optimizer's step count.

A schedule is configuration data like every other component. Given as an optimizer's
``learning_rate``::

    model.compile(optimizer={"type": "sgd", "momentum": 0.9,
                             "learning_rate": {"type": "cosine", "initial": 0.1, "decay_steps": 5000}})

the optimizer evaluates it before every update on its own step count (``optimizer.iterations``,
which ``regnet.save`` stores), so a resumed run continues the schedule exactly. The training
config in the file holds the schedule's config.

Built in: ``constant``, ``step``, ``multi_step``, ``exponential``, ``linear``, ``cosine``,
``cosine_restarts`` (SGDR), ``warmup`` (a linear warm-up in front of any other schedule) and
``one_cycle``. Plugins add schedules through the entry-point group ``regnet.schedules``.

The schedules with a Keras twin (``exponential``: ``ExponentialDecay``, ``linear``:
``PolynomialDecay`` with ``power=1``, ``cosine``: ``CosineDecay``, ``cosine_restarts``:
``CosineDecayRestarts``) also take Keras's field names: ``initial_learning_rate`` for ``initial``
and, for ``linear``, ``end_learning_rate`` for ``final`` (``KERAS_FIELDS``); the saved config
uses regnet's names.
"""

import bisect
import math
import numbers
from typing import Any

import attrs

from . import fields, registry
from .errors import ConfigError
from .text import show


class Schedule:
    """Base class of learning-rate schedules: ``schedule(step) -> learning rate``.

    ``step`` is the number of updates taken before this one (0 for the first update); the result
    is a finite float >= 0. A schedule is a pure function of ``step`` and its config fields (attrs
    fields, as for every component): no state, no randomness, and O(1) work, since the optimizer
    calls it once per update. Declare one with ``@schedule("name")``.
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return registry.get_config(self)


registry.schedules.bind(Schedule)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def schedule(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@schedule("name", aliases=(...))``: make the class an attrs schedule and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.schedules, name, aliases=aliases, register=register)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def get(spec: Any) -> Schedule:
    """A schedule from a name, a ``{"type": ...}`` dict, an instance or a number (a constant)."""
    if _is_number(spec):
        return Constant(value=spec)
    return registry.schedules.create(spec)


def _nested(value: Any) -> Schedule:
    """Converter of a field holding another schedule (given as a number, name, dict or instance)."""
    try:
        return get(value)
    except ConfigError as exc:
        field = "schedule" if exc.field is None else f"schedule.{exc.field}"
        raise ConfigError(getattr(exc, "message", str(exc)), field=field) from exc


def _steps(default: Any = attrs.NOTHING, doc: str = "") -> Any:
    return fields.integer(default, min=1, max=None, doc=doc)


def _milestones(_: object, attribute: attrs.Attribute, value: Any) -> None:
    ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok or list(value) != sorted(set(value)):
        raise ConfigError(
            f"expected a list of increasing step numbers >= 0, got {show(list(value) if ok else value)}",
            field=attribute.name,
        )


def _milestones_field() -> Any:
    return fields.field(
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
        validator=_milestones,
        doc="the steps at which the rate is multiplied by gamma",
        accepts="a list of increasing integers >= 1",
    )


def _schedule_field() -> Any:
    """A field holding another schedule, given as a number, name, dict or instance."""
    return attrs.field(
        converter=_nested,
        metadata={
            fields.KIND: "schedules",
            fields.DOC: "the schedule that follows the warm-up (its step 0 is the first step after it)",
            fields.ACCEPTS: "a schedule's name or a dict with a 'type'",
        },
    )


#: Keras's names of the fields of the schedules that have a Keras twin (``field_synonyms``)
KERAS_FIELDS = {"initial_learning_rate": "initial"}


@schedule("constant")
class Constant(Schedule):
    """``value`` at every step."""

    value: float = fields.number(min=0.0, doc="the rate at every step")

    def __call__(self, step):
        return self.value


@schedule("step", aliases=("StepLR",))
class Step(Schedule):
    """``initial * gamma ** (step // step_size)``: times ``gamma`` every ``step_size`` steps."""

    initial: float = fields.number(min=0.0, doc="the rate at step 0")
    step_size: int = _steps(doc="steps between two multiplications by gamma")
    gamma: float = fields.number(0.1, min=0.0, doc="the factor applied at each decay")

    def __call__(self, step):
        return self.initial * self.gamma ** (step // self.step_size)


@schedule("multi_step", aliases=("MultiStepLR", "piecewise"))
class MultiStep(Schedule):
    """``initial * gamma ** k`` after the ``k``-th of the increasing ``milestones`` (steps)."""

    initial: float = fields.number(min=0.0, doc="the rate at step 0")
    milestones: tuple = _milestones_field()
    gamma: float = fields.number(0.1, min=0.0, doc="the factor applied at each decay")

    def __call__(self, step):
        return self.initial * self.gamma ** bisect.bisect_right(self.milestones, step)


@schedule("exponential", aliases=("ExponentialDecay", "ExponentialLR"))
class Exponential(Schedule):
    """``initial * decay_rate ** (step / decay_steps)`` (the exponent floored with ``staircase``)."""

    field_synonyms = KERAS_FIELDS

    initial: float = fields.number(min=0.0, doc="the rate at step 0")
    decay_rate: float = fields.number(min=0.0, doc="the factor applied every decay_steps steps")
    decay_steps: int = _steps(1, doc="steps over which the rate is multiplied by decay_rate once")
    staircase: bool = fields.boolean(False, doc="decay in whole steps of decay_steps (not continuously)")

    def __call__(self, step):
        t = step // self.decay_steps if self.staircase else step / self.decay_steps
        return self.initial * self.decay_rate**t


@schedule("linear", aliases=("LinearLR", "PolynomialDecay"))
class Linear(Schedule):
    """From ``initial`` to ``final`` in a straight line over ``decay_steps``, then ``final``."""

    field_synonyms = {**KERAS_FIELDS, "end_learning_rate": "final"}

    initial: float = fields.number(min=0.0, doc="the rate at step 0")
    decay_steps: int = _steps(doc="steps to go from initial to final")
    final: float = fields.number(0.0, min=0.0, doc="the rate reached after decay_steps, and kept")

    def __call__(self, step):
        t = min(1.0, step / self.decay_steps)
        return self.initial + (self.final - self.initial) * t


@schedule("cosine", aliases=("CosineDecay", "CosineAnnealingLR"))
class Cosine(Schedule):
    """Half a cosine from ``initial`` down to ``alpha * initial`` over ``decay_steps``, then flat:
    ``initial * (alpha + (1 - alpha) * (1 + cos(pi * t)) / 2)`` with ``t = min(1, step / decay_steps)``."""

    field_synonyms = KERAS_FIELDS

    initial: float = fields.number(min=0.0, doc="the rate at step 0")
    decay_steps: int = _steps(doc="steps of the half cosine")
    alpha: float = fields.number(0.0, min=0.0, max=1.0, doc="the lowest rate, as a fraction of initial")

    def __call__(self, step):
        t = min(1.0, step / self.decay_steps)
        return self.initial * (self.alpha + (1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * t)))


@schedule("cosine_restarts", aliases=("CosineDecayRestarts", "CosineAnnealingWarmRestarts", "sgdr"))
class CosineRestarts(Schedule):
    """Cosine decay with warm restarts (SGDR): periods of ``first_decay_steps * t_mul**i`` steps,
    each starting again at ``initial * m_mul**i`` and falling to ``alpha`` times that."""

    field_synonyms = KERAS_FIELDS

    initial: float = fields.number(min=0.0, doc="the rate at step 0")
    first_decay_steps: int = _steps(doc="steps of the first cycle")
    t_mul: float = fields.number(2.0, min=1.0, doc="each cycle is t_mul times as long as the one before")
    m_mul: float = fields.number(1.0, min=0.0, doc="each cycle starts at m_mul times the previous start")
    alpha: float = fields.number(0.0, min=0.0, max=1.0, doc="the lowest rate, as a fraction of initial")

    def __call__(self, step):
        done = step / self.first_decay_steps  # in units of the first period
        if self.t_mul == 1.0:
            i = math.floor(done)
            start, length = float(i), 1.0
        else:
            i = math.floor(math.log(1 + done * (self.t_mul - 1)) / math.log(self.t_mul))
            start = (self.t_mul**i - 1) / (self.t_mul - 1)
            if start > done:  # rounding in the logarithm at a period boundary
                i -= 1
                start = (self.t_mul**i - 1) / (self.t_mul - 1)
            length = self.t_mul**i
            if done - start >= length:
                i, start, length = i + 1, start + length, length * self.t_mul
        t = min(1.0, max(0.0, (done - start) / length))
        cosine = 0.5 * (1 + math.cos(math.pi * t))
        return self.initial * self.m_mul**i * (self.alpha + (1 - self.alpha) * cosine)


@schedule("warmup", aliases=("linear_warmup",))
class Warmup(Schedule):
    """A linear warm-up over ``warmup_steps`` from ``start`` to where ``schedule`` begins, then
    ``schedule`` counted from the end of the warm-up: ``start + (schedule(0) - start) * (step + 1)
    / warmup_steps`` for ``step < warmup_steps``, else ``schedule(step - warmup_steps)``."""

    warmup_steps: int = _steps(doc="steps of the linear warm-up")
    schedule: Schedule = _schedule_field()
    start: float = fields.number(0.0, min=0.0, doc="the rate at step 0 of the warm-up")

    def __call__(self, step):
        if step < self.warmup_steps:
            target = self.schedule(0)
            return self.start + (target - self.start) * (step + 1) / self.warmup_steps
        return self.schedule(step - self.warmup_steps)


@schedule("one_cycle", aliases=("OneCycleLR",))
class OneCycle(Schedule):
    """The one-cycle policy (as PyTorch's ``OneCycleLR``, learning rate only): from ``max_lr /
    div_factor`` up to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then down to
    ``max_lr / (div_factor * final_div_factor)``, along half cosines (``anneal="cos"``) or
    straight lines (``"linear"``); flat at the end value after ``total_steps``."""

    max_lr: float = fields.number(min=0.0, doc="the peak rate")
    total_steps: int = _steps(doc="the length of the cycle in steps")
    pct_start: float = fields.number(0.3, min=0.0, max=1.0, doc="the fraction of the cycle spent rising")
    div_factor: float = fields.number(25.0, min=0.0, min_open=True, doc="the start rate is max_lr / div_factor")
    final_div_factor: float = fields.number(
        1e4, min=0.0, min_open=True, doc="the final rate is the start rate / final_div_factor"
    )
    anneal: str = fields.choice("cos", "cos", "linear", doc="the shape of both phases")

    def __call__(self, step):
        low = self.max_lr / self.div_factor
        end = low / self.final_div_factor
        peak = float(self.pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if step <= peak:
            return self._anneal(low, self.max_lr, step / peak if peak > 0 else 1.0)
        if last <= peak:
            return end
        return self._anneal(self.max_lr, end, min(1.0, (step - peak) / (last - peak)))

    def _anneal(self, a, b, t):
        if self.anneal == "linear":
            return a + (b - a) * t
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))


#: the command line's ``--lr-schedule`` choices
CLI_KINDS = ("constant", "cosine", "linear", "exponential")


def from_cli(
    kind: str, learning_rate: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0, decay: float = 0.9
) -> "float | dict":
    """The optimizer ``learning_rate`` that ``regnet train --lr-schedule KIND --warmup W
    --lr-decay D`` asks for: a number (constant, no warm-up) or a schedule config.

    ``cosine`` and ``linear`` decay to zero at the end of the run; ``exponential`` multiplies the
    rate by ``decay`` every epoch; ``warmup_epochs`` (may be fractional) puts a linear warm-up in
    front, after which the decay starts."""
    if kind not in CLI_KINDS:
        raise ConfigError(f"unknown schedule {show(kind)}; expected one of {', '.join(CLI_KINDS)}", field="lr_schedule")
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(warmup_epochs * steps_per_epoch))
    rest = max(1, total - warmup)
    choices: dict[str, float | dict] = {
        "constant": learning_rate,
        "cosine": {"type": "cosine", "initial": learning_rate, "decay_steps": rest},
        "linear": {"type": "linear", "initial": learning_rate, "decay_steps": rest},
        "exponential": {
            "type": "exponential",
            "initial": learning_rate,
            "decay_rate": decay,
            "decay_steps": max(1, steps_per_epoch),
        },
    }
    inner = choices[kind]
    if warmup <= 0:
        return inner
    return {"type": "warmup", "warmup_steps": warmup, "schedule": inner}

"""Optimizers: in-place updates of named float32 parameters, with state as named arrays.

``step(params, grads)`` takes two dicts keyed by ``"layer/param"``. ``state_dict()`` returns
``{"iterations": int64 array, "<slot>/<layer>/<param>": array}``, which ``load_state_dict``
restores exactly (the HDF5 format stores it as is). Update rules follow PyTorch's definitions.

What every optimizer gets from the base class, built-in or plugin, without writing any code:

* a **learning-rate schedule**: ``learning_rate`` may be a number or a schedule (a name, a
  ``{"type": ...}`` dict or a ``regnet.schedules.Schedule``). The schedule is kept in
  ``optimizer.schedule`` and evaluated before every update on the step count, and
  ``learning_rate`` holds the rate of the latest update; ``get_config`` gives the schedule back;
* **gradient clipping**, at most one of ``clipnorm`` (each gradient tensor scaled down to this
  L2 norm), ``global_clipnorm`` (all gradients scaled together to this joint L2 norm) and
  ``clipvalue`` (each element clipped to ``[-clipvalue, clipvalue]``), applied by ``step`` to
  copies of the gradients before the update (nothing is done when all three are ``None``).
"""

import math
import numbers
from typing import Any, ClassVar

import attrs
import numpy as np

from . import fields, names, registry, schedules
from .errors import ConfigError, TrainingDivergedError, WeightsMismatchError
from .ops import parallel

#: the clipping fields of every optimizer (at most one may be set)
CLIPPING = ("clipnorm", "global_clipnorm", "clipvalue")


class _TakesSchedule(type):
    """Lets every optimizer class take a schedule as its ``learning_rate`` (see the module
    docstring): the schedule goes to ``optimizer.schedule`` and the ``learning_rate`` field, which
    subclasses may declare as a plain number, receives the schedule's first value."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        rate = kwargs.get("learning_rate")
        schedule = None
        if rate is not None and not (isinstance(rate, numbers.Real) and not isinstance(rate, bool)):
            try:
                schedule = schedules.get(rate)
            except ConfigError as exc:
                field = "learning_rate" if exc.field is None else f"learning_rate.{exc.field}"
                raise ConfigError(getattr(exc, "message", str(exc)), field=field) from exc
            kwargs["learning_rate"] = schedule(0)
        obj = super().__call__(*args, **kwargs)
        obj.schedule = schedule
        return obj


@attrs.define(slots=False)
class Optimizer(metaclass=_TakesSchedule):
    """Base class of optimizers: a rule that updates one parameter at a time, in place.

    A subclass declares its hyperparameters as attrs fields (``learning_rate`` and the clipping
    fields are inherited), names its per-parameter state in ``slot_names`` and implements
    ``update(p, g, state)``:

    * ``p`` is the parameter (a float32 array, updated **in place**), ``g`` its gradient (read
      only), ``state`` a dict ``{slot name: array shaped like p}``, zeros on the first step (or
      what ``_slot`` makes), also updated in place;
    * ``self.iterations`` is the step count, already incremented for this step (1 on the first
      step), for bias corrections; ``self.learning_rate`` is this step's rate (a schedule, if any,
      has already been evaluated);
    * everything stays float32: no Python loops over elements.

    ``step`` (schedule, clipping, then ``update`` per parameter) is the base class's; a subclass
    that overrides it loses both. ``state_dict()`` holds ``iterations`` and every slot array
    (``"<slot>/<layer>/<param>"``), so a model saved mid-training resumes bit-identically.
    Declare one with ``@optimizer("Name")``.
    """

    learning_rate: float = fields.number(0.01, min=0.0)
    clipnorm: float | None = fields.number(None, min=0.0, min_open=True, optional=True, kw_only=True)
    global_clipnorm: float | None = fields.number(None, min=0.0, min_open=True, optional=True, kw_only=True)
    clipvalue: float | None = fields.number(None, min=0.0, min_open=True, optional=True, kw_only=True)

    #: per-parameter state arrays this rule keeps
    slot_names: ClassVar[tuple[str, ...]] = ()
    #: the learning-rate schedule (``None``: ``learning_rate`` is constant); set at construction
    schedule = None  # (not annotated: a plain attribute, not a config field)

    def __attrs_post_init__(self):
        for slot in self.slot_names:  # each becomes a group name in the model file
            names.check(slot, field=f"slot_names of {registry.registered_name(self)}")
        self.iterations = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slot_names}
        chosen = [name for name in CLIPPING if getattr(self, name, None) is not None]
        if len(chosen) > 1:
            raise ConfigError(f"set at most one of {', '.join(CLIPPING)}; got {' and '.join(chosen)}", field=chosen[1])

    def step(self, params, grads):
        """One update of every parameter in ``params`` from ``grads`` (dicts by the same keys)."""
        if self.schedule is not None:
            self.learning_rate = self._scheduled_rate(self.iterations)
        self.iterations += 1
        if self.clipnorm is not None or self.global_clipnorm is not None or self.clipvalue is not None:
            grads = clip(grads, self.clipnorm, self.global_clipnorm, self.clipvalue)
        for key, p in params.items():
            state = {s: self._slot(s, key, p) for s in self.slot_names}
            self.update(p, grads[key], state)

    def _scheduled_rate(self, step: int) -> float:
        """The schedule's rate for update ``step`` (0-based); ``TrainingDivergedError`` when it is
        not a finite number >= 0 (an exponential growth that overflowed, say)."""
        try:
            rate = float(self.schedule(step))  # type: ignore[misc]
        except (OverflowError, ZeroDivisionError, ValueError) as exc:
            raise TrainingDivergedError(f"the learning-rate schedule fails at step {step}: {exc}") from None
        if not (math.isfinite(rate) and rate >= 0):
            raise TrainingDivergedError(f"the learning-rate schedule gives {rate} at step {step}")
        return rate

    def _slot(self, slot, key, p):
        arr = self.slots[slot].get(key)
        if arr is None:
            arr = self.slots[slot][key] = np.zeros_like(p)
        return arr

    def update(self, p, g, state):
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self):
        out = {"iterations": np.asarray(self.iterations, dtype=np.int64)}
        for slot, arrays in self.slots.items():
            for key, arr in arrays.items():
                out[f"{slot}/{key}"] = arr
        return out

    def load_state_dict(self, state):
        slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slot_names}
        for name, arr in state.items():
            if name == "iterations":
                continue
            slot, _, key = name.partition("/")
            if slot not in slots:
                raise WeightsMismatchError(f"optimizer state '{name}' is not a slot of {type(self).__name__}")
            slots[slot][key] = np.array(arr, dtype=np.float32)
        self.iterations = int(np.asarray(state.get("iterations", 0)))
        self.slots = slots
        if self.schedule is not None:
            try:
                self.learning_rate = self._scheduled_rate(max(self.iterations - 1, 0))
            except TrainingDivergedError:
                pass  # reported by the next step

    def get_config(self) -> dict[str, Any]:
        """``{"type", **hyperparameters}``: the schedule's config as ``learning_rate`` when there is
        one; clipping fields only when set."""
        config = registry.get_config(self)
        if self.schedule is not None:
            config["learning_rate"] = registry.to_plain(self.schedule)
        for name in CLIPPING:  # last, and only when set
            value = config.pop(name, None)
            if value is not None:
                config[name] = value
        return config


registry.optimizers.bind(Optimizer)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def optimizer(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@optimizer("name", aliases=(...))``: make the class an attrs optimizer and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.optimizers, name, aliases=aliases, register=register, slots=False)


def global_norm(grads: dict) -> float:
    """The L2 norm of all gradient arrays together (in float64 when float32 would overflow)."""
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        with np.errstate(over="ignore"):
            square = float(np.dot(flat, flat))
        if not math.isfinite(square):
            square = float(np.dot(flat.astype(np.float64), flat.astype(np.float64)))
        total += square
    return math.sqrt(total)


def clip(grads: dict, clipnorm: float | None, global_clipnorm: float | None, clipvalue: float | None) -> dict:
    """Gradients clipped as the optimizer fields say (see the module docstring); arrays that need
    no change are passed through, the others are new arrays (the inputs are never modified)."""
    if clipvalue is not None:
        return {k: np.clip(g, -clipvalue, clipvalue) for k, g in grads.items()}
    if clipnorm is not None:
        out = {}
        for k, g in grads.items():
            norm = global_norm({k: g})
            out[k] = g * np.float32(clipnorm / norm) if norm > clipnorm else g
        return out
    if global_clipnorm is not None:
        norm = global_norm(grads)
        if not norm <= global_clipnorm:  # NaN too: the update then fails and the guard undoes it
            scale = np.float32(global_clipnorm / norm)
            return {k: g * scale for k, g in grads.items()}
    return grads


def get(spec: Any) -> Optimizer:
    return registry.optimizers.create(spec)


def _scratch(opt, p):
    """A work array shaped like ``p``: a view of one buffer the optimizer keeps between steps."""
    buf = getattr(opt, "_work", None)
    if buf is None or buf.size < p.size or buf.dtype != p.dtype:
        buf = opt._work = np.empty(max(p.size, 0 if buf is None else buf.size), p.dtype)
    return buf[: p.size].reshape(p.shape)


@optimizer("SGD", aliases=("sgd",))
class SGD(Optimizer):
    """``v = momentum*v + g``; ``p -= lr * v`` (or ``lr * (g + momentum*v)`` with nesterov).

    ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2 penalty).
    """

    momentum: float = fields.number(0.0, min=0.0)
    nesterov: bool = fields.boolean(False)
    weight_decay: float = fields.number(0.0, min=0.0)

    @property  # a rule without momentum keeps no state
    def slot_names(self):  # type: ignore[override]
        return ("momentum",) if self.momentum else ()

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if not self.momentum:
            p -= self.learning_rate * g
            return
        v = state["momentum"]
        v *= self.momentum
        v += g
        step = g + self.momentum * v if self.nesterov else v
        p -= self.learning_rate * step


@optimizer("AdaGrad", aliases=("adagrad", "Adagrad"))
class AdaGrad(Optimizer):
    """``acc += g**2``; ``p -= lr * g / (sqrt(acc) + epsilon)``."""

    epsilon: float = fields.number(1e-10, min=0.0)
    initial_accumulator_value: float = fields.number(0.0, min=0.0)
    slot_names = ("accumulator",)

    def _slot(self, slot, key, p):
        if key not in self.slots[slot]:
            self.slots[slot][key] = np.full_like(p, self.initial_accumulator_value)
        return self.slots[slot][key]

    def update(self, p, g, state):
        acc = state["accumulator"]
        acc += g * g
        p -= self.learning_rate * g / (np.sqrt(acc) + self.epsilon)


@optimizer("RMSprop", aliases=("rmsprop",))
class RMSprop(Optimizer):
    """``ms = rho*ms + (1-rho)*g**2``; ``p -= lr * g / (sqrt(ms) + epsilon)``."""

    learning_rate: float = fields.number(0.001, min=0.0)
    rho: float = fields.number(0.9, min=0.0, max=1.0)
    epsilon: float = fields.number(1e-7, min=0.0)
    slot_names = ("mean_square",)

    def update(self, p, g, state):
        ms = state["mean_square"]
        ms *= self.rho
        ms += (1 - self.rho) * g * g
        p -= self.learning_rate * g / (np.sqrt(ms) + self.epsilon)


@optimizer("Adam", aliases=("adam",))
class Adam(Optimizer):
    """Bias-corrected moments: ``p -= lr * m_hat / (sqrt(v_hat) + epsilon)``."""

    learning_rate: float = fields.number(0.001, min=0.0)
    beta_1: float = fields.number(0.9, min=0.0, max=1.0)
    beta_2: float = fields.number(0.999, min=0.0, max=1.0)
    epsilon: float = fields.number(1e-8, min=0.0)
    slot_names = ("m", "v")

    def decay(self, p):
        """Decoupled weight decay (AdamW overrides)."""

    def update(self, p, g, state):
        m, v, t = state["m"], state["v"], self.iterations
        self.decay(p)
        b1, b2, eps = self.beta_1, self.beta_2, self.epsilon
        lr_t, c2 = self.learning_rate / (1 - b1**t), 1 - b2**t
        consts = (1 - b1, b1, 1 - b2, b2, c2, eps, lr_t)
        arrays = (p, g, m, v, _scratch(self, p))
        same = all(a.dtype == p.dtype for a in arrays) and p.dtype.kind == "f"
        if same:  # cast once, as each ufunc call would cast the Python float: the same bits
            consts = tuple(p.dtype.type(c) for c in consts)
        c1_, b1_, d2_, b2_, c2_, eps_, lr_ = consts
        mul, add, div = np.multiply, np.add, np.divide

        def rule(p, g, m, v, tmp):  # every step writes in place: no temporaries
            mul(g, c1_, out=tmp)
            mul(m, b1_, out=m)
            add(m, tmp, out=m)
            mul(g, g, out=tmp)
            mul(tmp, d2_, out=tmp)
            mul(v, b2_, out=v)
            add(v, tmp, out=v)
            div(v, c2_, out=tmp)
            np.sqrt(tmp, out=tmp)
            add(tmp, eps_, out=tmp)
            div(m, tmp, out=tmp)
            mul(tmp, lr_, out=tmp)
            np.subtract(p, tmp, out=p)

        if same and all(a.flags.c_contiguous for a in arrays):
            parallel.for_rows(rule, *(a.reshape(-1) for a in arrays))
        else:
            rule(*arrays)


@optimizer("AdamW", aliases=("adamw",))
class AdamW(Adam):
    """Adam with decoupled weight decay: ``p -= lr * weight_decay * p`` before the Adam step."""

    weight_decay: float = fields.number(0.01, min=0.0)

    def decay(self, p):
        if self.weight_decay:
            p -= (self.learning_rate * self.weight_decay) * p

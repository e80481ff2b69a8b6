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

import functools
import math
import numbers
from typing import Any, ClassVar

import attrs
import numpy as np

from . import accel, fields, names, registry, schedules
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

    learning_rate: float = fields.number(0.01, min=0.0, doc='the step size, or a schedule (a name or {"type": ...})')
    clipnorm: float | None = fields.number(
        None, min=0.0, min_open=True, optional=True, kw_only=True, doc="scale each gradient tensor down to this L2 norm"
    )
    global_clipnorm: float | None = fields.number(
        None,
        min=0.0,
        min_open=True,
        optional=True,
        kw_only=True,
        doc="scale all gradients together to this joint L2 norm",
    )
    clipvalue: float | None = fields.number(
        None,
        min=0.0,
        min_open=True,
        optional=True,
        kw_only=True,
        doc="clip each gradient element to [-clipvalue, clipvalue]",
    )

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

    def slot_shapes(self, shape: tuple) -> dict[str, tuple]:
        """``{slot: shape}`` of the state kept for a parameter of ``shape`` (by default every
        slot, shaped like the parameter; a rule with factored state, like ``Adafactor``, says
        otherwise, and the file loader checks saved slots against this)."""
        return {slot: tuple(shape) for slot in self.slot_names}

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


def _fused(p, g, *slots):
    """The flat views of ``p``, ``g`` and ``slots`` for a fused update (``regnet.accel.optim``), or
    ``None`` where the NumPy rule runs: the accelerator is off or not installed, or an array is not
    C-contiguous float32 (a float64 model, a transposed gradient)."""
    if not accel.active():
        return None
    arrays = (p, g, *slots)
    if any(a.dtype != np.float32 or not a.flags.c_contiguous for a in arrays) or not p.flags.writeable:
        return None
    return tuple(a.reshape(-1) for a in arrays)


def _kernels():
    return accel.kernels("optim")


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

    momentum: float = fields.number(0.0, min=0.0, doc="the momentum factor (0: plain SGD)")
    nesterov: bool = fields.boolean(False, doc="use Nesterov momentum")
    weight_decay: float = fields.number(0.0, min=0.0, doc="L2 penalty added to the gradient (weight_decay * p)")

    @property  # a rule without momentum keeps no state
    def slot_names(self):  # type: ignore[override]
        return ("momentum",) if self.momentum else ()

    def update(self, p, g, state):
        flat = _fused(p, g, state["momentum"] if self.momentum else p)
        if flat is not None:
            lr, momentum, decay = _f32(self.learning_rate, self.momentum, self.weight_decay)
            _kernels().sgd(*flat, lr, momentum, bool(self.nesterov), decay)
            return
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

    epsilon: float = fields.number(1e-10, min=0.0, doc="added to the denominator for numerical stability")
    initial_accumulator_value: float = fields.number(0.0, min=0.0, doc="the starting value of the sum of squares")
    slot_names = ("accumulator",)

    def _slot(self, slot, key, p):
        if key not in self.slots[slot]:
            self.slots[slot][key] = np.full_like(p, self.initial_accumulator_value)
        return self.slots[slot][key]

    def update(self, p, g, state):
        acc = state["accumulator"]
        flat = _fused(p, g, acc)
        if flat is not None:
            _kernels().adagrad(*flat, *_f32(self.learning_rate, self.epsilon))
            return
        acc += g * g
        p -= self.learning_rate * g / (np.sqrt(acc) + self.epsilon)


@optimizer("RMSprop", aliases=("rmsprop",))
class RMSprop(Optimizer):
    """``ms = rho*ms + (1-rho)*g**2``; ``p -= lr * g / (sqrt(ms) + epsilon)``."""

    learning_rate: float = fields.number(0.001, min=0.0, doc="the step size, or a schedule")
    rho: float = fields.number(0.9, min=0.0, max=1.0, doc="the decay of the running mean of squared gradients")
    epsilon: float = fields.number(1e-7, min=0.0, doc="added to the denominator for numerical stability")
    slot_names = ("mean_square",)

    def update(self, p, g, state):
        ms = state["mean_square"]
        flat = _fused(p, g, ms)
        if flat is not None:
            _kernels().rmsprop(*flat, *_f32(self.learning_rate, self.rho, 1 - self.rho, self.epsilon))
            return
        ms *= self.rho
        ms += (1 - self.rho) * g * g
        p -= self.learning_rate * g / (np.sqrt(ms) + self.epsilon)


@optimizer("Adam", aliases=("adam",))
class Adam(Optimizer):
    """Bias-corrected moments: ``p -= lr * m_hat / (sqrt(v_hat) + epsilon)``."""

    learning_rate: float = fields.number(0.001, min=0.0, doc="the step size, or a schedule")
    beta_1: float = fields.number(0.9, min=0.0, max=1.0, doc="the decay of the first-moment (mean) estimate")
    beta_2: float = fields.number(
        0.999, min=0.0, max=1.0, doc="the decay of the second-moment (uncentred variance) estimate"
    )
    epsilon: float = fields.number(1e-8, min=0.0, doc="added to the denominator for numerical stability")
    slot_names = ("m", "v")

    def decay(self, p):
        """Decoupled weight decay (AdamW overrides)."""

    def decay_factor(self) -> float:
        """The decoupled decay as one factor, ``p -= factor * p`` (0: none; AdamW overrides): what
        the fused update applies. A subclass that overrides ``decay`` alone keeps the NumPy rule."""
        return 0.0

    def update(self, p, g, state):
        m, v, t = state["m"], state["v"], self.iterations
        b1, b2, eps = self.beta_1, self.beta_2, self.epsilon
        lr_t, c2 = self.learning_rate / (1 - b1**t), 1 - b2**t
        flat = _fused(p, g, m, v) if _decay_is_a_factor(type(self)) else None
        if flat is not None:  # the decay and the rule below in one pass
            consts = _f32(self.decay_factor(), b1, 1 - b1, b2, 1 - b2, c2, eps, lr_t)
            _kernels().adam(*flat, *consts)
            return
        self.decay(p)
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

    weight_decay: float = fields.number(0.01, min=0.0, doc="decoupled decay: p -= lr * weight_decay * p each step")

    def decay(self, p):
        if self.weight_decay:
            p -= (self.learning_rate * self.weight_decay) * p

    def decay_factor(self) -> float:
        return self.learning_rate * self.weight_decay


@functools.cache
def _decay_is_a_factor(cls) -> bool:
    """Whether ``cls.decay`` is ``p -= cls.decay_factor() * p``: the class that defines ``decay``
    defines ``decay_factor`` too."""
    owner = next(k for k in cls.__mro__ if "decay" in vars(k))
    return "decay_factor" in vars(owner)


def _f32(*values):
    """Python floats as float32 scalars (every array op then stays float32)."""
    return tuple(np.float32(v) for v in values)


@optimizer("Adamax", aliases=("adamax",))
class Adamax(Optimizer):
    """Adam with an infinity norm: ``m = beta_1*m + (1-beta_1)*g``; ``u = max(beta_2*u, |g| +
    epsilon)``; ``p -= lr / (1 - beta_1**t) * m / u`` (PyTorch's rule and defaults).

    ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2 penalty).
    """

    learning_rate: float = fields.number(0.002, min=0.0, doc="the step size")
    beta_1: float = fields.number(0.9, min=0.0, max=1.0, doc="the decay of the gradient average")
    beta_2: float = fields.number(0.999, min=0.0, max=1.0, doc="the decay of the infinity norm")
    epsilon: float = fields.number(1e-8, min=0.0, doc="added to |g| so the norm is never 0")
    weight_decay: float = fields.number(0.0, min=0.0, doc="the L2 penalty added to the gradient")
    slot_names = ("m", "u")

    def update(self, p, g, state):
        m, u = state["m"], state["u"]
        flat = _fused(p, g, m, u)
        if flat is not None:
            lr_t = self.learning_rate / (1 - self.beta_1**self.iterations)
            consts = _f32(self.weight_decay, self.beta_1, 1 - self.beta_1, self.beta_2, self.epsilon, lr_t)
            _kernels().adamax(*flat, *consts)
            return
        if self.weight_decay:
            g = g + np.float32(self.weight_decay) * p
        b1, d1, b2, eps = _f32(self.beta_1, 1 - self.beta_1, self.beta_2, self.epsilon)
        tmp = _scratch(self, p)
        np.multiply(m, b1, out=m)
        np.multiply(g, d1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(u, b2, out=u)
        np.abs(g, out=tmp)
        np.add(tmp, eps, out=tmp)
        np.maximum(u, tmp, out=u)
        np.divide(m, u, out=tmp)
        np.multiply(tmp, np.float32(self.learning_rate / (1 - self.beta_1**self.iterations)), out=tmp)
        np.subtract(p, tmp, out=p)


@optimizer("Nadam", aliases=("nadam", "NAdam"))
class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat, 2016), PyTorch's rule and defaults: with
    ``mu_t = beta_1 * (1 - 0.5 * 0.96**(t * momentum_decay))`` and ``P_t = mu_1 ... mu_t``,
    ``p -= lr * ((1 - mu_t) / (1 - P_t) * g + mu_{t+1} / (1 - P_{t+1}) * m) / (sqrt(v_hat) + epsilon)``.

    ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2 penalty). ``P_t`` follows from
    the step count, so resuming needs no more state than ``m`` and ``v``.
    """

    learning_rate: float = fields.number(0.002, min=0.0, doc="the step size")
    beta_1: float = fields.number(0.9, min=0.0, max=1.0, doc="the decay of the gradient average")
    beta_2: float = fields.number(0.999, min=0.0, max=1.0, doc="the decay of the squared-gradient average")
    epsilon: float = fields.number(1e-8, min=0.0, doc="added to the denominator")
    momentum_decay: float = fields.number(0.004, min=0.0, doc="how fast the momentum schedule mu_t rises to beta_1")
    weight_decay: float = fields.number(0.0, min=0.0, doc="the L2 penalty added to the gradient")
    slot_names = ("m", "v")

    def _mu(self, t):
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _mu_product(self, t):
        """``mu_1 * ... * mu_t``, kept between steps (recomputed from 1 after a resume)."""
        done, product = getattr(self, "_product", (0, 1.0))
        if done > t:
            done, product = 0, 1.0
        for s in range(done + 1, t + 1):
            product *= self._mu(s)
        self._product = (t, product)
        return product

    def update(self, p, g, state):
        m, v, t = state["m"], state["v"], self.iterations
        flat = _fused(p, g, m, v)
        if flat is None and self.weight_decay:
            g = g + np.float32(self.weight_decay) * p
        mu, mu_next = self._mu(t), self._mu(t + 1)
        product = self._mu_product(t)
        lr = self.learning_rate
        b1, d1, b2, d2, c2, eps = _f32(
            self.beta_1, 1 - self.beta_1, self.beta_2, 1 - self.beta_2, 1 - self.beta_2**t, self.epsilon
        )
        a_g, a_m = _f32(lr * (1 - mu) / (1 - product), lr * mu_next / (1 - product * mu_next))
        if flat is not None:
            _kernels().nadam(*flat, np.float32(self.weight_decay), b1, d1, b2, d2, c2, eps, a_g, a_m)
            return
        tmp = _scratch(self, p)
        np.multiply(m, b1, out=m)
        np.multiply(g, d1, out=tmp)
        np.add(m, tmp, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, d2, out=tmp)
        np.add(v, tmp, out=v)
        np.divide(v, c2, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.add(tmp, eps, out=tmp)  # the denominator
        step = g * a_g
        step += m * a_m
        np.divide(step, tmp, out=tmp)
        np.subtract(p, tmp, out=p)


@optimizer("Adadelta", aliases=("adadelta",))
class Adadelta(Optimizer):
    """``a = rho*a + (1-rho)*g**2``; ``d = sqrt(b + epsilon) / sqrt(a + epsilon) * g``;
    ``b = rho*b + (1-rho)*d**2``; ``p -= lr * d`` (PyTorch's rule and defaults, ``lr = 1``).

    ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2 penalty).
    """

    learning_rate: float = fields.number(1.0, min=0.0, doc="the scale of each step")
    rho: float = fields.number(0.9, min=0.0, max=1.0, doc="the decay of both running averages")
    epsilon: float = fields.number(1e-6, min=0.0, doc="added inside both square roots")
    weight_decay: float = fields.number(0.0, min=0.0, doc="the L2 penalty added to the gradient")
    slot_names = ("accumulated_grad", "accumulated_delta")
    #: the kit's quadratic is scaled to the learning rate, which Adadelta's first steps (about
    #: ``sqrt(epsilon) * lr``) do not cover in 500 steps at the default epsilon: the kit runs a
    #: larger one (the PyTorch agreement test runs the defaults)
    test_cases = [{"config": {"epsilon": 1e-5}}]

    def update(self, p, g, state):
        a, b = state["accumulated_grad"], state["accumulated_delta"]
        flat = _fused(p, g, a, b)
        if flat is not None:
            consts = _f32(self.weight_decay, self.rho, 1 - self.rho, self.epsilon, self.learning_rate)
            _kernels().adadelta(*flat, *consts)
            return
        if self.weight_decay:
            g = g + np.float32(self.weight_decay) * p
        rho, d, eps, lr = _f32(self.rho, 1 - self.rho, self.epsilon, self.learning_rate)
        tmp = _scratch(self, p)
        np.multiply(a, rho, out=a)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, d, out=tmp)
        np.add(a, tmp, out=a)
        delta = np.add(b, eps, out=np.empty_like(b))  # an array for a 0-d parameter too
        np.sqrt(delta, out=delta)
        np.add(a, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(delta, tmp, out=delta)
        np.multiply(delta, g, out=delta)
        np.multiply(b, rho, out=b)
        np.multiply(delta, delta, out=tmp)
        np.multiply(tmp, d, out=tmp)
        np.add(b, tmp, out=b)
        np.multiply(delta, lr, out=delta)
        np.subtract(p, delta, out=p)


@optimizer("Lion", aliases=("lion",))
class Lion(Optimizer):
    """The sign of an interpolated momentum (Chen et al., "Symbolic Discovery of Optimization
    Algorithms", 2023): ``c = beta_1*m + (1-beta_1)*g``; ``p -= lr * (sign(c) + weight_decay*p)``;
    ``m = beta_2*m + (1-beta_2)*g``. Every step moves each weight by about ``lr``, so ``lr`` is
    typically 3-10 times smaller than Adam's (Keras's defaults)."""

    learning_rate: float = fields.number(0.001, min=0.0, doc="how far each weight moves per step")
    beta_1: float = fields.number(0.9, min=0.0, max=1.0, doc="the weight of the momentum in the step's sign")
    beta_2: float = fields.number(0.99, min=0.0, max=1.0, doc="the decay of the momentum")
    weight_decay: float = fields.number(0.0, min=0.0, doc="decoupled weight decay, scaled by the learning rate")
    slot_names = ("m",)

    def update(self, p, g, state):
        m = state["m"]
        b1, d1, b2, d2, lr = _f32(self.beta_1, 1 - self.beta_1, self.beta_2, 1 - self.beta_2, self.learning_rate)
        flat = _fused(p, g, m)
        if flat is not None:
            _kernels().lion(*flat, np.float32(self.weight_decay), b1, d1, b2, d2, lr)
            return
        tmp = _scratch(self, p)
        np.multiply(m, b1, out=tmp)
        tmp += g * d1
        np.sign(tmp, out=tmp)
        if self.weight_decay:
            tmp += np.float32(self.weight_decay) * p
        np.multiply(tmp, lr, out=tmp)
        np.subtract(p, tmp, out=p)
        np.multiply(m, b2, out=m)
        m += g * d2


@optimizer("Adafactor", aliases=("adafactor",))
class Adafactor(Optimizer):
    """Adam-like steps from factored second moments (Shazeer and Stern, 2018), PyTorch's rule and
    defaults. On step ``t``, with ``w = t**beta_2_decay`` and ``rho = min(lr, 1/sqrt(t))``:

    * a parameter of rank 2 or more keeps the mean of ``g**2`` over its last axis (``row_var``,
      shape ``(..., R, 1)``) and over its second-last (``col_var``, ``(..., 1, C)``), each moved
      by ``w`` towards the new mean; the estimate is ``row_var @ col_var / mean(row_var)``;
      a vector (or scalar) keeps the full average ``variance`` instead;
    * ``u = g / sqrt(max(estimate, epsilon_1**2))``, scaled down to an RMS of ``clip_threshold``;
    * ``p -= max(epsilon_2, RMS(p)) * rho * u`` (after ``p *= 1 - lr * weight_decay``).

    ``epsilon_1`` ``None`` is float32's machine epsilon.
    """

    learning_rate: float = fields.number(
        0.01, min=0.0, doc="the largest relative step size (the rate is min(lr, 1/sqrt(t)))"
    )
    beta_2_decay: float = fields.number(-0.8, max=0.0, doc="the second-moment weight of step t is t**beta_2_decay")
    epsilon_1: float | None = fields.number(
        None, min=0.0, optional=True, doc="the floor of the second-moment estimate's root (null: float32 epsilon)"
    )
    epsilon_2: float = fields.number(1e-3, min=0.0, doc="the floor of a parameter's RMS in the step size")
    clip_threshold: float = fields.number(
        1.0, min=1.0, doc="the largest RMS of an update before scaling by the step size"
    )
    weight_decay: float = fields.number(0.0, min=0.0, doc="decoupled weight decay, scaled by the learning rate")
    slot_names = ("row_var", "col_var", "variance")

    def slot_shapes(self, shape):
        shape = tuple(shape)
        if len(shape) > 1:
            return {"row_var": shape[:-1] + (1,), "col_var": shape[:-2] + (1, shape[-1])}
        return {"variance": shape}

    def _slot(self, slot, key, p):
        shape = self.slot_shapes(p.shape).get(slot)
        if shape is None:
            return None
        arr = self.slots[slot].get(key)
        if arr is None:
            arr = self.slots[slot][key] = np.zeros(shape, p.dtype)
        return arr

    def update(self, p, g, state):
        t = self.iterations
        eps1 = float(np.finfo(np.float32).eps) if self.epsilon_1 is None else self.epsilon_1
        w = np.float32(t**self.beta_2_decay)
        rho = min(self.learning_rate, 1 / math.sqrt(t))
        alpha = max(self.epsilon_2, _rms(p)) * rho
        if self.weight_decay:
            p *= np.float32(1 - self.learning_rate * self.weight_decay)
        square = g * g
        if p.ndim > 1:
            row, col = state["row_var"], state["col_var"]
            row += w * (square.mean(axis=-1, keepdims=True) - row)
            col += w * (square.mean(axis=-2, keepdims=True) - col)
            estimate = row @ col
            estimate /= np.maximum(row.mean(axis=-2, keepdims=True), np.float32(eps1))
        else:
            var = state["variance"]
            var += w * (square - var)
            estimate = var.copy()
        np.maximum(estimate, np.float32(eps1 * eps1), out=estimate)
        np.sqrt(estimate, out=estimate)
        u = np.divide(g, estimate, out=estimate)
        scale = max(1.0, _rms(u) / self.clip_threshold)
        u *= np.float32(alpha / scale)
        p -= u


def _rms(a):
    """The root mean square of an array (in float64 when float32 would overflow)."""
    return global_norm({"": a}) / math.sqrt(max(a.size, 1))

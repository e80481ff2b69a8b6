"""Optimizers: in-place updates of named float32 parameters, with state as named arrays.

``step(params, grads)`` takes two dicts keyed by ``"layer/param"``. ``state_dict()`` returns
``{"iterations": int64 array, "<slot>/<layer>/<param>": array}``, which ``load_state_dict``
restores exactly (the HDF5 format stores it as is). Update rules follow PyTorch's definitions.
"""

from typing import Any, ClassVar

import attrs
import numpy as np

from . import fields, names, registry
from .errors import WeightsMismatchError
from .ops import parallel


@attrs.define(slots=False)
class Optimizer:
    """Base class of optimizers: a rule that updates one parameter at a time, in place.

    A subclass declares its hyperparameters as attrs fields (``learning_rate`` is inherited),
    names its per-parameter state in ``slot_names`` and implements ``update(p, g, state)``:

    * ``p`` is the parameter (a float32 array, updated **in place**), ``g`` its gradient (read
      only), ``state`` a dict ``{slot name: array shaped like p}``, zeros on the first step (or
      what ``_slot`` makes), also updated in place;
    * ``self.iterations`` is the step count, already incremented for this step (1 on the first
      step), for bias corrections;
    * everything stays float32: no Python loops over elements.

    ``state_dict()`` holds ``iterations`` and every slot array (``"<slot>/<layer>/<param>"``), so a
    model saved mid-training resumes bit-identically. Declare one with ``@optimizer("Name")``.
    """

    learning_rate: float = fields.number(0.01, min=0.0)

    #: per-parameter state arrays this rule keeps
    slot_names: ClassVar[tuple[str, ...]] = ()

    def __attrs_post_init__(self):
        for slot in self.slot_names:  # each becomes a group name in the model file
            names.check(slot, field=f"slot_names of {registry.registered_name(self)}")
        self.iterations = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in self.slot_names}

    def step(self, params, grads):
        self.iterations += 1
        for key, p in params.items():
            state = {s: self._slot(s, key, p) for s in self.slot_names}
            self.update(p, grads[key], state)

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

    def get_config(self) -> dict[str, Any]:
        return registry.get_config(self)


registry.optimizers.bind(Optimizer)


@registry.dataclass_transform(field_specifiers=(attrs.field,))
def optimizer(name: str | type | None = None, *, aliases: tuple[str, ...] = (), register: bool = True) -> Any:
    """``@optimizer("name", aliases=(...))``: make the class an attrs optimizer and register it
    (``register=False`` in plugins, whose entry point registers it)."""
    return registry.define(registry.optimizers, name, aliases=aliases, register=register, slots=False)


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
            parallel.for_blocks(rule, *(a.reshape(-1) for a in arrays))
        else:
            rule(*arrays)


@optimizer("AdamW", aliases=("adamw",))
class AdamW(Adam):
    """Adam with decoupled weight decay: ``p -= lr * weight_decay * p`` before the Adam step."""

    weight_decay: float = fields.number(0.01, min=0.0)

    def decay(self, p):
        if self.weight_decay:
            p -= (self.learning_rate * self.weight_decay) * p

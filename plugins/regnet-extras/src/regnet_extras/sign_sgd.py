"""SignSGD (and Signum, its momentum form): each weight moves by the learning rate against the
sign of its gradient (Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
Problems", 2018)."""

import numpy as np

from regnet import fields
from regnet.optimizers import Optimizer, optimizer


@optimizer("SignSGD", register=False)  # the entry point registers it
class SignSGD(Optimizer):
    """``m = momentum*m + (1-momentum)*g``; ``p -= lr * sign(m)`` (``momentum = 0``: the sign of
    the gradient itself, and no state)."""

    learning_rate: float = fields.number(0.001, min=0.0, doc="how far each weight moves per step")
    momentum: float = fields.number(0.0, min=0.0, max=1.0, doc="the decay of the gradient average whose sign is taken")

    @property  # a rule without momentum keeps no state
    def slot_names(self):  # type: ignore[override]
        return ("m",) if self.momentum else ()

    def update(self, p, g, state):
        if self.momentum:
            m = state["m"]
            m *= np.float32(self.momentum)
            m += np.float32(1 - self.momentum) * g
            g = m
        p -= np.float32(self.learning_rate) * np.sign(g)

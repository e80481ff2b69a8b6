"""Lion: the sign of an interpolated momentum (Chen et al., "Symbolic Discovery of Optimization
Algorithms", 2023)."""

import numpy as np

from regnet import fields
from regnet.optimizers import Optimizer, optimizer


@optimizer("Lion", register=False)  # the entry point registers it
class Lion(Optimizer):
    """``c = beta_1*m + (1-beta_1)*g``; ``p -= lr * (sign(c) + weight_decay*p)``;
    ``m = beta_2*m + (1-beta_2)*g``. Every step moves each weight by about ``lr``, so ``lr`` is
    typically 3-10 times smaller than Adam's."""

    learning_rate: float = fields.number(1e-4, min=0.0)
    beta_1: float = fields.number(0.9, min=0.0, max=1.0)
    beta_2: float = fields.number(0.99, min=0.0, max=1.0)
    weight_decay: float = fields.number(0.0, min=0.0)
    slot_names = ("m",)

    def update(self, p, g, state):
        m = state["m"]
        c = self.beta_1 * m + (1 - self.beta_1) * g
        step = np.sign(c)
        if self.weight_decay:
            step += self.weight_decay * p
        p -= self.learning_rate * step
        m *= self.beta_2
        m += (1 - self.beta_2) * g

"""The inverse square-root schedule of "Attention Is All You Need" (Vaswani et al., 2017)."""

import math

from regnet import fields
from regnet.schedules import Schedule, schedule


@schedule("inverse_sqrt", register=False)  # the entry point registers it
class InverseSqrt(Schedule):
    """A linear warm-up to ``peak`` over ``warmup_steps``, then ``peak * sqrt(warmup_steps /
    (step + 1))``: ``peak * min((step + 1) / warmup_steps, sqrt(warmup_steps / (step + 1)))``."""

    peak: float = fields.number(1e-3, min=0.0)
    warmup_steps: int = fields.integer(4000, min=1, max=None)

    def __call__(self, step):
        n = step + 1
        return self.peak * min(n / self.warmup_steps, math.sqrt(self.warmup_steps / n))

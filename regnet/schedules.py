"""Learning-rate schedules: the learning rate as a function of the optimizer step.

``StepSchedule`` sets the optimizer's learning rate before every batch from the global step: an
optional linear warm-up, then ``constant``, ``cosine`` or ``linear`` decay to zero over the run,
or ``exponential`` (times ``decay`` per epoch). The command line's ``--lr-schedule`` uses it.
"""

import math

from .callbacks import Callback

KINDS = ("constant", "cosine", "linear", "exponential")


class StepSchedule(Callback):
    """Set the learning rate before every batch from the global step (see the module docstring)."""

    changes_weights = False  # sets the learning rate only: the divergence guard replays it

    def __init__(
        self,
        kind: str,
        base_lr: float,
        steps_per_epoch: int,
        epochs: int,
        warmup_epochs: float = 0.0,
        decay: float = 0.9,
    ) -> None:
        self.kind, self.base_lr, self.decay = kind, base_lr, decay
        self.steps_per_epoch = steps_per_epoch
        self.total = max(1, steps_per_epoch * epochs)
        self.warmup = int(round(warmup_epochs * steps_per_epoch))
        self.step = 0

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.kind == "cosine":
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "linear":
            return self.base_lr * (1 - t)
        if self.kind == "exponential":
            return self.base_lr * self.decay ** (step / self.steps_per_epoch)
        return self.base_lr

    def on_train_begin(self, logs=None):
        self.model.optimizer.learning_rate = self.lr_at(self.step)

    def on_batch_end(self, batch, logs=None):
        self.step += 1
        self.model.optimizer.learning_rate = self.lr_at(self.step)

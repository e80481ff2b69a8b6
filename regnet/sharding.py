"""This process's part of a global batch, for the layers whose training pass depends on more than
one sample at a time.

In data-parallel training each process runs the forward and backward passes on its shard, rows
``[start, stop)`` of a global batch of ``total`` rows. Most layers treat samples independently and
need nothing more. Two built-in layers do not, and use the active ``BatchShard`` (``current()``;
``None`` outside data-parallel training) so that the result does not depend on how many
processes share the batch:

* ``BatchNorm`` normalises with the statistics of the global batch (synchronised batch
  normalisation): it sums per-channel statistics over the processes with ``shard.sum``;
* ``Dropout`` draws its mask for the global batch and keeps the rows of its shard, so every
  process draws the same numbers as one process training on the whole batch would.

Each process's gradients are those of the mean loss over its own shard; a layer that sums
quantities derived from them over the global batch weighs its part by ``share`` first (see
``BatchNorm.backward``). ``shard.sum`` is a collective: every process calls it, in the same order.
"""

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import numpy as np


@attrs.frozen
class BatchShard:
    """Rows ``[start, stop)`` of a global batch of ``total`` rows, and ``sum``: an array's sum over
    every process of the run (the same array shape on each)."""

    start: int
    stop: int
    total: int
    sum: Callable[[np.ndarray], np.ndarray]

    @property
    def share(self) -> float:
        """This shard's fraction of the global batch."""
        return (self.stop - self.start) / self.total


_current: contextvars.ContextVar["BatchShard | None"] = contextvars.ContextVar("regnet_batch_shard", default=None)


def current() -> "BatchShard | None":
    """The shard of the training pass in progress, or ``None`` (one process holds the whole batch)."""
    return _current.get()


@contextmanager
def active(shard: "BatchShard | None") -> Iterator[None]:
    """Make ``shard`` the current one for the block."""
    token = _current.set(shard)
    try:
        yield
    finally:
        _current.reset(token)

"""``DataParallel``: the strategy that spreads ``fit`` over the processes of an MPI run.

Every process holds a replica of the model and reads the same data. Per step, each one:

1. takes its shard of the global batch (``batches.bounds``: consecutive rows);
2. runs forward and backward on it (``loop.compute_gradients``) with the shard active
   (``regnet.sharding``: BatchNorm uses global statistics, Dropout global masks);
3. packs its gradients, weighted by its share of the batch, with its loss sum, its sample count
   and its metric statistics into one float32 vector (``flat.FlatBuffer``) and sums that vector
   over the processes with **one** ``Allreduce``;
4. applies the summed gradient (the gradient of the global batch's mean loss) with its optimizer:
   the same update on every process, so the replicas stay equal (checked every ``check_every``
   steps, ``replicas.check``).

Every decision (the divergence guard's, a callback's stop) is made from summed values that are
equal on every process, so every process makes it; anything else that goes wrong on one process
stops the run (``faults``).
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import sharding
from ..errors import ConfigError, DataError, DistributedError, TrainingDivergedError
from ..text import show
from ..training import loop
from . import batches, faults, replicas
from .flat import FlatBuffer
from .mpi import Communicator, world
from .record import RunRecord
from .totals import Layout, add

#: steps between two replica checksums
CHECK_EVERY = 64

#: loss sum and sample count, then the metric statistics, after the gradients; every exchange of
#: a step ends with one more slot, the processes taking part (see ``_check_present``)
_LOSS, _COUNT, _HEAD = 0, 1, 2


class DataParallel(loop.Strategy):
    """Data-parallel training over the processes of an MPI run (``mpiexec -n N ...``).

    ``batch``: ``"per_rank"`` (default) reads ``fit``'s ``batch_size`` as each process's batch, so
    the global batch is ``batch_size * N`` (as Horovod does; scale the learning rate yourself if
    you want it to follow the batch); ``"global"`` reads it as the global batch, split over the
    processes, so a run gives the same result (up to the order of floating-point sums) whatever
    the number of processes.

    ``check_every``: steps between replica checksums (0: only at the end of training).
    ``timeout``: seconds a process waits in a collective before it stops the run (default
    ``REGNET_MPI_TIMEOUT`` or 300; 0: no deadline). ``comm``: a ``Communicator`` (default: every
    process of the run).
    """

    def __init__(
        self,
        comm: Communicator | None = None,
        *,
        batch: str = "per_rank",
        check_every: int = CHECK_EVERY,
        timeout: float | None = None,
    ) -> None:
        self.batch = batches.mode(batch)
        if not isinstance(check_every, int) or isinstance(check_every, bool) or check_every < 0:
            raise ConfigError(f"expected an integer >= 0, got {show(check_every)}", field="check_every")
        self.check_every = check_every
        self.comm = world(timeout) if comm is None else comm
        self.rank, self.size = self.comm.rank, self.comm.size
        self.steps = 0
        self._requested: int | None = None
        self._global: int | None = None
        self._buffer: FlatBuffer | None = None
        self._stats: Layout | None = None
        self._last: tuple[float, int, list] = (0.0, 0, [])
        self._first: int | None = None  # size of this step's first exchange, once made
        self._first_size: int | None = None  # that of the last step

    @property
    def chief(self) -> bool:  # type: ignore[override]
        return self.comm.chief

    def __repr__(self) -> str:
        return f"<DataParallel rank {self.rank} of {self.size}, batch={self.batch}>"

    # -- the run --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Errors that only this process raises stop every process (see ``faults``). A diverged
        step is decided on summed values, so every process raises it together."""
        faults.install_excepthook(self.comm.comm, self.rank, self.size)
        with faults.abort_on_local_error(self.comm.comm, self.rank, self.size):
            try:
                yield
            except TrainingDivergedError as exc:
                raise faults.collective(exc) from None

    def batch_size(self, batch_size: int) -> int:
        """The global batch (checked in ``begin``, once the processes have compared theirs)."""
        self._requested = batch_size
        self._global = batch_size * self.size if self.batch == "per_rank" else batch_size
        return self._global

    def begin(self, model: Any, source: Any, validation: Any, callbacks: list) -> list:
        """Check that the processes agree, give them rank 0's state; the callbacks run here."""
        if self.size < 2:
            raise faults.collective(
                DistributedError(
                    "data-parallel training needs at least 2 processes and this run has 1: start it with "
                    "mpiexec -n N (N >= 2), or train without the distributed option"
                )
            )
        self._agree(model, source, validation)
        replicas.broadcast(self.comm, model)
        self._buffer = None
        ours = [cb for cb in callbacks if self.chief or not getattr(cb, "chief_only", False)]
        return [*ours, RunRecord(self.size, self._global, self.batch, self.chief)]

    def _agree(self, model: Any, source: Any, validation: Any) -> None:
        def describe(src: Any) -> Any:
            return None if src is None else (getattr(src, "n_samples", None), src.n_batches)

        mine = {
            "batch_size": self._requested,
            "data": describe(source),
            "validation": describe(validation),
            "model": [(k, tuple(v.shape)) for k, v in model.state_dict().items()],
            "training": repr(model.training_config()),
        }
        everyone = self.comm.allgather(mine, "the check that the processes agree")
        for key, what in (("model", "models"), ("training", "training configurations"), ("batch_size", "batch sizes")):
            differ = [r for r, theirs in enumerate(everyone) if theirs[key] != everyone[0][key]]
            if differ:
                raise faults.collective(
                    DistributedError(
                        f"the processes have different {what}: rank(s) {', '.join(map(str, differ))} differ from "
                        f"rank 0; every process must build, compile and fit the same model"
                    )
                )
        if self._requested is not None:
            try:
                batches.global_size(self._requested, self.size, self.batch)
            except ConfigError as exc:
                raise faults.collective(exc) from None
        for key, what in (("data", "x"), ("validation", "validation data")):
            if any(theirs[key] != everyone[0][key] for theirs in everyone):
                held = "; ".join(f"rank {r}: {_sized(theirs[key])}" for r, theirs in enumerate(everyone))
                raise faults.collective(
                    DataError(
                        f"the processes hold different {what} ({held}). Every process must read the same data: "
                        f"each trains on its own shard of every global batch"
                    )
                )
        n, n_batches = mine["data"]
        if n is not None and n_batches is not None and getattr(source, "batch_size", None):
            try:
                batches.check_last_batch(n, n_batches, source.batch_size, self.size)
            except DataError as exc:
                raise faults.collective(exc) from None

    def end(self, model: Any) -> None:
        """Check once more that the replicas are equal."""
        replicas.check(self.comm, model, f"at the end of training, after {self.steps} steps")

    # -- a step ---------------------------------------------------------------------------------
    def _exchange(self, data: np.ndarray, what: str, kind: str) -> None:
        """Sum ``data`` (whose last slot is 1: this process takes part) over the processes and
        check that all took part; remember the size of a step's first exchange."""
        data[-1] = 1
        if self._first is None:
            self._first = data.size
        self.comm.allreduce(data, what, kind=kind)
        self._check_present(data, self.size, "has a batch for this step")

    def _sum(self, values: np.ndarray) -> np.ndarray:
        data = np.empty(values.size + 1, dtype=np.float32)
        data[:-1] = values.reshape(-1)
        self._exchange(data, "a BatchNorm statistic", "batchnorm")
        return data[:-1].reshape(values.shape)

    def gradients(self, model: Any, xb: Any, yb: Any, sample_weight: Any) -> tuple[float, Any]:
        n = len(xb)
        self._first = None
        if n < self.size:
            raise DataError(
                f"a batch of {n} sample(s) cannot be shared by {self.size} processes (each needs at least one)"
            )
        start, stop = batches.bounds(n, self.rank, self.size)
        rows = slice(start, stop)
        wb = None if sample_weight is None else sample_weight[rows]
        shard = sharding.BatchShard(start, stop, n, self._sum)
        with sharding.active(shard):
            loss, out = loop.compute_gradients(model, xb[rows], yb[rows], wb)
        stats = loop.batch_statistics(model, out, yb[rows])
        grads = model.trainable_grads
        buf = self._layout(grads, stats)
        buf.pack(grads, shard.share)
        local = stop - start
        buf.extra[_LOSS] = loss * local
        buf.extra[_COUNT] = local
        if self._stats is not None:
            self._stats.flatten(stats, buf.extra[_HEAD:-1])
        self._exchange(buf.data, f"the gradient exchange of step {self.steps + 1}", "gradients")
        self._first_size = self._first
        count = int(round(float(buf.extra[_COUNT])))
        if count != n:
            raise DistributedError(
                f"the processes disagree on the batch: this one read a global batch of {n} samples, the processes "
                f"trained on {count} in all; every process must read the same data"
            )
        buf.unpack(grads)
        loss_sum = float(buf.extra[_LOSS])
        self._last = (loss_sum, n, [] if self._stats is None else self._stats.unflatten(buf.extra[_HEAD:-1]))
        return loss_sum / n, out

    def _layout(self, grads: dict, stats: list) -> FlatBuffer:
        if self._buffer is None:
            self._stats = Layout(stats) if stats else None
            extra = _HEAD + (0 if self._stats is None else self._stats.size) + 1
            self._buffer = FlatBuffer({k: g.shape for k, g in grads.items()}, extra)
        return self._buffer

    def totals(self, model: Any, loss: float, out: Any, yb: Any, sample_weight: Any) -> tuple[float, int, list]:
        return self._last

    def _check_present(self, data: np.ndarray, expected: int, mine: str) -> None:
        """The processes that took part in an exchange of a step (its last slot) must be all (or,
        at an epoch's end, none): a process whose data ran out early meets the others' first
        exchange of the next step with its end-of-epoch one, of the same size, so that every
        process learns it from the sum."""
        present = int(round(float(data[-1])))
        if present != expected:
            raise faults.collective(
                DistributedError(
                    f"the processes ran out of batches at different steps: after step {self.steps}, "
                    f"{present} of {self.size} processes had another batch (this one {mine}); every process "
                    f"must read the same number of batches"
                )
            )

    def epoch_done(self, model: Any) -> None:
        """Meet the other processes once more with an empty exchange: they must all be at the
        epoch's end too."""
        if self._first_size is None:  # no step yet: no exchange to meet
            return
        data = np.zeros(self._first_size, dtype=np.float32)
        self.comm.allreduce(data, f"the end of the epoch after step {self.steps}", kind="gradients")
        self._check_present(data, 0, "has none")

    def step_done(self, model: Any) -> None:
        self.steps += 1
        if self.check_every and self.steps % self.check_every == 0:
            replicas.check(self.comm, model, f"after step {self.steps}")

    # -- evaluation and decisions ---------------------------------------------------------------
    def local(self, xb: Any, yb: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
        start, stop = batches.bounds(len(xb), self.rank, self.size)
        rows = slice(start, stop)
        return xb[rows], None if yb is None else yb[rows], None if sample_weight is None else sample_weight[rows]

    def reduce_totals(self, loss_sum: float, seen: int, metrics: list) -> tuple[float, int]:
        parts = self.comm.allgather((loss_sum, seen, [m.totals for m in metrics]), "the validation sums")
        loss_sum, seen, totals = add(parts)
        for m, t in zip(metrics, totals):
            m.totals = t
        return loss_sum, seen

    def any(self, flag: bool) -> bool:
        return self.comm.any(flag, "the decision to stop training")


def _sized(described: Any) -> str:
    if described is None:
        return "none"
    n, n_batches = described
    return f"{n_batches} batches" if n is None else f"{n} samples in {n_batches} batches"

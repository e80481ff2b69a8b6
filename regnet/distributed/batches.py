"""Global batches and their shards.

Every process reads the same data in the same order (the shuffle comes from the shared
generator) and trains on its own shard of each global batch: consecutive rows, as even as the
batch allows (sizes differ by at most one). Consecutive rows keep the link with one process
training on the whole batch: row ``i`` of the global batch is row ``i - start`` of one shard.
"""

import numbers

from ..errors import ConfigError, DataError
from ..text import show

#: how ``batch_size`` is read: the batch of each process, or the global batch
MODES = ("per_rank", "global")


def mode(value: object) -> str:
    if value not in MODES:
        raise ConfigError(f"expected one of {', '.join(MODES)}, got {show(value)}", field="batch")
    return str(value)


def global_size(batch_size: int, ranks: int, how: str) -> int:
    """The global batch: ``batch_size * ranks`` (``per_rank``) or ``batch_size`` (``global``), which
    must give every process at least one sample."""
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"expected a positive integer, got {show(batch_size)}", field="batch_size")
    if how == "per_rank":
        return int(batch_size) * ranks
    if batch_size < ranks:
        raise ConfigError(
            f"a global batch of {batch_size} samples cannot be shared by {ranks} processes (each needs at least "
            f"one sample): use batch_size >= {ranks}, or read batch_size per process (batch='per_rank', "
            f"regnet train --distributed per-rank)",
            field="batch_size",
        )
    return int(batch_size)


def bounds(total: int, rank: int, ranks: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a global batch of ``total`` rows that process ``rank`` trains on."""
    q, r = divmod(total, ranks)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def check_last_batch(n_samples: int, n_batches: int, global_batch: int, ranks: int, what: str = "x") -> None:
    """``DataError`` when the epoch's last batch would leave a process without a sample."""
    last = min(global_batch, n_samples - (n_batches - 1) * global_batch) if n_batches else 0
    if 0 < last < ranks:
        raise DataError(
            f"{what} holds {n_samples} samples: in global batches of {global_batch} the last one holds {last} "
            f"sample(s), fewer than the {ranks} processes, so some would have nothing to train on. Choose a "
            f"batch size for which {n_samples} modulo the global batch is 0 or at least {ranks}, or drop "
            f"{last} sample(s)"
        )

"""``regnet train ... --distributed``: the training command run as one process of an MPI run.

Every process builds the model and loads the data; rank 0 alone prints, evaluates the result on
the test split and writes the file. An error that every process meets (bad input) is printed
once, by rank 0; an error only one process meets stops them all (``faults``).
"""

from collections.abc import Callable
from typing import Any

from ..errors import DistributedError, RegnetError
from . import faults
from .strategy import DataParallel

#: the values of ``--distributed``: how ``--batch-size`` is read
CHOICES = ("per-rank", "global")


def add_argument(parser: Any) -> None:
    """The ``--distributed`` option of ``regnet train``."""
    parser.add_argument(
        "--distributed",
        nargs="?",
        const="per-rank",
        choices=CHOICES,
        default=None,
        help="train as one process of an MPI run (mpiexec -n N regnet train ... --distributed): each process "
        "trains on its shard of every global batch; --batch-size is each process's batch ('per-rank', the "
        "default) or the global batch ('global'). Needs pip install 'regnet[mpi]'",
    )


def train(command: Callable[..., int], args: Any, argv: list[str]) -> int:
    """Run ``command(args, argv, strategy)`` with a ``DataParallel`` strategy."""
    strategy = DataParallel(batch=args.distributed.replace("-", "_"))
    if strategy.size < 2:
        raise DistributedError(
            "--distributed needs at least 2 processes and this run has 1: start it with mpiexec -n N (N >= 2) "
            "regnet train ... --distributed, or leave out --distributed"
        )
    with strategy.scope():
        try:
            return command(args, argv, strategy)
        except RegnetError as exc:
            if strategy.chief or not faults.is_collective(exc):
                raise
            return 1  # rank 0 prints it

"""Data-parallel training on MPI: ``model.fit(..., strategy=DataParallel())`` under
``mpiexec -n N``, each process training a replica on its shard of every global batch.

Needs the optional extra ``regnet[mpi]`` (mpi4py, and the mpich wheel with ``mpiexec``); mpi4py is
imported when the first ``Communicator`` is made, so importing this package costs nothing. See
docs/distributed.md.

* ``strategy``: ``DataParallel``, the hooks ``fit`` calls (``regnet.training.Strategy``);
* ``mpi``: the ``Communicator`` (rank, size, the few collectives, each under a deadline);
* ``flat``: one float32 buffer for every gradient, one ``Allreduce`` per step;
* ``batches``: global batches and their shards; ``replicas``: rank 0's state to every process
  and the checksum that they stay equal; ``totals``: metric statistics in that buffer;
* ``faults`` and ``watchdog``: an error or a silence on one process stops them all;
* ``launch``: running ``mpiexec`` from Python (tests, benchmarks).
"""

from .mpi import Communicator, world
from .strategy import DataParallel

__all__ = ["DataParallel", "Communicator", "world"]

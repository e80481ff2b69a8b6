"""What each process of a test's MPI run does: ``python mpi_worker.py SCENARIO OUT [args]``.

Each scenario writes what the test checks into the folder OUT (one file per rank, or rank 0's).
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import regnet
from regnet.distributed import DataParallel, faults, replicas
from regnet.distributed.mpi import world
from regnet.errors import ReplicaDriftError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.distributed import training  # the models and data shared with the tests

SPEC = [
    {"type": "Conv2D", "name": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
    {"type": "Flatten"},
    {"type": "Dense", "name": "out", "units": 3, "activation": "softmax"},
]


def small_model(seed):
    model = regnet.Model(SPEC, (1, 6, 6), seed=seed)
    model.compile("categorical_crossentropy", {"type": "adam", "learning_rate": 0.01})
    return model


def state(out):
    """Rank 0's state on every replica after the broadcast; a one-ulp change is caught."""
    comm = world()
    model = small_model(seed=100 + comm.rank)  # each process starts from its own weights
    model.rng.random(comm.rank + 1)  # and its own generator state
    replicas.broadcast(comm, model)
    replicas.check(comm, model, "after the broadcast")
    np.savez(out / f"weights-{comm.rank}.npz", **model.state_dict())
    result = {"rng": model.rng.bit_generator.state["state"]["state"]}
    if comm.rank == 1:
        w = model.state_dict()["out/kernel"]
        w.flat[5] = np.nextafter(w.flat[5], np.float32(np.inf))
    try:
        replicas.check(comm, model, "after a change on rank 1")
    except ReplicaDriftError as exc:
        result["drift"] = str(exc)
    (out / f"state-{comm.rank}.json").write_text(json.dumps(result))


def _exchange_forever(comm):
    for _ in range(10**9):
        comm.allreduce(np.ones(16, np.float32), "the gradient exchange")
        time.sleep(0.01)


def fail(out, how):
    """Rank 1 raises, is killed or hangs while the others exchange gradients."""
    comm = world()
    with faults.abort_on_local_error(comm.comm, comm.rank, comm.size):
        (out / f"started-{comm.rank}").write_text(str(os.getpid()))
        if comm.rank == 1:
            time.sleep(1.0)
            if how == "raise":
                raise RuntimeError("a failure only rank 1 sees")
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if how == "hang":
                time.sleep(600)
        _exchange_forever(comm)


def uncaught(out):
    """An exception outside any regnet call stops the run too (the excepthook)."""
    comm = world()
    faults.install_excepthook(comm.comm, comm.rank, comm.size)
    if comm.rank == 1:
        time.sleep(1.0)
        raise KeyError("not found on rank 1")
    _exchange_forever(comm)


def agree(out):
    """Train each case of ``training.CASES``; save every rank's weights and rank 0's history."""
    comm = world()
    for name, case in training.CASES.items():
        for mode in ("global", "per_rank"):
            model = training.model(case)
            batch = training.GLOBAL_BATCH if mode == "global" else training.GLOBAL_BATCH // comm.size
            history = training.fit(model, case, strategy=DataParallel(batch=mode), batch_size=batch)
            np.savez(out / f"{name}-{mode}-rank{comm.rank}.npz", **model.state_dict())
            if comm.rank == 0:
                (out / f"{name}-{mode}.json").write_text(json.dumps(history.history))


def main():
    scenario, out = sys.argv[1], Path(sys.argv[2])
    args = sys.argv[3:]
    {"state": state, "fail": fail, "uncaught": uncaught, "agree": agree}[scenario](out, *args)


if __name__ == "__main__":
    main()

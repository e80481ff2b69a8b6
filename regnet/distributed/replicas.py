"""Replicas: every process holds the whole model. Rank 0's state is copied to the others when
training starts, and a cheap checksum shows that they stay equal, bit for bit.

They stay equal because every process applies the same summed gradient with the same optimizer
from the same state; ``MPI_Allreduce`` gives every process the same sum (the MPI standard
recommends it and MPICH's algorithms do). The checksum (CRC-32 of each tensor, of the optimizer's
state and hyperparameters, of the generator state) is one read of the state, exchanged as a few
integers, every ``check_every`` steps.
"""

import copy
import json
import zlib
from typing import Any

import numpy as np

from ..errors import ReplicaDriftError
from ..training import divergence
from . import faults
from .mpi import Communicator


def state(model: Any) -> dict:
    """What every replica must share: weights, optimizer state, generator state, epoch, history."""
    out = {
        "weights": {k: np.array(v) for k, v in model.state_dict().items()},
        "rng": copy.deepcopy(model.rng.bit_generator.state),
        "epoch": model.epoch,
        "history": copy.deepcopy(model.history),
    }
    if model.optimizer is not None and hasattr(model.optimizer, "state_dict"):
        out["optimizer"] = {k: np.array(v) for k, v in model.optimizer.state_dict().items()}
    return out


def adopt(model: Any, shared: dict) -> None:
    """Make ``model`` hold ``shared`` (from ``state``)."""
    model.load_state_dict(shared["weights"])
    model.rng.bit_generator.state = shared["rng"]
    model.epoch = shared["epoch"]
    model.history = shared["history"]
    if "optimizer" in shared and model.optimizer is not None:
        model.optimizer.load_state_dict(shared["optimizer"])


def broadcast(comm: Communicator, model: Any) -> None:
    """Give every process rank 0's model state."""
    shared = comm.broadcast(state(model) if comm.chief else None, "the broadcast of rank 0's model state")
    if not comm.chief:
        adopt(model, shared)


def _crc(array: Any) -> int:
    a = np.ascontiguousarray(array)
    return zlib.crc32(a.reshape(-1).view(np.uint8).data) if a.size else 0


def fingerprint(model: Any) -> dict[str, int]:
    """A CRC-32 per tensor of the state, per optimizer slot, of the hyperparameters and of the
    generator state."""
    out = {f"weight {k}": _crc(v) for k, v in model.state_dict().items()}
    opt = model.optimizer
    if opt is not None:
        if hasattr(opt, "state_dict"):
            out.update({f"optimizer state {k}": _crc(v) for k, v in opt.state_dict().items()})
        hyper = json.dumps(divergence.hyperparameters(opt), sort_keys=True, default=repr)
        out["optimizer hyperparameters"] = zlib.crc32(hyper.encode())
    out["random generator"] = zlib.crc32(json.dumps(model.rng.bit_generator.state, sort_keys=True).encode())
    return out


def check(comm: Communicator, model: Any, when: str) -> None:
    """Raise ``ReplicaDriftError`` on every process if any replica differs from rank 0's."""
    prints = comm.allgather(fingerprint(model), "the replica checksum")
    differ = {}
    for rank, theirs in enumerate(prints[1:], start=1):
        names = sorted(k for k in set(prints[0]) | set(theirs) if prints[0].get(k) != theirs.get(k))
        if names:
            differ[rank] = names
    if differ:
        parts = [
            f"rank {r} differs from rank 0 in {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
            for r, names in differ.items()
        ]
        raise faults.collective(
            ReplicaDriftError(
                f"the replicas drifted apart ({when}): {'; '.join(parts)}. Each process must train the same "
                f"model with the same optimizer and change it only through fit (a callback that changes "
                f"weights or hyperparameters must do the same on every process)"
            )
        )

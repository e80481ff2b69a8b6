"""What each process of a test's MPI run does: ``python mpi_worker.py SCENARIO OUT [args]``.

Each scenario writes what the test checks into the folder OUT (one file per rank, or rank 0's).
"""

import json
import os
import signal
import sys
import time
import warnings
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


class _OnRank(regnet.Callback):
    """Calls ``act()`` on one rank at the end of one epoch, or at one batch of it."""

    def __init__(self, rank, epoch, act, batch=None):
        self.rank, self.epoch, self.act, self.batch = rank, epoch, act, batch
        self.current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_batch_end(self, batch, logs=None):
        if self.batch is not None and (self.current, batch) == (self.epoch, self.batch) and world().rank == self.rank:
            self.act()

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and epoch == self.epoch and world().rank == self.rank:
            self.act()


def crash(out, how):
    """Rank 1 is killed (or raises) at the end of epoch 3, while rank 0 saves its checkpoint."""

    def act():
        (out / "failed-at").write_text(repr(time.time()))
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("lost its data disk")

    case = training.CASES["adam"]
    model = training.model(case)
    x, y = training.data(2000)
    callbacks = [regnet.ModelCheckpoint(out / "ckpt.h5"), _OnRank(1, 3, act)]
    model.fit(x, y, batch_size=16, epochs=50, callbacks=callbacks, verbose=0, strategy=DataParallel())


def diverge(out):
    """Rank 1's gradient turns NaN at step 5: every process rewinds to before that step."""
    comm = world()
    model = training.model(training.CASES["sgd"])
    if comm.rank == 1:
        backward, calls = model.backward, []

        def poisoned(grad, input_grad=True):
            result = backward(grad, input_grad=input_grad)
            calls.append(1)
            if len(calls) == 5:
                model.grads["hidden/kernel"][0, 0] = np.nan
            return result

        model.backward = poisoned
    try:
        training.fit(model, training.CASES["sgd"], strategy=DataParallel(batch="global"))
    except regnet.TrainingDivergedError as exc:
        (out / f"error-{comm.rank}.txt").write_text(f"{exc.epoch} {exc.batch} {exc}")
    np.savez(out / f"weights-{comm.rank}.npz", **model.state_dict())


def bad(out, case):
    """Bad input: the error every process raises."""
    comm = world()
    model = training.model(training.CASES["sgd"])
    x, y = training.data()
    options = {"batch_size": 32, "strategy": DataParallel(batch="global")}
    if case == "lengths":
        x, y = (x, y) if comm.rank == 0 else (x[:-40], y[:-40])
    elif case == "small_batch":
        options["batch_size"] = 1
    elif case == "last_batch":
        x, y = x[:193], y[:193]  # 6 batches of 32, then one sample
    elif case == "batch_sizes":
        options["batch_size"] = 32 + comm.rank
    elif case == "generator":  # an iterable of unknown length that runs out sooner on rank 1

        def batches(count, x=x, y=y):
            for i in range(count):
                yield x[32 * i : 32 * (i + 1)], y[32 * i : 32 * (i + 1)]

        x, y = batches(5 if comm.rank == 0 else 3), None
        options["steps_per_epoch"] = 5
    try:
        model.fit(x, y, epochs=1, verbose=0, **options)
    except regnet.RegnetError as exc:
        (out / f"error-{comm.rank}.json").write_text(json.dumps([type(exc).__name__, str(exc)]))


def resume(out, phase):
    """``first``: 2 epochs with a checkpoint per epoch; ``again``: from the first checkpoint to the
    same end, on however many processes this run has (the same global batch)."""
    comm = world()
    case = training.CASES["adam"]
    strategy = DataParallel(batch="global")
    if phase == "first":
        model = training.model(case)
        training.fit(model, case, strategy=strategy, callbacks=[regnet.ModelCheckpoint(out / "ckpt-{epoch}.h5")])
        name = "first"
    elif phase == "again":
        model = training.model(case, seed=99)  # other initial weights: the checkpoint replaces them
        training.fit(model, case, strategy=strategy, resume_from=out / "ckpt-1.h5")
        name = f"again-{comm.size}"
    else:  # per process: the global batch grows with the number of processes, and the run says so
        model = training.model(case, seed=99)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batch = training.GLOBAL_BATCH // 2
            training.fit(model, case, strategy=DataParallel(), batch_size=batch, resume_from=out / "ckpt-1.h5")
        (out / f"warnings-{comm.rank}.json").write_text(json.dumps([str(w.message) for w in caught]))
        name = f"per-rank-{comm.size}"
    if comm.rank == 0:
        np.savez(out / f"{name}.npz", **model.state_dict())
        (out / f"{name}.json").write_text(json.dumps(model.history.to_list()))


def main():
    scenario, out = sys.argv[1], Path(sys.argv[2])
    args = sys.argv[3:]
    {
        "state": state,
        "fail": fail,
        "uncaught": uncaught,
        "agree": agree,
        "crash": crash,
        "diverge": diverge,
        "bad": bad,
        "resume": resume,
    }[scenario](out, *args)


if __name__ == "__main__":
    main()

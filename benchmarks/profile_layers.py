"""Per-layer time of a training step (forward + backward) and of the optimizer, for one architecture.

    python benchmarks/profile_layers.py lenet5 [--batch 64] [--steps 30] [--infer] [--wall --median]

Prints the milliseconds per step spent in each layer's forward and backward (activation
included), the loss, the optimizer and the divergence guard's finiteness check, so that the slow
part of a network is easy to see. Graph models (``resnet8_cifar``) are profiled node by node. By
default it reads the process CPU time (set OPENBLAS_NUM_THREADS=1 for it to mean anything) and
reports the minimum over steps, the steadiest figures on a busy machine; ``--wall`` and
``--median`` give wall-clock medians instead.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ARCHS, SCALING_ARCHS, input_shape, regnet_model

from regnet.layers.base import Layer
from regnet.training import divergence

_ENTRY_POINTS = {"__call__": "fwd", "call_backward": "bwd", "backward_only": "bwd"}


class Timer:
    """Accumulates per-key times of the outermost timed call in progress."""

    def __init__(self, clock):
        self.clock, self.times, self.depth = clock, {}, 0

    def wrap(self, key_of, fn):
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                self.add(key_of(args), self.clock() - t0)

        return timed

    def add(self, key, seconds):
        self.times.setdefault(key, []).append(seconds * 1e3)


def profile(arch, batch, steps, training=True, stat=min, clock=time.process_time, out=print):
    model = regnet_model(arch)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *input_shape(arch)), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    timer = Timer(clock)
    names = {id(n.layer): f"{n.name} ({type(n.layer).__name__})" for n in model.nodes}
    # Layer's entry points, and those a layer class overrides (BatchNorm's fused ReLU)
    classes = {c for n in model.nodes for c in type(n.layer).__mro__ if issubclass(c, Layer)}
    saved = {(c, a): c.__dict__[a] for c in classes for a in _ENTRY_POINTS if a in c.__dict__}
    for (cls, attr), fn in saved.items():
        setattr(cls, attr, timer.wrap(lambda a, what=_ENTRY_POINTS[attr]: (names[id(a[0])], what), fn))
    out_layer = model.output_node.layer
    out_layer.forward = timer.wrap(lambda a: (names[id(out_layer)], "fwd"), out_layer.forward)
    fused = model.fused_loss is not None
    try:
        for _ in range(steps):
            t0 = clock()
            if not training:
                model.forward(x, training=False)
                model.release()
                timer.add(("step", "total"), clock() - t0)
                continue
            h = model.forward(x, training=True, logits=fused)
            t1 = clock()
            _, g = model.training_loss.value_and_grad(h, y)
            timer.add(("loss", ""), clock() - t1)
            model.backward(g, input_grad=False)
            t1 = clock()
            model.optimizer.step(model.params, model.grads)
            timer.add(("optimizer", type(model.optimizer).__name__), clock() - t1)
            t1 = clock()
            divergence.non_finite(model.state_dict())
            timer.add(("guard check", ""), clock() - t1)
            timer.add(("step", "total"), clock() - t0)
    finally:
        for (cls, attr), fn in saved.items():
            setattr(cls, attr, fn)
        del out_layer.forward
    rows, total = [], None
    for key, vals in timer.times.items():
        med = stat(vals[len(vals) // 3 :])
        if key[0] == "step":
            total = med
            continue
        rows.append((key, med))
    parts = sum(m for _, m in rows)
    for (name, what), med in rows:
        out(f"{name:28s} {what:6s} {med:8.3f} ms")
    out(f"{'sum of the parts':35s} {parts:8.3f} ms")
    out(f"{'whole step':35s} {total:8.3f} ms  ({batch / total * 1e3:,.0f} img/s)")
    return dict(rows), total


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=[*ARCHS, *SCALING_ARCHS])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--infer", action="store_true", help="forward only, inference mode")
    ap.add_argument("--median", action="store_true", help="median instead of minimum over steps")
    ap.add_argument(
        "--wall", action="store_true", help="wall-clock time (default: process CPU time, steadier with one BLAS thread)"
    )
    args = ap.parse_args(argv)
    profile(
        args.arch,
        args.batch,
        args.steps,
        training=not args.infer,
        stat=statistics.median if args.median else min,
        clock=time.perf_counter if args.wall else time.process_time,
    )


if __name__ == "__main__":
    main()

"""Per-layer time of a training step (forward + backward) and of the optimizer, for one architecture.

    python benchmarks/profile_layers.py lenet5 [--batch 64] [--steps 30]

Prints the milliseconds per step spent in each layer's forward and backward (activation
included), the loss and the optimizer, so that the slow part of a network is easy to see. By
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
from bench import ARCHS, INPUT_SHAPE, regnet_model


def profile(arch, batch, steps, training=True, stat=min, clock=time.process_time):
    model = regnet_model(arch)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    layers = model.layers
    times = {}

    def tick(key, t0):
        times.setdefault(key, []).append((clock() - t0) * 1e3)

    for _ in range(steps):
        h = x
        for i, layer in enumerate(layers):
            t0 = clock()
            last = i == len(layers) - 1
            h = layer.forward(h, training) if last else layer(h, training)
            tick((i, "fwd"), t0)
        if not training:
            continue
        t0 = clock()
        _, g = model.training_loss.value_and_grad(h, y)
        tick(("loss", ""), t0)
        for i in reversed(range(len(layers))):
            t0 = clock()
            last = i == len(layers) - 1
            g = layers[i].backward(g) if last else layers[i].call_backward(g)
            tick((i, "bwd"), t0)
        t0 = clock()
        model.optimizer.step(model.params, model.grads)
        tick(("adam", ""), t0)
    total = 0.0
    for key, vals in times.items():
        med = stat(vals[len(vals) // 3 :])
        total += med
        name = key[0] if isinstance(key[0], str) else f"{key[0]} {type(layers[key[0]]).__name__}"
        print(f"{name:22s} {key[1]:4s} {med:8.3f} ms")
    print(f"{'total':27s} {total:8.3f} ms  ({batch / total * 1e3:,.0f} img/s)")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=list(ARCHS))
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

"""Cost of the divergence guard on MLP training steps.

    OPENBLAS_NUM_THREADS=1 python benchmarks/divergence_guard.py [--rounds 25] [--batch 32 128]

Two figures per configuration, both in CPU time of this process (steadier than wall time on a
shared machine), each the smallest over ``--rounds`` rounds of 30 steps:

* the guard's own work per step: ``Snapshot.save`` (copy of the weights) plus ``non_finite``
  over the updated weights, as a share of an unguarded step (forward, loss, backward, update);
* an A/B of whole steps, unguarded against ``runtime.train_step``, in rotating order.
"""

import argparse
import time

import numpy as np

from regnet import Model, divergence, runtime

ARCHS = {
    "mlp-784-128-10": [128],
    "mlp-784-512-256-10": [512, 256],
}


def build(hidden, optimizer):
    layers = [{"type": "Dense", "units": h, "activation": "relu"} for h in hidden]
    layers.append({"type": "Dense", "units": 10, "activation": "softmax"})
    model = Model.from_spec({"input_shape": [784], "layers": layers}, seed=0)
    return model.compile("categorical_crossentropy", optimizer, metrics=())


def plain_step(model, xb, yb, _snapshot=None):
    out = model.forward(xb, training=True, logits=model._fused_loss is not None)
    loss, grad = model.training_loss.value_and_grad(out, yb)
    model.backward(grad, input_grad=False)  # as runtime.train_step does
    model.optimizer.step(model.params, model.grads)
    return loss, out


def guard_work(model, snapshot):
    snapshot.save()
    divergence.non_finite(model.get_weights())


def cpu_time(fn, repeat):
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat


def measure(model, batches, rounds):
    snapshot = divergence.Snapshot(model)
    steps = {"plain": plain_step, "guarded": runtime.train_step}
    best = {"plain": np.inf, "guarded": np.inf, "guard": np.inf}
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            it = iter(batches * 1)
            t = cpu_time(lambda: steps[name](model, *next(it), snapshot), len(batches))
            best[name] = min(best[name], t)
        best["guard"] = min(best["guard"], cpu_time(lambda: guard_work(model, snapshot), len(batches)))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'model':20s} {'opt':5s} {'batch':>5s} {'step ms':>8s} {'guard ms':>9s} {'share':>6s}"
          f" {'A/B guarded ms':>15s} {'A/B diff':>8s}")
    for arch, hidden in ARCHS.items():
        for opt in ("sgd", "adam"):
            for batch in args.batch:
                model = build(hidden, {"type": opt, "learning_rate": 1e-3})
                batches = [(rng.random((batch, 784), dtype=np.float32), rng.integers(0, 10, batch))
                           for _ in range(30)]
                b = measure(model, batches, args.rounds)
                p, g, w = b["plain"] * 1e3, b["guarded"] * 1e3, b["guard"] * 1e3
                print(f"{arch:20s} {opt:5s} {batch:5d} {p:8.3f} {w:9.3f} {100 * w / p:5.1f}%"
                      f" {g:15.3f} {100 * (g - p) / p:7.1f}%")


if __name__ == "__main__":
    main()

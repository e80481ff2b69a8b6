"""Cost of the divergence guard on MLP training steps.

    OPENBLAS_NUM_THREADS=1 python benchmarks/divergence_guard.py [--rounds 25] [--batch 32 128]

Per step the guard checks every weight for NaN and infinity (one BLAS pass each), records the
batch and the optimizer's hyperparameters, and every ``divergence.INTERVAL`` steps takes a
checkpoint (a copy of the weights and of the optimizer state). Figures are CPU time of this
process (steadier than wall time on a shared machine), the smallest over ``--rounds`` rounds:

* the guard's own work per step (check and record, plus the checkpoint amortised over its
  interval), as a share of an unguarded step (forward, loss, backward, update);
* an A/B of whole steps, unguarded against guarded as ``fit`` runs them, in rotating order;
* an A/B of ``fit`` for one epoch of 6 000 random samples, with the guard switched off and on.
"""

import argparse
import time

import numpy as np

from regnet import Model
from regnet.training import divergence
from regnet.training import loop as runtime

ARCHS = {
    "mlp-784-128-10": [128],
    "mlp-784-512-256-10": [512, 256],
}


def build(hidden, optimizer):
    layers = [{"type": "Dense", "units": h, "activation": "relu"} for h in hidden]
    layers.append({"type": "Dense", "units": 10, "activation": "softmax"})
    model = Model.from_spec({"input_shape": [784], "layers": layers}, seed=0)
    return model.compile("categorical_crossentropy", optimizer, metrics=())


def plain_step(model, xb, yb, _guard=None):
    out = model.forward(xb, training=True, logits=model.fused_loss is not None)
    loss, grad = model.training_loss.value_and_grad(out, yb)
    model.backward(grad, input_grad=False)  # as runtime.train_step does
    model.optimizer.step(model.params, model.grads)
    return loss, out


def guarded_step(model, xb, yb, guard):
    if guard.due():
        guard.checkpoint()
    return runtime.train_step(model, xb, yb, guard)


def cpu_time(fn, repeat):
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat


def guard_work(model, guard, xb, yb):
    hyper = divergence.hyperparameters(model.optimizer)
    divergence.non_finite(model.state_dict())
    guard.record(xb, yb, hyper)
    guard._steps.clear()


def measure_steps(model, batches, rounds):
    guard = divergence.Guard(model)
    guard.checkpoint()
    steps = {"plain": plain_step, "guarded": guarded_step}
    best = dict.fromkeys(["plain", "guarded", "work", "checkpoint"], np.inf)
    for r in range(rounds):
        for name in list(steps) if r % 2 == 0 else list(reversed(steps)):
            it = iter(batches)
            best[name] = min(best[name], cpu_time(lambda: steps[name](model, *next(it), guard), len(batches)))
        best["work"] = min(best["work"], cpu_time(lambda: guard_work(model, guard, *batches[0]), len(batches)))
        best["checkpoint"] = min(best["checkpoint"], cpu_time(guard.checkpoint, 5))
    best["work"] += best["checkpoint"] / divergence.INTERVAL
    return best


def measure_fit(hidden, opt, batch, rounds):
    rng = np.random.default_rng(1)
    x, y = rng.random((6000, 784), dtype=np.float32), rng.integers(0, 10, 6000)
    saved = divergence.non_finite, divergence.Guard.checkpoint, divergence.Guard.record
    best = {"off": np.inf, "on": np.inf}
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            if mode == "off":  # the same loop with the guard's work removed
                divergence.non_finite = lambda arrays: []
                divergence.Guard.checkpoint = divergence.Guard.record = lambda *a: None
            model = build(hidden, {"type": opt, "learning_rate": 1e-3})
            t0 = time.process_time()
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0, seed=0)
            best[mode] = min(best[mode], time.process_time() - t0)
            divergence.non_finite, divergence.Guard.checkpoint, divergence.Guard.record = saved
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--fit-rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(
        f"{'model':20s} {'opt':5s} {'batch':>5s} {'step ms':>8s} {'guard ms':>9s} {'share':>6s}"
        f" {'A/B step':>9s} {'fit off s':>10s} {'fit on s':>9s} {'A/B fit':>8s}"
    )
    for arch, hidden in ARCHS.items():
        for opt in ("sgd", "adam"):
            for batch in args.batch:
                model = build(hidden, {"type": opt, "learning_rate": 1e-3})
                batches = [(rng.random((batch, 784), dtype=np.float32), rng.integers(0, 10, batch)) for _ in range(30)]
                b = measure_steps(model, batches, args.rounds)
                f = measure_fit(hidden, opt, batch, args.fit_rounds)
                p, g, w = b["plain"] * 1e3, b["guarded"] * 1e3, b["work"] * 1e3
                print(
                    f"{arch:20s} {opt:5s} {batch:5d} {p:8.3f} {w:9.3f} {100 * w / p:5.1f}%"
                    f" {100 * (g - p) / p:8.1f}% {f['off']:10.3f} {f['on']:9.3f}"
                    f" {100 * (f['on'] - f['off']) / f['off']:7.1f}%",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Data-parallel training on MPI: how it scales on this machine, and how closely it agrees with
one process.

    python benchmarks/distributed.py              # scaling: writes benchmarks/results/distributed-<time>.json
    python benchmarks/distributed.py --quick      # a smoke run (few steps, one round)
    python benchmarks/distributed.py agreement    # weight differences: 1 process against 2 and 4

**Scaling** trains LeNet-5 and the 32-64 conv net (``bench.py``'s ``lenet5`` and
``convnet_32_64``) on MNIST with Adam at a global batch of 128 in three ways: one process with one
BLAS thread, one process with two BLAS threads, and two processes of one thread each
(``DataParallel``, 64 samples per process). It reports training images/s, the time per step spent
in the gradient ``Allreduce`` (which includes waiting for the slower process) and the time of a
bare ``Allreduce`` of the same buffer (after a barrier: the exchange alone). Each measurement is a
fresh run (``mpiexec`` for two processes); the configurations are interleaved, in a rotating
order, for ``--rounds`` rounds and the medians reported: the machine is shared, so single runs are
noisy.

**Agreement** trains the same model from the same weights on the same global batches on 1
process (1 and 2 BLAS threads) and on 2 and 4 processes, for SGD (momentum) and Adam, and reports
the largest absolute weight difference from the 1-thread single process. The 1-against-2-thread
difference is the scale of reduction-order effects within one process, for comparison.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402  (the networks and the MNIST loader of the main benchmark)

ARCHS = ("lenet5", "convnet_32_64")
GLOBAL_BATCH = 128
#: (name, processes, BLAS threads per process)
CONFIGS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes x 1 thread", 2, 1))


def _env(threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def _launch(processes, threads, args, timeout=1800):
    from regnet.distributed import launch

    argv = [sys.executable, str(Path(__file__).resolve()), *args]
    if processes == 1:
        done = subprocess.run(argv, env=_env(threads), capture_output=True, text=True, timeout=timeout)
    else:
        done = launch.run(processes, argv, threads=threads, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- scaling ------------------------------------------------------------------------------------------
def scaling_worker(arch, processes, warmup, steps, synthetic):
    import regnet
    from regnet.distributed import DataParallel

    strategy = DataParallel(batch="global") if processes > 1 else None
    model = bench.regnet_model(arch)
    model.compile(loss="categorical_crossentropy", optimizer={"type": "adam", "learning_rate": bench.LR}, metrics=())
    x, y, _ = bench.load_data("train", (warmup + steps) * GLOBAL_BATCH, synthetic)
    options = {"batch_size": GLOBAL_BATCH, "epochs": 1, "verbose": 0, "shuffle": False, "strategy": strategy}
    model.fit(x[: warmup * GLOBAL_BATCH], y[: warmup * GLOBAL_BATCH], **options)
    comm = strategy.comm if strategy else None
    if comm:
        comm.barrier()
        before = comm.seconds.get("gradients", 0.0)
    t0 = time.perf_counter()
    model.fit(x[warmup * GLOBAL_BATCH :], y[warmup * GLOBAL_BATCH :], **options)
    wall = time.perf_counter() - t0
    result = {
        "images_per_s": steps * GLOBAL_BATCH / wall,
        "step_ms": 1e3 * wall / steps,
        "parameters": int(sum(v.size for v in model.trainable_params.values())),
    }
    if comm:
        result["allreduce_in_step_ms"] = 1e3 * (comm.seconds["gradients"] - before) / steps
        buffer = np.zeros(strategy._buffer.data.size, np.float32)
        comm.barrier()
        t0 = time.perf_counter()
        for _ in range(50):
            comm.allreduce(buffer, "a timed exchange", kind="bare")
        result["bare_allreduce_ms"] = 1e3 * (time.perf_counter() - t0) / 50
        result["buffer_bytes"] = int(buffer.nbytes)
        if not comm.chief:
            return None
    assert isinstance(regnet.__version__, str)
    return result


def scaling(args):
    steps, warmup, rounds = (6, 2, 1) if args.quick else (args.steps, 3, args.rounds)
    runs = {(a, c[0]): [] for a in args.archs for c in CONFIGS}
    for r in range(rounds):
        order = CONFIGS[r % 3 :] + CONFIGS[: r % 3]  # a rotating order: every configuration meets every slot
        for arch in args.archs:
            for name, processes, threads in order:
                worker = ["--worker", "scaling", arch, str(processes), str(warmup), str(steps)]
                load = os.getloadavg()[0]
                result = _launch(processes, threads, worker + (["--synthetic"] if args.synthetic else []))
                result["load_average_before"] = load
                runs[(arch, name)].append(result)
                print(f"round {r + 1} {arch:>14} {name:<24} {result['images_per_s']:8.1f} img/s", file=sys.stderr)
    table = []
    for arch in args.archs:
        for name, _, _ in CONFIGS:
            rs = runs[(arch, name)]
            row = {"arch": arch, "config": name, "parameters": rs[0]["parameters"]}
            for key in ("images_per_s", "step_ms", "allreduce_in_step_ms", "bare_allreduce_ms", "buffer_bytes"):
                if key in rs[0]:
                    row[key] = statistics.median(r[key] for r in rs)
            table.append(row)
    loads = [r["load_average_before"] for rs in runs.values() for r in rs]
    print(
        f"medians of {rounds} rounds; 1-minute load average before the runs: median {statistics.median(loads):.1f}, "
        f"{min(loads):.1f} to {max(loads):.1f} ({os.cpu_count()} CPUs)"
    )
    print("| net | run | images/s | ms/step | allreduce in step, ms | bare allreduce, ms | bytes/step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in table:
        extra = (
            f"{row['allreduce_in_step_ms']:.2f} | {row['bare_allreduce_ms']:.3f} | {row['buffer_bytes']:,}"
            if "bare_allreduce_ms" in row
            else "| |"
        )
        print(f"| {row['arch']} | {row['config']} | {row['images_per_s']:.0f} | {row['step_ms']:.1f} | {extra} |")
    out = Path(args.out or HERE / "results" / time.strftime("distributed-%Y%m%d-%H%M%S.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "global_batch": GLOBAL_BATCH,
                "steps": steps,
                "rounds": rounds,
                "table": table,
                "runs": {f"{a}/{c}": v for (a, c), v in runs.items()},
            },
            indent=1,
        )
    )
    print(f"wrote {out}", file=sys.stderr)


# -- agreement ----------------------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    "adam": {"type": "adam", "learning_rate": 1e-3},
}


def agreement_worker(arch, optimizer, processes, steps, out, synthetic):
    import regnet
    from regnet.distributed import DataParallel

    strategy = DataParallel(batch="global") if processes > 1 else None
    model = regnet.Model(bench.ARCHS[arch], bench.INPUT_SHAPE, seed=0)
    model.compile(loss="categorical_crossentropy", optimizer=OPTIMIZERS[optimizer], metrics=())
    x, y, _ = bench.load_data("train", steps * GLOBAL_BATCH, synthetic)
    model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, seed=1, verbose=0, strategy=strategy)
    if strategy is None or strategy.chief:
        np.savez(out, **model.state_dict())
        return {}
    return None


def agreement(args):
    steps = 4 if args.quick else args.steps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            for opt in OPTIMIZERS:
                files = {}
                for name, processes, threads in (
                    ("1 process, 1 thread", 1, 1),
                    ("1 process, 2 threads", 1, 2),
                    ("2 processes", 2, 1),
                    ("4 processes", 4, 1),
                ):
                    path = Path(tmp) / f"{arch}-{opt}-{processes}-{threads}.npz"
                    worker = ["--worker", "agreement", arch, opt, str(processes), str(steps), str(path)]
                    _launch(processes, threads, worker + (["--synthetic"] if args.synthetic else []))
                    files[name] = dict(np.load(path))
                ref = files["1 process, 1 thread"]
                for name, w in files.items():
                    if name == "1 process, 1 thread":
                        continue
                    diff = max(float(np.max(np.abs(w[k] - ref[k]))) for k in ref)
                    scale = max(float(np.max(np.abs(ref[k]))) for k in ref)
                    rows.append(
                        {"arch": arch, "optimizer": opt, "against": name, "max_abs_diff": diff, "max_abs_weight": scale}
                    )
                    print(
                        f"{arch:>14} {opt:>5} {name:<22} max |dw| = {diff:.2e} (largest |w| {scale:.2f})",
                        file=sys.stderr,
                    )
    print(f"\n{steps} steps of a global batch of {GLOBAL_BATCH} from the same weights;")
    print("largest absolute weight difference from 1 process with 1 BLAS thread:")
    print("| net | optimizer | 1 process, 2 threads | 2 processes | 4 processes |")
    print("|---|---|---:|---:|---:|")
    for arch in args.archs:
        for opt in OPTIMIZERS:
            cells = [f"{r['max_abs_diff']:.1e}" for r in rows if r["arch"] == arch and r["optimizer"] == opt]
            print(f"| {arch} | {opt} | {' | '.join(cells)} |")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        kind, *rest = argv[1:]
        synthetic = "--synthetic" in rest
        rest = [a for a in rest if a != "--synthetic"]
        if kind == "scaling":
            result = scaling_worker(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), synthetic)
        else:
            result = agreement_worker(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4], synthetic)
        if result is not None:
            print(json.dumps(result))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="?", choices=("scaling", "agreement"), default="scaling")
    p.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="timed steps per run (agreement: steps trained)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one round")
    p.add_argument("--synthetic", action="store_true", help="random images instead of MNIST")
    p.add_argument("--out", help="the JSON file to write (scaling)")
    args = p.parse_args(argv)
    (scaling if args.what == "scaling" else agreement)(args)


if __name__ == "__main__":
    main()

"""Train and run the same networks with regnet and with PyTorch (CPU) on MNIST; compare.

    python benchmarks/bench.py            # full run, writes benchmarks/results/bench-<time>.json
    python benchmarks/bench.py --quick    # a smoke run (few batches, one round)

Every measurement runs in a fresh worker process (``--worker``), so that peak memory is the
process's own high-water mark and no framework warms caches for the other. For each
architecture the driver alternates regnet and PyTorch workers for ``--rounds`` rounds and
reports the median. Both frameworks get the same thread count, the same initial weights (PyTorch
copies regnet's), batch 64, float32, Adam(lr=1e-3) and softmax cross-entropy on logits.

PyTorch is optional: without it (or with ``--frameworks regnet``) its columns are left empty.
"""

import argparse
import gc
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FRAMEWORKS = ("regnet", "torch")

# -- architectures (regnet specs; PyTorch models are translated from the built regnet model) ------
ARCHS = {
    "mlp_1024": [
        {"type": "Flatten"},
        {"type": "Dense", "units": 1024, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "mlp_370_115_50": [
        {"type": "Flatten"},
        {"type": "Dense", "units": 370, "activation": "relu"},
        {"type": "Dense", "units": 115, "activation": "relu"},
        {"type": "Dense", "units": 50, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "lenet5": [
        {"type": "Conv2D", "filters": 6, "kernel_size": 5, "padding": "same", "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 16, "kernel_size": 5, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 120, "activation": "relu"},
        {"type": "Dense", "units": 84, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "convnet_32_64": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "Dropout", "rate": 0.5},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
}
INPUT_SHAPE = (1, 28, 28)
BATCH = 64
LR = 1e-3


# -- data -----------------------------------------------------------------------------------------
def _read_idx(path, count):
    """The first ``count`` items of a gzip IDX file (images scaled to [0, 1], NCHW)."""
    with gzip.open(path, "rb") as fh:
        magic = int.from_bytes(fh.read(4), "big")
        ndim = magic & 0xFF
        dims = [int.from_bytes(fh.read(4), "big") for _ in range(ndim)]
        count = min(count, dims[0])
        item = int(np.prod(dims[1:], dtype=np.int64))
        data = np.frombuffer(fh.read(count * item), dtype=np.uint8)
    if ndim == 1:
        return data.astype(np.int64)
    return data.reshape(count, 1, *dims[1:]).astype(np.float32) / np.float32(255)


def load_data(split, count, synthetic=False):
    """``(x, y)``: ``count`` MNIST images of ``split`` ('train' or 't10k'), or random ones."""
    if synthetic:
        rng = np.random.default_rng(0)
        return rng.random((count, *INPUT_SHAPE), dtype=np.float32), rng.integers(0, 10, count)
    root = Path(os.environ.get("REGNET_DATA") or ROOT.parent / "shared" / "data" / "mnist")
    try:
        from regnet.datasets.mnist import mnist  # the library's loader, when present
    except ImportError:
        mnist = None
    if callable(mnist):
        (xtr, ytr), (xte, yte) = mnist(path=root, download=False)
        x, y = (xtr, ytr) if split == "train" else (xte, yte)
        return np.ascontiguousarray(x[:count]), y[:count]
    x = _read_idx(root / f"{split}-images-idx3-ubyte.gz", count)
    y = _read_idx(root / f"{split}-labels-idx1-ubyte.gz", count)
    return x, y


# -- memory ---------------------------------------------------------------------------------------
def _status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def reset_peak():
    """Reset the process's RSS high-water mark to its current RSS; return that RSS (KiB)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_kib("VmRSS")


def _cpu_seconds():
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


class Clock:
    """Wall-clock and process CPU seconds since ``start()``, read by ``stop()``."""

    def start(self):
        self.t0, self.c0 = time.perf_counter(), _cpu_seconds()
        return self

    def stop(self):
        self.wall, self.cpu = time.perf_counter() - self.t0, _cpu_seconds() - self.c0
        return self


def peak_since(rss0):
    hwm = _status_kib("VmHWM")
    return None if hwm is None or rss0 is None else (hwm - rss0) / 1024


# -- the regnet side ------------------------------------------------------------------------------
def regnet_model(arch, seed=0):
    import regnet

    model = regnet.Model(ARCHS[arch], INPUT_SHAPE, seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer={"type": "Adam", "learning_rate": LR}, metrics=())
    return model


def regnet_train(model, x, y, warmup):
    model.fit(x[: warmup * BATCH], y[: warmup * BATCH], epochs=1, batch_size=BATCH, verbose=0)
    clock = Clock().start()
    hist = model.fit(x[warmup * BATCH :], y[warmup * BATCH :], epochs=1, batch_size=BATCH, verbose=0)
    return clock.stop(), hist.history["loss"][-1]


def regnet_infer(model, x, batch):
    model.predict(x[:batch], batch_size=batch)
    clock = Clock().start()
    out = model.predict(x[batch:], batch_size=batch)
    return clock.stop(), out


# -- the PyTorch side -----------------------------------------------------------------------------
def torch_model(rmodel):
    """The PyTorch twin of a built regnet model, with the same weights (softmax left to the loss)."""
    import torch
    from torch import nn

    mods = []
    for layer in rmodel.layers:
        kind = type(layer).__name__
        p = {k: torch.from_numpy(v.copy()) for k, v in layer.params.items()}
        if kind == "Dense":
            m = nn.Linear(*p["kernel"].shape)
            m.weight.data.copy_(p["kernel"].T)
            m.bias.data.copy_(p["bias"])
        elif kind == "Conv2D":
            top, bottom, left, right = layer._pads
            assert top == bottom and left == right, "asymmetric padding is not translated"
            m = nn.Conv2d(p["kernel"].shape[1], layer.filters, layer.kernel_size, layer.strides, (top, left))
            m.weight.data.copy_(p["kernel"])
            m.bias.data.copy_(p["bias"])
        elif kind == "MaxPool2D":
            m = nn.MaxPool2d(layer.pool_size, layer.stride)
        elif kind == "Flatten":
            m = nn.Flatten()
        elif kind == "Dropout":
            m = nn.Dropout(layer.rate)
        else:
            raise ValueError(f"no PyTorch translation for {kind}")
        mods.append(m)
        act = getattr(layer, "activation", "linear")
        if act == "relu":
            mods.append(nn.ReLU())
        elif act not in ("linear", "softmax"):
            raise ValueError(f"no PyTorch translation for activation {act!r}")
    return nn.Sequential(*mods)


def torch_train(model, x, y, warmup):
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)

    def epoch(xs, ys):
        model.train()
        total, n = 0.0, len(xs)
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, BATCH):
            idx = order[s : s + BATCH]
            xb, yb = xs[idx], ys[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / n

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epoch(xt[: warmup * BATCH], yt[: warmup * BATCH])
    clock = Clock().start()
    loss = epoch(xt[warmup * BATCH :], yt[warmup * BATCH :])
    return clock.stop(), loss


def torch_infer(model, x, batch):
    import torch

    model.eval()
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        model(xt[:batch])
        clock = Clock().start()
        out = np.empty((len(x) - batch, 10), np.float32)
        for s in range(batch, len(x), batch):
            out[s - batch : s] = model(xt[s : s + batch]).numpy()
    return clock.stop(), out


# -- one measurement in this process --------------------------------------------------------------
def default_threads():
    """The thread count NumPy's OpenBLAS starts with in this environment."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0))


def blas_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {i["internal_api"]: i["num_threads"] for i in threadpool_info()}


def worker(framework, arch, mode, args):
    """Measure one (framework, arch, mode) and return a dict (run in a fresh process)."""
    threads = args.threads
    if mode == "train":
        n = (args.warmup + args.train_batches) * BATCH
        x, y = load_data("train", n, args.synthetic)
    else:
        n = (1 + args.infer_batches) * args.infer_batch
        x, y = load_data("t10k", n, args.synthetic)
    rmodel = regnet_model(arch)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = torch_model(rmodel)
        del rmodel
    rss0 = reset_peak()
    if mode == "train":
        run = regnet_train if framework == "regnet" else torch_train
        secs, loss = run(rmodel if framework == "regnet" else model, x, y, args.warmup)
        images = args.train_batches * BATCH
        extra = {"loss": float(loss)}
    else:
        run = regnet_infer if framework == "regnet" else torch_infer
        secs, out = run(rmodel if framework == "regnet" else model, x, args.infer_batch)
        images = args.infer_batches * args.infer_batch
        extra = {"accuracy": float(np.mean(out.argmax(axis=1) == y[args.infer_batch :]))}
    return {
        "framework": framework,
        "arch": arch,
        "mode": mode,
        "images": images,
        "seconds": secs.wall,
        "images_per_s": images / secs.wall,
        "cpu_s": secs.cpu,
        "peak_mib": peak_since(rss0),
        "base_rss_mib": rss0 / 1024,
        "threads": threads,
        "blas": blas_threads(),
        **extra,
    }


def spawn(framework, arch, mode, args):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, arch, mode, *args.passthrough]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{framework}/{arch}/{mode} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- the driver -----------------------------------------------------------------------------------
def torch_available():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(runs, archs, frameworks):
    rows = []
    for arch in archs:
        row = {"arch": arch}
        for mode in ("train", "infer"):
            for fw in frameworks:
                sel = [r for r in runs if r["arch"] == arch and r["mode"] == mode and r["framework"] == fw]
                row[f"{fw}_{mode}_ips"] = _median(sel, "images_per_s")
                row[f"{fw}_{mode}_ips_best"] = max((r["images_per_s"] for r in sel), default=None)
                row[f"{fw}_{mode}_peak_mib"] = _median(sel, "peak_mib")
                cpu = [r["cpu_s"] / r["images"] * 1e6 for r in sel]
                row[f"{fw}_{mode}_cpu_us_per_img"] = statistics.median(cpu) if cpu else None
            r_, t_ = row.get(f"regnet_{mode}_ips"), row.get(f"torch_{mode}_ips")
            row[f"{mode}_ratio"] = r_ / t_ if r_ and t_ else None
            rm, tm = row.get(f"regnet_{mode}_peak_mib"), row.get(f"torch_{mode}_peak_mib")
            row[f"{mode}_mem_ratio"] = rm / tm if rm is not None and tm else None
        rows.append(row)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows):
    head = [
        "arch",
        "train img/s regnet",
        "torch",
        "ratio",
        "infer img/s regnet",
        "torch",
        "ratio",
        "train peak MiB regnet",
        "torch",
        "ratio",
        "infer peak MiB regnet",
        "torch",
        "ratio",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["arch"]]
        for mode in ("train", "infer"):
            cells += [
                _fmt(r.get(f"regnet_{mode}_ips"), ",.0f"),
                _fmt(r.get(f"torch_{mode}_ips"), ",.0f"),
                _fmt(r.get(f"{mode}_ratio"), ".2f"),
            ]
        for mode in ("train", "infer"):
            cells += [
                _fmt(r.get(f"regnet_{mode}_peak_mib"), ".1f"),
                _fmt(r.get(f"torch_{mode}_peak_mib"), ".1f"),
                _fmt(r.get(f"{mode}_mem_ratio"), ".2f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few batches, one round (smoke run)")
    ap.add_argument("--archs", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    ap.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    ap.add_argument("--modes", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    ap.add_argument("--rounds", type=int, help="alternating regnet/torch rounds per measurement (default 5)")
    ap.add_argument("--warmup", type=int, help="untimed training batches first (default 5)")
    ap.add_argument("--train-batches", type=int, help="timed training batches of 64 (default 100)")
    ap.add_argument("--infer-batches", type=int, help="timed inference batches (default 5)")
    ap.add_argument("--infer-batch", type=int, default=1000, help="inference batch size (default 1000)")
    ap.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="BLAS / PyTorch threads for both frameworks (default: what NumPy's BLAS uses: "
        "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS if set, else the usable cores)",
    )
    ap.add_argument("--synthetic", action="store_true", help="random images instead of MNIST")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (a quick check: peak memory is then not meaningful)",
    )
    ap.add_argument("--out", help="JSON file (default benchmarks/results/bench-<time>.json)")
    ap.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "ARCH", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = {"rounds": 1, "warmup": 2, "train_batches": 10, "infer_batches": 1}
    full = {"rounds": 5, "warmup": 5, "train_batches": 100, "infer_batches": 5}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.passthrough = [
        "--warmup",
        str(args.warmup),
        "--train-batches",
        str(args.train_batches),
        "--infer-batches",
        str(args.infer_batches),
        "--infer-batch",
        str(args.infer_batch),
        "--threads",
        str(args.threads),
        *(["--synthetic"] if args.synthetic else []),
    ]
    return args


def main(argv=None):
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return 0
    frameworks = [f for f in args.frameworks if f != "torch" or torch_available()]
    if "torch" in args.frameworks and "torch" not in frameworks:
        print("PyTorch is not installed: its columns stay empty (pip install torch)", file=sys.stderr)
    runs = []
    for arch in args.archs:
        for mode in args.modes:
            for rnd in range(args.rounds):
                order = frameworks if rnd % 2 == 0 else frameworks[::-1]
                for fw in order:
                    r = worker(fw, arch, mode, args) if args.in_process else spawn(fw, arch, mode, args)
                    r["round"] = rnd
                    runs.append(r)
                    print(
                        f"  {arch:15s} {mode:5s} {fw:6s} round {rnd}: {r['images_per_s']:9,.0f} img/s, "
                        f"peak {_fmt(r['peak_mib'], '.1f')} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
    rows = summarise(runs, args.archs, ["regnet", "torch"])
    print(table(rows))
    out = Path(args.out) if args.out else HERE / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "threads": args.threads,
        "batch": BATCH,
        "infer_batch": args.infer_batch,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "train_batches": args.train_batches,
        "infer_batches": args.infer_batches,
        "synthetic": args.synthetic,
        "in_process": args.in_process,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": _torch_version() if "torch" in frameworks else None,
        "cpu": _cpu_name(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.write_text(json.dumps({"meta": meta, "summary": rows, "runs": runs}, indent=2) + "\n")
    print(f"results written to {out}", file=sys.stderr)
    return 0


def _torch_version():
    import torch

    return torch.__version__


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())

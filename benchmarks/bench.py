"""Train and run the same networks with regnet, PyTorch (CPU) and onnxruntime; compare.

    python benchmarks/bench.py            # full run, writes benchmarks/results/bench-<time>.{json,md,png}
    python benchmarks/bench.py --quick    # a smoke run (few batches, one round)

Every measurement runs in a fresh worker process (``--worker``), so that peak memory is the
process's own high-water mark and no framework warms caches for the other. For each
architecture the driver alternates the frameworks' workers for ``--rounds`` rounds and reports
the median. All get the same thread count and the same initial weights (PyTorch copies regnet's,
onnxruntime runs the ONNX export of the PyTorch twin); training uses batch 64, float32,
Adam(lr=1e-3) and softmax cross-entropy on logits.

Besides training and batch inference it measures batch-1 latency (median over single-image
calls), this machine's float32 matmul peak (a large ``np.matmul``) and the fraction of it each
training run reaches, and how time per image grows with the batch size and the MLP width (a
table and a PNG plot). PyTorch, onnxruntime, matplotlib and threadpoolctl are optional: without
one, its columns (or the plot) are left out.
"""

import argparse
import gc
import gzip
import json
import math
import os
import resource
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
import machine  # noqa: E402
from twins import export_onnx, torch_model  # noqa: E402

FRAMEWORKS = ("regnet", "torch", "onnxruntime")
MODES = ("train", "infer", "latency")
TRAINERS = ("regnet", "torch")  # onnxruntime only runs inference


def _resnet8():
    """A ResNet-8-style CIFAR net: 3x3 convs 16-32-64, BatchNorm, residual Add, stride-2
    downsampling (1x1 projections on the shortcut), global average pooling, Dense 10."""

    def conv(name, filters, inputs=None, k=3, stride=1):
        entry = {"type": "Conv2D", "name": name, "filters": filters, "kernel_size": k, "strides": stride}
        entry.update(padding=k // 2, use_bias=False)
        return {**entry, "inputs": [inputs]} if inputs else entry

    def bn(name, relu=True):
        entry = {"type": "BatchNorm", "name": name, "momentum": 0.9, "epsilon": 1e-5}
        return {**entry, "activation": "relu"} if relu else entry

    layers, prev = [conv("conv0", 16), bn("bn0")], "bn0"
    for stage, filters in ((1, 16), (2, 32), (3, 64)):
        s, stride = f"s{stage}", 1 if stage == 1 else 2
        layers += [conv(f"{s}_conv1", filters, prev, stride=stride), bn(f"{s}_bn1")]
        layers += [conv(f"{s}_conv2", filters), bn(f"{s}_bn2", relu=False)]
        shortcut = prev
        if stride != 1:
            layers += [conv(f"{s}_proj", filters, prev, k=1, stride=stride), bn(f"{s}_proj_bn", relu=False)]
            shortcut = f"{s}_proj_bn"
        layers.append({"type": "Add", "name": f"{s}_add", "inputs": [f"{s}_bn2", shortcut], "activation": "relu"})
        prev = f"{s}_add"
    layers.append({"type": "GlobalAveragePooling2D", "name": "pool", "inputs": [prev]})
    layers.append({"type": "Dense", "name": "fc", "units": 10, "activation": "softmax"})
    return layers


def _mlp(width):
    return [
        {"type": "Flatten"},
        {"type": "Dense", "units": width, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]


# -- architectures (regnet specs; PyTorch models are translated from the built regnet model) ------
ARCHS = {
    "mlp_1024": _mlp(1024),
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
    "resnet8_cifar": _resnet8(),
}
#: MLPs of other hidden widths, for the width scaling table (mlp_1024 is the middle one)
WIDTHS = (256, 1024, 4096)
SCALING_ARCHS = {f"mlp_{w}": _mlp(w) for w in WIDTHS if f"mlp_{w}" not in ARCHS}
SCALING_BATCHES = (16, 64, 256)
INPUT_SHAPE = (1, 28, 28)  # MNIST
INPUT_SHAPES = {"resnet8_cifar": (3, 32, 32)}  # CIFAR-shaped, random data
BATCH = 64
LR = 1e-3


def spec_of(arch):
    return ARCHS[arch] if arch in ARCHS else SCALING_ARCHS[arch]


def input_shape(arch):
    return INPUT_SHAPES.get(arch, INPUT_SHAPE)


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


def load_data(split, count, synthetic=False, shape=INPUT_SHAPE):
    """``(x, y, source)``: ``count`` MNIST images of ``split`` ('train' or 't10k'), or random ones
    (always for shapes other than MNIST's). MNIST comes from ``$REGNET_DATA`` or
    ``../shared/data/mnist``, else from the sample bundled with regnet (repeated to fill the run)."""
    if synthetic or tuple(shape) != INPUT_SHAPE:
        rng = np.random.default_rng(0)
        return rng.random((count, *shape), dtype=np.float32), rng.integers(0, 10, count), "random"
    root = Path(os.environ.get("REGNET_DATA") or ROOT.parent / "shared" / "data" / "mnist")
    try:
        from regnet.datasets.mnist import mnist  # the library's loader, when present
        from regnet.errors import DataError
    except ImportError:
        x = _read_idx(root / f"{split}-images-idx3-ubyte.gz", count)
        y = _read_idx(root / f"{split}-labels-idx1-ubyte.gz", count)
        return x, y, "mnist"
    try:
        (xtr, ytr), (xte, yte) = mnist(path=root, download=False)
        source = "mnist"
    except DataError:
        (xtr, ytr), (xte, yte) = mnist(sample=True)
        source = "mnist sample (bundled)"
    x, y = (xtr, ytr) if split == "train" else (xte, yte)
    reps = -(-count // len(x))  # repeat a small set to fill the run
    if reps > 1:
        x, y = np.concatenate([x] * reps), np.concatenate([y] * reps)
    return np.ascontiguousarray(x[:count]), y[:count], source


# -- memory and time ------------------------------------------------------------------------------
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


# -- work counted in multiply-adds ----------------------------------------------------------------
def matmul_flops(rmodel):
    """``(forward, training)`` floating-point operations per image of the model's products
    (Dense and Conv2D; 2 per multiply-add). A training step is the forward product, the weight
    gradient and, for layers that are not fed by the model input alone, the input gradient."""
    from regnet import spec

    wanted, fwd, train = {spec.INPUT: False}, 0, 0
    for node in rmodel.nodes:
        layer = node.layer
        kind = type(layer).__name__
        if kind == "Dense":
            ops = 2 * layer.params["kernel"].size
        elif kind == "Conv2D":
            ops = 2 * layer.params["kernel"].size * math.prod(layer.output_shape[1:])
        else:
            ops = 0
        need_input = any(wanted[s] for s in node.inputs)
        wanted[node.name] = bool(layer.params) or need_input
        fwd += ops
        train += ops * (3 if need_input else 2)
    return fwd, train


def matmul_peak(size=2048, repeat=7):
    """Best float32 GFLOP/s of ``np.matmul`` on two ``size x size`` matrices."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


# -- the regnet side ------------------------------------------------------------------------------
def regnet_model(arch, seed=0):
    import regnet

    model = regnet.Model(spec_of(arch), input_shape(arch), seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer={"type": "Adam", "learning_rate": LR}, metrics=())
    return model


def regnet_train(model, x, y, warmup, batch=BATCH):
    model.fit(x[: warmup * batch], y[: warmup * batch], epochs=1, batch_size=batch, verbose=0)
    clock = Clock().start()
    hist = model.fit(x[warmup * batch :], y[warmup * batch :], epochs=1, batch_size=batch, verbose=0)
    return clock.stop(), hist.history["loss"][-1]


def regnet_infer(model, x, batch):
    model.predict(x[:batch], batch_size=batch)
    clock = Clock().start()
    out = model.predict(x[batch:], batch_size=batch)
    return clock.stop(), out


def regnet_latency(model, x, calls):
    for i in range(min(20, calls)):
        model.predict(x[i : i + 1])
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        model.predict(x[i : i + 1])
        times[i] = time.perf_counter() - t0
    return times


# -- the PyTorch side -----------------------------------------------------------------------------
def torch_train(model, x, y, warmup, batch=BATCH):
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)

    def epoch(xs, ys):
        model.train()
        total, n = 0.0, len(xs)
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            xb, yb = xs[idx], ys[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / n

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epoch(xt[: warmup * batch], yt[: warmup * batch])
    clock = Clock().start()
    loss = epoch(xt[warmup * batch :], yt[warmup * batch :])
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


def torch_latency(model, x, calls):
    import torch

    model.eval()
    xt = torch.from_numpy(x)
    times = np.empty(calls)
    with torch.inference_mode():
        for i in range(min(20, calls)):
            model(xt[i : i + 1])
        for i in range(calls):
            t0 = time.perf_counter()
            model(xt[i : i + 1]).numpy()
            times[i] = time.perf_counter() - t0
    return times


# -- the onnxruntime side -------------------------------------------------------------------------
def ort_session(rmodel, arch, threads, folder):
    """An onnxruntime session of the ONNX export of the model's PyTorch twin."""
    import onnxruntime as ort

    path = export_onnx(torch_model(rmodel), input_shape(arch), Path(folder) / f"{arch}.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_infer(sess, x, batch):
    sess.run(None, {"x": x[:batch]})
    clock = Clock().start()
    out = np.empty((len(x) - batch, 10), np.float32)
    for s in range(batch, len(x), batch):
        out[s - batch : s] = sess.run(None, {"x": x[s : s + batch]})[0]
    return clock.stop(), out


def ort_latency(sess, x, calls):
    for i in range(min(20, calls)):
        sess.run(None, {"x": x[i : i + 1]})
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        sess.run(None, {"x": x[i : i + 1]})
        times[i] = time.perf_counter() - t0
    return times


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
    threads, batch, shape = args.threads, args.batch, input_shape(arch)
    if mode == "train":
        n = (args.warmup + args.train_batches) * batch
        x, y, source = load_data("train", n, args.synthetic, shape)
    elif mode == "infer":
        n = (1 + args.infer_batches) * args.infer_batch
        x, y, source = load_data("t10k", n, args.synthetic, shape)
    else:
        x, y, source = load_data("t10k", args.latency_calls, args.synthetic, shape)
    rmodel = model = regnet_model(arch)
    folder = tempfile.TemporaryDirectory(prefix="regnet-bench-")
    if framework in ("torch", "onnxruntime"):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = ort_session(rmodel, arch, threads, folder.name) if framework == "onnxruntime" else torch_model(rmodel)
        del rmodel
    rss0 = reset_peak()
    extra = {}
    if mode == "train":
        run = {"regnet": regnet_train, "torch": torch_train}[framework]
        secs, loss = run(model, x, y, args.warmup, batch)
        images = args.train_batches * batch
        extra = {"loss": float(loss)}
    elif mode == "infer":
        run = {"regnet": regnet_infer, "torch": torch_infer, "onnxruntime": ort_infer}[framework]
        secs, out = run(model, x, args.infer_batch)
        images = args.infer_batches * args.infer_batch
        extra = {"accuracy": float(np.mean(out.argmax(axis=1) == y[args.infer_batch :]))}
    else:
        run = {"regnet": regnet_latency, "torch": torch_latency, "onnxruntime": ort_latency}[framework]
        clock = Clock().start()
        times = run(model, x, args.latency_calls)
        secs = clock.stop()
        images = args.latency_calls
        extra = {"latency_ms": float(np.median(times) * 1e3), "latency_p90_ms": float(np.quantile(times, 0.9) * 1e3)}
    folder.cleanup()
    return {
        "framework": framework,
        "arch": arch,
        "mode": mode,
        "batch": batch if mode == "train" else (args.infer_batch if mode == "infer" else 1),
        "images": images,
        "seconds": secs.wall,
        "images_per_s": images / secs.wall,
        "cpu_s": secs.cpu,
        "peak_mib": peak_since(rss0),
        "base_rss_mib": rss0 / 1024 if rss0 is not None else None,
        "threads": threads,
        "blas": blas_threads(),
        "data": source,
        **extra,
    }


def _thread_env(threads):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def spawn(framework, arch, mode, args, batch=None):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, arch, mode, *args.passthrough]
    if batch is not None:
        cmd += ["--batch", str(batch)]
    res = subprocess.run(cmd, env=_thread_env(args.threads), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{framework}/{arch}/{mode} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_peak(args):
    """The matmul peak (GFLOP/s) with the run's thread count, in a fresh process."""
    if args.in_process:
        return matmul_peak(args.peak_size)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peak", "--peak-size", str(args.peak_size)]
    res = subprocess.run(cmd, env=_thread_env(args.threads), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"matmul peak worker failed:\n{res.stderr[-3000:]}")
    return float(res.stdout.strip().splitlines()[-1])


# -- the driver -----------------------------------------------------------------------------------
def available(module):
    try:
        import importlib.util

        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_available():
    return available("torch")


def usable_frameworks(wanted):
    need = {"torch": ("torch",), "onnxruntime": ("torch", "onnx", "onnxruntime")}
    out = []
    for fw in wanted:
        missing = [m for m in need.get(fw, ()) if not available(m)]
        if missing:
            print(f"{fw}: {', '.join(missing)} not installed, its columns stay empty", file=sys.stderr)
        else:
            out.append(fw)
    return out


def _median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def summarise(runs, archs, frameworks, flops=None, peak=None):
    rows = []
    for arch in archs:
        row = {"arch": arch}
        for mode in MODES:
            for fw in frameworks:
                sel = [r for r in runs if r["arch"] == arch and r["mode"] == mode and r["framework"] == fw]
                row[f"{fw}_{mode}_ips"] = _median(sel, "images_per_s")
                row[f"{fw}_{mode}_ips_best"] = max((r["images_per_s"] for r in sel), default=None)
                row[f"{fw}_{mode}_peak_mib"] = _median(sel, "peak_mib")
                cpu = [r["cpu_s"] / r["images"] * 1e6 for r in sel]
                row[f"{fw}_{mode}_cpu_us_per_img"] = statistics.median(cpu) if cpu else None
                if mode == "latency":
                    row[f"{fw}_latency_ms"] = _median(sel, "latency_ms")
            for other in ("torch", "onnxruntime"):
                suffix = "" if other == "torch" else "_ort"
                row[f"{mode}_ratio{suffix}"] = _ratio(row.get(f"regnet_{mode}_ips"), row.get(f"{other}_{mode}_ips"))
                row[f"{mode}_mem_ratio{suffix}"] = _ratio(
                    row.get(f"regnet_{mode}_peak_mib"), row.get(f"{other}_{mode}_peak_mib")
                )
            if mode == "latency":
                row["latency_ratio"] = _ratio(row.get("regnet_latency_ms"), row.get("torch_latency_ms"))
                row["latency_ratio_ort"] = _ratio(row.get("regnet_latency_ms"), row.get("onnxruntime_latency_ms"))
        if flops and arch in flops:
            row["train_gflop_per_img"] = flops[arch][1] / 1e9
            for fw in TRAINERS:
                ips = row.get(f"{fw}_train_ips")
                row[f"{fw}_train_gflops"] = ips * flops[arch][1] / 1e9 if ips else None
                row[f"{fw}_train_peak_fraction"] = row[f"{fw}_train_gflops"] / peak if ips and peak else None
        rows.append(row)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(head, body):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def table(rows):
    """Training and batch inference: images/s, ratios regnet / other (above 1 favours regnet)."""
    head = ["network", "train img/s regnet", "PyTorch", "ratio", "infer img/s regnet", "PyTorch", "ratio"]
    head += ["onnxruntime", "ratio"]
    body = []
    for r in rows:
        body.append(
            [
                r["arch"],
                _fmt(r.get("regnet_train_ips"), ",.0f"),
                _fmt(r.get("torch_train_ips"), ",.0f"),
                _fmt(r.get("train_ratio"), ".2f"),
                _fmt(r.get("regnet_infer_ips"), ",.0f"),
                _fmt(r.get("torch_infer_ips"), ",.0f"),
                _fmt(r.get("infer_ratio"), ".2f"),
                _fmt(r.get("onnxruntime_infer_ips"), ",.0f"),
                _fmt(r.get("infer_ratio_ort"), ".2f"),
            ]
        )
    return markdown(head, body)


def table_latency_memory(rows):
    """Batch-1 latency (ratios regnet / other: below 1 favours regnet), peak memory, matmul peak."""
    head = ["network", "latency ms regnet", "PyTorch", "onnxruntime", "ratio PyTorch"]
    head += ["train peak MiB regnet", "PyTorch", "ratio", "infer peak MiB regnet", "PyTorch", "ratio"]
    head += ["train GFLOP/s regnet", "PyTorch", "of peak regnet", "PyTorch"]
    body = []
    for r in rows:
        body.append(
            [
                r["arch"],
                _fmt(r.get("regnet_latency_ms"), ".3f"),
                _fmt(r.get("torch_latency_ms"), ".3f"),
                _fmt(r.get("onnxruntime_latency_ms"), ".3f"),
                _fmt(r.get("latency_ratio"), ".2f"),
                _fmt(r.get("regnet_train_peak_mib"), ".1f"),
                _fmt(r.get("torch_train_peak_mib"), ".1f"),
                _fmt(r.get("train_mem_ratio"), ".2f"),
                _fmt(r.get("regnet_infer_peak_mib"), ".1f"),
                _fmt(r.get("torch_infer_peak_mib"), ".1f"),
                _fmt(r.get("infer_mem_ratio"), ".2f"),
                _fmt(r.get("regnet_train_gflops"), ".1f"),
                _fmt(r.get("torch_train_gflops"), ".1f"),
                _fmt(r.get("regnet_train_peak_fraction"), ".0%"),
                _fmt(r.get("torch_train_peak_fraction"), ".0%"),
            ]
        )
    return markdown(head, body)


def scaling_rows(runs):
    """Median training microseconds per image by (arch, batch, framework)."""
    rows = {}
    for r in runs:
        rows.setdefault((r["arch"], r["batch"], r["framework"]), []).append(1e6 / r["images_per_s"])
    return [
        {"arch": a, "batch": b, "framework": fw, "us_per_img": statistics.median(v)}
        for (a, b, fw), v in sorted(rows.items())
    ]


def table_scaling(rows, archs, widths_archs):
    def cell(arch, batch, fw):
        hit = [r["us_per_img"] for r in rows if (r["arch"], r["batch"], r["framework"]) == (arch, batch, fw)]
        return hit[0] if hit else None

    head = ["network", *[f"batch {b} regnet / PyTorch" for b in SCALING_BATCHES]]
    body = []
    for arch in archs:
        cells = [arch]
        for b in SCALING_BATCHES:
            r, t = cell(arch, b, "regnet"), cell(arch, b, "torch")
            cells.append(f"{_fmt(r, ',.0f')} / {_fmt(t, ',.0f')}")
        body.append(cells)
    out = ["Training time per image (µs), by batch size:", "", markdown(head, body), ""]
    head = ["MLP hidden width", "regnet µs/img", "PyTorch µs/img", "ratio (PyTorch / regnet)"]
    body = []
    for w, arch in widths_archs:
        r, t = cell(arch, BATCH, "regnet"), cell(arch, BATCH, "torch")
        body.append([str(w), _fmt(r, ",.1f"), _fmt(t, ",.1f"), _fmt(_ratio(t, r), ".2f")])
    out += [f"Training time per image (µs) at batch {BATCH}, by MLP width (Flatten, Dense W relu, Dense 10):", ""]
    out.append(markdown(head, body))
    return "\n".join(out)


def plot_scaling(rows, archs, widths_archs, path, title):
    """A small PNG: µs per training image against batch size and against MLP width."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, arch in enumerate(archs):
        for fw, style in (("regnet", "-o"), ("torch", "--x")):
            pts = sorted((r["batch"], r["us_per_img"]) for r in rows if r["arch"] == arch and r["framework"] == fw)
            if pts:
                label = f"{arch} ({'PyTorch' if fw == 'torch' else fw})"
                ax1.plot(*zip(*pts), style, color=colours[k % len(colours)], label=label, ms=4)
    ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="µs per training image")
    ax1.set_xticks(SCALING_BATCHES, [str(b) for b in SCALING_BATCHES])
    ax1.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax1.legend(fontsize=6)
    for fw, style in (("regnet", "-o"), ("torch", "--x")):
        pts = []
        for w, arch in widths_archs:
            hit = [r["us_per_img"] for r in rows if (r["arch"], r["batch"], r["framework"]) == (arch, BATCH, fw)]
            if hit:
                pts.append((w, hit[0]))
        if pts:
            ax2.plot(*zip(*pts), style, label="PyTorch" if fw == "torch" else fw, ms=4)
    ax2.set(xscale="log", yscale="log", xlabel="MLP hidden width", ylabel=f"µs per training image (batch {BATCH})")
    ax2.set_xticks(WIDTHS, [str(w) for w in WIDTHS])
    ax2.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few batches, one round (smoke run)")
    ap.add_argument("--archs", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    ap.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--rounds", type=int, help="alternating rounds per measurement (default 5)")
    ap.add_argument("--warmup", type=int, help="untimed training batches first (default 5)")
    ap.add_argument("--train-batches", type=int, help="timed training batches (default 100)")
    ap.add_argument("--infer-batches", type=int, help="timed inference batches (default 5)")
    ap.add_argument("--infer-batch", type=int, default=1000, help="inference batch size (default 1000)")
    ap.add_argument("--latency-calls", type=int, help="single-image predict calls timed (default 1000)")
    ap.add_argument("--batch", type=int, default=BATCH, help=f"training batch size (default {BATCH})")
    ap.add_argument("--peak-size", type=int, default=2048, help="matrix size of the matmul peak (default 2048)")
    ap.add_argument(
        "--scaling-rounds", type=int, help="rounds of the batch-size and width scaling runs (default 3; 0: skip)"
    )
    ap.add_argument("--scaling-images", type=int, help="timed training images per scaling run (default 2048)")
    ap.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="BLAS / PyTorch / onnxruntime threads (default: what NumPy's BLAS uses: "
        "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS if set, else the usable cores)",
    )
    ap.add_argument("--synthetic", action="store_true", help="random images instead of MNIST")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (a quick check: peak memory is then not meaningful)",
    )
    ap.add_argument("--out", help="JSON file (default benchmarks/results/bench-<time>.json; .md and .png beside it)")
    ap.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "ARCH", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = {
        "rounds": 1,
        "warmup": 2,
        "train_batches": 10,
        "infer_batches": 1,
        "latency_calls": 50,
        "scaling_rounds": 1,
        "scaling_images": 256,
    }
    full = {
        "rounds": 5,
        "warmup": 5,
        "train_batches": 100,
        "infer_batches": 5,
        "latency_calls": 1000,
        "scaling_rounds": 3,
        "scaling_images": 2048,
    }
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
        "--latency-calls",
        str(args.latency_calls),
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
        *(["--synthetic"] if args.synthetic else []),
    ]
    return args


def _log(r):
    fig = f"{r['latency_ms']:8.3f} ms" if r["mode"] == "latency" else f"{r['images_per_s']:9,.0f} img/s"
    print(
        f"  {r['arch']:15s} {r['mode']:7s} b{r['batch']:<4d} {r['framework']:11s} round {r['round']}: {fig}, "
        f"peak {_fmt(r['peak_mib'], '.1f')} MiB",
        file=sys.stderr,
        flush=True,
    )


def run_one(fw, arch, mode, args, batch=None):
    if not args.in_process:
        return spawn(fw, arch, mode, args, batch)
    if batch is None:
        return worker(fw, arch, mode, args)
    saved = args.batch
    args.batch = batch
    try:
        return worker(fw, arch, mode, args)
    finally:
        args.batch = saved


def scaling(args, frameworks):
    """Training runs at batch sizes ``SCALING_BATCHES`` and MLP widths ``WIDTHS`` (rotating order)."""
    trainers = [f for f in frameworks if f in TRAINERS]
    plan = [(arch, b) for arch in args.archs for b in SCALING_BATCHES]
    plan += [(f"mlp_{w}", BATCH) for w in WIDTHS if (f"mlp_{w}", BATCH) not in plan]
    saved = (args.warmup, args.train_batches, args.passthrough)
    runs = []
    try:
        for arch, batch in plan:
            args.warmup = 2
            args.train_batches = max(2, args.scaling_images // batch)
            args.passthrough = [*saved[2], "--warmup", "2", "--train-batches", str(args.train_batches)]
            for rnd in range(args.scaling_rounds):
                for fw in trainers if rnd % 2 == 0 else trainers[::-1]:
                    r = run_one(fw, arch, "train", args, batch)
                    r["round"] = rnd
                    runs.append(r)
                    _log(r)
    finally:
        args.warmup, args.train_batches, args.passthrough = saved
    return runs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args)))
        return 0
    if args.peak:
        print(matmul_peak(args.peak_size))
        return 0
    ctx = machine.context(argv, args.threads)
    frameworks = usable_frameworks(args.frameworks)
    peak = measure_peak(args)
    print(f"float32 matmul peak: {peak:,.1f} GFLOP/s with {args.threads} thread(s)", file=sys.stderr)
    runs = []
    for arch in args.archs:
        for mode in args.modes:
            fws = [f for f in frameworks if mode != "train" or f in TRAINERS]
            for rnd in range(args.rounds):
                for fw in fws if rnd % 2 == 0 else fws[::-1]:
                    r = run_one(fw, arch, mode, args)
                    r["round"] = rnd
                    runs.append(r)
                    _log(r)
    scale_runs = scaling(args, frameworks) if args.scaling_rounds > 0 and "train" in args.modes else []
    flops = {arch: matmul_flops(regnet_model(arch)) for arch in [*args.archs, *SCALING_ARCHS]}
    rows = summarise(runs, args.archs, list(FRAMEWORKS), flops, peak)
    scale = scaling_rows(scale_runs)
    widths = [(w, f"mlp_{w}") for w in WIDTHS]
    ctx["load_average_end"] = machine.load_average()
    ctx["matmul_peak_gflops"] = peak
    out = Path(args.out) if args.out else HERE / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        **ctx,
        "batch": args.batch,
        "infer_batch": args.infer_batch,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "train_batches": args.train_batches,
        "infer_batches": args.infer_batches,
        "latency_calls": args.latency_calls,
        "scaling_rounds": args.scaling_rounds,
        "scaling_images": args.scaling_images,
        "synthetic": args.synthetic,
        "in_process": args.in_process,
        "frameworks": frameworks,
        "flops_per_image": {a: {"forward": f, "training": t} for a, (f, t) in flops.items()},
    }
    text = [
        f"# Benchmark {ctx['time']}",
        "",
        machine.describe(ctx),
        f"* float32 matmul peak (np.matmul {args.peak_size}x{args.peak_size}, best of 7): {peak:,.1f} GFLOP/s",
        "",
        f"Training (batch {args.batch}, Adam) and inference (batch {args.infer_batch}), median images/s; "
        "ratios regnet / other:",
        "",
        table(rows),
        "",
        "Batch-1 latency (median ms per single-image call), peak memory (MiB above the loaded model) and "
        "the share of the matmul peak each training run reaches:",
        "",
        table_latency_memory(rows),
    ]
    if scale:
        text += ["", table_scaling(scale, args.archs, widths)]
        png = plot_scaling(scale, args.archs, widths, out.with_suffix(".png"), f"{ctx['cpu']}, {args.threads} threads")
        if png:
            text += ["", f"![time per image]({png.name})"]
    report = "\n".join(text) + "\n"
    print(report)
    result = {"meta": meta, "summary": rows, "scaling": scale, "runs": runs, "scaling_runs": scale_runs}
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(report)
    print(f"results written to {out} and {out.with_suffix('.md').name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

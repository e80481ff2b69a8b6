"""Train and run the same networks with regnet (its NumPy path and its compiled accelerator),
PyTorch (CPU) and onnxruntime; compare.

    python benchmarks/bench.py            # full run, writes benchmarks/results/bench-<time>.{json,md,png}
    python benchmarks/bench.py --quick    # a smoke run (few batches, one round)
    python benchmarks/bench.py --render R.json --readme README.md   # report, plot, README block from R.json

Every measurement runs in a fresh worker process (``--worker``), so that peak memory is the
process's own high-water mark and no framework warms caches for the other. For each
architecture the driver alternates the frameworks' workers for ``--rounds`` rounds and reports
the median. All get the same thread count and the same initial weights (PyTorch copies regnet's,
onnxruntime runs the ONNX export of the PyTorch twin); training uses batch 64, float32,
Adam(lr=1e-3) and softmax cross-entropy on logits.

The two regnet paths are two frameworks here: ``regnet`` runs with ``REGNET_ACCEL=0`` and
``regnet_accel`` with the accelerator (numba), each in its own workers, the variable set before
regnet is imported. Every worker times its first step (a fresh process's cold start) apart from
the steady state; the accelerated path's first step is also measured with an empty kernel cache.

Besides training and batch inference it measures batch-1 latency (median over single-image
calls), this machine's float32 matmul peak (a large ``np.matmul``) and the fraction of it each
training run reaches, and how time per image grows with the batch size and the MLP width (a
table and a PNG plot). numba, PyTorch, onnxruntime, matplotlib and threadpoolctl are optional:
without one, its columns (or the plot) are left out.
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

#: ``regnet`` is the NumPy path (``REGNET_ACCEL=0``), ``regnet_accel`` the compiled accelerator
#: (regnet.accel, the 'fast' extra: numba); both run the same regnet model code
FRAMEWORKS = ("regnet", "regnet_accel", "torch", "onnxruntime")
REGNETS = ("regnet", "regnet_accel")
MODES = ("train", "infer", "latency")
TRAINERS = ("regnet", "regnet_accel", "torch")  # onnxruntime only runs inference
LABELS = {"regnet": "regnet NumPy", "regnet_accel": "regnet accel", "torch": "PyTorch", "onnxruntime": "onnxruntime"}


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


def _vit():
    """The zoo's vit-mnist: 7x7 patches embedded to 64 (16 tokens), learned positions, two pre-norm
    encoder blocks (4 heads of 16, GELU MLP 128), final LayerNorm, mean of the tokens, Dense 10."""
    layers = [
        {"type": "Conv2D", "name": "patches", "filters": 64, "kernel_size": 7, "strides": 7},
        {"type": "Reshape", "name": "flat", "target_shape": [64, 16]},
        {"type": "Permute", "name": "tokens", "dims": [2, 1]},
        {"type": "PositionEmbedding", "name": "position", "sequence_length": 16},
    ]
    prev = "position"
    for b in (1, 2):
        layers += [
            {"type": "LayerNormalization", "name": f"b{b}_norm1", "inputs": [prev]},
            {
                "type": "MultiHeadAttention",
                "name": f"b{b}_mha",
                "num_heads": 4,
                "key_dim": 16,
                "inputs": [f"b{b}_norm1", f"b{b}_norm1"],
            },
            {"type": "Add", "name": f"b{b}_res1", "inputs": [prev, f"b{b}_mha"]},
            {"type": "LayerNormalization", "name": f"b{b}_norm2"},
            {"type": "Dense", "name": f"b{b}_ffn1", "units": 128, "activation": "gelu"},
            {"type": "Dense", "name": f"b{b}_ffn2", "units": 64},
            {"type": "Add", "name": f"b{b}_res2", "inputs": [f"b{b}_res1", f"b{b}_ffn2"]},
        ]
        prev = f"b{b}_res2"
    layers += [
        {"type": "LayerNormalization", "name": "final_norm", "inputs": [prev]},
        {"type": "Permute", "name": "channels_first", "dims": [2, 1]},
        {"type": "GlobalAveragePooling1D", "name": "pool"},
        {"type": "Dense", "name": "fc", "units": 10, "activation": "softmax"},
    ]
    return layers


def _dwsep():
    """A MobileNet-style net: a 3x3 stride-2 stem, then two depthwise-separable blocks (3x3
    DepthwiseConv2D, BatchNorm, ReLU, 1x1 Conv2D, BatchNorm, ReLU; the second block's depthwise
    stride 2), global average pooling, Dense 10 (convolutions without bias)."""

    def bn():
        return {"type": "BatchNorm", "momentum": 0.9, "epsilon": 1e-5, "activation": "relu"}

    layers = [{"type": "Conv2D", "filters": 16, "kernel_size": 3, "strides": 2, "padding": 1, "use_bias": False}, bn()]
    for filters, stride in ((32, 1), (64, 2)):
        layers += [
            {"type": "DepthwiseConv2D", "kernel_size": 3, "strides": stride, "padding": 1, "use_bias": False},
            bn(),
            {"type": "Conv2D", "filters": filters, "kernel_size": 1, "use_bias": False},
            bn(),
        ]
    layers += [{"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 10, "activation": "softmax"}]
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
    # the zoo's lstm-mnist: each image read row by row, 28 steps of 28 pixels
    "lstm_128": [
        {"type": "Reshape", "target_shape": [28, 28]},
        {"type": "LSTM", "units": 128},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "vit_2x64": _vit(),
    "dwsep_16_32_64": _dwsep(),
}
#: MLPs of other hidden widths, for the width scaling table (mlp_1024 is the middle one)
WIDTHS = (256, 1024, 4096)
SCALING_ARCHS = {f"mlp_{w}": _mlp(w) for w in WIDTHS if f"mlp_{w}" not in ARCHS}
SCALING_BATCHES = (16, 64, 256)
#: the networks of the batch-size scaling runs by default (one of each kind, to keep a run short)
SCALING_DEFAULT = ("mlp_1024", "lenet5", "resnet8_cifar", "lstm_128", "vit_2x64", "dwsep_16_32_64")
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
def _products(layer):
    """``(ops, inner_ops)``: floating-point operations per image (2 per multiply-add) of one
    layer's products with its input, and of products whose operand gradients a training step
    always takes (an LSTM's recurrent product, attention's scores and weighted values)."""
    kind, p = type(layer).__name__, layer.params
    if kind == "Dense":
        return 2 * p["kernel"].size * math.prod(layer.output_shape[:-1]), 0
    if kind in ("Conv2D", "DepthwiseConv2D"):
        return 2 * p["kernel"].size * math.prod(layer.output_shape[1:]), 0
    if kind == "LSTM":
        return 2 * layer.input_shape[0] * p["kernel"].size, 2 * layer.input_shape[0] * p["recurrent_kernel"].size
    if kind == "MultiHeadAttention":
        lq, lk = layer.input_shape[0][0], layer.input_shape[1][0]
        heads, key_dim = p["key_kernel"].shape[1:]
        value_dim = p["value_kernel"].shape[2]
        proj = lq * p["query_kernel"].size + lk * (p["key_kernel"].size + p["value_kernel"].size)
        inner = lq * lk * heads * (key_dim + value_dim) + lq * p["output_kernel"].size
        return 2 * proj, 2 * inner
    return 0, 0


def matmul_flops(rmodel):
    """``(forward, training)`` floating-point operations per image of the model's products
    (Dense, Conv2D, DepthwiseConv2D, LSTM and attention; 2 per multiply-add). A training step is
    the forward product, the weight gradient and, for layers that are not fed by the model input
    alone, the input gradient (which recurrent and attention products always take)."""
    from regnet import spec

    wanted, fwd, train = {spec.INPUT: False}, 0, 0
    for node in rmodel.nodes:
        layer = node.layer
        ops, inner = _products(layer)
        need_input = any(wanted[s] for s in node.inputs)
        wanted[node.name] = bool(layer.params) or need_input
        fwd += ops + inner
        train += ops * (3 if need_input else 2) + 3 * inner
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
    """``(clock, loss, first)``: the timed batches after ``warmup`` untimed ones, the first of
    which (``first``: seconds, the process's first ``fit`` step) is timed on its own."""
    first = Clock().start()
    model.fit(x[:batch], y[:batch], epochs=1, batch_size=batch, verbose=0)
    first.stop()
    if warmup > 1:
        model.fit(x[batch : warmup * batch], y[batch : warmup * batch], epochs=1, batch_size=batch, verbose=0)
    clock = Clock().start()
    hist = model.fit(x[warmup * batch :], y[warmup * batch :], epochs=1, batch_size=batch, verbose=0)
    return clock.stop(), hist.history["loss"][-1], first.wall


def regnet_infer(model, x, batch):
    first = Clock().start()
    model.predict(x[:batch], batch_size=batch)
    first.stop()
    clock = Clock().start()
    out = model.predict(x[batch:], batch_size=batch)
    return clock.stop(), out, first.wall


def regnet_latency(model, x, calls):
    first = Clock().start()
    model.predict(x[:1])
    first.stop()
    for i in range(1, min(20, calls)):
        model.predict(x[i : i + 1])
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        model.predict(x[i : i + 1])
        times[i] = time.perf_counter() - t0
    return times, first.wall


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
    first = Clock().start()
    epoch(xt[:batch], yt[:batch])
    first.stop()
    if warmup > 1:
        epoch(xt[batch : warmup * batch], yt[batch : warmup * batch])
    clock = Clock().start()
    loss = epoch(xt[warmup * batch :], yt[warmup * batch :])
    return clock.stop(), loss, first.wall


def torch_infer(model, x, batch):
    import torch

    model.eval()
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        first = Clock().start()
        model(xt[:batch]).numpy()
        first.stop()
        clock = Clock().start()
        out = np.empty((len(x) - batch, 10), np.float32)
        for s in range(batch, len(x), batch):
            out[s - batch : s] = model(xt[s : s + batch]).numpy()
    return clock.stop(), out, first.wall


def torch_latency(model, x, calls):
    import torch

    model.eval()
    xt = torch.from_numpy(x)
    times = np.empty(calls)
    with torch.inference_mode():
        first = Clock().start()
        model(xt[:1]).numpy()
        first.stop()
        for i in range(1, min(20, calls)):
            model(xt[i : i + 1])
        for i in range(calls):
            t0 = time.perf_counter()
            model(xt[i : i + 1]).numpy()
            times[i] = time.perf_counter() - t0
    return times, first.wall


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
    first = Clock().start()
    sess.run(None, {"x": x[:batch]})
    first.stop()
    clock = Clock().start()
    out = np.empty((len(x) - batch, 10), np.float32)
    for s in range(batch, len(x), batch):
        out[s - batch : s] = sess.run(None, {"x": x[s : s + batch]})[0]
    return clock.stop(), out, first.wall


def ort_latency(sess, x, calls):
    first = Clock().start()
    sess.run(None, {"x": x[:1]})
    first.stop()
    for i in range(1, min(20, calls)):
        sess.run(None, {"x": x[i : i + 1]})
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        sess.run(None, {"x": x[i : i + 1]})
        times[i] = time.perf_counter() - t0
    return times, first.wall


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
    """Measure one (framework, arch, mode) and return a dict (run in a fresh process).

    ``regnet`` runs with the accelerator switched off, ``regnet_accel`` with it on: in a worker
    process ``REGNET_ACCEL`` is already set by the driver before regnet is imported (the NumPy
    path never imports numba); ``accel.enabled`` makes the same choice for ``--in-process``."""
    from regnet import accel

    with accel.enabled(framework == "regnet_accel"):
        result = _measure(framework, arch, mode, args)
        result["accel"] = accel.describe() if framework in REGNETS else None
    return result


def _measure(framework, arch, mode, args):
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
        run = {"regnet": regnet_train, "regnet_accel": regnet_train, "torch": torch_train}[framework]
        secs, loss, first = run(model, x, y, max(1, args.warmup), batch)
        images = args.train_batches * batch
        extra = {"loss": float(loss), "steady_ms": secs.wall / args.train_batches * 1e3}
    elif mode == "infer":
        run = {"regnet": regnet_infer, "regnet_accel": regnet_infer, "torch": torch_infer, "onnxruntime": ort_infer}
        secs, out, first = run[framework](model, x, args.infer_batch)
        images = args.infer_batches * args.infer_batch
        extra = {
            "accuracy": float(np.mean(out.argmax(axis=1) == y[args.infer_batch :])),
            "steady_ms": secs.wall / args.infer_batches * 1e3,
        }
    else:
        run = {
            "regnet": regnet_latency,
            "regnet_accel": regnet_latency,
            "torch": torch_latency,
            "onnxruntime": ort_latency,
        }
        clock = Clock().start()
        times, first = run[framework](model, x, args.latency_calls)
        secs = clock.stop()
        images = args.latency_calls
        median = float(np.median(times) * 1e3)
        extra = {"latency_ms": median, "latency_p90_ms": float(np.quantile(times, 0.9) * 1e3), "steady_ms": median}
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
        "first_ms": first * 1e3,
        "peak_mib": peak_since(rss0),
        "base_rss_mib": rss0 / 1024 if rss0 is not None else None,
        "threads": threads,
        "blas": blas_threads(),
        "data": source,
        **extra,
    }


def _thread_env(threads, framework=None, cache=None):
    """The worker's environment: the thread count for every pool (BLAS, OpenMP, numba), the
    accelerator on for ``regnet_accel`` only (set before regnet is imported), and numba's kernel
    cache directory (``cache``) where given."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["REGNET_ACCEL"] = "1" if framework == "regnet_accel" else "0"
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    return env


def spawn(framework, arch, mode, args, batch=None, passthrough=None):
    passthrough = args.passthrough if passthrough is None else passthrough
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, arch, mode, *passthrough]
    if batch is not None:
        cmd += ["--batch", str(batch)]
    cache = args.kernel_caches.get((arch, mode), args.kernel_caches.get(None)) if framework == "regnet_accel" else None
    res = subprocess.run(cmd, env=_thread_env(args.threads, framework, cache), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{framework}/{arch}/{mode} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def cold_start(arch, mode, args, folder):
    """The accelerated path's first step with an empty kernel cache (numba compiles every kernel
    it meets): one short worker in a fresh cache directory, which the measured workers of this
    (arch, mode) then share, so that their first step loads the kernels from it."""
    cache = Path(folder) / f"{arch}-{mode}"
    cache.mkdir()
    args.kernel_caches[(arch, mode)] = cache
    short = [*args.passthrough, "--warmup", "1", "--train-batches", "1", "--infer-batches", "1", "--latency-calls", "1"]
    r = spawn("regnet_accel", arch, mode, args, passthrough=short)
    r["cache"] = "empty"
    return r


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
    need = {"regnet_accel": ("numba",), "torch": ("torch",), "onnxruntime": ("torch", "onnx", "onnxruntime")}
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


def summarise(runs, archs, frameworks, flops=None, peak=None, cold_runs=()):
    """One row per network: medians over rounds per framework and mode, and the ratios. Ratios
    against another framework are regnet / other (``train_ratio``: the NumPy path over PyTorch;
    ``accel_train_ratio``: the accelerated path over PyTorch; ``accel_train_speedup``: accelerated
    over NumPy). ``*_first_ms`` is the first step or prediction of a fresh process (for the
    accelerated path with its kernels in the on-disk cache), ``regnet_accel_*_compile_ms`` the same
    with an empty cache (``cold_runs``)."""
    rows = []
    for arch in archs:
        row = {"arch": arch}
        for mode in MODES:
            for fw in frameworks:
                sel = [r for r in runs if r["arch"] == arch and r["mode"] == mode and r["framework"] == fw]
                row[f"{fw}_{mode}_ips"] = _median(sel, "images_per_s")
                row[f"{fw}_{mode}_ips_best"] = max((r["images_per_s"] for r in sel), default=None)
                row[f"{fw}_{mode}_peak_mib"] = _median(sel, "peak_mib")
                row[f"{fw}_{mode}_first_ms"] = _median(sel, "first_ms")
                row[f"{fw}_{mode}_steady_ms"] = _median(sel, "steady_ms")
                cpu = [r["cpu_s"] / r["images"] * 1e6 for r in sel]
                row[f"{fw}_{mode}_cpu_us_per_img"] = statistics.median(cpu) if cpu else None
                if mode == "latency":
                    row[f"{fw}_latency_ms"] = _median(sel, "latency_ms")
            cold = [r for r in cold_runs if r["arch"] == arch and r["mode"] == mode]
            row[f"regnet_accel_{mode}_compile_ms"] = _median(cold, "first_ms")
            for prefix, ours in (("", "regnet"), ("accel_", "regnet_accel")):
                for other in ("torch", "onnxruntime"):
                    suffix = "" if other == "torch" else "_ort"
                    row[f"{prefix}{mode}_ratio{suffix}"] = _ratio(
                        row.get(f"{ours}_{mode}_ips"), row.get(f"{other}_{mode}_ips")
                    )
                    row[f"{prefix}{mode}_mem_ratio{suffix}"] = _ratio(
                        row.get(f"{ours}_{mode}_peak_mib"), row.get(f"{other}_{mode}_peak_mib")
                    )
                if mode == "latency":
                    row[f"{prefix}latency_ratio"] = _ratio(row.get(f"{ours}_latency_ms"), row.get("torch_latency_ms"))
                    row[f"{prefix}latency_ratio_ort"] = _ratio(
                        row.get(f"{ours}_latency_ms"), row.get("onnxruntime_latency_ms")
                    )
            row[f"accel_{mode}_speedup"] = _ratio(row.get(f"regnet_accel_{mode}_ips"), row.get(f"regnet_{mode}_ips"))
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


def _cells(row, keys, spec):
    """Several figures of a row in one cell, ``a / b / c``."""
    return " / ".join(_fmt(row.get(k), spec) for k in keys)


def markdown(head, body):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def table(rows):
    """Training and batch inference: images/s, ratios regnet / other (above 1 favours regnet)."""
    head = ["network", "train img/s regnet NumPy", "regnet accel", "PyTorch", "NumPy / PyTorch", "accel / PyTorch"]
    head += ["accel / NumPy"]
    body = []
    for r in rows:
        cells = [r["arch"]] + [_fmt(r.get(f"{fw}_train_ips"), ",.0f") for fw in TRAINERS]
        cells += [_fmt(r.get(k), ".2f") for k in ("train_ratio", "accel_train_ratio", "accel_train_speedup")]
        body.append(cells)
    out = [markdown(head, body), ""]
    head = ["network", "infer img/s regnet NumPy", "regnet accel", "PyTorch", "onnxruntime", "NumPy / PyTorch"]
    head += ["accel / PyTorch", "NumPy / onnxruntime", "accel / onnxruntime", "accel / NumPy"]
    body = []
    for r in rows:
        cells = [r["arch"]] + [_fmt(r.get(f"{fw}_infer_ips"), ",.0f") for fw in FRAMEWORKS]
        keys = ("infer_ratio", "accel_infer_ratio", "infer_ratio_ort", "accel_infer_ratio_ort", "accel_infer_speedup")
        body.append(cells + [_fmt(r.get(k), ".2f") for k in keys])
    out.append(markdown(head, body))
    return "\n".join(out)


def table_latency_memory(rows):
    """Batch-1 latency (ratios regnet / other: below 1 favours regnet), peak memory, matmul peak."""
    head = ["network", "latency ms regnet NumPy", "regnet accel", "PyTorch", "onnxruntime"]
    head += ["NumPy / PyTorch", "accel / PyTorch", "accel / onnxruntime"]
    body = []
    for r in rows:
        cells = [r["arch"]] + [_fmt(r.get(f"{fw}_latency_ms"), ".3f") for fw in FRAMEWORKS]
        keys = ("latency_ratio", "accel_latency_ratio", "accel_latency_ratio_ort")
        body.append(cells + [_fmt(r.get(k), ".2f") for k in keys])
    out = [markdown(head, body), "", "Peak memory (MiB above the loaded model and data, warm-up included):", ""]
    head = ["network", "train regnet NumPy / accel / PyTorch", "NumPy / PyTorch", "accel / PyTorch"]
    head += ["infer regnet NumPy / accel / PyTorch / onnxruntime", "NumPy / PyTorch", "accel / PyTorch"]
    body = []
    for r in rows:
        body.append(
            [
                r["arch"],
                _cells(r, [f"{fw}_train_peak_mib" for fw in TRAINERS], ".1f"),
                _fmt(r.get("train_mem_ratio"), ".2f"),
                _fmt(r.get("accel_train_mem_ratio"), ".2f"),
                _cells(r, [f"{fw}_infer_peak_mib" for fw in FRAMEWORKS], ".1f"),
                _fmt(r.get("infer_mem_ratio"), ".2f"),
                _fmt(r.get("accel_infer_mem_ratio"), ".2f"),
            ]
        )
    out += [markdown(head, body), "", "Training GFLOP/s of the products and their share of the matmul peak:", ""]
    head = ["network", "GFLOP per training image", "GFLOP/s regnet NumPy / accel / PyTorch", "of peak"]
    body = []
    for r in rows:
        body.append(
            [
                r["arch"],
                _fmt(r.get("train_gflop_per_img"), ".4f"),
                _cells(r, [f"{fw}_train_gflops" for fw in TRAINERS], ".1f"),
                _cells(r, [f"{fw}_train_peak_fraction" for fw in TRAINERS], ".0%"),
            ]
        )
    out.append(markdown(head, body))
    return "\n".join(out)


def table_cold(rows, infer_batch):
    """The first step of a fresh process against the steady state, in ms."""
    head = ["network", "first training step: NumPy / accel compiling / accel cached / PyTorch", "steady step"]
    head += [f"first predict (batch {infer_batch})", "steady predict", "first batch-1 call", "steady"]
    body = []
    for r in rows:
        cells = [r["arch"]]
        for mode, fws in (("train", TRAINERS), ("infer", FRAMEWORKS), ("latency", FRAMEWORKS)):
            first = [f"regnet_{mode}_first_ms", f"regnet_accel_{mode}_compile_ms", f"regnet_accel_{mode}_first_ms"]
            first += [f"{fw}_{mode}_first_ms" for fw in fws[2:]]
            cells += [_cells(r, first, ",.1f"), _cells(r, [f"{fw}_{mode}_steady_ms" for fw in fws], ",.2f")]
        body.append(cells)
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

    head = ["network", *[f"batch {b} regnet NumPy / accel / PyTorch" for b in SCALING_BATCHES]]
    body = []
    for arch in archs:
        cells = [arch]
        for b in SCALING_BATCHES:
            cells.append(" / ".join(_fmt(cell(arch, b, fw), ",.0f") for fw in TRAINERS))
        body.append(cells)
    out = ["Training time per image (µs), by batch size:", "", markdown(head, body), ""]
    head = ["MLP hidden width", "regnet NumPy µs/img", "regnet accel", "PyTorch", "PyTorch / NumPy", "PyTorch / accel"]
    body = []
    for w, arch in widths_archs:
        r, a, t = (cell(arch, BATCH, fw) for fw in TRAINERS)
        cells = [str(w), _fmt(r, ",.1f"), _fmt(a, ",.1f"), _fmt(t, ",.1f")]
        body.append(cells + [_fmt(_ratio(t, r), ".2f"), _fmt(_ratio(t, a), ".2f")])
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
    from matplotlib.lines import Line2D

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100, width_ratios=(1.25, 1))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"regnet": "-o", "regnet_accel": "-.s", "torch": "--x"}
    shown_archs, shown_fws = [], []
    for k, arch in enumerate(archs):
        for fw, style in styles.items():
            pts = sorted((r["batch"], r["us_per_img"]) for r in rows if r["arch"] == arch and r["framework"] == fw)
            if pts:
                ax1.plot(*zip(*pts), style, color=colours[k % len(colours)], ms=4)
                shown_archs += [] if arch in shown_archs else [arch]
                shown_fws += [] if fw in shown_fws else [fw]
    ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="µs per training image")
    ax1.set_xticks(SCALING_BATCHES, [str(b) for b in SCALING_BATCHES])
    ax1.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    # colour: the network; line and marker: the framework (two small legends beside the axes)
    nets = [Line2D([], [], color=colours[archs.index(a) % len(colours)], lw=2) for a in shown_archs]
    first = ax1.legend(nets, shown_archs, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1), title="network")
    first.get_title().set_fontsize(6)
    ax1.add_artist(first)
    kinds = [Line2D([], [], color="grey", linestyle=styles[f][:-1], marker=styles[f][-1], ms=4) for f in shown_fws]
    ax1.legend(kinds, [LABELS[f] for f in shown_fws], fontsize=6, loc="lower left", bbox_to_anchor=(1.01, 0))
    for fw, style in styles.items():
        pts = []
        for w, arch in widths_archs:
            hit = [r["us_per_img"] for r in rows if (r["arch"], r["batch"], r["framework"]) == (arch, BATCH, fw)]
            if hit:
                pts.append((w, hit[0]))
        if pts:
            ax2.plot(*zip(*pts), style, label=LABELS[fw], ms=4)
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
        "--scaling-archs",
        nargs="+",
        choices=list(ARCHS),
        help=f"networks of the batch-size scaling runs (default: those of --archs among {', '.join(SCALING_DEFAULT)})",
    )
    ap.add_argument(
        "--no-cold",
        dest="cold",
        action="store_false",
        help="skip the accelerated path's first step with an empty kernel cache (a short worker per network and mode)",
    )
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
    ap.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: write the report (.md) and the plot (.png) beside this result file again from it",
    )
    ap.add_argument(
        "--readme",
        metavar="MD",
        help="with --render: also replace the generated block of this Markdown file (README.md) by the "
        "result's context, summary table and plot",
    )
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
    if args.scaling_archs is None:
        args.scaling_archs = [a for a in args.archs if a in SCALING_DEFAULT]
    args.kernel_caches = {}  # (arch, mode) -> numba's cache directory for the accelerated workers
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
    when = f"round {r['round']}" if "round" in r else f"cache {r.get('cache')}"
    print(
        f"  {r['arch']:15s} {r['mode']:7s} b{r['batch']:<4d} {r['framework']:12s} {when}: {fig}, "
        f"first {r['first_ms']:,.1f} ms, "
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
    plan = [(arch, b) for arch in args.scaling_archs for b in SCALING_BATCHES]
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
    if args.render:
        return render(Path(args.render), args.readme)
    ctx = machine.context(argv, args.threads)
    frameworks = usable_frameworks(args.frameworks)
    peak = measure_peak(args)
    print(f"float32 matmul peak: {peak:,.1f} GFLOP/s with {args.threads} thread(s)", file=sys.stderr)
    runs, cold_runs = [], []
    with tempfile.TemporaryDirectory(prefix="regnet-bench-kernels-") as caches:
        args.kernel_caches[None] = Path(caches)  # the accelerated workers' cache where no cold run made one
        for arch in args.archs:
            for mode in args.modes:
                fws = [f for f in frameworks if mode != "train" or f in TRAINERS]
                if "regnet_accel" in fws and args.cold and not args.in_process:
                    r = cold_start(arch, mode, args, caches)
                    cold_runs.append(r)
                    _log(r)
                for rnd in range(args.rounds):
                    for fw in fws if rnd % 2 == 0 else fws[::-1]:
                        r = run_one(fw, arch, mode, args)
                        r["round"] = rnd
                        runs.append(r)
                        _log(r)
        scale_runs = scaling(args, frameworks) if args.scaling_rounds > 0 and "train" in args.modes else []
    flops = {arch: matmul_flops(regnet_model(arch)) for arch in [*args.archs, *SCALING_ARCHS]}
    rows = summarise(runs, args.archs, list(FRAMEWORKS), flops, peak, cold_runs)
    scale = scaling_rows(scale_runs)
    ctx["load_average_end"] = machine.load_average()
    ctx["matmul_peak_gflops"] = peak
    out = Path(args.out) if args.out else HERE / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        **ctx,
        "archs": args.archs,
        "scaling_archs": args.scaling_archs,
        "batch": args.batch,
        "infer_batch": args.infer_batch,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "train_batches": args.train_batches,
        "infer_batches": args.infer_batches,
        "latency_calls": args.latency_calls,
        "scaling_rounds": args.scaling_rounds,
        "scaling_images": args.scaling_images,
        "peak_size": args.peak_size,
        "synthetic": args.synthetic,
        "in_process": args.in_process,
        "cold": bool(cold_runs),
        "frameworks": frameworks,
        "accel_paths": {r["framework"]: r["accel"] for r in runs if r.get("accel")},
        "flops_per_image": {a: {"forward": f, "training": t} for a, (f, t) in flops.items()},
    }
    result = {
        "meta": meta,
        "summary": rows,
        "scaling": scale,
        "runs": runs,
        "cold_runs": cold_runs,
        "scaling_runs": scale_runs,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(write_report(result, out))
    print(f"results written to {out} and {out.with_suffix('.md').name}", file=sys.stderr)
    return 0


def write_report(result, out):
    """Write the Markdown report (and the plot, when the result has scaling runs) beside the
    result file ``out`` from the result alone; return the report's text."""
    meta, rows, scale = result["meta"], result["summary"], result.get("scaling") or []
    infer_batch = meta.get("infer_batch", 1000)
    size = meta.get("peak_size", 2048)
    text = [
        f"# Benchmark {meta['time']}",
        "",
        machine.describe(meta),
        f"* float32 matmul peak (np.matmul {size}x{size}, best of 7): {meta['matmul_peak_gflops']:,.1f} GFLOP/s",
        "",
        f"Training (batch {meta['batch']}, Adam) and inference (batch {infer_batch}), median images/s; "
        "ratios regnet / other (above 1 favours regnet); regnet NumPy is `REGNET_ACCEL=0`, regnet accel the "
        "compiled accelerator:",
        "",
        table(rows),
        "",
        "Batch-1 latency (median ms per single-image call; ratios below 1 favour regnet):",
        "",
        table_latency_memory(rows),
        "",
        "Cold start: the first step of a fresh process (ms; the first training step includes `fit`'s "
        "one-time set-up), with the accelerated path's kernels compiled from an empty cache and loaded "
        "from the on-disk cache, against the median of the steady state (a training step, a predict "
        f"of {infer_batch}, a single-image call); the first-predict and first-call cells add "
        "onnxruntime last:",
        "",
        table_cold(rows, infer_batch),
    ]
    if scale:
        names = {r["arch"] for r in scale}
        archs = [a for a in meta.get("scaling_archs") or meta.get("archs") or [r["arch"] for r in rows] if a in names]
        widths = [(w, f"mlp_{w}") for w in WIDTHS]
        text += ["", table_scaling(scale, archs, widths)]
        title = f"{meta['cpu']}, {meta['threads']} threads"
        png = plot_scaling(scale, archs, widths, out.with_suffix(".png"), title)
        if png:
            text += ["", f"![time per image]({png.name})"]
    report = "\n".join(text) + "\n"
    out.with_suffix(".md").write_text(report)
    return report


BEGIN, END = "<!-- bench:begin", "<!-- bench:end -->"


def readme_block(result, png=None):
    """The README's part of a result: one sentence of context, one table, the plot."""
    meta = result["meta"]
    blas = ", ".join(
        f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture', '?')} kernel)"
        for b in meta.get("blas") or []
    )
    lines = [
        f"One run of `{meta['command']}` ({meta['time']}, revision {meta.get('revision')}): {meta['cpu']}, "
        f"{meta['usable_cores']} usable cores, {meta['threads']} threads for every framework, "
        f"{blas or 'BLAS unknown'}, "
        f"Python {meta['python']}, NumPy {meta['numpy']}, numba {meta.get('numba')}, PyTorch {meta.get('torch')}, "
        f"onnxruntime {meta.get('onnxruntime')}, load average {meta.get('load_average_start')} at the start and "
        f"{meta.get('load_average_end')} at the end. regnet NumPy is `REGNET_ACCEL=0`, regnet accel the compiled "
        "accelerator; ratios are regnet / PyTorch (onnxruntime where named), above 1 favouring regnet for "
        "images/s; the first training step is a fresh process's, accel compiling its kernels from an empty "
        "cache and loading them from the cache.",
        "",
    ]
    head = ["network", "train img/s NumPy / accel / PyTorch", "ratio NumPy / accel"]
    head += ["inference img/s NumPy / accel / PyTorch / onnxruntime", "ratio NumPy / accel", "accel / onnxruntime"]
    head += ["batch-1 ms NumPy / accel / PyTorch", "first step ms NumPy / accel compiling / cached / PyTorch"]
    head += ["train peak MiB NumPy / accel / PyTorch"]
    body = []
    for r in result["summary"]:
        first = ["regnet_train_first_ms", "regnet_accel_train_compile_ms", "regnet_accel_train_first_ms"]
        body.append(
            [
                r["arch"],
                _cells(r, [f"{fw}_train_ips" for fw in TRAINERS], ",.0f"),
                _cells(r, ["train_ratio", "accel_train_ratio"], ".2f"),
                _cells(r, [f"{fw}_infer_ips" for fw in FRAMEWORKS], ",.0f"),
                _cells(r, ["infer_ratio", "accel_infer_ratio"], ".2f"),
                _fmt(r.get("accel_infer_ratio_ort"), ".2f"),
                _cells(r, [f"{fw}_latency_ms" for fw in TRAINERS], ".3f"),
                _cells(r, [*first, "torch_train_first_ms"], ",.0f"),
                _cells(r, [f"{fw}_train_peak_mib" for fw in TRAINERS], ".0f"),
            ]
        )
    lines.append(markdown(head, body))
    if png is not None:
        lines += ["", f"![training time per image]({png})"]
    return "\n".join(lines)


def render(path, readme=None):
    """``--render``: the report and plot of a result file, and optionally its README block."""
    result = json.loads(path.read_text())
    print(write_report(result, path))
    print(f"report written to {path.with_suffix('.md')}", file=sys.stderr)
    if readme:
        readme = Path(readme)
        text = readme.read_text()
        start, end = text.find(BEGIN), text.find(END)
        if start < 0 or end < start:
            raise SystemExit(f"{readme}: no block between {BEGIN} ... --> and {END} to replace")
        png = path.with_suffix(".png")
        rel = Path(os.path.relpath(png, readme.resolve().parent)).as_posix() if png.exists() else None
        head = text[: text.index("\n", start) + 1]  # the begin marker's line stays as it is
        readme.write_text(head + readme_block(result, rel) + "\n" + text[end:])
        print(f"{readme}: the block between the bench markers now shows {path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The compiled accelerator (regnet.accel) against the NumPy path, kernel by kernel, and its cold
start: how long the first ``fit`` of a small model takes with an empty kernel cache, a filled one,
and without the accelerator.

    python benchmarks/accel_kernels.py [--repeats 50] [--no-cold-start] [--json OUT]

Kernel rows: one optimizer step over MLP-1024's parameters (784-1024-10: 814 090 float32 values
in four arrays) for each fused rule, and MaxPool2D and AvgPool2D 2x2 forward (training: with the
argmax) and backward on a (64, 32, 26, 26) batch stored batch-innermost (the layout the
convolutions hand on, which the pooling kernels take): median wall and CPU milliseconds per call.
The cold-start rows run ``fit`` for one batch of a LeNet-style model (Conv2D, MaxPool2D, Dense;
Adam) in fresh processes: with NUMBA_CACHE_DIR pointing at an empty folder (every kernel it uses
is compiled), again with that folder (loaded from the cache), and with REGNET_ACCEL=0; each row is
the wall and CPU time of the first ``fit`` call and of the whole process (its CPU time from
start-up to the end of ``fit``).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _cpu():
    """The CPU model (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _median_ms(fn, repeats):
    """``(wall, cpu)``: the median wall time of a call and the median CPU time of the process
    (every thread) during a call, in milliseconds. On a busy machine the wall time includes the
    waits for a core; the CPU time does not."""
    fn()  # the first call compiles (or loads) the kernel
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def optimizer_rows(repeats):
    from regnet import accel, optimizers

    rng = np.random.default_rng(0)
    shapes = {"h/kernel": (784, 1024), "h/bias": (1024,), "out/kernel": (1024, 10), "out/bias": (10,)}
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = {k: rng.standard_normal(s).astype(np.float32) * 1e-3 for k, s in shapes.items()}
    configs = [
        {"type": "Adam"},
        {"type": "AdamW"},
        {"type": "SGD", "momentum": 0.9, "nesterov": True},
        {"type": "RMSprop"},
        {"type": "AdaGrad"},
        {"type": "Adamax"},
        {"type": "Nadam"},
        {"type": "Adadelta"},
        {"type": "Lion"},
    ]
    rows = []
    for config in configs:
        times = {}
        for path in ("numpy", "fast"):
            opt = optimizers.get(config)
            with accel.enabled(path == "fast"):
                times[path] = _median_ms(lambda opt=opt: opt.step(params, grads), repeats)
        rows.append((f"{config['type']}{' nesterov' if config.get('nesterov') else ''} step, 814k params", times))
    return rows


def pool_rows(repeats):
    from regnet import accel
    from regnet.layers import AvgPool2D, MaxPool2D
    from regnet.ops import layout

    rng = np.random.default_rng(0)

    def chwn(a):  # stored batch-innermost, as a convolution hands it on (the kernels' layout)
        return layout.from_chwn(np.ascontiguousarray(layout.chwn(a)))

    x = chwn(rng.standard_normal((64, 32, 26, 26)).astype(np.float32))
    grad = chwn(rng.standard_normal((64, 32, 13, 13)).astype(np.float32))
    rows = []
    for kind in (MaxPool2D, AvgPool2D):
        layer = kind(2)
        layer.setup(x.shape[1:], rng)
        forward, backward = {}, {}
        for path in ("numpy", "fast"):
            with accel.enabled(path == "fast"):
                forward[path] = _median_ms(lambda layer=layer: layer.forward(x, training=True), repeats)
                layer.forward(x, training=True)
                backward[path] = _median_ms(lambda layer=layer: layer.backward(grad), repeats)
        rows.append((f"{kind.__name__} 2x2 forward (64, 32, 26, 26)", forward))
        rows.append((f"{kind.__name__} 2x2 backward (64, 32, 26, 26)", backward))
    return rows


_FIT = """
import time, numpy as np
t0, c0 = time.perf_counter(), time.process_time()
import regnet
from regnet.layers import Conv2D, Dense, Flatten, MaxPool2D
model = regnet.Sequential([Conv2D(6, 5, activation="relu"), MaxPool2D(2), Flatten(), Dense(10, activation="softmax")],
                          input_shape=(1, 28, 28), seed=0)
model.compile(loss="categorical_crossentropy", optimizer="adam")
x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[np.arange(64) % 10]
t1, c1 = time.perf_counter(), time.process_time()
model.fit(x, y, epochs=1, batch_size=64, verbose=0)
t2, c2 = time.perf_counter(), time.process_time()
print(t2 - t1, c2 - c1, c2 - c0, regnet.accel.describe())
"""


def cold_start_rows():
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE_DIR", "REGNET_ACCEL"))}
        runs = [
            ("cold (empty kernel cache)", {"NUMBA_CACHE_DIR": cache}),
            ("warm (kernels from the cache)", {"NUMBA_CACHE_DIR": cache}),
            ("REGNET_ACCEL=0", {"REGNET_ACCEL": "0"}),
        ]
        for name, extra in runs:
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", _FIT], env={**base, **extra}, capture_output=True, text=True, check=True
            ).stdout.split()
            total = time.perf_counter() - t0
            rows.append((name, float(out[0]), float(out[1]), total, float(out[2]), " ".join(out[3:])))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--no-cold-start", action="store_true", help="leave out the fresh-process fit runs")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    from regnet import accel

    if not accel.available():
        sys.exit("the 'fast' extra (numba) is not installed: pip install 'regnet[fast]'")
    import numba

    print(
        f"# {_cpu()}, {os.cpu_count()} cores, numba {numba.__version__} "
        f"({numba.get_num_threads()} threads), NumPy {np.__version__}, load {os.getloadavg()[0]:.2f}"
    )
    kernel_rows = optimizer_rows(args.repeats) + pool_rows(args.repeats)
    print("\n| kernel | NumPy ms | fast ms | speed-up | NumPy CPU ms | fast CPU ms | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, t in kernel_rows:
        (nw, nc), (fw, fc) = t["numpy"], t["fast"]
        print(f"| {name} | {nw:.3f} | {fw:.3f} | {nw / fw:.1f}x | {nc:.3f} | {fc:.3f} | {nc / max(fc, 1e-6):.1f}x |")
    starts = [] if args.no_cold_start else cold_start_rows()
    if starts:
        print("\n| first fit of a LeNet-style model, 1 batch | fit s | fit CPU s | process s | process CPU s | path |")
        print("|---|---|---|---|---|---|")
        for name, fit, fit_cpu, total, total_cpu, path in starts:
            print(f"| {name} | {fit:.2f} | {fit_cpu:.2f} | {total:.2f} | {total_cpu:.2f} | {path} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernels": kernel_rows, "cold_start": starts, "load_end": os.getloadavg()[0]}, f, indent=1)


if __name__ == "__main__":
    main()

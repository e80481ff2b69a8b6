"""Training speed of single layers against PyTorch's equivalents: one forward and backward pass
(the input gradient and every weight gradient) on one batch, median over repeated runs, both
frameworks in this process with the same number of threads.

    python benchmarks/layer_speed.py [--threads 2] [--repeats 20] [--only NAME ...] [--json OUT]
                                     [--paths both|fast|numpy]

Prints one row per case: the regnet and PyTorch times in milliseconds and their ratio
(PyTorch's time over regnet's: above 1 means regnet is faster, as in bench.py's ratios). A case
whose layer is not registered (an older regnet) is skipped. Where the compiled accelerator
(regnet.accel, the 'fast' extra) is installed, ``--paths both`` (the default) times regnet on
each path, NumPy and fast, with a ratio for each.
"""

import argparse
import json
import os
import platform
import statistics
import time


def cases(torch):
    """``(name, regnet config, input shape without batch, batch, torch module factory)``."""
    nn = torch.nn
    return [
        (
            "Conv2D groups=4",
            {"type": "Conv2D", "filters": 64, "kernel_size": 3, "padding": "same", "groups": 4},
            (64, 16, 16),
            32,
            lambda: nn.Conv2d(64, 64, 3, padding=1, groups=4),
        ),
        (
            "Conv2D dilation=2",
            {"type": "Conv2D", "filters": 32, "kernel_size": 3, "padding": "same", "dilation_rate": 2},
            (32, 16, 16),
            32,
            lambda: nn.Conv2d(32, 32, 3, padding=2, dilation=2),
        ),
        (
            "DepthwiseConv2D",
            {"type": "DepthwiseConv2D", "kernel_size": 3, "padding": "same"},
            (96, 16, 16),
            32,
            lambda: nn.Conv2d(96, 96, 3, padding=1, groups=96),
        ),
        (
            "SeparableConv2D",
            {"type": "SeparableConv2D", "filters": 64, "kernel_size": 3, "padding": "same"},
            (32, 16, 16),
            32,
            lambda: nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.Conv2d(32, 64, 1)),
        ),
        (
            "Conv2DTranspose s2",
            {"type": "Conv2DTranspose", "filters": 16, "kernel_size": 4, "strides": 2, "padding": 1},
            (32, 8, 8),
            32,
            lambda: nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
        ),
        (
            "UpSampling2D bilinear",
            {"type": "UpSampling2D", "size": 2, "interpolation": "bilinear"},
            (32, 16, 16),
            32,
            lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        ),
        ("LayerNormalization", {"type": "LayerNormalization"}, (64, 128), 32, lambda: nn.LayerNorm(128)),
        (
            "GroupNormalization",
            {"type": "GroupNormalization", "groups": 8},
            (64, 16, 16),
            32,
            lambda: nn.GroupNorm(8, 64),
        ),
        ("PReLU", {"type": "PReLU"}, (32, 16, 16), 32, lambda: nn.PReLU(32)),
        ("Activation silu", {"type": "Activation", "activation": "silu"}, (64, 32, 32), 32, lambda: nn.SiLU()),
        ("Activation gelu", {"type": "Activation", "activation": "gelu"}, (64, 32, 32), 32, lambda: nn.GELU()),
        (
            "Activation hard_swish",
            {"type": "Activation", "activation": "hard_swish"},
            (64, 32, 32),
            32,
            lambda: nn.Hardswish(),
        ),
        ("Activation mish", {"type": "Activation", "activation": "mish"}, (64, 32, 32), 32, lambda: nn.Mish()),
        (
            "Conv1D",
            {"type": "Conv1D", "filters": 64, "kernel_size": 5, "padding": "same"},
            (64, 128),
            32,
            lambda: nn.Conv1d(64, 64, 5, padding=2),
        ),
        (
            "LSTM",
            {"type": "LSTM", "units": 128, "return_sequences": True},
            (28, 28),
            64,
            lambda: _first(nn.LSTM(28, 128, batch_first=True)),
        ),
        (
            "GRU",
            {"type": "GRU", "units": 128, "return_sequences": True},
            (28, 28),
            64,
            lambda: _first(nn.GRU(28, 128, batch_first=True)),
        ),
        ("LayerNormalization (tokens)", {"type": "LayerNormalization"}, (50, 192), 32, lambda: nn.LayerNorm(192)),
    ]


def _first(module):
    import torch

    class First(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = module

        def forward(self, x):
            return self.m(x)[0]

    return First()


def time_regnet(config, shape, batch, repeats, path=None):
    """Milliseconds per training step; ``path`` ``"numpy"`` or ``"fast"`` picks regnet.accel's
    path (``None``: the default one)."""
    if path is None:
        return _time_regnet(config, shape, batch, repeats)
    from regnet import accel

    with accel.enabled(path == "fast"):
        return _time_regnet(config, shape, batch, repeats)


def _time_regnet(config, shape, batch, repeats):
    import numpy as np

    from regnet import layers

    layer = layers.create(dict(config))
    layer.setup(shape, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((batch, *shape)).astype(np.float32)
    y = layer(x, True)
    g = np.ones_like(y)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        layer(x, True)
        layer.call_backward(g)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1e3


def time_torch(torch, make, shape, batch, repeats):
    module = make()
    x = torch.randn(batch, *shape, requires_grad=True)
    y = module(x)
    g = torch.ones_like(y)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        for p in module.parameters():
            p.grad = None
        x.grad = None
        module(x).backward(g)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--only", nargs="*", default=None, help="names (prefixes) of the cases to run")
    p.add_argument("--json", default=None, help="write the rows to this file")
    p.add_argument("--paths", choices=("both", "fast", "numpy"), default="both", help="regnet.accel's paths to time")
    args = p.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    import regnet
    from regnet import registry

    torch.set_num_threads(args.threads)
    regnet.tune()
    print(
        f"regnet {regnet.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {platform.processor() or platform.machine()}"
    )
    paths = _paths(args.paths)
    head = (
        "".join(f" {p + ' ms':>10}" for p in paths)
        + f" {'torch ms':>10}"
        + "".join(f" {'torch/' + p:>13}" for p in paths)
    )
    print(f"{'case':<28}{head}")
    rows = []
    for name, config, shape, batch, make in cases(torch):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        if config["type"] not in registry.layers or (
            config["type"] == "Activation" and config["activation"] not in registry.activations
        ):
            continue
        try:
            ours = {p: time_regnet(config, shape, batch, args.repeats, None if p == "regnet" else p) for p in paths}
        except regnet.ConfigError as exc:  # a field this regnet does not have yet
            print(f"{name:<28} skipped: {exc}")
            continue
        theirs = time_torch(torch, make, shape, batch, args.repeats)
        default = ours.get(_default_path(), next(iter(ours.values())))
        row = {"case": name, "regnet_ms": default, "torch_ms": theirs, "ratio": theirs / default, "batch": batch}
        row.update({f"{p}_ms": ms for p, ms in ours.items() if p != "regnet"})
        rows.append(row)
        times = "".join(f" {ms:10.2f}" for ms in ours.values())
        ratios = "".join(f" {theirs / ms:13.2f}" for ms in ours.values())
        print(f"{name:<28}{times} {theirs:10.2f}{ratios}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"threads": args.threads, "rows": rows}, fh, indent=1)


def _paths(choice):
    """The regnet.accel paths to time: ``["regnet"]`` (the only one) for a regnet without the
    accelerator or without the 'fast' extra installed."""
    try:
        from regnet import accel
    except ImportError:
        return ["regnet"]
    if not accel.available():
        return ["regnet"]
    return ["numpy", "fast"] if choice == "both" else [choice]


def _default_path():
    try:
        from regnet import accel
    except ImportError:
        return "regnet"
    return "fast" if accel.active() else "numpy"


if __name__ == "__main__":
    main()

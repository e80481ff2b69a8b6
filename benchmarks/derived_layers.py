"""What a forward-only layer (regnet.DerivedLayer, backward by autograd) costs against the same
layer with a hand-written backward: a dense layer ``x @ kernel + bias``, forward and backward on
one batch, median of repeated runs, in one process.

    python benchmarks/derived_layers.py [--repeats 200]

Prints one line per shape: hand-written and derived times in microseconds, and their ratio.
"""

import argparse
import platform
import statistics
import time

import numpy as np

import regnet
from regnet import DerivedLayer, fields
from regnet.layers import Dense, layer


@layer("BenchDerivedDense")
class DerivedDense(DerivedLayer):
    """``x @ kernel + bias`` with the backward pass derived by autograd."""

    units: int = fields.integer(min=1)

    def build(self, input_shape, rng):
        self.add_weight("kernel", (input_shape[-1], self.units), "glorot_uniform", rng)
        self.add_weight("bias", (self.units,), "zeros", rng)
        return (*input_shape[:-1], self.units)

    def compute(self, x, w, training=False):
        return x @ w["kernel"] + w["bias"]


def step_time(layer, x, g, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer(x, True)
        layer.call_backward(g)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    import autograd  # noqa: F401 - the optional extra this measures

    print(f"regnet {regnet.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'batch x in -> out':>22}  {'hand (us)':>10}  {'derived (us)':>12}  ratio")
    rng = np.random.default_rng(0)
    for n, d_in, d_out in ((8, 32, 32), (64, 256, 256), (256, 1024, 1024)):
        x = rng.standard_normal((n, d_in)).astype(np.float32)
        g = rng.standard_normal((n, d_out)).astype(np.float32)
        times = []
        for layer_ in (Dense(d_out), DerivedDense(d_out)):
            layer_.setup((d_in,), np.random.default_rng(0))
            step_time(layer_, x, g, 10)  # warm-up
            times.append(step_time(layer_, x, g, args.repeats))
        print(f"{f'{n} x {d_in} -> {d_out}':>22}  {times[0]:10.1f}  {times[1]:12.1f}  {times[1] / times[0]:5.2f}")


if __name__ == "__main__":
    main()

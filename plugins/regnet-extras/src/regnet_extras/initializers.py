"""Orthogonal and truncated-normal weight initializers (float32, drawing only from ``rng``)."""

import math

import numpy as np

from regnet import fields
from regnet.initializers import Initializer, initializer


@initializer("orthogonal", register=False)  # the entry point registers it
class Orthogonal(Initializer):
    """``gain`` times a random matrix with orthonormal rows or columns (whichever are fewer).

    A dense kernel ``(in, out)`` is that matrix; a conv kernel ``(out, in, kh, kw)`` is one of
    shape ``(out, in*kh*kw)``; a vector is a random unit vector.
    """

    gain: float = fields.number(1.0, min=0.0)

    def __call__(self, shape, rng, dtype=np.float32):
        shape = tuple(shape)
        if len(shape) == 1:
            rows, cols = 1, shape[0]
        elif len(shape) == 2:
            rows, cols = shape
        else:
            rows, cols = shape[0], math.prod(shape[1:])
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # a uniform (Haar) draw, not one biased by the QR convention
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype)


@initializer("truncated_normal", register=False)
class TruncatedNormal(Initializer):
    """Normal draws with ``mean`` and ``stddev``, redrawn while more than two standard deviations
    from the mean (so the kept values' standard deviation is about ``0.88 * stddev``)."""

    mean: float = fields.number(0.0)
    stddev: float = fields.number(0.05, min=0.0)

    def __call__(self, shape, rng, dtype=np.float32):
        z = rng.standard_normal(shape)
        bad = np.abs(z) > 2
        while bad.any():  # each round redraws the few values left outside [-2, 2]
            z[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(z) > 2
        return (self.mean + self.stddev * z).astype(dtype)

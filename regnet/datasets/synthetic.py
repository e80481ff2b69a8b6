"""Small synthetic 2-D classification sets, generated from a seed."""

import math

import numpy as np

from ..errors import DataError


def _split(x, y, test_fraction, rng):
    n_test = int(round(len(x) * test_fraction))
    order = rng.permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def moons(n=1000, noise=0.1, seed=0, test_fraction=0.25):
    """Two interleaving half circles; labels 0/1. Returns ``(x_train, y_train), (x_test, y_test)``."""
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t0 = rng.uniform(0, math.pi, n0)
    t1 = rng.uniform(0, math.pi, n - n0)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)]).astype(np.int64)
    return _split(x.astype(np.float32), y, test_fraction, rng)


def circles(n=1000, seed=0, test_fraction=0.25, margin=0.0):
    """Points uniform in [0, 1]^2, label 1 inside the circle of radius 1/sqrt(2*pi) centred at
    (0.5, 0.5) (which holds half the square's area), else 0. ``margin`` > 0 leaves out the band of
    that half-width around the circle, so that the two classes are separated by a gap."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 2))
    if margin > 0:
        x = _outside_band(x, n, margin, rng)
    r2 = ((x - 0.5) ** 2).sum(axis=1)
    y = (r2 < 1 / (2 * math.pi)).astype(np.int64)
    return _split(x.astype(np.float32), y, test_fraction, rng)


def _outside_band(x, n, margin, rng):
    """``n`` points of ``x`` (topped up with new draws) at least ``margin`` from the circle."""
    if margin >= 0.3:
        raise DataError(f"circles: margin {margin} leaves too little of the unit square (use < 0.3)")
    radius = 1 / math.sqrt(2 * math.pi)
    keep = lambda p: p[np.abs(np.sqrt(((p - 0.5) ** 2).sum(axis=1)) - radius) >= margin]
    x = keep(x)
    while len(x) < n:
        x = np.concatenate([x, keep(rng.uniform(0, 1, (2 * (n - len(x)) + 16, 2)))])
    return x[:n]


def spirals(n=1000, classes=2, noise=0.2, seed=0, test_fraction=0.25):
    """``classes`` interleaved arms of an Archimedean spiral."""
    rng = np.random.default_rng(seed)
    per = np.full(classes, n // classes)
    per[: n - per.sum()] += 1
    xs, ys = [], []
    for k, m in enumerate(per):
        r = np.linspace(0.05, 1, m)
        t = np.linspace(k * 2 * math.pi / classes, k * 2 * math.pi / classes + 3 * math.pi, m)
        t = t + rng.normal(0, noise * 0.5, m)
        xs.append(np.stack([r * np.cos(t), r * np.sin(t)], axis=1))
        ys.append(np.full(m, k))
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int64)
    return _split(x.astype(np.float32), y, test_fraction, rng)

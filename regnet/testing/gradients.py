"""Numerical gradients: central differences, and how far an analytic gradient is from them."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, *, eps: float = 1e-6, indices: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` of a scalar ``f()``.

    ``x`` is perturbed in place (``f`` must read it) and restored. ``indices`` are flat indices
    to evaluate; the result then has one entry per index, else the shape of ``x``.
    """
    if not (isinstance(x, np.ndarray) and x.flags.c_contiguous):
        raise TypeError("numerical_gradient needs a C-contiguous numpy array to perturb in place")
    flat = x.reshape(-1)
    idx = range(x.size) if indices is None else [int(i) for i in indices]
    out = np.empty(len(idx), dtype=np.float64)
    for k, i in enumerate(idx):  # one entry per pair of calls: the loop is over f's inputs, not samples
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = f()
        flat[i] = orig - eps
        f_minus = f()
        flat[i] = orig
        out[k] = (f_plus - f_minus) / (2 * eps)
    return out.reshape(x.shape) if indices is None else out


def gradient_error(
    analytic: Any,
    numeric: Any,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    shape: tuple | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
) -> str | None:
    """``None`` if ``analytic`` matches ``numeric`` within ``atol + rtol*|value|``, else a message."""
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    if a.shape != n.shape:
        return f"analytic gradient has {a.size} entries, expected {n.size}"
    if not np.all(np.isfinite(a)):
        return f"analytic gradient has {int(np.sum(~np.isfinite(a)))} non-finite entries"
    err = np.abs(a - n)
    scale = np.maximum(np.abs(a), np.abs(n))
    excess = err - (atol + rtol * scale)
    if a.size == 0 or excess.max() <= 0:
        return None
    k = int(np.argmax(excess))
    flat = k if indices is None else int(indices[k])
    where = np.unravel_index(flat, shape) if shape is not None else (flat,)
    rel = err / np.maximum(scale, 1e-300)
    return (
        f"max abs error {err.max():.3g}, max rel error {rel.max():.3g} over {a.size} entries; worst at "
        f"index {tuple(int(i) for i in where)}: analytic {a[k]:.6g} vs numeric {n[k]:.6g} "
        f"(tolerance atol={atol:g}, rtol={rtol:g})"
    )


def sample_indices(size: int, max_entries: int, rng: np.random.Generator) -> np.ndarray:
    """All flat indices of a tensor of ``size`` entries, or ``max_entries`` of them at random."""
    if size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, max_entries, replace=False))

"""Per-row sums and dot products of C-contiguous ``(rows, n)`` arrays as BLAS matrix-vector
products: NumPy's ``sum(axis=1)`` runs on one core with pairwise summation, while ``a @ ones``
and a batched ``(1, n) @ (n, 1)`` product go through BLAS (about 3-4x faster on a
``(16, 65536)`` float32 array, measured in ``benchmarks/profile_layers.py``'s BatchNorm).

BLAS accumulates in many parallel partial sums rather than pairwise, so rows longer than
``MAX_ROW`` (where its rounding would grow past pairwise summation's by more than a little) and
arrays BLAS cannot read in place go through NumPy's own reductions instead.
"""

import numpy as np

#: longest row summed by BLAS
MAX_ROW = 1 << 20


def _blas_rows(*arrays):
    return all(a.ndim == 2 and a.flags.c_contiguous and a.dtype.kind == "f" for a in arrays) and (
        arrays[0].shape[1] <= MAX_ROW
    )


def row_sums(a):
    """``a.sum(axis=1)`` of a 2-D array."""
    if not _blas_rows(a):
        return a.sum(axis=1)
    return a @ np.ones(a.shape[1], a.dtype)


def row_dots(a, b):
    """``(a * b).sum(axis=1)`` of two 2-D arrays of one shape."""
    if a.shape != b.shape or a.dtype != b.dtype or not _blas_rows(a, b):
        return np.multiply(a, b).sum(axis=1)
    return np.matmul(a[:, None, :], b[:, :, None]).reshape(a.shape[0])

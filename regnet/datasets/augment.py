"""Training-time augmentation for image batches (NCHW): random translations with zero fill."""

import numpy as np

from ..errors import DataError


def shift(x, dy, dx):
    """``x`` moved by ``dy`` rows and ``dx`` columns, zero-filled (one shift for the whole batch)."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    src_r = slice(max(0, -dy), h - max(0, dy))
    dst_r = slice(max(0, dy), h - max(0, -dy))
    src_c = slice(max(0, -dx), w - max(0, dx))
    dst_c = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_r, dst_c] = x[..., src_r, src_c]
    return out


def random_shift(x, max_shift, rng):
    """Each image shifted by its own offset in ``[-max_shift, max_shift]`` along both axes.

    Loops over the ``(2 * max_shift + 1) ** 2`` offsets, never over images.
    """
    if x.ndim != 4:
        raise DataError(f"random_shift expects NCHW images (rank 4), got shape {list(x.shape)}")
    k = int(max_shift)
    if k <= 0:
        return x
    offsets = rng.integers(-k, k + 1, size=(len(x), 2))
    out = np.empty_like(x)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            sel = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
            if len(sel):
                out[sel] = shift(x[sel], dy, dx)
    return out

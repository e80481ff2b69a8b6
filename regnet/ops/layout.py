"""Memory layout of image batches, and scratch buffers reused from one batch to the next.

Layers see NCHW arrays. The convolution kernels store them batch-innermost, i.e. as the
transposed view of a C-contiguous ``(C, H, W, N)`` array ("CHWN"). In that layout every
sliding-window copy moves whole runs of ``W*N`` (or ``N``) contiguous values, and a convolution
is a single GEMM ``kernel (F, C*kh*kw) @ columns (C*kh*kw, Ho*Wo*N) -> (F, Ho*Wo*N)`` whose
result is already the CHWN output. NumPy ufuncs and ``np.empty_like`` keep an input's memory
order, so element-wise layers and pooling pass the layout on; a layer that needs C order
(``Flatten``) gets one copy from ``reshape``.
"""

import numpy as np

CHWN = (1, 2, 3, 0)  # NCHW axes in CHWN memory order


def chwn(x):
    """``(N, C, H, W)`` -> the ``(C, H, W, N)`` view (contiguous when ``x`` is stored CHWN)."""
    return x.transpose(CHWN)


def from_chwn(a):
    """A ``(C, H, W, N)`` array -> its NCHW view."""
    return a.transpose(3, 0, 1, 2)


def is_chwn(x):
    return x.ndim == 4 and x.transpose(CHWN).flags.c_contiguous


def contiguous_chwn(x):
    """The C-contiguous ``(C, H, W, N)`` form of an NCHW batch (a view when already stored so)."""
    return np.ascontiguousarray(x.transpose(CHWN))


def empty_like_layout(x, shape, dtype=None):
    """An uninitialised array of ``shape`` stored in the same axis order as the 4-D array ``x``."""
    return np.empty_like(x, dtype=x.dtype if dtype is None else dtype, shape=shape)


class Workspace:
    """Scratch arrays kept between calls, by name; the last ``keep`` shapes of each name are kept
    (a training epoch alternates between the batch size and the smaller last batch).

    ``init(array)`` runs once on a new buffer; kernels use it for parts that stay constant from
    one batch to the next (zeros at the padding, the row of ones that carries the bias).
    """

    def __init__(self, keep=2):
        self._arrays = {}
        self.keep = keep

    def get(self, name, shape, dtype, init=None):
        key = (name, tuple(shape), np.dtype(dtype))
        arr = self._arrays.get(key)
        if arr is None:
            same = [k for k in self._arrays if k[0] == name]
            for old in same[: max(0, len(same) - self.keep + 1)]:
                del self._arrays[old]
            arr = np.empty(shape, dtype)
            if init is not None:
                init(arr)
            self._arrays[key] = arr
        return arr

    def clear(self):
        self._arrays.clear()

"""Memory layout of image batches, and scratch buffers reused from one batch to the next.

Layers see NCHW arrays. The convolution kernels store them channel-major in memory, i.e. as the
transposed view of a C-contiguous ``(C, N, H, W)`` array: a convolution is then a single GEMM
``kernel (F, C*kh*kw) @ columns (C*kh*kw, N*Ho*Wo) -> (F, N*Ho*Wo)`` whose result is already
the channel-major output, with no transpose copy. NumPy ufuncs keep an input's memory order, so
element-wise layers pass the layout on unchanged; a layer that needs C order (``Flatten``) gets
one copy from ``reshape``.
"""

import numpy as np


def channel_major(x):
    """``(N, C, H, W)`` -> the ``(C, N, H, W)`` view (contiguous when ``x`` is channel-major)."""
    return x.transpose(1, 0, 2, 3)


def is_channel_major(x):
    return x.ndim == 4 and x.shape[1] > 1 and x.transpose(1, 0, 2, 3).flags.c_contiguous


def empty_channel_major(shape, dtype):
    """An uninitialised NCHW array of ``shape`` stored channel-major."""
    n, c, h, w = shape
    return np.empty((c, n, h, w), dtype).transpose(1, 0, 2, 3)


def empty_like_layout(x, shape, dtype=None):
    """An uninitialised array of ``shape`` stored in the same order as the 4-D array ``x``."""
    dtype = x.dtype if dtype is None else dtype
    return empty_channel_major(shape, dtype) if is_channel_major(x) else np.empty(shape, dtype)


def contiguous_channel_major(x):
    """The C-contiguous ``(C, N, H, W)`` form of an NCHW batch (a view when already stored so)."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3))


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

"""Sliding windows over NCHW images: padding arithmetic, padding and the strided view one window
offset sees (pooling layers loop over window offsets only, never over samples or pixels).
Convolution columns are built in ``ops.conv``."""

import math

import numpy as np


def out_size(size, k, stride, pad_before, pad_after):
    return (size + pad_before + pad_after - k) // stride + 1


def ceil_out_size(size, k, stride, pad_before, pad_after):
    """The output size with rounding up (PyTorch's ``ceil_mode``): a last window that would start
    beyond the input and the padding before it is dropped."""
    out = -(-(size + pad_before + pad_after - k) // stride) + 1
    if (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def padding_amounts(padding, size, k, stride):
    """``(before, after)`` for one spatial axis; ``padding`` is 'valid', 'same' or an int."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + k - size, 0)
        return total // 2, total - total // 2
    return int(padding), int(padding)


def pad(x, pads, value=0.0):
    """Pad the two trailing axes by ``pads = (top, bottom, left, right)``."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top : top + h, left : left + w] = x
    return out


def unpad(x, pads):
    top, bottom, left, right = pads
    if not any(pads):
        return x
    h, w = x.shape[2], x.shape[3]
    return x[:, :, top : h - bottom, left : w - right]


def window(xp, i, j, out_hw, stride):
    """The strided view of ``xp`` seen by kernel offset ``(i, j)``: shape ``(N, C, Ho, Wo)``."""
    (ho, wo), (sh, sw) = out_hw, stride
    return xp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]

"""Sliding-window kernels for NCHW images: padding arithmetic, im2col and its adjoint col2im.

Columns are laid out ``(N, C*kh*kw, Ho*Wo)`` so that a convolution is one batched matmul
``kernel(F, C*kh*kw) @ cols -> (N, F, Ho*Wo)``, which is already NCHW: no output transpose.
Both directions loop over the ``kh*kw`` kernel offsets only (never over samples or pixels); each
offset is one strided copy of the whole batch.
"""

import math

import numpy as np


def out_size(size, k, stride, pad_before, pad_after):
    return (size + pad_before + pad_after - k) // stride + 1


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


def im2col(xp, kernel, stride, out_hw, out=None):
    """Columns ``(N, C*kh*kw, Ho*Wo)`` of a padded batch ``xp``."""
    n, c = xp.shape[:2]
    kh, kw = kernel
    ho, wo = out_hw
    if out is None or out.shape != (n, c, kh, kw, ho, wo):
        out = np.empty((n, c, kh, kw, ho, wo), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i, j] = window(xp, i, j, out_hw, stride)
    return out.reshape(n, c * kh * kw, ho * wo)


def col2im(cols, padded_shape, kernel, stride, out_hw):
    """Adjoint of ``im2col``: sum columns back into a padded batch of ``padded_shape``."""
    n, c = padded_shape[:2]
    kh, kw = kernel
    ho, wo = out_hw
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    dx = np.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            window(dx, i, j, out_hw, stride)[...] += cols[:, :, i, j]
    return dx

"""Max pooling over NCHW batches by strided window views (loops over window offsets only).

Outputs and input gradients keep the memory order of the input (see ``layout``). In training the
forward pass records, per output, the offset of the first maximal element of its window (in
row-major window order); the backward pass sends the gradient there. A NaN in a window makes
its maximum NaN (as ``np.maximum`` does).
"""

import numpy as np

from . import layout, windows


def max_forward(x, pool, stride, pads, out_hw, training):
    """``(out, arg)``: window maxima, and the winning offsets (``None`` unless ``training``)."""
    xp = windows.pad(x, pads, value=-np.inf)
    n, c = x.shape[:2]
    offsets = [(i, j) for i in range(pool[0]) for j in range(pool[1])]
    out = layout.empty_like_layout(x, (n, c, *out_hw))
    np.copyto(out, windows.window(xp, 0, 0, out_hw, stride))
    if not training:
        for i, j in offsets[1:]:
            np.maximum(out, windows.window(xp, i, j, out_hw, stride), out=out)
        return out, None
    arg = np.zeros_like(out, dtype=np.int8 if len(offsets) < 128 else np.int32)
    better = np.empty_like(out, dtype=bool)
    for k, (i, j) in enumerate(offsets[1:], start=1):
        w = windows.window(xp, i, j, out_hw, stride)
        np.greater(w, out, out=better)
        np.copyto(arg, k, where=better)
        np.maximum(out, w, out=out)
    return out, arg


def max_backward(grad, arg, in_shape, pool, stride, pads, out_hw):
    """The input gradient: each output's gradient goes to the element its ``arg`` names."""
    n, c, h, w = in_shape
    top, bottom, left, right = pads
    padded = (n, c, h + top + bottom, w + left + right)
    tiles = stride[0] >= pool[0] and stride[1] >= pool[1]  # windows do not overlap
    exact = tiles and not any(pads) and (out_hw[0] * stride[0], out_hw[1] * stride[1]) == (h, w) and stride == pool
    dx = layout.empty_like_layout(arg, padded, grad.dtype)
    if not exact:
        dx[...] = 0
    hit = np.empty(arg.shape, dtype=bool)
    for k, (i, j) in enumerate((i, j) for i in range(pool[0]) for j in range(pool[1])):
        np.equal(arg, k, out=hit)
        view = windows.window(dx, i, j, out_hw, stride)
        if tiles:
            np.multiply(grad, hit, out=view)
        else:
            view += grad * hit
    return windows.unpad(dx, pads)

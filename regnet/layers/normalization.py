"""BatchNorm over the feature axis (axis 1): dense ``(N, C)`` and conv ``(N, C, H, W)`` inputs."""

import numpy as np

from .. import fields, sharding
from ..ops import layout, parallel, reduce
from .base import Layer, layer, require_rank


@layer("BatchNorm", aliases=("BatchNormalization", "BatchNorm2d", "BatchNorm1d"))
class BatchNorm(Layer):
    """Normalise with batch statistics in training, running statistics in inference.

    Running statistics follow ``running = momentum * running + (1 - momentum) * batch`` (the
    Keras convention; PyTorch's ``momentum=0.1`` is ``momentum=0.9`` here), with the biased
    batch variance. A frozen BatchNorm (``trainable`` False) uses and keeps its running
    statistics in training too, as in Keras: fine-tuning does not disturb what it learnt.

    In data-parallel training the batch statistics are those of the global batch, summed over
    the processes (synchronised batch normalisation, ``regnet.sharding``): the result does not
    depend on the number of processes, and the running statistics stay equal on every one.
    """

    momentum: float = fields.number(0.99, min=0.0, max=1.0)
    epsilon: float = fields.number(1e-3, min=0.0, min_open=True)
    center: bool = fields.boolean(True)
    scale: bool = fields.boolean(True)
    activation: str | dict = fields.activation()

    batch_independent = False
    fresh_output = True

    def build(self, input_shape, rng):
        require_rank(self, input_shape, (1, 3))
        c = input_shape[0]
        if self.scale:
            self.add_weight("gamma", (c,), "ones", rng)
        if self.center:
            self.add_weight("beta", (c,), "zeros", rng)
        self.add_weight("moving_mean", (c,), "zeros", rng, trainable=False)
        self.add_weight("moving_variance", (c,), "ones", rng, trainable=False)
        self._axes = (0,) if len(input_shape) == 1 else (0, 2, 3)
        self._bshape = (1, c) if len(input_shape) == 1 else (1, c, 1, 1)
        return tuple(input_shape)

    def _view(self, x, chwn):
        """``(v, axes, bshape, back)``: ``x`` seen with channels on one axis so that per-channel
        reductions run over contiguous memory where the layout allows (with ``chwn``, images become
        ``(C, H*W*N)``; a copy if ``x`` is not stored so), and ``back(v)`` turning an array shaped
        like ``v`` into one shaped like ``x``."""
        c = x.shape[1]
        if x.ndim == 2:
            return x, (0,), (1, c), lambda v: v
        if chwn:
            shape = layout.chwn(x).shape
            return layout.chwn(x).reshape(c, -1), (1,), (c, 1), lambda v: layout.from_chwn(v.reshape(shape))
        shape = x.shape
        return x.reshape(shape[0], c, -1), (0, 2), (1, c, 1), lambda v: v.reshape(shape)

    def forward(self, x, training=False):
        training = training and self.trainable  # a frozen BatchNorm keeps to its running statistics
        chwn = layout.is_chwn(x)
        v, axes, b, back = self._view(x, chwn)
        shard = sharding.current() if training else None
        count = np.asarray(v.size // x.shape[1] if shard is None else _global_count(x, shard), x.dtype)
        if training:
            mean = _summed(_sums(v, axes), shard) / count
            xc = _centred(v, mean.reshape(b), axes)
            var = _summed(_dots(xc, xc, axes), shard) / count
            m = self.momentum
            mm, mv = self.buffers["moving_mean"], self.buffers["moving_variance"]
            mm *= m
            mm += (1 - m) * mean
            mv *= m
            mv += (1 - m) * var
        else:
            mean, var = self.buffers["moving_mean"], self.buffers["moving_variance"]
            xc = None
        inv_std = (1.0 / np.sqrt(var + np.asarray(self.epsilon, x.dtype))).astype(x.dtype, copy=False)
        scale = inv_std * self.params["gamma"] if self.scale else inv_std
        if training:
            beta = self.params["beta"].reshape(b) if self.center else None
            y = _affine(xc, scale.reshape(b), beta, axes)
        else:  # one affine map per channel
            shift = -mean * scale
            if self.center:
                shift = shift + self.params["beta"]
            y = v * scale.astype(x.dtype, copy=False).reshape(b)
            y += shift.astype(x.dtype, copy=False).reshape(b)
        self.cache.xc, self.cache.inv_std, self.cache.chwn = xc, inv_std, chwn
        self.cache.x = None if training else x
        return back(y)

    def backward(self, grad, *, need_input_grad=True):
        xc, inv_std, chwn = self.cache.xc, self.cache.inv_std, self.cache.chwn
        gv, axes, b, back = self._view(grad, chwn)
        training = xc is not None
        if not training:  # after an inference pass the statistics are constants
            xv = self._view(self.cache.x, chwn)[0]
            xc = xv - self.buffers["moving_mean"].astype(xv.dtype).reshape(b)
        sum_g = _sums(gv, axes)
        if self.center:
            self.grads["beta"][...] = sum_g
        dot = _dots(gv, xc, axes)  # sum of g * xhat is dot * inv_std
        if self.scale:
            self.grads["gamma"][...] = dot * inv_std
        if not need_input_grad:
            return None
        scale = (inv_std * self.params["gamma"] if self.scale else inv_std).astype(gv.dtype, copy=False)
        shard = sharding.current() if training else None
        if shard is not None:  # the means below are over the global batch
            sum_g, dot = _global_gradient_sums(sum_g, dot, shard)
        if not training:
            return back(gv * scale.reshape(b))
        # dx = scale * (g - mean(g) - xhat * mean(g * xhat)) = scale * g + a * xc + c
        count = gv.size // inv_std.size if shard is None else _global_count(grad, shard)
        a = (-scale * inv_std * inv_std * dot / count).astype(gv.dtype, copy=False).reshape(b)
        c = (-scale * sum_g / count).astype(gv.dtype, copy=False).reshape(b)
        return back(_input_gradient(gv, xc, scale.reshape(b), a, c, axes))


def _rows(axes):
    """Whether the view has one channel per row (images stored CHWN): the element-wise work then
    splits over threads by channel (``parallel.for_rows``)."""
    return axes == (1,)


def _apply(rule, axes, *arrays):
    """``rule(*arrays)``, split over threads by channel when the view has one channel per row."""
    if _rows(axes):
        parallel.for_rows(rule, *arrays)
    else:
        rule(*arrays)


def _centred(v, mean, axes):
    """``v - mean``, a new array."""
    out = np.empty_like(v)
    _apply(lambda v, mean, out: np.subtract(v, mean, out=out), axes, v, mean, out)
    return out


def _affine(xc, scale, beta, axes):
    """``xc * scale (+ beta)``, a new array."""
    out = np.empty_like(xc)

    def rule(xc, scale, beta, out):
        np.multiply(xc, scale, out=out)
        if beta is not None:
            out += beta

    _apply(rule, axes, xc, scale, beta, out)
    return out


def _input_gradient(g, xc, scale, a, c, axes):
    """``scale * g + a * xc + c``, a new array."""
    out = np.empty_like(g)

    def rule(g, xc, scale, a, c, out):
        np.multiply(g, scale, out=out)
        out += xc * a
        out += c

    _apply(rule, axes, g, xc, scale, a, c, out)
    return out


def _sums(v, axes):
    """Per-channel sums; channels on rows (images stored CHWN) go through BLAS."""
    return reduce.row_sums(v) if _rows(axes) else v.sum(axis=axes)


def _dots(a, b, axes):
    """Per-channel sums of ``a * b``."""
    return reduce.row_dots(a, b) if _rows(axes) else np.multiply(a, b).sum(axis=axes)


def _global_count(x, shard):
    """Values per channel in the global batch: its rows times the positions of one sample."""
    return shard.total * int(np.prod(x.shape[2:], dtype=np.int64))


def _summed(values, shard):
    """Per-channel sums over every process (``values`` itself without a shard)."""
    return values if shard is None else shard.sum(values)


def _global_gradient_sums(sum_g, dot, shard):
    """The per-channel sums of ``g`` and ``g * xc`` over the global batch, in this shard's gradient
    scale: ``g`` carries ``1 / rows of this shard``, so each part is weighed by its ``share``
    before the sum and the result divided by it after (one exchange of ``2C`` values)."""
    c = sum_g.shape[0]
    share = np.float32(shard.share)
    sums = shard.sum(np.concatenate([sum_g, dot]).astype(np.float32) * share) / share
    return sums[:c], sums[c:]

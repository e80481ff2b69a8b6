"""BatchNorm over the feature axis (axis 1): dense ``(N, C)`` and conv ``(N, C, H, W)`` inputs."""

import numpy as np

from .. import fields, sharding
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

    def forward(self, x, training=False):
        b = self._bshape
        training = training and self.trainable
        if training:
            shard = sharding.current()
            if shard is None:
                mean, var = x.mean(axis=self._axes), x.var(axis=self._axes)
            else:
                mean, var = _global_moments(x, self._axes, b, shard)
            m = self.momentum
            mm, mv = self.buffers["moving_mean"], self.buffers["moving_variance"]
            mm *= m
            mm += (1 - m) * mean
            mv *= m
            mv += (1 - m) * var
        else:
            mean, var = self.buffers["moving_mean"], self.buffers["moving_variance"]
        inv_std = 1.0 / np.sqrt(var + np.asarray(self.epsilon, x.dtype))
        xhat = (x - mean.reshape(b)) * inv_std.reshape(b)
        self.cache.xhat, self.cache.inv_std, self.cache.training = xhat, inv_std, training
        y = xhat * self.params["gamma"].reshape(b) if self.scale else xhat.copy()
        if self.center:
            y += self.params["beta"].reshape(b)
        return y

    def backward(self, grad, *, need_input_grad=True):
        b, axes, xhat = self._bshape, self._axes, self.cache.xhat
        if self.center:
            self.grads["beta"][...] = grad.sum(axis=axes)
        if self.scale:
            self.grads["gamma"][...] = (grad * xhat).sum(axis=axes)
            g = grad * self.params["gamma"].reshape(b)
        else:
            g = grad
        inv_std = self.cache.inv_std.reshape(b)
        if not self.cache.training:
            return g * inv_std
        shard = sharding.current()
        if shard is None:
            m = grad.size / grad.shape[1]
            mean_g = g.sum(axis=axes).reshape(b) / m
            mean_gx = (g * xhat).sum(axis=axes).reshape(b) / m
        else:
            mean_g, mean_gx = _global_gradient_means(g, xhat, axes, b, shard)
        return (g - mean_g - xhat * mean_gx) * inv_std


def _positions(x):
    """Values per channel in one sample (1 for ``(N, C)``, ``H * W`` for ``(N, C, H, W)``)."""
    return int(np.prod(x.shape[2:], dtype=np.int64))


def _global_moments(x, axes, bshape, shard):
    """Mean and biased variance per channel over the global batch (two passes, as ``x.var``)."""
    count = shard.total * _positions(x)
    mean = shard.sum(x.sum(axis=axes)) / count
    d = x - mean.reshape(bshape)
    np.multiply(d, d, out=d)
    return mean, shard.sum(d.sum(axis=axes)) / count


def _global_gradient_means(g, xhat, axes, bshape, shard):
    """The per-channel means of ``g`` and ``g * xhat`` over the global batch, in this shard's
    gradient scale: ``g`` carries ``1 / rows of this shard``, so each part is weighed by its
    ``share`` before the sum and the result divided by it after (one exchange of ``2C`` values)."""
    c = g.shape[1]
    parts = np.concatenate([g.sum(axis=axes), (g * xhat).sum(axis=axes)]) * np.float32(shard.share)
    sums = shard.sum(parts) / (shard.total * _positions(g) * shard.share)
    return sums[:c].reshape(bshape), sums[c:].reshape(bshape)

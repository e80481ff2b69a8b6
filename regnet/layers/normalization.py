"""BatchNorm over the feature axis (axis 1): dense ``(N, C)`` and conv ``(N, C, H, W)`` inputs;
LayerNormalization and GroupNormalization over the axes of each sample."""

import attrs
import numpy as np

from .. import accel, fields, sharding
from ..activations import ReLU
from ..errors import ConfigError, ShapeError
from ..ops import layout, parallel, reduce
from ..text import shape as shape_text
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

    >>> import numpy as np
    >>> bn = BatchNorm(epsilon=1e-5)
    >>> bn.setup((2,), np.random.default_rng(0))
    (2,)
    >>> y = bn(np.array([[1.0, 10.0], [3.0, 30.0]], np.float32), training=True)
    >>> np.round(y, 3)
    array([[-1., -1.],
           [ 1.,  1.]], dtype=float32)
    >>> sorted(bn.weights)
    ['beta', 'gamma', 'moving_mean', 'moving_variance']
    """

    momentum: float = fields.number(0.99, min=0.0, max=1.0, doc="the running statistics' decay (Keras's convention)")
    epsilon: float = fields.number(1e-3, min=0.0, min_open=True, doc="added to the variance before the square root")
    center: bool = fields.boolean(True, doc="learn an offset beta")
    scale: bool = fields.boolean(True, doc="learn a scale gamma")
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

    # -- the compiled path (regnet.accel): one kernel per pass, the ReLU that follows fused ---------
    def _compiled(self, x, training):
        """Whether this pass runs on the compiled kernels: float32 and no cross-process statistics."""
        return x.dtype == np.float32 and accel.active() and not (training and sharding.current() is not None)

    def __call__(self, x, training=False):
        relu = type(x) is np.ndarray and isinstance(self.activation_fn, ReLU)
        if relu and self._compiled(x, training and self.trainable):  # BatchNorm + ReLU in one pass
            y = self._forward_compiled(x, training and self.trainable, relu=True)
            self.cache.activation = (y, y)
            return y
        return super().__call__(x, training)

    def call_backward(self, grad, *, need_input_grad=True):
        if getattr(self.cache, "relu", False):  # the forward pass fused the ReLU: so does this one
            return self._backward_compiled(grad, need_input_grad, relu=True)
        return super().call_backward(grad, need_input_grad=need_input_grad)

    def _forward_compiled(self, x, training, relu):
        kernels = accel.kernels("norm")
        v, back = _channel_view(x)
        c = v.shape[1]
        if training:
            mean64, var64 = kernels.run(kernels.channel_moments, v.size, v) if v.ndim == 3 else kernels.dense_moments(v)
            m = self.momentum
            mm, mv = self.buffers["moving_mean"], self.buffers["moving_variance"]
            mm *= m
            mm += ((1 - m) * mean64).astype(mm.dtype)
            mv *= m
            mv += ((1 - m) * var64).astype(mv.dtype)
            mean = mean64.astype(np.float32)
            inv_std = (1.0 / np.sqrt(var64 + self.epsilon)).astype(np.float32)
        else:
            mean = self.buffers["moving_mean"]
            inv_std = (1.0 / np.sqrt(self.buffers["moving_variance"] + np.float32(self.epsilon))).astype(np.float32)
        gamma = self.params["gamma"] if self.scale else np.ones(c, np.float32)
        beta = self.params["beta"] if self.center else np.zeros(c, np.float32)
        out = np.empty_like(v)
        kernels.run(
            kernels.batchnorm_apply if v.ndim == 3 else kernels.dense_apply,
            v.size,
            v,
            mean,
            (inv_std * gamma).astype(np.float32),
            beta,
            relu,
            out,
        )
        y = back(out)
        cache = self.cache
        cache.compiled, cache.relu, cache.training = True, relu, training
        cache.x, cache.y, cache.mean, cache.inv_std, cache.gamma = x, y if relu else None, mean, inv_std, gamma
        return y

    def _backward_compiled(self, grad, need_input_grad, relu):
        cache = self.cache
        v, back = _channel_view(cache.x)
        g = _channel_view(grad, like=cache.x)[0]
        y = _channel_view(cache.y, like=cache.x)[0] if relu else g
        c = v.shape[1]
        dgamma, dbeta = np.empty(c, np.float32), np.empty(c, np.float32)
        dx = np.empty_like(v) if need_input_grad else v
        kernels = accel.kernels("norm")
        args = (g, v, y, cache.mean, cache.inv_std, cache.gamma, cache.training, relu, need_input_grad, dx)
        kernels.run(kernels.batchnorm_backward if v.ndim == 3 else kernels.dense_backward, v.size, *args, dgamma, dbeta)
        if self.center:
            self.grads["beta"][...] = dbeta
        if self.scale:
            self.grads["gamma"][...] = dgamma
        return back(dx) if need_input_grad else None

    # -- the NumPy reference ----------------------------------------------------------------------
    def forward(self, x, training=False):
        training = training and self.trainable  # a frozen BatchNorm keeps to its running statistics
        if self._compiled(x, training):
            return self._forward_compiled(x, training, relu=False)
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
        self.cache.compiled = self.cache.relu = False
        return back(y)

    def backward(self, grad, *, need_input_grad=True):
        if getattr(self.cache, "compiled", False):
            return self._backward_compiled(grad, need_input_grad, relu=False)
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


def _channel_view(x, like=None):
    """``(v, back)``: ``x`` (or a copy) as a C-contiguous ``(A, C, B)`` array with the channels
    (axis 1) in the middle, as the compiled kernels read it: ``(N, C, H*W)`` for NCHW storage,
    ``(1, C, H*W*N)`` for images stored CHWN (``like``'s layout decides, so that a gradient is seen
    as its forward input was), ``(N, C)`` itself for dense input; ``back(v)`` turns an array shaped
    like ``v`` into one shaped like ``x``."""
    if x.ndim == 2:
        return np.ascontiguousarray(x), lambda v: v
    if layout.is_chwn(x if like is None else like):
        shape = layout.chwn(x).shape
        v = np.ascontiguousarray(layout.chwn(x)).reshape(1, shape[0], -1)
        return v, lambda v: layout.from_chwn(v.reshape(shape))
    shape = x.shape
    return np.ascontiguousarray(x).reshape(shape[0], shape[1], -1), lambda v: v.reshape(shape)


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


# -- per-sample normalisation: LayerNormalization, GroupNormalization ------------------------------
def _nonzero_axis(_, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value == 0:
        raise ConfigError(
            f"expected a non-zero integer axis (axis 0 is the batch), got {fields.show(value)}", field=attribute.name
        )


def _axes_field(default):
    """``axis``: one non-zero axis or a non-empty list of them (counted with the batch axis)."""

    def convert(value):
        return tuple(value) if isinstance(value, list) else value

    def check(_, attribute, value):
        items = value if isinstance(value, tuple) else (value,)
        ok = isinstance(value, (int, tuple)) and len(items) >= 1
        ok = ok and all(isinstance(a, int) and not isinstance(a, bool) and a != 0 for a in items)
        if not ok:
            raise ConfigError(
                f"expected a non-zero integer axis or a non-empty list of them (axis 0 is the batch), got "
                f"{fields.show(value)}",
                field=attribute.name,
            )

    return fields.field(
        default,
        doc="the axis (or list of axes) normalised over, counted with the batch axis; negative from the end",
        accepts="a non-zero integer or a non-empty list of them",
        validator=check,
        converter=convert,
    )


def _resolve_axes(layer, axis, input_shape):
    """``axis`` (an int or a tuple) as sorted positive axes of a batch of ``input_shape``."""
    rank = len(input_shape) + 1
    items = axis if isinstance(axis, tuple) else (axis,)
    out = sorted({a + rank if a < 0 else a for a in items})
    if len(out) != len(items) or not all(1 <= a < rank for a in out):
        raise ShapeError(
            f"{type(layer).__name__} axis {fields.show(list(items) if isinstance(axis, tuple) else axis)} does not "
            f"fit input {shape_text(tuple(input_shape))} (axes 1..{rank - 1}, or negative from the end, each once)",
            field="axis",
        )
    return tuple(out)


def normalize(x, axes, epsilon):
    """``(xhat, inv_std)``: ``x`` centred and scaled to unit (biased) variance over ``axes``."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = np.square(xc).mean(axis=axes, keepdims=True)
    inv_std = (1.0 / np.sqrt(var + np.asarray(epsilon, x.dtype))).astype(x.dtype, copy=False)
    xc *= inv_std
    return xc, inv_std


def normalize_backward(dxhat, xhat, inv_std, axes):
    """The input gradient of ``normalize`` from the gradient of its output ``xhat``."""
    mean_g = dxhat.mean(axis=axes, keepdims=True)
    mean_gx = (dxhat * xhat).mean(axis=axes, keepdims=True)
    out = dxhat - mean_g
    out -= xhat * mean_gx
    out *= inv_std
    return out


@attrs.define(slots=False, eq=False)
class _AffineNorm(Layer):
    """What LayerNormalization and GroupNormalization share: ``gamma`` and ``beta`` of shape
    ``self._pshape`` broadcast as ``self._bshape`` over the normalised ``xhat``."""

    def _add_affine(self, rng):
        if self.scale:
            self.add_weight("gamma", self._pshape, self.gamma_initializer, rng)
        if self.center:
            self.add_weight("beta", self._pshape, self.beta_initializer, rng)

    def _affine(self, xhat):
        y = xhat * self.params["gamma"].reshape(self._bshape) if self.scale else xhat.copy()
        if self.center:
            y += self.params["beta"].reshape(self._bshape)
        return y

    def _forward_compiled(self, x, family, view, back):
        """The compiled forward pass (``family``: ``layernorm``, ``groupnorm`` or ``groupnorm_chwn``)
        on ``view(x)``, the kernels' contiguous view of ``x``; ``back`` turns an array shaped like
        that view into one shaped like ``x``. The cache keeps the view and the statistics, not
        ``xhat``."""
        v = view(x)
        c = int(np.prod(self._pshape))
        gamma = self.params["gamma"].reshape(-1) if self.scale else np.ones(c, np.float32)
        beta = self.params["beta"].reshape(-1) if self.center else np.zeros(c, np.float32)
        stats = v.shape[:1] if family == "layernorm" else (x.shape[0], self.groups)
        mean, inv_std = np.empty(stats, np.float32), np.empty(stats, np.float32)
        out = np.empty_like(v)
        kernels = accel.kernels("norm")
        forward = getattr(kernels, f"{family}_forward")
        kernels.run(forward, v.size, v, gamma, beta, float(self.epsilon), out, mean, inv_std)
        cache = self.cache
        cache.compiled, cache.v, cache.view, cache.back = family, v, view, back
        cache.mean, cache.inv_std, cache.gamma = mean, inv_std, gamma
        return back(out)

    def _backward_compiled(self, grad, need_input_grad):
        cache = self.cache
        v = cache.v
        g = cache.view(grad)
        dx = np.empty_like(v) if need_input_grad else v
        kernels = accel.kernels("norm")
        args = (g, v, cache.mean, cache.inv_std, cache.gamma, need_input_grad, dx)
        if cache.compiled == "layernorm":
            chunks = min(v.shape[0], 16)  # fixed: the sums do not depend on the thread count
            dgamma, dbeta = kernels.run(kernels.layernorm_backward, v.size, *args, chunks)
        else:
            dgamma, dbeta = kernels.run(getattr(kernels, f"{cache.compiled}_backward"), v.size, *args)
        if self.center:
            self.grads["beta"][...] = dbeta.reshape(self._pshape)
        if self.scale:
            self.grads["gamma"][...] = dgamma.reshape(self._pshape)
        return cache.back(dx) if need_input_grad else None

    def _affine_backward(self, grad, xhat):
        """Fill the gradients of gamma and beta; return the gradient of ``xhat``."""
        others = tuple(i for i, b in enumerate(self._bshape) if b == 1)
        if self.center:
            self.grads["beta"][...] = grad.sum(axis=others).reshape(self._pshape)
        if self.scale:
            self.grads["gamma"][...] = (grad * xhat).sum(axis=others).reshape(self._pshape)
            return grad * self.params["gamma"].reshape(self._bshape)
        return grad


@layer("LayerNormalization", aliases=("LayerNorm",))
class LayerNormalization(_AffineNorm):
    """Normalise each sample over ``axis`` (one axis or several), then scale by ``gamma`` and shift
    by ``beta``: ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, with the mean and biased
    variance of each sample over those axes. ``gamma`` and ``beta`` have the shape of the
    normalised axes. The same in training and inference (no running statistics).

    ``axis=-1`` normalises the features of a dense input or the last axis of any input (PyTorch's
    ``LayerNorm(normalized_shape)`` over the last k axes is ``axis=[-k, ..., -1]``).

    >>> import numpy as np
    >>> from regnet.layers import LayerNormalization
    >>> norm = LayerNormalization()
    >>> norm.setup((4,), np.random.default_rng(0))
    (4,)
    >>> norm(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)).round(3)
    array([[-1.341, -0.447,  0.447,  1.341]], dtype=float32)
    """

    axis: int | tuple = _axes_field(-1)
    epsilon: float = fields.number(1e-3, min=0.0, min_open=True, doc="added to the variance before the square root")
    center: bool = fields.boolean(True, doc="learn an offset beta")
    scale: bool = fields.boolean(True, doc="learn a scale gamma")
    beta_initializer: str | dict = fields.initializer("zeros", doc="the initializer of beta")
    gamma_initializer: str | dict = fields.initializer("ones", doc="the initializer of gamma")
    activation: str | dict = fields.activation()

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {}, "input_shape": (6,)},
        {"config": {"axis": 1, "activation": "tanh"}, "input_shape": (4, 2, 3)},
        {"config": {"axis": [-2, -1], "epsilon": 0.01}, "input_shape": (2, 3, 4)},
        {"config": {"axis": [1, 3], "center": False}, "input_shape": (3, 2, 4)},
        {"config": {"scale": False, "gamma_initializer": "zeros"}, "input_shape": (3, 5)},
    ]

    def build(self, input_shape, rng):
        self._axes = _resolve_axes(self, self.axis, input_shape)
        rank = len(input_shape) + 1
        self._bshape = tuple(input_shape[i - 1] if i in self._axes else 1 for i in range(rank))
        self._pshape = tuple(input_shape[a - 1] for a in self._axes)
        self._add_affine(rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        rank = x.ndim
        if x.dtype == np.float32 and self._axes == tuple(range(rank - len(self._axes), rank)) and accel.active():
            # the trailing axes: each sample's rows of D values, one compiled pass for both moments
            d, shape = int(np.prod(self._pshape)), x.shape
            return self._forward_compiled(
                x, "layernorm", lambda a: np.ascontiguousarray(a).reshape(-1, d), lambda v: v.reshape(shape)
            )
        xhat, inv_std = normalize(x, self._axes, self.epsilon)
        self.cache.xhat, self.cache.inv_std = xhat, inv_std
        self.cache.compiled = None
        return self._affine(xhat)

    def backward(self, grad, *, need_input_grad=True):
        if getattr(self.cache, "compiled", None):
            return self._backward_compiled(grad, need_input_grad)
        xhat = self.cache.xhat
        dxhat = self._affine_backward(grad, xhat)
        return normalize_backward(dxhat, xhat, self.cache.inv_std, self._axes) if need_input_grad else None


@layer("GroupNormalization", aliases=("GroupNorm",))
class GroupNormalization(_AffineNorm):
    """Split the channels (``axis``, 1 for NCHW) into ``groups`` groups and normalise each group of
    each sample over its channels and every other axis, then scale by ``gamma`` and shift by
    ``beta`` (one per channel). ``groups`` equal to the channels is instance normalisation; one
    group normalises each sample over everything (as LayerNormalization over every axis, with
    per-channel ``gamma`` and ``beta``). The same in training and inference.

    >>> import numpy as np
    >>> from regnet.layers import GroupNormalization
    >>> norm = GroupNormalization(groups=2)
    >>> norm.setup((4, 1, 1), np.random.default_rng(0))
    (4, 1, 1)
    >>> norm(np.array([1.0, 3.0, 10.0, 20.0], np.float32).reshape(1, 4, 1, 1)).ravel().round(3)
    array([-1.,  1., -1.,  1.], dtype=float32)
    """

    groups: int = fields.integer(32, min=1, doc="the number of groups the channels are split into")
    axis: int = fields.field(
        1,
        doc="the channel axis, counted with the batch axis (1 for NCHW; negative from the end)",
        accepts="a non-zero integer",
        validator=_nonzero_axis,
    )
    epsilon: float = fields.number(1e-3, min=0.0, min_open=True, doc="added to the variance before the square root")
    center: bool = fields.boolean(True, doc="learn an offset beta per channel")
    scale: bool = fields.boolean(True, doc="learn a scale gamma per channel")
    beta_initializer: str | dict = fields.initializer("zeros", doc="the initializer of beta")
    gamma_initializer: str | dict = fields.initializer("ones", doc="the initializer of gamma")
    activation: str | dict = fields.activation()

    fresh_output = True
    #: not config fields: how the conformance kit tests this layer
    test_cases = [
        {"config": {"groups": 2}, "input_shape": (4, 3, 3)},
        {"config": {"groups": 3, "activation": "relu"}, "input_shape": (3, 2, 4)},  # instance normalisation
        {"config": {"groups": 1, "epsilon": 0.01, "center": False}, "input_shape": (2, 3, 2)},
        {"config": {"groups": 3, "scale": False}, "input_shape": (6,)},
    ]

    def build(self, input_shape, rng):
        (ax,) = _resolve_axes(self, self.axis, input_shape)
        c = input_shape[ax - 1]
        if c % self.groups:
            raise ShapeError(
                f"GroupNormalization with groups={self.groups} needs channels (axis {self.axis}) divisible by it; "
                f"the input {shape_text(tuple(input_shape))} has {c}",
                field="groups",
            )
        rank = len(input_shape) + 1
        self._ax = ax
        # (N, ..., C, ...) seen as (N, ..., G, C/G, ...): normalise over all but the batch and the group
        self._grouped = (*input_shape[: ax - 1], self.groups, c // self.groups, *input_shape[ax:])
        self._axes = tuple(i for i in range(1, rank + 1) if i != ax)
        self._bshape = tuple(c if i == ax else 1 for i in range(rank))
        self._pshape = (c,)
        self._add_affine(rng)
        return tuple(input_shape)

    def forward(self, x, training=False):
        if x.dtype == np.float32 and accel.active():
            shape = x.shape
            if self._ax == 1 and layout.is_chwn(x):  # images stored CHWN: read in place, the batch innermost
                chwn = layout.chwn(x).shape
                grouped = (self.groups, chwn[0] // self.groups, chwn[1] * chwn[2], chwn[3])
                view = lambda a: np.ascontiguousarray(layout.chwn(a)).reshape(grouped)
                back = lambda v: layout.from_chwn(v.reshape(chwn))
                return self._forward_compiled(x, "groupnorm_chwn", view, back)
            five = self._five(x)
            return self._forward_compiled(
                x, "groupnorm", lambda a: np.ascontiguousarray(a).reshape(five), lambda v: v.reshape(shape)
            )
        xhat, inv_std = normalize(x.reshape(x.shape[0], *self._grouped), self._axes, self.epsilon)
        xhat = xhat.reshape(x.shape)
        self.cache.xhat, self.cache.inv_std = xhat, inv_std
        self.cache.compiled = None
        return self._affine(xhat)

    def _five(self, x):
        """The compiled kernels' view of ``x``: ``(N, A, G, C/G, B)`` with ``A`` the positions before
        the channel axis and ``B`` those after it."""
        ax, shape = self._ax, self.input_shape
        before, after = int(np.prod(shape[: ax - 1])), int(np.prod(shape[ax:]))
        return (x.shape[0], before, self.groups, shape[ax - 1] // self.groups, after)

    def backward(self, grad, *, need_input_grad=True):
        if getattr(self.cache, "compiled", None):
            return self._backward_compiled(grad, need_input_grad)
        xhat = self.cache.xhat
        dxhat = self._affine_backward(grad, xhat)
        if not need_input_grad:
            return None
        n, grouped = grad.shape[0], (grad.shape[0], *self._grouped)
        dx = normalize_backward(dxhat.reshape(grouped), xhat.reshape(grouped), self.cache.inv_std, self._axes)
        return dx.reshape(n, *self.input_shape)

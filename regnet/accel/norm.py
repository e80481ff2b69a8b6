"""Compiled normalisation kernels: BatchNorm (with its ReLU fused), LayerNormalization and
GroupNormalization, forward and backward.

Each kernel reads float32 arrays and writes float32 ones; statistics are accumulated in float64
around a shift (the first value of each group), so ``sum(d**2) - sum(d)**2 / n`` does not cancel.
The forward pass reads the input twice (statistics, then the normalised output); the backward pass
recomputes ``xhat`` from the input and the saved ``mean``/``inv_std`` instead of storing it.

Layouts, as the call sites in regnet/layers/normalization.py pass them:

* BatchNorm: ``(A, C, B)``, contiguous, the channel on the middle axis: ``(N, C, H*W)`` for NCHW,
  ``(1, C, H*W*N)`` for an image batch stored CHWN; ``(N, C)`` for dense input (the ``dense_*``
  kernels, which walk the rows);
* LayerNormalization: ``(R, D)``, each row normalised;
* GroupNormalization: ``(N, A, G, Cg, B)``, each ``(n, g)`` normalised over ``(A, Cg, B)``.

Call sites go through ``run(kernel, size, *args)``, which splits the kernel's loop over
``threads(size)`` threads (numba's thread count, set around the call: set inside a kernel, it would
keep numba from caching the compiled code).
"""

import numba
import numpy as np
from numba import prange

from ..ops import parallel

#: a kernel runs on the calling thread alone below this many elements per thread: one pass over a
#: million float32 values takes about 0.1 ms, less than waking a second thread costs on a busy
#: machine (on two shared cores, a woken thread may wait a scheduler period: about 15 ms)
MIN_ELEMENTS_PER_THREAD = 1 << 21


def threads(size):
    """Threads for a kernel over ``size`` elements: regnet's element-wise thread count
    (``regnet.ops.parallel.threads``, within numba's), fewer for small arrays."""
    most = min(parallel.threads(), numba.config.NUMBA_NUM_THREADS)
    return max(1, min(most, size // MIN_ELEMENTS_PER_THREAD))


def run(kernel, size, *args):
    """``kernel(*args)`` with its parallel loop on ``threads(size)`` threads."""
    n, previous = threads(size), numba.get_num_threads()
    if n == previous:
        return kernel(*args)
    numba.set_num_threads(n)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(previous)


_FLAGS = {"reassoc", "contract"}  # sums may be reordered (vectorised); no assumptions about NaN


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def channel_moments(x):
    """Per-channel mean and biased variance (float64) of ``x`` ``(A, C, B)``."""
    na, nc, nb = x.shape
    n = na * nb
    mean = np.empty(nc)
    var = np.empty(nc)
    for c in prange(nc):
        k = np.float64(x[0, c, 0])
        s = 0.0
        q = 0.0
        for a in range(na):
            for b in range(nb):
                d = np.float64(x[a, c, b]) - k
                s += d
                q += d * d
        m = s / n
        mean[c] = k + m
        var[c] = max(q / n - m * m, 0.0)
    return mean, var


@numba.njit(cache=True, parallel=True)
def batchnorm_apply(x, mean, scale, beta, relu, out):
    """``out = (x - mean) * scale + beta`` per channel of ``(A, C, B)`` arrays (float32 ``(C,)``
    ``mean``, ``scale``, ``beta``), with ``max(., 0)`` when ``relu``."""
    na, nc, nb = x.shape
    zero = np.float32(0)
    for c in prange(nc):
        m = mean[c]
        s = scale[c]
        t = beta[c]
        for a in range(na):
            for b in range(nb):
                v = (x[a, c, b] - m) * s + t
                if relu and v < zero:
                    v = zero
                out[a, c, b] = v


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def batchnorm_backward(g, x, y, mean, inv_std, gamma, training, relu, need_dx, dx, dgamma, dbeta):
    """BatchNorm's gradients over ``(A, C, B)`` arrays: per channel ``dbeta = sum(g)``, ``dgamma =
    sum(g * xhat)`` (float32 ``(C,)`` outputs) and, with ``need_dx``, the input gradient ``dx``. In
    training the statistics are the batch's (``dx = scale * (g - mean(g) - xhat * mean(g xhat))``),
    otherwise constants (``dx = scale * g``). With ``relu`` the gradient first passes the ReLU that
    followed: ``g`` counts only where the output ``y`` is positive."""
    na, nc, nb = g.shape
    count = na * nb
    zero = np.float32(0)
    for c in prange(nc):
        m = mean[c]
        sg = 0.0
        sgx = 0.0
        for a in range(na):
            for b in range(nb):
                gv = g[a, c, b]
                if relu and not y[a, c, b] > zero:
                    gv = zero
                sg += gv
                sgx += np.float64(gv) * np.float64(x[a, c, b] - m)
        istd = np.float64(inv_std[c])
        dbeta[c] = sg
        dgamma[c] = sgx * istd
        if not need_dx:
            continue
        scale64 = np.float64(gamma[c]) * istd
        scale = np.float32(scale64)
        ca = np.float32(0)
        cc = np.float32(0)
        if training:
            ca = np.float32(-scale64 * istd * istd * sgx / count)
            cc = np.float32(-scale64 * sg / count)
        for a in range(na):
            for b in range(nb):
                gv = g[a, c, b]
                if relu and not y[a, c, b] > zero:
                    gv = zero
                dx[a, c, b] = scale * gv + ca * (x[a, c, b] - m) + cc


@numba.njit(cache=True, fastmath=_FLAGS)
def dense_moments(x):
    """``channel_moments`` of a dense batch ``(N, C)``: row after row (contiguous), the channels'
    sums side by side (strided per-channel loops would miss the cache on every value)."""
    nn, nc = x.shape
    k = x[0].astype(np.float64)
    s = np.zeros(nc)
    q = np.zeros(nc)
    for n in range(nn):
        for c in range(nc):
            d = np.float64(x[n, c]) - k[c]
            s[c] += d
            q[c] += d * d
    m = s / nn
    return k + m, np.maximum(q / nn - m * m, 0.0)


@numba.njit(cache=True)
def dense_apply(x, mean, scale, beta, relu, out):
    """``batchnorm_apply`` on a dense batch ``(N, C)``, row after row."""
    nn, nc = x.shape
    zero = np.float32(0)
    for n in range(nn):
        for c in range(nc):
            v = (x[n, c] - mean[c]) * scale[c] + beta[c]
            if relu and v < zero:
                v = zero
            out[n, c] = v


@numba.njit(cache=True, fastmath=_FLAGS)
def dense_backward(g, x, y, mean, inv_std, gamma, training, relu, need_dx, dx, dgamma, dbeta):
    """``batchnorm_backward`` on a dense batch ``(N, C)``, row after row."""
    nn, nc = g.shape
    zero = np.float32(0)
    sg = np.zeros(nc)
    sgx = np.zeros(nc)
    for n in range(nn):
        for c in range(nc):
            gv = g[n, c]
            if relu and not y[n, c] > zero:
                gv = zero
            sg[c] += gv
            sgx[c] += np.float64(gv) * np.float64(x[n, c] - mean[c])
    istd = inv_std.astype(np.float64)
    dbeta[:] = sg
    dgamma[:] = sgx * istd
    if not need_dx:
        return
    scale64 = gamma.astype(np.float64) * istd
    scale = scale64.astype(np.float32)
    ca = np.zeros(nc, np.float32)
    cc = np.zeros(nc, np.float32)
    if training:
        ca[:] = -scale64 * istd * istd * sgx / nn
        cc[:] = -scale64 * sg / nn
    for n in range(nn):
        for c in range(nc):
            gv = g[n, c]
            if relu and not y[n, c] > zero:
                gv = zero
            dx[n, c] = scale[c] * gv + ca[c] * (x[n, c] - mean[c]) + cc[c]


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def layernorm_forward(x, gamma, beta, epsilon, out, mean, inv_std):
    """Each row of ``x`` ``(R, D)`` normalised, ``out = xhat * gamma + beta`` (``(D,)``); the rows'
    ``mean`` and ``inv_std`` (float32 ``(R,)``) are written for the backward pass."""
    nr, nd = x.shape
    for r in prange(nr):
        k = np.float64(x[r, 0])
        s = 0.0
        q = 0.0
        for d in range(nd):
            v = np.float64(x[r, d]) - k
            s += v
            q += v * v
        mu = s / nd
        var = max(q / nd - mu * mu, 0.0)
        m = np.float32(k + mu)
        istd = np.float32(1.0 / np.sqrt(var + epsilon))
        mean[r] = m
        inv_std[r] = istd
        for d in range(nd):
            out[r, d] = (x[r, d] - m) * istd * gamma[d] + beta[d]


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def layernorm_backward(g, x, mean, inv_std, gamma, need_dx, dx, chunks):
    """LayerNormalization's gradients over ``(R, D)`` rows: returns ``(dgamma, dbeta)`` (float64
    ``(D,)``: per-chunk partial sums, ``chunks`` rows blocks on the threads, added at the end) and
    writes the input gradient ``dx`` with ``need_dx``."""
    nr, nd = g.shape
    pg = np.zeros((chunks, nd))
    pb = np.zeros((chunks, nd))
    for t in prange(chunks):
        for r in range(t * nr // chunks, (t + 1) * nr // chunks):
            m = mean[r]
            s = inv_std[r]
            sd = 0.0
            sdx = 0.0
            for d in range(nd):
                gv = g[r, d]
                xh = (x[r, d] - m) * s
                pg[t, d] += gv * xh
                pb[t, d] += gv
                dxh = gv * gamma[d]
                sd += dxh
                sdx += dxh * xh
            if need_dx:
                a = np.float32(sd / nd)
                b = np.float32(sdx / nd)
                for d in range(nd):
                    xh = (x[r, d] - m) * s
                    dx[r, d] = (g[r, d] * gamma[d] - a - xh * b) * s
    return pg.sum(axis=0), pb.sum(axis=0)


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def groupnorm_forward(x, gamma, beta, epsilon, out, mean, inv_std):
    """Each ``(n, g)`` of ``x`` ``(N, A, G, Cg, B)`` normalised over ``(A, Cg, B)``, then ``out =
    xhat * gamma + beta`` per channel (``(G * Cg,)``); ``mean`` and ``inv_std`` (float32
    ``(N, G)``) are written for the backward pass."""
    nn, na, ng, ncg, nb = x.shape
    count = na * ncg * nb
    for i in prange(nn * ng):
        n = i // ng
        grp = i % ng
        k = np.float64(x[n, 0, grp, 0, 0])
        s = 0.0
        q = 0.0
        for a in range(na):
            for c in range(ncg):
                for b in range(nb):
                    v = np.float64(x[n, a, grp, c, b]) - k
                    s += v
                    q += v * v
        mu = s / count
        var = max(q / count - mu * mu, 0.0)
        m = np.float32(k + mu)
        istd = np.float32(1.0 / np.sqrt(var + epsilon))
        mean[n, grp] = m
        inv_std[n, grp] = istd
        for a in range(na):
            for c in range(ncg):
                ch = grp * ncg + c
                sc = istd * gamma[ch]
                sh = beta[ch]
                for b in range(nb):
                    out[n, a, grp, c, b] = (x[n, a, grp, c, b] - m) * sc + sh


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def groupnorm_backward(g, x, mean, inv_std, gamma, need_dx, dx):
    """GroupNormalization's gradients over ``(N, A, G, Cg, B)`` arrays: returns ``(dgamma, dbeta)``
    (float64 per channel) and writes the input gradient ``dx`` with ``need_dx``."""
    nn, na, ng, ncg, nb = g.shape
    count = na * ncg * nb
    pg = np.zeros((nn, ng * ncg))
    pb = np.zeros((nn, ng * ncg))
    for i in prange(nn * ng):
        n = i // ng
        grp = i % ng
        m = mean[n, grp]
        s = inv_std[n, grp]
        sd = 0.0
        sdx = 0.0
        for a in range(na):
            for c in range(ncg):
                ch = grp * ncg + c
                gm = gamma[ch]
                cg = 0.0
                cb = 0.0
                for b in range(nb):
                    gv = g[n, a, grp, c, b]
                    xh = (x[n, a, grp, c, b] - m) * s
                    cg += gv * xh
                    cb += gv
                    dxh = gv * gm
                    sd += dxh
                    sdx += dxh * xh
                pg[n, ch] += cg
                pb[n, ch] += cb
        if need_dx:
            ma = np.float32(sd / count)
            mb = np.float32(sdx / count)
            for a in range(na):
                for c in range(ncg):
                    gm = gamma[grp * ncg + c]
                    for b in range(nb):
                        xh = (x[n, a, grp, c, b] - m) * s
                        dx[n, a, grp, c, b] = (g[n, a, grp, c, b] * gm - ma - xh * mb) * s
    return pg.sum(axis=0), pb.sum(axis=0)


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def groupnorm_chwn_forward(x, gamma, beta, epsilon, out, mean, inv_std):
    """``groupnorm_forward`` for images stored CHWN, seen as ``(G, Cg, S, N)`` (the batch
    innermost): each group's statistics accumulate for every sample side by side; ``mean`` and
    ``inv_std`` are float32 ``(N, G)`` as there."""
    ng, ncg, ns, nn = x.shape
    count = ncg * ns
    for grp in prange(ng):
        k = x[0, 0, 0].astype(np.float64)
        s = np.zeros(nn)
        q = np.zeros(nn)
        for c in range(ncg):
            for p in range(ns):
                for n in range(nn):
                    v = np.float64(x[grp, c, p, n]) - k[n]
                    s[n] += v
                    q[n] += v * v
        mu = s / count
        var = np.maximum(q / count - mu * mu, 0.0)
        m = (k + mu).astype(np.float32)
        istd = (1.0 / np.sqrt(var + epsilon)).astype(np.float32)
        mean[:, grp] = m
        inv_std[:, grp] = istd
        for c in range(ncg):
            ch = grp * ncg + c
            sc = istd * gamma[ch]
            sh = beta[ch]
            for p in range(ns):
                for n in range(nn):
                    out[grp, c, p, n] = (x[grp, c, p, n] - m[n]) * sc[n] + sh


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def groupnorm_chwn_backward(g, x, mean, inv_std, gamma, need_dx, dx):
    """``groupnorm_backward`` for images stored CHWN, seen as ``(G, Cg, S, N)``."""
    ng, ncg, ns, nn = g.shape
    count = ncg * ns
    dgamma = np.zeros(ng * ncg)
    dbeta = np.zeros(ng * ncg)
    for grp in prange(ng):
        m = mean[:, grp].copy()
        istd = inv_std[:, grp].copy()
        sd = np.zeros(nn)
        sdx = np.zeros(nn)
        for c in range(ncg):
            ch = grp * ncg + c
            gm = gamma[ch]
            cg = 0.0
            cb = 0.0
            for p in range(ns):
                for n in range(nn):
                    gv = g[grp, c, p, n]
                    xh = (x[grp, c, p, n] - m[n]) * istd[n]
                    cg += gv * xh
                    cb += gv
                    dxh = gv * gm
                    sd[n] += dxh
                    sdx[n] += dxh * xh
            dgamma[ch] = cg
            dbeta[ch] = cb
        if need_dx:
            ma = (sd / count).astype(np.float32)
            mb = (sdx / count).astype(np.float32)
            for c in range(ncg):
                gm = gamma[grp * ncg + c]
                for p in range(ns):
                    for n in range(nn):
                        xh = (x[grp, c, p, n] - m[n]) * istd[n]
                        dx[grp, c, p, n] = (g[grp, c, p, n] * gm - ma[n] - xh * mb[n]) * istd[n]
    return dgamma, dbeta

"""The compiled accelerator (regnet.accel) against its NumPy reference: every fused optimizer rule
and the pooling kernels on random shapes and the edge cases (empty, one element, the parallel
chunking, ties, NaN, padding, ceil_mode, float64, the layouts left to NumPy), that each kernel
really runs, the switch (REGNET_ACCEL=0, accel.enabled, describe), and the on-disk cache a second
process reuses."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from regnet import accel, optimizers
from regnet.layers import AvgPool2D, MaxPool2D, MaxPooling1D
from regnet.ops import layout
from regnet.ops import pool as pool_ops
from regnet.testing import gradient_error, numerical_gradient

needs_numba = pytest.mark.skipif(not accel.available(), reason="the 'fast' extra (numba) is not installed")
ROOT = Path(__file__).resolve().parents[1]


def _ids(value):
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _count_calls(monkeypatch, family, name):
    """Wrap ``accel.kernels(family).<name>`` so that the test sees how often it ran."""
    module = accel.kernels(family)
    calls = []
    original = getattr(module, name)

    def spy(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, name, spy)
    return calls


# -- optimizers -----------------------------------------------------------------------------------
#: (config, the kernel it runs)
OPTIMIZERS = [
    ({"type": "SGD", "learning_rate": 0.1}, "sgd"),
    ({"type": "SGD", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.01}, "sgd"),
    ({"type": "SGD", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, "sgd"),
    ({"type": "AdaGrad", "learning_rate": 0.1, "initial_accumulator_value": 0.1}, "adagrad"),
    ({"type": "RMSprop", "rho": 0.8}, "rmsprop"),
    ({"type": "Adam", "learning_rate": 0.01}, "adam"),
    ({"type": "AdamW", "learning_rate": 0.01, "weight_decay": 0.1}, "adam"),
    ({"type": "Adamax", "weight_decay": 0.05}, "adamax"),
    ({"type": "Nadam", "weight_decay": 0.05}, "nadam"),
    ({"type": "Adadelta", "weight_decay": 0.05}, "adadelta"),
    ({"type": "Lion", "weight_decay": 0.1}, "lion"),
]
#: an empty, a scalar, a one-element, an odd and a 2-D parameter, and one that the kernels split
#: into parallel chunks (with a partial last chunk)
SHAPES = [(0,), (), (1,), (7,), (5, 3), (2 * (1 << 15) + 5,)]


def _run_optimizer(config, on, shapes=SHAPES, steps=4, seed=0, grad_hook=None):
    rng = np.random.default_rng(seed)
    params = {f"l/p{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(steps)]
    if grad_hook is not None:
        grads = [{k: grad_hook(g) for k, g in step.items()} for step in grads]
    opt = optimizers.get(config)
    with accel.enabled(on):
        for t in range(steps):
            if t == steps // 2:  # a resume in the middle: the kernels continue from saved slots
                state = {k: np.array(v, copy=True) for k, v in opt.state_dict().items()}
                opt = optimizers.get(config)
                opt.load_state_dict(state)
            opt.step(params, grads[t])
    return params, opt.state_dict()


def _assert_same(reference, fast):
    assert reference.keys() == fast.keys()
    for key in reference:
        assert fast[key].dtype == reference[key].dtype and fast[key].shape == reference[key].shape, key
        np.testing.assert_allclose(fast[key], reference[key], rtol=2e-6, atol=1e-7, err_msg=key)


@needs_numba
@pytest.mark.parametrize(("config", "kernel"), OPTIMIZERS, ids=_ids)
def test_fused_optimizer_matches_numpy(config, kernel, monkeypatch):
    calls = _count_calls(monkeypatch, "optim", kernel)
    params, state = _run_optimizer(config, on=False)
    assert not calls
    fast_params, fast_state = _run_optimizer(config, on=True)
    assert len(calls) == 4 * len(SHAPES)  # every parameter of every step went through the kernel
    _assert_same(params, fast_params)
    _assert_same(state, fast_state)


@needs_numba
@pytest.mark.parametrize(("config", "kernel"), OPTIMIZERS[1::2], ids=_ids)
def test_fused_optimizer_split_over_threads_matches_numpy(config, kernel, monkeypatch):
    optim = accel.kernels("optim")
    monkeypatch.setattr(optim, "PARALLEL_MIN", 2 * optim.CHUNK)  # the largest shape goes parallel
    calls = _count_calls(monkeypatch, "optim", f"_{kernel}_parallel")
    params, state = _run_optimizer(config, on=False)
    fast_params, fast_state = _run_optimizer(config, on=True)
    assert len(calls) == (4 if optim.numba.get_num_threads() > 1 else 0)
    _assert_same(params, fast_params)
    _assert_same(state, fast_state)


@needs_numba
@pytest.mark.parametrize("kernel", ["adam", "sgd"])
def test_the_comparison_can_fail(kernel, monkeypatch):
    """A kernel that computes something else is caught (here: a learning rate 1 % off)."""
    module = accel.kernels("optim")
    original = getattr(module, kernel)
    index = {"adam": -1, "sgd": 3}[kernel]

    def off(*args):
        args = list(args)
        args[index] = np.float32(args[index] * 1.01)
        return original(*args)

    monkeypatch.setattr(module, kernel, off)
    config = {"adam": {"type": "Adam"}, "sgd": {"type": "SGD", "learning_rate": 0.1}}[kernel]
    with pytest.raises(AssertionError):
        _assert_same(_run_optimizer(config, on=False)[0], _run_optimizer(config, on=True)[0])


@needs_numba
def test_an_adam_subclass_with_its_own_decay_keeps_the_numpy_rule(monkeypatch):
    calls = _count_calls(monkeypatch, "optim", "adam")

    class HalfDecay(optimizers.AdamW):
        def decay(self, p):
            p *= np.float32(0.5)

    params = {"l/w": np.ones(4, np.float32)}
    with accel.enabled(True):
        HalfDecay().step(params, {"l/w": np.zeros(4, np.float32)})
    assert not calls and np.all(params["l/w"] == 0.5)


@needs_numba
@pytest.mark.parametrize(
    ("what", "hook"),
    [
        ("transposed gradients", lambda g: np.ascontiguousarray(g.T).T),
        ("float64 gradients", lambda g: g.astype(np.float64)),
    ],
)
def test_arrays_the_kernels_do_not_take_go_to_numpy(what, hook, monkeypatch):
    calls = _count_calls(monkeypatch, "optim", "adam")
    shapes = [(4, 3), (3, 5)]
    reference = _run_optimizer({"type": "Adam"}, on=False, shapes=shapes, grad_hook=hook)[0]
    fast = _run_optimizer({"type": "Adam"}, on=True, shapes=shapes, grad_hook=hook)[0]
    assert not calls, what
    _assert_same(reference, fast)


@needs_numba
@pytest.mark.parametrize(("config", "kernel"), OPTIMIZERS[::2], ids=_ids)
def test_fused_optimizer_propagates_nan_and_inf_as_numpy(config, kernel):
    def poison(g):
        g = g.copy()
        if g.size > 2:
            g.reshape(-1)[:3] = (np.nan, np.inf, -np.inf)
        return g

    with np.errstate(invalid="ignore", over="ignore"):
        reference = _run_optimizer(config, on=False, shapes=[(7,), (3, 4)], grad_hook=poison)[0]
    fast = _run_optimizer(config, on=True, shapes=[(7,), (3, 4)], grad_hook=poison)[0]
    for key in reference:
        np.testing.assert_array_equal(np.isnan(fast[key]), np.isnan(reference[key]), err_msg=key)
        finite = np.isfinite(reference[key])
        np.testing.assert_allclose(fast[key][finite], reference[key][finite], rtol=2e-6, atol=1e-7)


# -- max pooling ----------------------------------------------------------------------------------
#: (config, input shape (C, H, W))
POOLS = [
    ({}, (3, 6, 6)),
    ({"pool_size": 1}, (2, 3, 4)),
    ({"pool_size": 3}, (2, 7, 8)),  # the windows leave the last rows and columns out
    ({"pool_size": [2, 3], "strides": [1, 2]}, (2, 5, 7)),
    ({"pool_size": 3, "strides": 1}, (2, 5, 5)),  # overlapping windows: the gradients add up
    ({"pool_size": 3, "strides": 2, "padding": "same"}, (2, 5, 6)),
    ({"pool_size": 2, "padding": 1}, (2, 5, 5)),
    ({"pool_size": 3, "strides": 2, "ceil_mode": True}, (2, 6, 7)),
    ({"pool_size": [3, 2], "strides": 2, "padding": 1, "ceil_mode": True}, (1, 6, 5)),
    ({"pool_size": 4, "strides": 3}, (1, 11, 4)),
]


def _pool_run(config, shape, x, on, training=True, grad=None, kind=MaxPool2D):
    layer = kind(**config)
    layer.setup(shape, np.random.default_rng(0))
    with accel.enabled(on):
        y = layer.forward(x, training=training)
        g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype) if grad is None else grad
        if layout.is_chwn(x):  # the gradient a convolution before the pooling would get
            g = layout.from_chwn(np.ascontiguousarray(layout.chwn(g)))
        return y, layer.backward(g)


def _batch(shape, seed=0, dtype=np.float32, n=5, values=None):
    """A batch of ``n`` random samples stored batch-innermost (CHWN), as the convolutions hand
    them on: the layout the kernels take."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((*shape, n)) if values is None else rng.integers(0, values, (*shape, n))
    x = layout.from_chwn(np.ascontiguousarray(data, dtype=dtype))
    assert layout.is_chwn(x) and x.shape == (n, *shape)
    return x


@needs_numba
@pytest.mark.parametrize(("config", "shape"), POOLS, ids=_ids)
def test_max_pool_kernels_match_numpy(config, shape, monkeypatch):
    forward = _count_calls(monkeypatch, "pool", "max_pool")
    backward = _count_calls(monkeypatch, "pool", "max_pool_backward")
    x = _batch(shape, seed=sum(shape))
    y, dx = _pool_run(config, shape, x, on=False)
    assert not forward and not backward
    fy, fdx = _pool_run(config, shape, x, on=True)
    assert len(forward) == len(backward) == 1
    assert fy.dtype == y.dtype == np.float32 and fdx.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(fy, y)
    np.testing.assert_allclose(fdx, dx, rtol=1e-6, atol=1e-6)
    assert layout.is_chwn(fy) and layout.is_chwn(fdx)  # the layout the convolutions take


#: AvgPool2D's further cases: whether padding counts, and ceil_mode's partial windows
AVG_POOLS = [
    *POOLS[:5],
    ({"pool_size": 3, "strides": 2, "padding": 1, "count_include_pad": True}, (2, 5, 5)),
    ({"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True}, (2, 6, 6)),
    ({"pool_size": [2, 3], "strides": 2, "padding": 1, "ceil_mode": True, "count_include_pad": True}, (1, 5, 6)),
]


@needs_numba
@pytest.mark.parametrize(("config", "shape"), AVG_POOLS, ids=_ids)
def test_avg_pool_kernels_match_numpy(config, shape, monkeypatch):
    forward = _count_calls(monkeypatch, "pool", "avg_pool")
    backward = _count_calls(monkeypatch, "pool", "avg_pool_backward")
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-12)):
        x = _batch(shape, seed=sum(shape), dtype=dtype)
        y, dx = _pool_run(config, shape, x, on=False, kind=AvgPool2D)
        fy, fdx = _pool_run(config, shape, x, on=True, kind=AvgPool2D)
        assert fy.dtype == fdx.dtype == dtype
        np.testing.assert_allclose(fy, y, rtol=tol, atol=tol)
        np.testing.assert_allclose(fdx, dx, rtol=tol, atol=tol)
    assert len(forward) == len(backward) == 2


@needs_numba
@pytest.mark.parametrize("kind", [MaxPool2D, AvgPool2D])
def test_c_ordered_and_small_batches_take_the_numpy_path(kind, monkeypatch):
    calls = _count_calls(monkeypatch, "pool", "max_pool" if kind is MaxPool2D else "avg_pool")
    c_ordered = np.random.default_rng(0).standard_normal((6, 2, 4, 4)).astype(np.float32)
    for x in (c_ordered, _batch((2, 4, 4), n=pool_ops.MIN_BATCH - 1)):
        y, dx = _pool_run({}, (2, 4, 4), x, on=False, kind=kind)
        fy, fdx = _pool_run({}, (2, 4, 4), x, on=True, kind=kind)
        np.testing.assert_array_equal(fy, y)
        np.testing.assert_array_equal(fdx, dx)
    assert not calls
    _pool_run({}, (2, 4, 4), _batch((2, 4, 4), n=pool_ops.MIN_BATCH), on=True, kind=kind)
    assert len(calls) == 1


@needs_numba
@pytest.mark.parametrize(("config", "shape"), POOLS[::3], ids=_ids)
def test_max_pool_ties_go_to_the_first_maximum(config, shape):
    """Few distinct values: many windows hold their maximum twice; both paths pick the first in
    row-major order."""
    x = _batch(shape, values=3)
    grad = np.ones_like(_pool_run(config, shape, x, on=False)[0])
    y, dx = _pool_run(config, shape, x, on=False, grad=grad)
    fy, fdx = _pool_run(config, shape, x, on=True, grad=grad)
    np.testing.assert_array_equal(fy, y)
    np.testing.assert_array_equal(fdx, dx)


@needs_numba
def test_max_pool_random_shapes_float64_and_inference():
    rng = np.random.default_rng(3)
    for seed in range(6):
        k = int(rng.integers(1, 4))
        config = {"pool_size": k, "strides": int(rng.integers(1, 4)), "ceil_mode": bool(rng.integers(2))}
        shape = (int(rng.integers(1, 4)), int(rng.integers(k, 9)), int(rng.integers(k, 9)))
        for dtype in (np.float32, np.float64):
            x = _batch(shape, seed=seed, dtype=dtype, n=int(rng.integers(4, 9)))
            for training in (True, False):  # backward after inference recomputes the argmax
                y, dx = _pool_run(config, shape, x, on=False, training=training)
                fy, fdx = _pool_run(config, shape, x, on=True, training=training)
                assert fy.dtype == fdx.dtype == dtype
                np.testing.assert_array_equal(fy, y, err_msg=f"{config} {shape}")
                np.testing.assert_allclose(fdx, dx, rtol=1e-6, atol=1e-6, err_msg=f"{config} {shape}")


@needs_numba
@pytest.mark.parametrize("kind", [MaxPool2D, AvgPool2D])
def test_pool_kernels_split_over_threads_match_numpy(kind, monkeypatch):
    pool = accel.kernels("pool")
    monkeypatch.setattr(pool, "PARALLEL_MIN", 0)
    name = "max" if kind is MaxPool2D else "avg"
    forward = _count_calls(monkeypatch, "pool", f"{name}_forward_parallel")
    backward = _count_calls(monkeypatch, "pool", f"{name}_backward_parallel")
    for config, shape in POOLS[2::2]:
        x = _batch(shape, seed=sum(shape))
        y, dx = _pool_run(config, shape, x, on=False, kind=kind)
        fy, fdx = _pool_run(config, shape, x, on=True, kind=kind)
        np.testing.assert_allclose(fy, y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(fdx, dx, rtol=1e-6, atol=1e-6)
    assert len(forward) == len(backward) == len(POOLS[2::2])


@needs_numba
@pytest.mark.parametrize("kind", [MaxPool2D, AvgPool2D])
def test_pool_kernels_pass_the_numerical_gradient_check(kind, monkeypatch):
    """The conformance kit's gradient check feeds C-ordered batches, which stay on NumPy: the
    kernels get the same check here, in float64, on a batch stored batch-innermost."""
    calls = _count_calls(monkeypatch, "pool", "max_pool_backward" if kind is MaxPool2D else "avg_pool_backward")
    shape, rng = (2, 5, 5), np.random.default_rng(0)
    layer = kind(pool_size=3, strides=2, padding=1, ceil_mode=True)
    out_shape = layer.setup(shape, rng)
    base = rng.standard_normal((*shape, 4))  # (C, H, W, N): perturbed in place
    x = layout.from_chwn(base)
    weights = layout.from_chwn(rng.standard_normal((*out_shape, 4)))
    with accel.enabled(True):
        layer.forward(x, training=True)
        analytic = layout.chwn(layer.backward(weights))
        numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * weights)), base)
    assert gradient_error(analytic, numeric) is None
    assert len(calls) == 1


@needs_numba
def test_max_pool_nan_gives_a_nan_maximum():
    x = _batch((2, 4, 4), n=4)
    x[0, 0, 1, 1] = x[3, 1, 2, 3] = np.nan
    y, _ = _pool_run({}, (2, 4, 4), x, on=False)
    fy, fdx = _pool_run({}, (2, 4, 4), x, on=True)
    np.testing.assert_array_equal(fy, y)  # NaN where NumPy has NaN (assert_array_equal matches NaNs)
    assert np.isnan(fy).sum() == 2 and fdx[0, 0, 1, 1] != 0 and fdx[3, 1, 2, 3] != 0  # to the NaN


@needs_numba
def test_max_pooling_1d_agrees():
    layer = MaxPooling1D(pool_size=3, strides=2, padding="same")
    layer.setup((3, 10), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 3, 10)).astype(np.float32)
    g = np.random.default_rng(2).standard_normal((4, 3, 5)).astype(np.float32)
    outs = []
    for on in (False, True):
        with accel.enabled(on):
            outs.append((layer.forward(x, training=True), layer.backward(g)))
    np.testing.assert_array_equal(outs[1][0], outs[0][0])
    np.testing.assert_allclose(outs[1][1], outs[0][1], rtol=1e-6, atol=1e-6)


@needs_numba
def test_an_argmax_from_numpy_goes_back_through_numpy():
    """Switching paths between forward and backward is safe: each arg knows its path."""
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    geometry = ((2, 2), (2, 2), (0, 0, 0, 0), (2, 2))
    with accel.enabled(False):
        y, arg = pool_ops.max_forward(x, *geometry, True)
    with accel.enabled(True):
        dx = pool_ops.max_backward(np.ones_like(y), arg, x.shape, *geometry)
    assert isinstance(arg, tuple) and dx.sum() == y.size


# -- the switch and the cache ---------------------------------------------------------------------
def test_the_switch_and_describe():
    with accel.enabled(False):
        assert not accel.active() and accel.describe().startswith("numpy")
    with accel.enabled(True):
        assert accel.active() == accel.available()
        assert accel.describe().startswith("fast" if accel.available() else "numpy")


@pytest.mark.parametrize("on", [False, True])
def test_version_names_the_compute_path(on, capsys):
    from regnet import cli

    with accel.enabled(on):
        status = cli.main(["--version"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0 and out[0].startswith("regnet ")
    assert out[1] == f"compute path: {accel.describe() if on else 'numpy (REGNET_ACCEL=0 or switched off)'}"
    assert out[1].startswith("compute path: fast" if on and accel.available() else "compute path: numpy")


def test_accel_path_fixture_switches_the_path(accel_path):
    assert accel.active() == (accel_path == "fast")


def _python(code, env_extra, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "REGNET_ACCEL"))}
    env.update(env_extra)
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_regnet_accel_0_turns_it_off():
    code = "from regnet import accel; print(accel.active(), accel.describe())"
    assert _python(code, {"REGNET_ACCEL": "0"}).split()[:2] == ["False", "numpy"]


#: one small kernel's first call in a fresh process, and where its compiled code came from
_CACHE_PROBE = textwrap.dedent(
    """
    import json, numpy as np
    from regnet.accel import optim
    p = np.zeros(3, np.float32)
    optim.sgd(p, p.copy(), p, np.float32(0.1), np.float32(0), False, np.float32(0))
    stats = optim._sgd_serial.stats
    print(json.dumps({"path": stats.cache_path, "hits": sum(stats.cache_hits.values()),
                      "misses": sum(stats.cache_misses.values()), "file": optim.__file__}))
    """
)


@needs_numba
def test_a_second_process_loads_the_compiled_kernels_from_the_cache(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = json.loads(_python(_CACHE_PROBE, env))
    second = json.loads(_python(_CACHE_PROBE, env))
    assert first["path"].startswith(str(tmp_path / "cache")) and first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert list((tmp_path / "cache").rglob("optim._sgd_serial-*.nbi"))


@needs_numba
def test_a_read_only_install_caches_in_the_user_cache_dir(tmp_path):
    """An install whose package folder cannot be written (a system site-packages): numba keeps the
    compiled kernels in the user's cache directory ($XDG_CACHE_HOME/numba) instead."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "regnet", site / "regnet", ignore=shutil.ignore_patterns("__pycache__"))
    # where numba would write next to the module, a file stands in the way: the folder cannot be
    # created, as in a read-only site-packages (read-only modes alone do not stop root)
    (site / "regnet" / "accel" / "__pycache__").write_text("")
    for folder, _, files in os.walk(site):
        for name in files:
            os.chmod(Path(folder) / name, 0o444)
        os.chmod(folder, 0o555)
    cache = tmp_path / "user-cache"
    env = {"PYTHONPATH": str(site), "XDG_CACHE_HOME": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        first = json.loads(_python(_CACHE_PROBE, env, cwd=tmp_path))
        second = json.loads(_python(_CACHE_PROBE, env, cwd=tmp_path))
    finally:
        for folder, _, _ in os.walk(site):
            os.chmod(folder, 0o755)
    assert first["file"] == str(site / "regnet" / "accel" / "optim.py")
    assert first["path"].startswith(str(cache / "numba")) and first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert not [f for f in site.rglob("*") if f.suffix in (".nbi", ".nbc")]

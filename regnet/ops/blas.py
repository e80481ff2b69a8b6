"""Matrix products into an existing result (``out = a @ b`` or ``out += a @ b``), and the spin
of the BLAS helper threads.

``np.matmul`` cannot accumulate into its output (BLAS ``beta = 1``); the shift-GEMM convolution
(``ops.shift``) needs exactly that, nine times per 3x3 layer, on operands that are plain strided
views of one padded buffer. ``gemm`` calls the ``cblas_?gemm`` of the OpenBLAS that NumPy's own
wheels ship and load (the same library, threads and settings as ``np.matmul``), through ctypes,
with the views' pointers and row strides: no copy of an operand and no temporary for the sum.

Where that library is not found (NumPy built against another BLAS), does not pass a self-test
against ``np.matmul``, or ``REGNET_DIRECT_BLAS=0`` is set, ``gemm`` computes the same products
with ``np.matmul`` and an add (correct, slower) and ``available()`` is False, so that layers
choose their other methods. ``reason()`` says why.

Operands are NumPy arrays, so every pointer and stride passed on comes from a view that NumPy
has bounds-checked; ``gemm`` refuses overlapping output rows and outputs that share memory with
an operand (an error in the caller, never undefined memory).
"""

import ctypes
import glob
import os
import threading

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_INT = ctypes.c_int64  # the ILP64 interface of NumPy's bundled OpenBLAS ('64_' symbol suffix)
#: symbol names tried, NumPy's bundled build first: (prefix, suffix) of ``cblas_?gemm``
_SYMBOLS = (("scipy_", "64_"), ("", "64_"))

_funcs = None  # {dtype: ctypes function} once found, {} if not
_reason = "not looked up yet"
_lib = None  # the library the functions come from

#: how long OpenBLAS's helper threads spin for the next product before they sleep: 2**N cycles of
#: the time-stamp counter (OpenBLAS's own default, 28, is about 0.1 s; 20 about 0.4 ms: long enough
#: to span the gaps between the products of one forward pass, so batch-1 latency keeps its
#: spinning threads, short against the milliseconds of element-wise work in a training step)
SPIN_EXPONENT = 20
_spin_done = False


def _candidates():
    """Shared libraries shipped inside the NumPy package (wheels put OpenBLAS there)."""
    root = os.path.dirname(np.__file__)
    names = []
    for folder in (os.path.join(root, os.pardir, "numpy.libs"), os.path.join(root, ".dylibs")):
        names += sorted(glob.glob(os.path.join(folder, "*openblas*")))
    return names


def _bind(lib, name, ctype):
    fn = getattr(lib, name)
    ptr = ctypes.c_void_p
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, _INT, _INT, _INT, ctype, ptr, _INT, ptr, _INT]
    fn.argtypes += [ctype, ptr, _INT]
    fn.restype = None
    return fn


def _load():
    if os.environ.get("REGNET_DIRECT_BLAS", "1").strip() == "0":
        return {}, "turned off by REGNET_DIRECT_BLAS=0"
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _SYMBOLS:
            try:
                funcs = {
                    np.dtype(np.float32): _bind(lib, f"{prefix}cblas_sgemm{suffix}", ctypes.c_float),
                    np.dtype(np.float64): _bind(lib, f"{prefix}cblas_dgemm{suffix}", ctypes.c_double),
                }
            except AttributeError:
                continue
            global _lib
            _lib = lib
            return funcs, f"{os.path.basename(path)} ({prefix}cblas_?gemm{suffix})"
    return {}, "no OpenBLAS with an ILP64 cblas_?gemm inside the NumPy package"


def _self_test(funcs):
    """The direct calls agree with ``np.matmul`` on transposed, strided and accumulated operands."""
    rng = np.random.default_rng(0)
    for dtype in funcs:
        a = rng.standard_normal((7, 12)).astype(dtype)
        b = rng.standard_normal((9, 11)).astype(dtype)
        out = rng.standard_normal((6, 13)).astype(dtype)
        av, bv, ov = a[1:6, 2:9], b[1:5, 2:9].T, out[1:, 3:7]  # (5, 7) @ (7, 4) -> (5, 4)
        want = out.copy()
        want[1:, 3:7] += av @ bv
        _call(funcs[np.dtype(dtype)], av, bv, ov, 1.0, (_layout(av), _layout(bv), _layout(ov)))
        if not np.allclose(out, want, rtol=1e-4, atol=1e-4):  # also: nothing outside the view written
            return False
    return True


def _functions():
    global _funcs, _reason
    if _funcs is None:
        funcs, why = _load()
        if funcs and not _self_test(funcs):
            funcs, why = {}, f"{why} disagrees with np.matmul in the self-test"
        _funcs, _reason = funcs, (f"direct: {why}" if funcs else why)
    return _funcs


def available():
    """True when ``gemm`` calls BLAS directly (float32 and float64)."""
    return bool(_functions())


def reason():
    """Which library ``gemm`` calls, or why it falls back to ``np.matmul``."""
    _functions()
    return _reason


def short_spin():
    """Once per process: make the helper threads of NumPy's OpenBLAS sleep soon after a product.

    By default they spin for about 0.1 s after every matrix product, waiting for the next; a
    training step puts element-wise NumPy work (optimizer updates, activations, reductions)
    between its products, which on a machine with as many cores as BLAS threads then competes
    with spinning threads for the cores (an MLP-1024 Adam step, 2 cores: 4.6 ms with the default
    spin, 2.8 ms with a short one). OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` when it starts its
    threads, so this sets it to ``SPIN_EXPONENT``, has OpenBLAS read its environment again and
    stops its threads; they start again, with the short spin, at the next product.

    It does nothing (returns False) when ``OPENBLAS_THREAD_TIMEOUT`` or ``REGNET_BLAS_TUNING=0``
    is set, when NumPy's own OpenBLAS is not the library found, or while other Python threads run
    (one of them could be inside a product while the helper threads stop), and after the first
    call.
    """
    global _spin_done
    if _spin_done:
        return False
    _spin_done = True
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or os.environ.get("REGNET_BLAS_TUNING", "1").strip() == "0":
        return False
    if not available() or threading.active_count() > 1:
        return False
    try:
        read_env, shutdown = _lib.openblas_read_env, _lib.blas_thread_shutdown_
    except AttributeError:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(SPIN_EXPONENT)
    read_env.restype, shutdown.restype = None, ctypes.c_int
    read_env()
    shutdown()
    return True


def _layout(x):
    """``(transposed, leading dimension)`` of a 2-D view that BLAS can read in place, else None."""
    rows, cols = x.shape
    s0, s1 = x.strides
    size = x.itemsize
    if (s1 == size or cols == 1) and s0 % size == 0 and s0 >= size * max(cols, 1):
        return False, s0 // size
    if (s0 == size or rows == 1) and s1 % size == 0 and s1 >= size * max(rows, 1):
        return True, s1 // size
    return None


def _call(fn, a, b, out, beta, layouts):
    """The BLAS call, given the ``_layout`` of ``a``, ``b`` and ``out``."""
    (ta, lda), (tb, ldb), (_, ldc) = layouts
    m, k = a.shape
    n = b.shape[1]
    fn(
        _ROW_MAJOR,
        _TRANS if ta else _NO_TRANS,
        _TRANS if tb else _NO_TRANS,
        m,
        n,
        k,
        1.0,
        a.ctypes.data,
        lda,
        b.ctypes.data,
        ldb,
        beta,
        out.ctypes.data,
        ldc,
    )


def gemm(a, b, out, beta=0.0):
    """``out = a @ b`` (``beta`` 0) or ``out += a @ b`` (``beta`` 1), for 2-D float arrays; ``a``
    and ``b`` may be transposed or strided views, ``out`` a view with rows in order."""
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2 or a.shape[1] != b.shape[0] or out.shape != (a.shape[0], b.shape[1]):
        raise ValueError(f"gemm shapes {a.shape} @ {b.shape} -> {out.shape}")
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError("gemm output shares memory with an operand")
    fn = _functions().get(out.dtype) if a.dtype == b.dtype == out.dtype else None
    layouts = (_layout(a), _layout(b), _layout(out))
    usable = fn is not None and None not in layouts and not layouts[2][0]
    if not usable or 0 in out.shape or a.shape[1] == 0:
        if beta:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
        return out
    _call(fn, a, b, out, float(beta), layouts)
    return out

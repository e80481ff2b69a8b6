"""Element-wise work split over threads: NumPy releases the GIL inside ufunc loops, so slices of
large arrays can be processed at the same time. The thread count follows the BLAS one (the same
environment variables), so a process never uses more cores for element-wise work than for
matrix products; ``REGNET_NUM_THREADS`` overrides it. Results are bit-identical to one thread:
each element is computed by the same operations whichever slice it falls in.
"""

import os
from concurrent.futures import ThreadPoolExecutor

#: arrays smaller than this many elements per thread are processed on the calling thread
MIN_ELEMENTS_PER_THREAD = 1 << 17
_VARS = ("REGNET_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_pool = None
_pool_size = 0


def threads():
    """Threads for element-wise work: the first positive integer among ``_VARS``, else the
    number of cores this process may run on."""
    for var in _VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _executor(n):
    global _pool, _pool_size
    if _pool is None or _pool_size != n:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(n - 1, thread_name_prefix="regnet"), n
    return _pool


def _forget_pool():  # a forked child has none of the parent's threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _split(fn, arrays, axis, per_thread=None):
    """``fn(*parts)`` over aligned slices of ``axis`` of ``arrays`` (``None`` entries stay
    ``None``), on several threads when the first array is large: at least ``per_thread``
    (default ``MIN_ELEMENTS_PER_THREAD``) elements of it per thread, else all on the calling
    thread."""
    per_thread = MIN_ELEMENTS_PER_THREAD if per_thread is None else per_thread
    first = arrays[0]
    length = first.shape[axis]
    n = 1 if first.size < 2 * per_thread else min(threads(), length, first.size // per_thread)
    if n <= 1:
        fn(*arrays)
        return
    step = -(-length // n)
    bounds = [(i, min(length, i + step)) for i in range(0, length, step)]
    index = (slice(None),) * axis

    def part(i0, i1):
        return [None if a is None else a[(*index, slice(i0, i1))] for a in arrays]

    pool = _executor(n)
    futures = [pool.submit(fn, *part(i0, i1)) for i0, i1 in bounds[1:]]
    try:
        fn(*part(*bounds[0]))
    finally:
        for f in futures:
            f.result()


def for_channels(fn, *arrays):
    """``fn(*parts)`` over aligned slices of axis 1 (the channels) of NCHW ``arrays`` (``None``
    entries stay ``None``), on several threads when the first array is large. Channels of a
    batch stored CHWN (see ``layout``) are contiguous blocks, so each thread works on its own
    memory. Channels are independent in the element-wise and window operations this serves."""
    _split(fn, arrays, 1)


def for_blocks(fn, *arrays, per_thread=None):
    """``fn(*parts)`` over aligned slices of the axis that is outermost in the first array's memory
    (the largest stride: the channels of a batch stored CHWN, the samples of a C-ordered one), so
    that each thread works on contiguous blocks; on several threads when the first is large (at
    least ``per_thread`` elements per thread, default ``MIN_ELEMENTS_PER_THREAD``)."""
    first = arrays[0]
    if first.ndim == 0:
        fn(*arrays)
        return
    _split(fn, arrays, max(range(first.ndim), key=lambda i: first.strides[i]), per_thread)


def for_rows(fn, *arrays):
    """``fn(*parts)`` over aligned slices of axis 0 of ``arrays`` (per-row work on ``(rows, n)``
    arrays and their ``(rows, 1)`` parameters, or slices of equally long 1-D arrays), on several
    threads when the first is large; exceptions propagate."""
    _split(fn, arrays, 0)

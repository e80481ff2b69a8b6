"""Process tuning for training and inference loops, done once, on the first call that runs one.

Building a model changes nothing outside it (exporting or inspecting a model leaves the process
as it was). The first ``fit``, ``evaluate``, ``predict`` or ``*_on_batch`` call, or an explicit
``regnet.tune()``, makes two process-wide settings that pay in loops:

* ``memory.steady_heap``: glibc keeps freed per-step arrays in its heap (no fresh pages every
  step); ``REGNET_MALLOC_TUNING=0`` turns it off;
* ``blas.short_spin``: NumPy's OpenBLAS helper threads sleep soon after a product instead of
  spinning for 0.1 s; ``REGNET_BLAS_TUNING=0`` (or a user's ``OPENBLAS_THREAD_TIMEOUT``) turns
  it off.
"""

from . import blas, memory

_done = False


def tune() -> bool:
    """Make both settings (each at most once per process); True on the call that made them."""
    global _done
    if _done:
        return False
    _done = True
    memory.steady_heap()
    blas.short_spin()
    return True

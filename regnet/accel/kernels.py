"""The compiled kernels (numba). Imported only through ``accel.kernels()`` when numba is installed.

Each kernel is a ``@njit(cache=True)`` function with a NumPy reference at its call site; the tests
(tests/test_accel.py) compare every kernel with that reference on both paths."""

import numba  # noqa: F401  (kernels are added here)

"""Shared fixtures.

``accel_path`` runs a test on both computation paths: ``numpy`` (the reference, always) and ``fast``
(the compiled accelerator, regnet.accel; skipped where the 'fast' extra is not installed). A module
whose tests must hold on both paths says ``pytestmark = pytest.mark.usefixtures("accel_path")``.
"""

import pytest

from regnet import accel


@pytest.fixture(params=["numpy", "fast"])
def accel_path(request):
    if request.param == "fast" and not accel.available():
        pytest.skip("the 'fast' extra (numba) is not installed")
    with accel.enabled(request.param == "fast"):
        yield request.param

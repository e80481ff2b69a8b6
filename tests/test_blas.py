"""``ops.blas.gemm`` (products into an existing result, straight through NumPy's BLAS) against
``np.matmul``: every operand layout it accepts, accumulation, its refusals, and the fallback."""

import os
import subprocess
import sys

import numpy as np
import pytest

from regnet.ops import blas

needs_direct = pytest.mark.skipif(not blas.available(), reason=blas.reason())


def views(rng, rows, cols, dtype):
    """The same ``(rows, cols)`` values as a contiguous array, a transposed view, a strided-row
    view inside a larger array and a view neither BLAS layout can take (every other column)."""
    base = rng.standard_normal((rows, cols)).astype(dtype)
    wide = np.zeros((rows + 2, cols + 5), dtype)
    wide[1 : rows + 1, 2 : cols + 2] = base
    spaced = np.zeros((rows, 2 * cols), dtype)
    spaced[:, ::2] = base
    return {
        "contiguous": base,
        "transposed": np.ascontiguousarray(base.T).T,
        "strided": wide[1 : rows + 1, 2 : cols + 2],
        "spaced": spaced[:, ::2],
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("shape", [(5, 7, 4), (1, 3, 6), (6, 1, 1), (4, 9, 1), (3, 0, 2)])
def test_gemm_matches_matmul_on_every_layout(dtype, beta, shape):
    rng = np.random.default_rng(0)
    m, k, n = shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a_name, a in views(rng, m, k, dtype).items():
        for b_name, b in views(rng, k, n, dtype).items():
            sheet = rng.standard_normal((m + 3, n + 4)).astype(dtype)
            out = sheet[2 : m + 2, 1 : n + 1]  # a view with rows in order and a border around it
            want = sheet.copy()
            want[2 : m + 2, 1 : n + 1] = beta * out + a @ b
            assert blas.gemm(a, b, out, beta=beta) is out
            np.testing.assert_allclose(sheet, want, rtol=tol, atol=tol, err_msg=f"{a_name} @ {b_name}")


def test_gemm_falls_back_to_matmul_when_direct_calls_are_off(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 3)).astype(np.float32)
    out = np.ones((4, 3), np.float32)
    monkeypatch.setattr(blas, "_funcs", {})
    blas.gemm(a, b, out, beta=1.0)
    np.testing.assert_allclose(out, 1 + a @ b, rtol=1e-6)
    assert not blas.available()


def test_gemm_mixed_dtypes_go_through_matmul():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 2)).astype(np.float32)
    out = np.zeros((3, 2))
    blas.gemm(a, b, out)
    np.testing.assert_allclose(out, a @ b)


def test_gemm_refuses_wrong_shapes_and_aliased_output():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        blas.gemm(a, np.ones((5, 2), np.float32), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="shapes"):
        blas.gemm(a, np.ones((4, 2), np.float32), np.empty((3, 3), np.float32))
    buf = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        blas.gemm(buf[:, :4], buf[:, 4:6], buf[:, 6:8])


def test_output_rows_that_overlap_are_not_passed_to_blas():
    """A view whose rows overlap (stride shorter than a row) is no BLAS output: never called with it."""
    flat = np.zeros(20, np.float32)
    overlapping = np.lib.stride_tricks.as_strided(flat, (3, 4), (8, 4))
    assert blas._layout(overlapping) is None


@needs_direct
def test_direct_calls_name_their_library():
    assert blas.reason().startswith("direct: ") and "gemm" in blas.reason()


def test_switch_turns_direct_calls_off_and_convolutions_follow():
    code = (
        "from regnet.ops import blas\n"
        "from regnet.layers.conv import Conv2D\n"
        "import numpy as np\n"
        "layer = Conv2D(filters=16, kernel_size=3, padding=1)\n"
        "layer.setup((16, 32, 32), np.random.default_rng(0))\n"
        "print(blas.available(), layer._shift, blas.reason())\n"
    )
    env = {**os.environ, "REGNET_DIRECT_BLAS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False turned off by REGNET_DIRECT_BLAS=0"


SPIN_CODE = """
import os, threading
import numpy as np
import regnet
from regnet.ops import blas
{before}
model = regnet.Model([{{"type": "Dense", "units": 4}}], input_shape=(3,))
built = os.environ.get("OPENBLAS_THREAD_TIMEOUT")  # building a model changes nothing outside it
model.predict(np.zeros((2, 3), np.float32))  # the first loop call tunes the process
a = np.random.default_rng(0).random((300, 300))
ok = np.allclose(a @ a, np.einsum("ij,jk->ik", a, a))  # products still right after the restart
seen = blas._lib.openblas_thread_timeout() if blas.available() else None
print(built, os.environ.get("OPENBLAS_THREAD_TIMEOUT"), seen, blas.short_spin(), ok)
"""


def _spin_run(env=None, before=""):
    environ = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "REGNET_BLAS_TUNING")}
    code = SPIN_CODE.format(before=before)
    run = subprocess.run([sys.executable, "-c", code], env={**environ, **(env or {})}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@needs_direct
def test_the_first_prediction_shortens_the_blas_spin_once_and_building_does_not():
    assert _spin_run() == ["None", str(blas.SPIN_EXPONENT), str(blas.SPIN_EXPONENT), "False", "True"]


@needs_direct
def test_the_spin_is_left_alone_when_set_or_switched_off_or_threads_run():
    assert _spin_run({"OPENBLAS_THREAD_TIMEOUT": "20"}) == ["20", "20", "20", "False", "True"]
    assert _spin_run({"REGNET_BLAS_TUNING": "0"}) == ["None", "None", "0", "False", "True"]
    other = "stop = threading.Event(); threading.Thread(target=stop.wait, daemon=True).start()"
    assert _spin_run(before=other) == ["None", "None", "0", "False", "True"]

"""kiln.set_num_threads / get_num_threads control the BLAS pool kiln's kernels use."""
import subprocess
import sys

import pytest

import kiln


def test_set_and_get_num_threads():
    from kiln.runtime import native_pool
    before, native_before = kiln.get_num_threads(), native_pool._num_threads
    try:
        kiln.set_num_threads(1)
        assert kiln.get_num_threads() == 1
        assert native_pool.native_threads() == 1  # kiln's native kernels follow it too
        kiln.set_num_threads(3)
        assert native_pool.native_threads() == 3
    finally:
        kiln.set_num_threads(before)
        native_pool._num_threads = native_before
    with pytest.raises(ValueError, match="positive int"):
        kiln.set_num_threads(0)


@pytest.mark.parametrize("env,expect", [({"KILN_NUM_THREADS": "1"}, "1"), ({}, "1")])
def test_default_is_one_blas_thread(env, expect):
    import os
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS", "KILN_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", "import kiln; print(kiln.get_num_threads())"],
                         env={**clean, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expect

"""Fixtures of the CUDA tests: `needs_gpu` skips where no device is usable; `cuda_device` runs a test
on the host simulator and, where a GPU is usable, on the real driver (the same test, twice)."""
import pytest

import kiln


def _no_device_reason():
    from kiln.runtime import cuda_driver
    return cuda_driver.unavailable_reason()


@pytest.fixture
def needs_gpu():
    reason = _no_device_reason()
    if reason is not None:
        pytest.skip(f"needs a CUDA device: {reason}")


@pytest.fixture(params=["sim", "real"])
def cuda_device(request):
    """'sim': KILN_CUDA_SIM on for the test (the host simulator); 'real': the driver (skips without a GPU)."""
    from kiln.cuda.host_harness import compiler
    if request.param == "sim":
        if compiler() is None:
            pytest.skip("the CUDA simulator needs g++")
        with kiln.config.override(cuda_sim=True):
            yield "sim"
    else:
        reason = _no_device_reason()
        if reason is not None:
            pytest.skip(f"needs a CUDA device: {reason}")
        with kiln.config.override(cuda_sim=False):
            yield "real"

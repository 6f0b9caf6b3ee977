"""Make tests/cuda/harness/cuda_harness.py importable; `needs_gpu` skips where no device is usable."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "harness"))


def _no_device_reason():
    from kiln.runtime import cuda_driver
    return cuda_driver.unavailable_reason()


@pytest.fixture
def needs_gpu():
    reason = _no_device_reason()
    if reason is not None:
        pytest.skip(f"needs a CUDA device: {reason}")

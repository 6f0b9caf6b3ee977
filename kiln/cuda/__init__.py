"""`kiln.cuda`: the CUDA device, as `torch.cuda` idioms expect it.

`is_available()` is True where NVIDIA's `cuda-bindings` (kiln's `cuda` extra), the driver and a
device are present; `unavailable_reason()` says why not. Programs compiled with
`kiln.compile(fn, backend="cuda")` run there (their inputs and outputs are copied between host
and device); lowering them (`.lower(...).as_text("cuda" | "ptx")`) needs no device. Eager
tensors stay on the CPU in this version: `device="cuda"` raises a RuntimeError saying so.
Code written `device = "cuda" if torch.cuda.is_available() else "cpu"` runs on the CPU where
no device is present.
"""
from __future__ import annotations

from ..runtime import cuda_driver as _driver


def is_available() -> bool:
    """Is a CUDA device usable (the cuda-bindings package, the NVIDIA driver and a device)?"""
    return _driver.is_available()


def unavailable_reason() -> str | None:
    """Why no CUDA device is usable (None when one is)."""
    return _driver.unavailable_reason()


def device_count() -> int:
    return _driver.device_count()


def get_device_name(device=None) -> str:
    """The name of device 0 (RuntimeError without a device)."""
    return _driver.device_name()


def get_arch() -> str:
    """The device's architecture, e.g. 'sm_90' (RuntimeError without a device)."""
    return _driver.device_arch()


def manual_seed(seed: int) -> None:
    """Accepted for compatibility: kiln's random numbers come from one counter-based generator,
    the same on every device (`kiln.manual_seed`)."""


def manual_seed_all(seed: int) -> None:
    """Accepted for compatibility (see `manual_seed`)."""


def synchronize(device=None) -> None:
    """Wait for the device's stream; nothing to wait for without a device."""
    if _driver.is_available():
        _driver.synchronize()


def empty_cache() -> None:
    """Return the caching allocator's free blocks to the driver."""
    _driver.empty_cache()

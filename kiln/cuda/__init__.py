"""`kiln.cuda`: the CUDA device, as `torch.cuda` idioms expect it.

`is_available()` is True where NVIDIA's `cuda-bindings` (kiln's `cuda` extra), the driver and a
device are present, or when the host simulator is selected (`KILN_CUDA_SIM=1`,
`kiln.config.override(cuda_sim=True)`; `get_device_name()` then says so); `unavailable_reason()`
says why not. `device="cuda"` tensors and programs compiled with `kiln.compile(fn, backend="cuda")`
run there; lowering (`.lower(...).as_text("cuda" | "ptx")`) needs no device. Code written
`device = "cuda" if torch.cuda.is_available() else "cpu"` runs on the CPU where no device is present.
Everything here goes through the device seam (`kiln.runtime.cuda_device.current()`).
"""
from __future__ import annotations

from ..runtime.cuda_device import current as _current


def is_simulated() -> bool:
    """Is the host simulator the CUDA device in effect (KILN_CUDA_SIM)?"""
    from .. import config
    return config.get().cuda_sim


def is_available() -> bool:
    """Is a CUDA device usable (the cuda-bindings package, the NVIDIA driver and a device)?"""
    return _current().is_available()


def unavailable_reason() -> str | None:
    """Why no CUDA device is usable (None when one is)."""
    return _current().unavailable_reason()


def device_count() -> int:
    return _current().count()


def get_device_name(device=None) -> str:
    """The name of device 0 (RuntimeError without a device); the simulator's says it is the simulator."""
    _current().require("querying the device name")
    return _current().name()


def get_arch() -> str:
    """The device's architecture, e.g. 'sm_90' (RuntimeError without a device)."""
    _current().require("querying the device architecture")
    return _current().arch()


def manual_seed(seed: int) -> None:
    """Accepted for compatibility: kiln's random numbers come from one counter-based generator,
    the same on every device (`kiln.manual_seed`)."""


def manual_seed_all(seed: int) -> None:
    """Accepted for compatibility (see `manual_seed`)."""


def synchronize(device=None) -> None:
    """Wait for the device's stream; nothing to wait for without a device."""
    dev = _current()
    if dev.is_available():
        dev.synchronize()


def empty_cache() -> None:
    """Return the caching allocator's free blocks to the driver."""
    _current().empty_cache()


def memory_allocated(device=None) -> int:
    """Bytes of device memory handed out by kiln's caching allocator (0 without a device)."""
    dev = _current()
    return dev.allocator.allocated_bytes if dev.is_available() else 0


def memory_reserved(device=None) -> int:
    """Bytes held by the caching allocator: handed out plus cached (0 without a device)."""
    dev = _current()
    return dev.allocator.allocated_bytes + dev.allocator.cached_bytes if dev.is_available() else 0

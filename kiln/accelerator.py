"""`kiln.accelerator`: PyTorch's device-generic accelerator queries (`torch.accelerator`).

kiln runs on the CPU in this version, which PyTorch does not count as an accelerator, so
`is_available()` is False and `current_accelerator()` is None, as PyTorch says on a CPU-only
machine. Calls that need an accelerator device raise the error PyTorch raises there.
"""
from __future__ import annotations

_NONE = "Cannot access accelerator device when none is available."


def is_available() -> bool:
    """False: kiln has no accelerator backend yet."""
    return False


def current_accelerator(check_available: bool = False):
    """The accelerator device type, or None (always None in kiln)."""
    return None


def device_count() -> int:
    return 0


def current_device_index() -> int:
    raise RuntimeError(_NONE)


def set_device_index(device) -> None:
    raise RuntimeError(_NONE)


def synchronize(device=None) -> None:
    raise RuntimeError(_NONE)

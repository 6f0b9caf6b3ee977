"""`kiln.cuda`: what `torch.cuda` idioms need. kiln has no CUDA device support yet, so
`is_available()` is False and code written `device = "cuda" if torch.cuda.is_available() else "cpu"`
runs on the CPU."""
from __future__ import annotations


def is_available() -> bool:
    """False: kiln's tensors and compiled code run on the CPU in this version."""
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Accepted for compatibility (no CUDA generator exists)."""


def manual_seed_all(seed: int) -> None:
    """Accepted for compatibility (no CUDA generator exists)."""


def synchronize(device=None) -> None:
    """Nothing to wait for on the CPU."""

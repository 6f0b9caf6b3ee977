"""`kiln.backends.cudnn`: cuDNN settings, accepted and without effect (kiln runs on the CPU, without cuDNN).

Assign them as in PyTorch (`kiln.backends.cudnn.benchmark = True`); the values are kept and read back,
and the defaults are PyTorch's. kiln's CPU results do not depend on them: its kernels are chosen by
the compiler, not by autotuning, and the same program on the same inputs gives the same result.
"""
from __future__ import annotations

enabled: bool = True
benchmark: bool = False
deterministic: bool = False
allow_tf32: bool = True


def is_available() -> bool:
    """False: kiln does not use cuDNN."""
    return False


def version() -> None:
    """None, as PyTorch reports when cuDNN is not available."""
    return None

"""`kiln.nn.parallel`: `DataParallel` (runs the module: kiln has one CPU device) and `DistributedDataParallel`,
which needs a process group that kiln does not provide, and says so."""
from __future__ import annotations

from ..modules.lazy import DataParallel
from ..modules.module import Module

__all__ = ["DataParallel", "DistributedDataParallel"]


class DistributedDataParallel(Module):
    """Not supported: kiln has no `torch.distributed` (no process groups), which PyTorch's DDP requires."""

    def __init__(self, module: Module, *args, **kwargs):
        raise RuntimeError("DistributedDataParallel needs a torch.distributed process group, and kiln has no "
                           "distributed support; on one machine, use the module itself (or nn.DataParallel)")

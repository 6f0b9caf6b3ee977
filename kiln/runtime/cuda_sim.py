"""The CUDA host simulator: the device seam (`cuda_device.CudaDevice`) without a GPU, so that CI
runs every line of the device plumbing -- tensors, copies, the caching allocator, program launches,
the status buffer -- on the CPU.

- Device memory is host memory (numpy blocks filled with 0xCD, so unwritten output shows). Every
  copy, memset and launch argument is address-checked: a pointer (and length) outside the blocks the
  allocator has handed out -- freed, cached, or never allocated -- raises `SimMemoryError` naming
  the pointer, instead of touching memory.
- Kernels are the emitted CUDA C compiled as C++ with the CPU harness (`kiln.cuda.host_harness`:
  a block's threads as fibers taking turns between barriers, warp shuffles through memory), grids
  shrunk to at most 2 blocks of one warp (32 threads; the harness tests run 64-thread, multi-warp
  blocks); the compiled libraries live in the disk cache, so a second run does not call g++.
- Selected only explicitly: `KILN_CUDA_SIM=1` or `kiln.config.override(cuda_sim=True)`.

It does not model timing (every call is synchronous), asynchronous errors, the device's real memory
limit (`memory_limit` bytes, 1 GiB by default, stands in for it) or a real warp's scheduling.
"""
from __future__ import annotations

import bisect
import ctypes
import threading
from typing import Sequence

import numpy as np

from .cuda_device import CudaDevice, DeviceAllocator, DeviceBuffer

SIM_NAME = "kiln CUDA simulator (host memory, kernels run by the CPU harness)"
SIM_ARCH = "sm_90"


class SimMemoryError(RuntimeError):
    """A simulated device access outside every live allocation."""


class SimOutOfMemoryError(MemoryError):
    """The simulator's memory limit was reached (it stands in for the device's)."""


class SimDevice(CudaDevice):
    """The device seam over host memory; see the module docstring."""

    def __init__(self, memory_limit: int = 1 << 30, max_grid: int = 2, max_block: int = 32):
        self.memory_limit = memory_limit
        self.max_grid, self.max_block = max_grid, max_block  # launches shrunk to this (see the docstring)
        self._blocks: dict[int, np.ndarray] = {}   # raw allocations by address
        self._starts: list[int] = []               # sorted addresses of the blocks
        self._lock = threading.RLock()
        self._allocator = DeviceAllocator(self._raw_alloc, self._raw_free, SimOutOfMemoryError)

    # -- identity ----------------------------------------------------------------------------------
    def is_available(self) -> bool:
        from ..cuda.host_harness import compiler
        return compiler() is not None

    def unavailable_reason(self) -> str | None:
        return None if self.is_available() else "the CUDA simulator needs g++ on PATH, and there is none"

    def name(self) -> str:
        return SIM_NAME

    def arch(self) -> str:
        return SIM_ARCH

    @property
    def allocator(self) -> DeviceAllocator:
        return self._allocator

    # -- memory ------------------------------------------------------------------------------------
    def _raw_alloc(self, size: int) -> int:
        with self._lock:
            used = sum(b.nbytes for b in self._blocks.values())
            if used + size > self.memory_limit:
                raise SimOutOfMemoryError(f"the simulator's memory limit ({self.memory_limit} bytes) is reached: "
                                          f"{used} bytes allocated, {size} more asked")
            block = np.full(size, 0xCD, np.uint8)
            ptr = block.ctypes.data
            self._blocks[ptr] = block
            bisect.insort(self._starts, ptr)
            return ptr

    def _raw_free(self, ptr: int) -> None:
        with self._lock:
            if self._blocks.pop(ptr, None) is None:
                raise SimMemoryError(f"cuda simulator: freeing 0x{ptr:x}, which is not an allocation")
            self._starts.remove(ptr)

    def check_range(self, ptr: int, nbytes: int, what: str) -> None:
        """SimMemoryError unless [ptr, ptr+nbytes) lies inside one block handed out and not returned."""
        with self._lock:
            k = bisect.bisect_right(self._starts, ptr) - 1
            if k >= 0:
                start = self._starts[k]
                size = self._allocator.in_use.get(start)
                if size is not None and ptr + max(nbytes, 0) <= start + size:
                    return
        raise SimMemoryError(f"cuda simulator: {what} touches 0x{ptr:x}..0x{ptr + nbytes:x} ({nbytes} bytes), "
                             "which is outside every live device allocation (freed, never allocated, or past "
                             "the end of one)")

    def to_device(self, arr: np.ndarray, buf: DeviceBuffer | None = None) -> DeviceBuffer:
        arr = np.ascontiguousarray(arr)
        buf = buf if buf is not None else self.alloc(arr.nbytes)
        if arr.nbytes:
            self.check_range(buf.ptr, arr.nbytes, "a host-to-device copy")
            ctypes.memmove(buf.ptr, arr.ctypes.data, arr.nbytes)
        return buf

    def to_host(self, buf: DeviceBuffer, shape: Sequence[int], dtype) -> np.ndarray:
        out = np.empty(tuple(shape), dtype)
        if out.nbytes:
            self.check_range(buf.ptr, out.nbytes, "a device-to-host copy")
            ctypes.memmove(out.ctypes.data, buf.ptr, out.nbytes)
        return out

    def copy(self, dst: DeviceBuffer, src: DeviceBuffer, nbytes: int) -> None:
        if nbytes:
            self.check_range(src.ptr, nbytes, "a device-to-device copy's source")
            self.check_range(dst.ptr, nbytes, "a device-to-device copy's destination")
            ctypes.memmove(dst.ptr, src.ptr, nbytes)

    def memset(self, buf: DeviceBuffer, byte: int, nbytes: int) -> None:
        if nbytes:
            self.check_range(buf.ptr, nbytes, "a memset")
            ctypes.memset(buf.ptr, byte, nbytes)

    # -- programs ----------------------------------------------------------------------------------
    def load(self, exe):
        """The executable's CUDA C compiled by the CPU harness (once per executable; disk-cached)."""
        from ..cuda.host_harness import HarnessLibrary
        with exe._lock:
            lib = exe.__dict__.get("_sim_library")
            if lib is None or lib.source != exe.cuda.source:  # the TF32 switch re-renders the program
                lib = exe._sim_library = HarnessLibrary([exe.cuda], self.max_grid, self.max_block)
                lib.buffer_bytes = [b.numel * b.dtype.itemsize for b in exe.program.buffers]
                lib.source = exe.cuda.source
        return lib

    def launch(self, module, ln, pointers: Sequence[int]) -> None:
        sizes = [module.buffer_bytes[a] for a in ln.args] + [32]
        for k, (p, n) in enumerate(zip(pointers, sizes)):
            self.check_range(p, n, f"kernel {ln.func}'s argument {k}")
        module.launch_pointers(ln.func, pointers[:-1], pointers[-1], ln.grid, ln.block, ln.mode)

    def synchronize(self) -> None:
        """Nothing to wait for: every simulated call is synchronous."""


_SIM: SimDevice | None = None
_SIM_LOCK = threading.Lock()


def simulator() -> SimDevice:
    """The process's one simulated device."""
    global _SIM
    with _SIM_LOCK:
        if _SIM is None:
            _SIM = SimDevice()
        return _SIM

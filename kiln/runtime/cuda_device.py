"""The device seam: what kiln's CUDA tensors and compiled CUDA programs need from a device, behind
one interface with two implementations.

- `cuda_driver.DriverDevice`: the real GPU through NVIDIA's driver API.
- `cuda_sim.SimDevice`: the host simulator (device memory is address-checked host memory; kernels
  are the emitted CUDA C compiled as C++ with the CPU harness). Chosen only explicitly:
  `KILN_CUDA_SIM=1` or `kiln.config.override(cuda_sim=True)`.

`current()` is the device in effect. Both share the caching allocator, the `DeviceBuffer` /
`DeviceArray` types and `run_program` (a lowered program's launches in order on the stream, one
status read at the end), so everything above the seam is exercised by the simulator in CI.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np


class CudaDevice:
    """The operations the frontend needs from a CUDA device (see the module docstring)."""

    kind = "cuda"

    def is_available(self) -> bool:
        raise NotImplementedError

    def unavailable_reason(self) -> str | None:
        raise NotImplementedError

    def require(self, what: str) -> None:
        """RuntimeError naming `what` and the reason when the device is not usable."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{what} needs a CUDA device, and none is usable: {reason}")

    def name(self) -> str:
        raise NotImplementedError

    def arch(self) -> str:
        raise NotImplementedError

    def count(self) -> int:
        return 1 if self.is_available() else 0

    @property
    def allocator(self) -> "DeviceAllocator":
        raise NotImplementedError

    def alloc(self, nbytes: int) -> "DeviceBuffer":
        self.require("allocating device memory")
        return self.allocator.alloc(nbytes)

    def to_device(self, arr: np.ndarray, buf: "DeviceBuffer | None" = None) -> "DeviceBuffer":
        raise NotImplementedError

    def to_host(self, buf: "DeviceBuffer", shape: Sequence[int], dtype) -> np.ndarray:
        raise NotImplementedError

    def copy(self, dst: "DeviceBuffer", src: "DeviceBuffer", nbytes: int) -> None:
        """Device-to-device copy of `nbytes` on the stream."""
        raise NotImplementedError

    def memset(self, buf: "DeviceBuffer", byte: int, nbytes: int) -> None:
        raise NotImplementedError

    def load(self, exe) -> object:
        """The loaded module of a CudaExecutable (made once per executable and device)."""
        raise NotImplementedError

    def launch(self, module, launch, pointers: Sequence[int]) -> None:
        """Issue one of a program's launches (`cuda_backend.Launch`) with device pointers."""
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def empty_cache(self) -> None:
        if self.is_available():
            self.allocator.empty_cache()


# -- memory ----------------------------------------------------------------------------------------

def size_class(nbytes: int) -> int:
    """Allocation size class: 512-byte multiples below 1 MiB, 2 MiB multiples above."""
    if nbytes < (1 << 20):
        return max(512, -(-nbytes // 512) * 512)
    return -(-nbytes // (2 << 20)) * (2 << 20)


@dataclass(eq=False)
class DeviceBuffer:
    """A block of device memory from the caching allocator; returned to it when dropped."""
    ptr: int
    nbytes: int
    size_class: int
    _owner: "DeviceAllocator | None" = field(default=None, repr=False)

    def release(self) -> None:
        if self._owner is not None:
            self._owner.free(self)
            self._owner = None

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


class DeviceAllocator:
    """Caching allocator over a device's raw allocation: freed blocks are kept per size class and
    reused; on out-of-memory (`oom_error`) the cache is returned and the allocation retried once.
    `in_use` maps each block handed out (and not yet returned) to the bytes asked for."""

    def __init__(self, raw_alloc: Callable[[int], int], raw_free: Callable[[int], None],
                 oom_error: type[BaseException] = MemoryError):
        self._raw_alloc, self._raw_free, self._oom = raw_alloc, raw_free, oom_error
        self._free: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self.in_use: dict[int, int] = {}
        self.cached_bytes = 0
        self.allocated_bytes = 0

    def alloc(self, nbytes: int) -> DeviceBuffer:
        size = size_class(nbytes)
        with self._lock:
            pool = self._free.get(size)
            if pool:
                ptr = pool.pop()
                self.cached_bytes -= size
                self.allocated_bytes += size
                self.in_use[ptr] = nbytes
                return DeviceBuffer(ptr, nbytes, size, self)
        try:
            ptr = self._raw_alloc(size)
        except self._oom:
            self.empty_cache()
            try:
                ptr = self._raw_alloc(size)
            except self._oom as e:
                err = type(e)(f"CUDA out of memory: allocating {nbytes} bytes failed ({self.allocated_bytes} bytes "
                              f"in use by kiln); {e}")
                if hasattr(e, "code"):
                    err.code = e.code
                raise err from None
        with self._lock:
            self.allocated_bytes += size
            self.in_use[int(ptr)] = nbytes
        return DeviceBuffer(int(ptr), nbytes, size, self)

    def free(self, buf: DeviceBuffer) -> None:
        with self._lock:
            self.in_use.pop(buf.ptr, None)
            self._free.setdefault(buf.size_class, []).append(buf.ptr)
            self.cached_bytes += buf.size_class
            self.allocated_bytes -= buf.size_class

    def empty_cache(self) -> None:
        with self._lock:
            blocks = [p for ps in self._free.values() for p in ps]
            self._free.clear()
            self.cached_bytes = 0
        for p in blocks:
            self._raw_free(p)


@dataclass(eq=False)
class DeviceArray:
    """A contiguous array in device memory (what a CUDA tensor holds) on `device`."""
    buffer: DeviceBuffer
    shape: tuple[int, ...]
    dtype: np.dtype
    device: CudaDevice | None = None

    def __post_init__(self):
        if self.device is None:
            self.device = current()

    @classmethod
    def from_numpy(cls, arr: np.ndarray, device: CudaDevice | None = None) -> "DeviceArray":
        dev = device or current()
        arr = np.require(arr, requirements="C")  # (np.ascontiguousarray makes a 0-d array 1-d)
        return cls(dev.to_device(arr), tuple(arr.shape), arr.dtype, dev)

    @classmethod
    def empty(cls, shape: Sequence[int], dtype, device: CudaDevice | None = None) -> "DeviceArray":
        dev = device or current()
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return cls(dev.alloc(max(n, 1)), tuple(int(s) for s in shape), dtype, dev)

    def numpy(self) -> np.ndarray:
        return self.device.to_host(self.buffer, self.shape, self.dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def ptr(self) -> int:
        return self.buffer.ptr

    def copy(self) -> "DeviceArray":
        out = DeviceArray.empty(self.shape, self.dtype, self.device)
        self.device.copy(out.buffer, self.buffer, self.nbytes)
        return out

    def __deepcopy__(self, memo) -> "DeviceArray":
        return self.copy()  # new device memory (never a copy of the allocator or the device)

    def __reduce__(self):
        return (DeviceArray.from_numpy, (self.numpy(),))  # pickled as host values, restored on the device


# -- programs --------------------------------------------------------------------------------------

def run_program(dev: CudaDevice, exe, inputs: Sequence, device_outputs: bool | None = None) -> list:
    """Run a CudaExecutable on `dev`: inputs are numpy arrays (copied in) or DeviceArrays (used in
    place). Outputs are DeviceArrays when `device_outputs` (default: when any input was one), else
    numpy arrays. Constants, temporaries and the status buffer stay on the device between calls;
    the status is read once at the end and a failed check raises the CPU backend's IndexError."""
    from .cuda_backend import outputs_from_status
    dev.require("running a CUDA program")
    program = exe.program
    bufs = program.buffers
    if len(inputs) != len(program.inputs):
        raise ValueError(f"program {program.name} takes {len(program.inputs)} inputs, got {len(inputs)}")
    index = exe.__dict__.get("_buffer_index")
    if index is None:
        index = exe._buffer_index = {b.name: k for k, b in enumerate(bufs)}
    keep = exe.__dict__.setdefault("_device_keep", {}).setdefault(id(dev), {})
    buffers: dict[int, DeviceBuffer] = {}
    on_device = False
    for name, arr in zip(program.inputs, inputs):
        k = index[name]
        b = bufs[k]
        if isinstance(arr, DeviceArray):
            if arr.shape != tuple(b.shape) or np.dtype(arr.dtype) != b.dtype.np_dtype:
                raise ValueError(f"input {b.name} expects {b.dtype.name}{list(b.shape)}, got "
                                 f"{np.dtype(arr.dtype)}{list(arr.shape)}")
            if arr.device is not dev:
                raise RuntimeError(f"input {b.name} lives on {arr.device.name()}, the program runs on {dev.name()}")
            buffers[k] = arr.buffer
            on_device = True
        else:
            a = np.asarray(arr)
            if a.shape != tuple(b.shape) or a.dtype != b.dtype.np_dtype:
                raise ValueError(f"input {b.name} expects {b.dtype.name}{list(b.shape)}, got {a.dtype}{list(a.shape)}")
            buffers[k] = dev.to_device(a)
    inputs_at = set(buffers)
    for k, b in enumerate(bufs):
        if k in buffers:
            continue
        if b.role in ("const", "temp", "scratch"):
            if k not in keep:
                nbytes = max(b.numel * b.dtype.itemsize, 1)
                keep[k] = dev.to_device(np.asarray(b.data, b.dtype.np_dtype)) if b.role == "const" else dev.alloc(nbytes)
            buffers[k] = keep[k]
        else:
            buffers[k] = dev.alloc(max(b.numel * b.dtype.itemsize, 1))
    status = keep.get("status")
    if status is None:
        status = keep["status"] = dev.alloc(32)
    dev.memset(status, 0, 32)
    module = dev.load(exe)
    for ln in exe.cuda.launches:
        dev.launch(module, ln, [buffers[a].ptr for a in ln.args] + [status.ptr])
    outputs_from_status(program, dev.to_host(status, (4,), np.int64))
    if device_outputs is None:
        device_outputs = on_device
    outs = []
    for name in program.outputs:
        k = index[name]
        b = bufs[k]
        if device_outputs:
            out = DeviceArray(buffers[k], tuple(b.shape), b.dtype.np_dtype, dev)
            if k in inputs_at or b.role in ("const", "temp", "scratch"):
                out = out.copy()  # never hand out an input's or a kept buffer as a fresh output
            outs.append(out)
        else:
            outs.append(dev.to_host(buffers[k], b.shape, b.dtype.np_dtype))
    return outs


# -- which device ----------------------------------------------------------------------------------

def current() -> CudaDevice:
    """The CUDA device in effect: the simulator when `KILN_CUDA_SIM` is on, else the driver."""
    from .. import config
    if config.get().cuda_sim:
        from .cuda_sim import simulator
        return simulator()
    from .cuda_driver import driver_device
    return driver_device()

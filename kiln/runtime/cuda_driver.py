"""The CUDA driver, through NVIDIA's `cuda-bindings` (`from cuda.bindings import driver`).

Context and stream, a caching device allocator, host<->device copies (pinned staging for large
ones), modules from NVRTC output (the device's cubin, PTX as fallback), launches, and a check
after every driver call: a failure raises `CudaError` naming CUDA's own code
(`CUDA_ERROR_OUT_OF_MEMORY`, ...) and the call that returned it.

Nothing here runs at import: `is_available()` initialises the driver on first use and says
False (with `unavailable_reason()`) where the bindings, the driver library or a device is
missing. Compiled cubins live in the same disk cache as the CPU's object code, keyed by the
source, the architecture and the NVRTC version.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .cuda_device import (CudaDevice, DeviceAllocator, DeviceArray, DeviceBuffer,  # noqa: F401  (DeviceArray: re-exported)
                          run_program as _run_program, size_class)
from .nvrtc_compiler import CompiledCuda, compile_cuda

PINNED_MIN_BYTES = 1 << 20   # host<->device copies at least this large go through pinned staging
_lock = threading.RLock()
_state: dict = {}


class CudaError(RuntimeError):
    """A CUDA driver call failed; `code` is CUDA's error name (e.g. CUDA_ERROR_OUT_OF_MEMORY)."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


class CudaOutOfMemoryError(CudaError, MemoryError):
    """A device allocation failed after the allocator's cache was emptied."""


def _bindings():
    from cuda.bindings import driver
    return driver


def check(result, what: str):
    """Raise CudaError unless a driver call's result is CUDA_SUCCESS; return its other values."""
    drv = _bindings()
    if isinstance(result, tuple):
        err, rest = result[0], result[1:]
    else:
        err, rest = result, ()
    if err != drv.CUresult.CUDA_SUCCESS:
        name = getattr(err, "name", str(err))
        try:
            _, desc = drv.cuGetErrorString(err)
            text = desc.decode() if isinstance(desc, bytes) else str(desc)
        except Exception:  # the description needs the driver library; the code name does not
            text = "no description: the driver library is not loaded"
        cls = CudaOutOfMemoryError if name == "CUDA_ERROR_OUT_OF_MEMORY" else CudaError
        raise cls(f"{what} failed: {name} ({text})", name)
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def _init() -> dict:
    """Initialise the driver once: device 0's primary context and one stream."""
    with _lock:
        if _state:
            return _state
        try:
            drv = _bindings()
        except ImportError as e:
            _state["reason"] = f"the cuda-bindings package is not installed (pip install 'kiln[cuda]'): {e}"
            return _state
        try:
            check(drv.cuInit(0), "cuInit")
            n = check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
        except Exception as e:  # no driver library, no device
            _state["reason"] = f"the CUDA driver could not be initialised: {e}"
            return _state
        if n == 0:
            _state["reason"] = "the CUDA driver reports no device"
            return _state
        dev = check(drv.cuDeviceGet(0), "cuDeviceGet")
        ctx = check(drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
        check(drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        stream = check(drv.cuStreamCreate(drv.CUstream_flags.CU_STREAM_NON_BLOCKING.value), "cuStreamCreate")
        attr = drv.CUdevice_attribute
        major = check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute")
        minor = check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute")
        name = check(drv.cuDeviceGetName(256, dev), "cuDeviceGetName")
        _state.update(drv=drv, dev=dev, ctx=ctx, stream=stream, arch=f"sm_{major}{minor}", count=n,
                      name=name.split(b"\0")[0].decode(), reason=None)
        _state["allocator"] = _driver_allocator()
        return _state


def is_available() -> bool:
    """Is a CUDA device usable (bindings, driver and at least one device)?"""
    return _init().get("reason") is None


def unavailable_reason() -> str | None:
    """Why no CUDA device is usable, or None when one is."""
    return _init().get("reason")


def require_device(what: str) -> dict:
    """The driver state; RuntimeError naming `what` and the reason when no device is usable."""
    st = _init()
    if st.get("reason") is not None:
        raise RuntimeError(f"{what} needs a CUDA device, and none is usable: {st['reason']}")
    check(st["drv"].cuCtxSetCurrent(st["ctx"]), "cuCtxSetCurrent")
    return st


def device_arch() -> str:
    return require_device("querying the device architecture")["arch"]


def device_name() -> str:
    return require_device("querying the device name")["name"]


def device_count() -> int:
    st = _init()
    return 0 if st.get("reason") is not None else st["count"]


def synchronize() -> None:
    st = require_device("synchronize")
    check(st["drv"].cuStreamSynchronize(st["stream"]), "cuStreamSynchronize")


# -- memory ------------------------------------------------------------------------------------------

_round = size_class


def _driver_allocator() -> DeviceAllocator:
    drv = _state["drv"]

    def raw_alloc(size: int) -> int:
        return int(check(drv.cuMemAlloc(size), f"cuMemAlloc({size} bytes)"))

    def raw_free(ptr: int) -> None:
        check(drv.cuMemFree(ptr), "cuMemFree")
    return DeviceAllocator(raw_alloc, raw_free, CudaOutOfMemoryError)


def alloc(nbytes: int) -> DeviceBuffer:
    return require_device("allocating device memory")["allocator"].alloc(nbytes)


def empty_cache() -> None:
    if is_available():
        _state["allocator"].empty_cache()


def _pinned(nbytes: int) -> np.ndarray:
    """A reusable pinned host staging buffer of at least `nbytes`."""
    drv = _state["drv"]
    cur = _state.get("pinned")
    if cur is None or cur.nbytes < nbytes:
        size = _round(nbytes)
        ptr = check(drv.cuMemHostAlloc(size, 0), f"cuMemHostAlloc({size} bytes)")
        if cur is not None:
            check(drv.cuMemFreeHost(_state["pinned_ptr"]), "cuMemFreeHost")
        import ctypes
        cur = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(int(ptr)))
        _state["pinned"], _state["pinned_ptr"] = cur, ptr
    return cur


def to_device(arr: np.ndarray, buf: DeviceBuffer | None = None) -> DeviceBuffer:
    """Copy a host array into (new) device memory."""
    st = require_device("copying to the device")
    drv, stream = st["drv"], st["stream"]
    arr = np.ascontiguousarray(arr)
    buf = buf if buf is not None else st["allocator"].alloc(arr.nbytes)
    if arr.nbytes == 0:
        return buf
    with _lock:
        if arr.nbytes >= PINNED_MIN_BYTES:
            stage = _pinned(arr.nbytes)
            stage[:arr.nbytes] = arr.reshape(-1).view(np.uint8)
            check(drv.cuMemcpyHtoDAsync(buf.ptr, stage.ctypes.data, arr.nbytes, stream), "cuMemcpyHtoDAsync")
            check(drv.cuStreamSynchronize(stream), "cuStreamSynchronize")
        else:
            check(drv.cuStreamSynchronize(stream), "cuStreamSynchronize")
            check(drv.cuMemcpyHtoD(buf.ptr, arr.ctypes.data, arr.nbytes), "cuMemcpyHtoD")
    return buf


def to_host(buf: DeviceBuffer, shape: Sequence[int], dtype) -> np.ndarray:
    """Copy device memory back into a new host array (waits for the stream)."""
    st = require_device("copying from the device")
    drv, stream = st["drv"], st["stream"]
    out = np.empty(tuple(shape), dtype)
    if out.nbytes == 0:
        return out
    with _lock:
        if out.nbytes >= PINNED_MIN_BYTES:
            stage = _pinned(out.nbytes)
            check(drv.cuMemcpyDtoHAsync(stage.ctypes.data, buf.ptr, out.nbytes, stream), "cuMemcpyDtoHAsync")
            check(drv.cuStreamSynchronize(stream), "cuStreamSynchronize")
            out.reshape(-1).view(np.uint8)[:] = stage[:out.nbytes]
        else:
            check(drv.cuStreamSynchronize(stream), "cuStreamSynchronize")
            check(drv.cuMemcpyDtoH(out.ctypes.data, buf.ptr, out.nbytes), "cuMemcpyDtoH")
    return out


# -- modules and launches --------------------------------------------------------------------------

def compile_cached(source: str, name: str, arch: str) -> CompiledCuda:
    """NVRTC output for `source` on `arch`, through the disk cache (key: source, arch, NVRTC version)."""
    from .llvm_backend import disk_cache
    from .nvrtc_compiler import available
    from .. import __version__
    cache = disk_cache()
    key = "\n".join([f"kiln {__version__}", f"cuda {arch}", str(available()), source])
    if cache is not None:
        blob = cache.get(key)
        if blob is not None:
            n = int.from_bytes(blob[:8], "little")
            ptx = blob[8:8 + n].decode()
            cubin = blob[8 + n:] or None
            return CompiledCuda(ptx, cubin, arch, str(available()))
    c = compile_cuda(source, name, arch)
    if cache is not None:
        p = c.ptx.encode()
        cache.put(key, len(p).to_bytes(8, "little") + p + (c.cubin or b""))
    return c


@dataclass
class LoadedModule:
    module: object
    functions: dict[str, object]


def load_module(compiled: CompiledCuda, funcs: Sequence[str]) -> LoadedModule:
    """Load the cubin (or, when the driver rejects it, the PTX) and look up `funcs`."""
    st = require_device("loading a CUDA module")
    drv = st["drv"]
    try:
        if compiled.cubin is None:
            raise CudaError("no cubin")
        image = np.frombuffer(compiled.cubin, np.uint8)
        mod = check(drv.cuModuleLoadData(image.ctypes.data), "cuModuleLoadData(cubin)")
    except CudaError:  # no cubin, or one the driver rejects: let the driver JIT the PTX
        image = np.frombuffer(compiled.ptx.encode() + b"\0", np.uint8)
        mod = check(drv.cuModuleLoadData(image.ctypes.data), "cuModuleLoadData(ptx)")
    fns = {}
    for f in dict.fromkeys(funcs):
        fns[f] = check(drv.cuModuleGetFunction(mod, f.encode()), f"cuModuleGetFunction({f})")
    return LoadedModule(mod, fns)


def launch(fn, grid: int, block: int, pointers: Sequence[int]) -> None:
    """Launch `fn` on the stream with device pointers as its arguments."""
    st = _state
    drv = st["drv"]
    holders = [np.array([int(p)], dtype=np.uint64) for p in pointers]
    params = np.array([h.ctypes.data for h in holders], dtype=np.uint64)
    check(drv.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, st["stream"], params.ctypes.data, 0),
          "cuLaunchKernel")


def run_program(exe, inputs: Sequence) -> list:
    """Run a CudaExecutable on the GPU (`cuda_device.run_program` on the driver device)."""
    return _run_program(driver_device(), exe, inputs)


def copy_device(dst: DeviceBuffer, src: DeviceBuffer, nbytes: int) -> None:
    """Device-to-device copy on the stream."""
    st = require_device("copying on the device")
    if nbytes:
        check(st["drv"].cuMemcpyDtoDAsync(dst.ptr, src.ptr, nbytes, st["stream"]), "cuMemcpyDtoDAsync")


class DriverDevice(CudaDevice):
    """The seam's real implementation: device 0 through the driver API (the functions above)."""

    def is_available(self) -> bool:
        return is_available()

    def unavailable_reason(self) -> str | None:
        return unavailable_reason()

    def require(self, what: str) -> None:
        require_device(what)

    def name(self) -> str:
        return device_name()

    def arch(self) -> str:
        return device_arch()

    def count(self) -> int:
        return device_count()

    @property
    def allocator(self) -> DeviceAllocator:
        return require_device("the device allocator")["allocator"]

    def to_device(self, arr: np.ndarray, buf: DeviceBuffer | None = None) -> DeviceBuffer:
        return to_device(arr, buf)

    def to_host(self, buf: DeviceBuffer, shape: Sequence[int], dtype) -> np.ndarray:
        return to_host(buf, shape, dtype)

    def copy(self, dst: DeviceBuffer, src: DeviceBuffer, nbytes: int) -> None:
        copy_device(dst, src, nbytes)

    def memset(self, buf: DeviceBuffer, byte: int, nbytes: int) -> None:
        st = require_device("memset on the device")
        check(st["drv"].cuMemsetD8Async(buf.ptr, byte, nbytes, st["stream"]), "cuMemsetD8Async")

    def load(self, exe) -> LoadedModule:
        with exe._lock:
            mod = exe.__dict__.get("_module")
            if mod is None:
                mod = exe._module = load_module(exe.compiled(), [ln.func for ln in exe.cuda.launches])
        return mod

    def launch(self, module: LoadedModule, ln, pointers: Sequence[int]) -> None:
        launch(module.functions[ln.func], ln.grid, ln.block, pointers)

    def synchronize(self) -> None:
        synchronize()

    def stream_handle(self) -> int:
        """The stream's handle as an int (what DLPack's `stream=` argument takes)."""
        return int(require_device("the device stream")["stream"])

    def empty_cache(self) -> None:
        empty_cache()


_DRIVER = DriverDevice()


def driver_device() -> DriverDevice:
    return _DRIVER

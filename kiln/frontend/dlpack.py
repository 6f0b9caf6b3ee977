"""DLPack: `Tensor.__dlpack__`, `Tensor.__dlpack_device__` and `kiln.from_dlpack`, zero-copy.

CPU tensors are exported and imported through numpy's own DLPack support (so numpy, PyTorch and
JAX CPU arrays share memory with kiln tensors). CUDA tensors are exported as kDLCUDA capsules
of their device memory (a `DLManagedTensor` built here: the DLPack ABI, which numpy cannot make
for a device), and kDLCUDA capsules -- PyTorch's or CuPy's on a GPU, kiln's own under the
simulator -- are imported as CUDA tensors over the producer's memory, which stays alive until
the tensor is dropped.
"""
from __future__ import annotations

import ctypes
import threading
import weakref

import numpy as np

from ..ir import dtypes as dt
from ..runtime.cuda_device import DeviceArray, DeviceBuffer
from .tensor import Tensor, _check_device

KDL_CPU, KDL_CUDA = 1, 2
_CODES = {"i": 0, "u": 1, "f": 2, "b": 6}  # kDLInt, kDLUInt, kDLFloat, kDLBool


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
# the capsule destructor gets the capsule as a raw pointer (it is being destroyed)
_is_valid_raw = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_get_pointer_raw = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_GetPointer", _api))

_exported: dict[int, tuple] = {}  # DLManagedTensor address -> what keeps its memory and structs alive
_lock = threading.Lock()


@_DELETER
def _delete(managed) -> None:
    with _lock:
        _exported.pop(ctypes.addressof(managed.contents), None)


@ctypes.PYFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(capsule) -> None:
    # an unconsumed capsule still owns its tensor: delete it (a consumed one was renamed)
    if _is_valid_raw(capsule, b"dltensor"):
        ptr = _get_pointer_raw(capsule, b"dltensor")
        with _lock:
            _exported.pop(ptr, None)


def _dl_dtype(npd: np.dtype) -> _DLDataType:
    return _DLDataType(_CODES[npd.kind], npd.itemsize * 8, 1)


def _device_capsule(arr: DeviceArray):
    """A kDLCUDA `dltensor` capsule over `arr`'s device memory (kept alive until its deleter runs)."""
    managed = _DLManagedTensor()
    shape = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
    t = managed.dl_tensor
    t.data = arr.ptr
    t.device = _DLDevice(KDL_CUDA, 0)
    t.ndim = arr.ndim
    t.dtype = _dl_dtype(arr.dtype)
    t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    t.strides = None  # row-major
    t.byte_offset = 0
    managed.manager_ctx = None
    managed.deleter = _delete
    addr = ctypes.addressof(managed)
    with _lock:
        _exported[addr] = (managed, shape, arr)
    return _api.PyCapsule_New(addr, b"dltensor", ctypes.cast(_capsule_destructor, ctypes.c_void_p))


def _dlpack(self: Tensor, *, stream=None, max_version=None, dl_device=None, copy=None):
    """The DLPack capsule of this tensor's memory (zero-copy; `copy=True` exports a copy)."""
    if self.is_tracer:
        raise RuntimeError("__dlpack__: a tensor inside a kiln.compile trace has no memory to share yet")
    if self.requires_grad:
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
    v = self._cell.value
    if v.__class__ is DeviceArray:
        if dl_device is not None and tuple(dl_device) != (KDL_CUDA, 0):
            raise BufferError(f"__dlpack__: this tensor is on cuda:0; dl_device={tuple(dl_device)} needs a copy "
                              "(use .cpu() first)")
        v.device.synchronize()  # the consumer's stream sees everything queued on ours
        return _device_capsule(v.copy() if copy else v)
    kwargs = {} if copy is None else {"copy": copy}
    if max_version is not None:
        kwargs["max_version"] = max_version
    if dl_device is not None:
        kwargs["dl_device"] = dl_device
    return v.__dlpack__(stream=stream, **kwargs)


def _dlpack_device(self: Tensor) -> tuple[int, int]:
    """(device type, index) as DLPack enumerates them: (1, 0) on the CPU, (2, 0) on CUDA device 0."""
    return (KDL_CUDA, 0) if self._cell.value.__class__ is DeviceArray else (KDL_CPU, 0)


def from_dlpack(ext) -> Tensor:
    """A tensor sharing memory with `ext`: an object with `__dlpack__` (a numpy/PyTorch/JAX/CuPy array,
    a kiln tensor) or a DLPack capsule. CPU memory becomes a CPU tensor, kDLCUDA memory a CUDA
    tensor (it must be row-major and on device 0)."""
    if isinstance(ext, Tensor):
        return ext.detach()
    kind = KDL_CPU
    if hasattr(ext, "__dlpack_device__"):
        kind, index = ext.__dlpack_device__()
        kind = int(kind)
    elif not hasattr(ext, "__dlpack__"):  # a capsule: its DLTensor says where the memory is
        if not _api.PyCapsule_IsValid(ext, b"dltensor"):
            raise TypeError(f"from_dlpack: expected an object with __dlpack__ or an unconsumed 'dltensor' capsule, "
                            f"got {type(ext).__name__}")
        kind = _DLManagedTensor.from_address(_api.PyCapsule_GetPointer(ext, b"dltensor")).dl_tensor.device.device_type
    if kind == KDL_CPU:
        arr = np.from_dlpack(ext) if hasattr(ext, "__dlpack__") else _cpu_capsule_array(ext)
        dt.from_numpy_dtype(arr.dtype)  # TypeError for dtypes kiln lacks
        return Tensor._make(arr)
    if kind != KDL_CUDA:
        raise RuntimeError(f"from_dlpack: DLPack device type {kind} is not supported (kiln has CPU (1) and CUDA (2))")
    _check_device("cuda")
    capsule = ext.__dlpack__(stream=_consumer_stream()) if hasattr(ext, "__dlpack__") else ext
    return Tensor._make(_import_device_capsule(capsule))


def _consumer_stream():
    from ..runtime.cuda_device import current
    handle = getattr(current(), "stream_handle", None)
    return handle() if handle is not None else None


def _cpu_capsule_array(capsule) -> np.ndarray:
    class _Holder:
        def __dlpack__(self, stream=None, **kw):
            return capsule

        def __dlpack_device__(self):
            return (KDL_CPU, 0)
    return np.from_dlpack(_Holder())


def _import_device_capsule(capsule) -> DeviceArray:
    if not _api.PyCapsule_IsValid(capsule, b"dltensor"):
        raise RuntimeError("from_dlpack: expected a 'dltensor' capsule that was not consumed yet")
    addr = _api.PyCapsule_GetPointer(capsule, b"dltensor")
    managed = _DLManagedTensor.from_address(addr)
    t = managed.dl_tensor
    if t.device.device_type != KDL_CUDA or t.device.device_id != 0:
        raise RuntimeError(f"from_dlpack: the capsule is on DLPack device ({t.device.device_type}, "
                           f"{t.device.device_id}); kiln takes CUDA device 0")
    code = {v: k for k, v in _CODES.items()}.get(t.dtype.code)
    if code is None or t.dtype.lanes != 1:
        raise TypeError(f"from_dlpack: DLPack dtype (code {t.dtype.code}, {t.dtype.bits} bits, {t.dtype.lanes} lanes) "
                        "is not one kiln supports")
    npd = np.dtype(f"{code}{t.dtype.bits // 8}") if code != "b" else np.dtype(np.bool_)
    dt.from_numpy_dtype(npd)
    shape = tuple(t.shape[k] for k in range(t.ndim))
    if t.strides:
        expect, ok = 1, True
        for k in reversed(range(t.ndim)):
            if shape[k] != 1 and t.strides[k] != expect:
                ok = False
            expect *= shape[k]
        if not ok:
            raise RuntimeError(f"from_dlpack: CUDA memory of shape {list(shape)} with strides "
                               f"{[t.strides[k] for k in range(t.ndim)]} is not row-major; kiln's CUDA tensors are "
                               "contiguous (call .contiguous() on the producer first)")
    from ..runtime.cuda_device import current
    nbytes = int(np.prod(shape, dtype=np.int64)) * npd.itemsize
    buf = DeviceBuffer(int(t.data or 0) + int(t.byte_offset), nbytes, 0, None)
    _api.PyCapsule_SetName(capsule, b"used_dltensor")
    deleter = managed.deleter
    weakref.finalize(buf, _call_deleter, deleter, addr)
    return DeviceArray(buf, shape, npd, current())


def _call_deleter(deleter, addr: int) -> None:
    if deleter:
        deleter(ctypes.cast(addr, ctypes.POINTER(_DLManagedTensor)))


Tensor.__dlpack__ = _dlpack
Tensor.__dlpack_device__ = _dlpack_device

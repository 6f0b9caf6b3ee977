"""Eager operations on CUDA tensors: each primitive runs as a cached one-primitive program.

The first call of a primitive with given attributes, input shapes and dtypes lowers a one-node
graph through the cuda backend (fusion plan -> kernel IR -> CUDA C; NVRTC on a GPU, the CPU
harness under the simulator) and keeps the executable; later calls launch it on the device
arrays directly. Device arrays are always contiguous, so shapes fix the strides too.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from ..ir import dtypes as dt
from ..ir.graph import Graph
from .cuda_device import DeviceArray

_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def _attr_key(value) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_attr_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _attr_key(v)) for k, v in value.items()))
    if isinstance(value, float) and value != value:
        return ("nan",)
    if isinstance(value, (int, float, bool, str, type(None))):
        return (type(value).__name__, value)
    return (type(value).__name__, repr(value))


def cache_key(name: str, attrs: dict, arrays: Sequence[DeviceArray]) -> tuple:
    """What a one-primitive program is cached by: primitive, attributes, shapes and dtypes."""
    return (name, tuple((k, _attr_key(v)) for k, v in sorted(attrs.items())),
            tuple((a.shape, a.dtype.str) for a in arrays))


def executable_for(name: str, attrs: dict, arrays: Sequence[DeviceArray], out_shape, out_dtype):
    """The cached cuda-backend executable of primitive `name` over inputs like `arrays`."""
    key = cache_key(name, attrs, arrays)
    exe = _cache.get(key)
    if exe is None:
        from .cuda_backend import CudaBackend
        g = Graph(f"eager_{name}")
        ins = [g.add_input(a.shape, dt.from_numpy_dtype(a.dtype)) for a in arrays]
        node = g.add_node(name, ins, dict(attrs), tuple(out_shape), out_dtype)
        g.set_outputs([node])
        exe = CudaBackend().compile(g)
        with _lock:
            exe = _cache.setdefault(key, exe)
    return exe


def run_primitive(name: str, attrs: dict, arrays: Sequence[DeviceArray], out_shape, out_dtype) -> DeviceArray:
    """Apply primitive `name` to device arrays on their device; returns a new device array."""
    if int(np.prod(out_shape, dtype=np.int64)) == 0:
        return DeviceArray.empty(out_shape, out_dtype.np_dtype, arrays[0].device if arrays else None)
    exe = executable_for(name, attrs, arrays, out_shape, out_dtype)
    return exe.run(list(arrays), device_outputs=True)[0]


def cached_programs() -> int:
    """How many one-primitive programs are cached (for tests)."""
    return len(_cache)

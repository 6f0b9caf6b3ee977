"""Tensor creation and random numbers.

Random numbers come from a counter-based generator (kiln.ir.primitives.random_bits):
a Generator's state is a small int64 tensor [seed, offset], so inside kiln.compile it is
lifted like any captured tensor and compiled code draws the same numbers as eager code.
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Any

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from .autograd import no_grad
from .operands import _cast, _constant_tensor, _shape_arg, full_const
from .tensor import Tensor, _check_device, active_trace, apply, to_device_value

_DEFAULT_FLOAT = [dt.float32]


def get_default_dtype() -> DType:
    return _DEFAULT_FLOAT[0]


def set_default_dtype(d) -> None:
    d = dt.get_dtype(d)
    if not d.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    _DEFAULT_FLOAT[0] = d


def _size_arg(size) -> tuple:
    """A creation function's size (ints, or one tuple/list), checked non-negative like PyTorch."""
    shape = _shape_arg(size)
    for d in shape:
        if d < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {d}: {list(shape)}")
    return shape


def _resolve(dtype, default: DType | None = None) -> DType:
    if dtype is None:
        return default or get_default_dtype()
    return dt.get_dtype(dtype)


def _finish(t: Tensor, requires_grad: bool, device) -> Tensor:
    """A creation function's result: on `device` (eager; a trace is device-agnostic), a user's tensor
    (not an op's literal, which may join CUDA operations), with `requires_grad`."""
    if t._operand_constant:
        t._operand_constant = False
    if device is not None:
        d = _check_device(device)
        if d.type == "cuda" and t._cell.trace is None:
            t._cell.value = to_device_value(t._cell.value, d)
    if requires_grad:
        t.requires_grad_(True)
    return t


_SUPPORTED_NP = {np.dtype(d) for d in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)}


def _np_dtype_of_array(npd: np.dtype) -> np.dtype:
    """kiln's dtype for numpy data of dtype `npd`: supported dtypes as is; other ints and floats widened."""
    npd = np.dtype(npd)
    if npd.byteorder not in "=|":  # non-native byte order: same values, converted to native on copy
        npd = npd.newbyteorder("=")
    if npd in _SUPPORTED_NP:
        return npd
    if npd.kind in "iu":
        return np.dtype(np.int64)  # uint8, int8, int16, uint16, uint32 (and uint64, range-checked) fit in int64
    if npd.kind == "f":
        return np.dtype(np.float64)
    raise TypeError(f"can't convert numpy data of dtype {npd}; kiln supports float16, float32, float64, int32, "
                    "int64 and bool (other integer and float dtypes are converted to int64 / float64)")


def _leaf_dtype(x) -> np.dtype:
    """The dtype PyTorch infers for one leaf of `kiln.tensor` data."""
    if isinstance(x, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(x, np.generic):
        return _np_dtype_of_array(x.dtype)
    if isinstance(x, int):
        return np.dtype(np.int64)
    if isinstance(x, float):
        return get_default_dtype().np_dtype
    if isinstance(x, Tensor):
        return x.dtype.np_dtype
    if isinstance(x, np.ndarray):
        return _np_dtype_of_array(x.dtype)
    raise TypeError(f"kiln.tensor: could not infer a dtype for element of type {type(x).__name__} "
                    "(expected numbers, nested lists/tuples of numbers, numpy arrays or tensors)")


def _promote_np(a: np.dtype | None, b: np.dtype | None) -> np.dtype | None:
    if a is None or a == b:
        return b
    if b is None:
        return a
    da, db = dt.from_numpy_dtype(a), dt.from_numpy_dtype(b)
    return dt.result_type((da, dt.TENSOR), (db, dt.TENSOR)).np_dtype


_PY_NUMBERS = (bool, int, float)


def _infer_dtype(data) -> np.dtype | None:
    """PyTorch's dtype inference over nested sequences (None: no elements)."""
    if not isinstance(data, (list, tuple)):
        return _leaf_dtype(data)
    kinds = set(map(type, data))
    if kinds and kinds <= set(_PY_NUMBERS):  # fast path: flat Python numbers
        out = None
        for t in kinds:
            out = _promote_np(out, _leaf_dtype(t()))
        return out
    out = None
    seen = set()
    for x in data:
        t = type(x)
        key = t if t in _PY_NUMBERS else (x.dtype if isinstance(x, np.generic) else None)
        if key is not None:
            if key in seen:  # a leaf's dtype depends only on its type: look each kind up once
                continue
            seen.add(key)
        out = _promote_np(out, _infer_dtype(x))
    return out


def _to_plain(data):
    """Replace tensors inside nested sequences by numpy arrays (so np.array can stack them)."""
    if isinstance(data, Tensor):
        return data._concrete("kiln.tensor(tensor)")
    if isinstance(data, (list, tuple)):
        if not any(issubclass(k, (Tensor, list, tuple)) for k in set(map(type, data))):
            return data  # no tensors or sequences inside: nothing to replace
        return [_to_plain(x) for x in data]
    return data


def _infer_np(data, dtype: DType | None = None) -> np.ndarray:
    if isinstance(data, Tensor):
        return np.array(data._concrete("kiln.tensor(tensor)"), copy=True)
    if isinstance(data, (np.ndarray, np.generic)):
        target = _np_dtype_of_array(data.dtype)
        if data.dtype == np.uint64 and data.size and np.max(data) > np.iinfo(np.int64).max:
            raise TypeError(f"can't convert numpy uint64 data with values above {np.iinfo(np.int64).max} "
                            "to int64, kiln's widest integer dtype")
        return np.array(data, dtype=target, copy=True)
    if isinstance(data, (str, bytes)):
        raise TypeError(f"kiln.tensor: invalid data type '{type(data).__name__}'")
    target = _infer_dtype(data)
    if dtype is not None:  # convert Python numbers straight to the requested dtype (no float32 detour)
        target = dtype.np_dtype
    try:
        arr = np.array(_to_plain(data), dtype=target if target is not None else get_default_dtype().np_dtype)
    except ValueError as e:
        raise ValueError(f"kiln.tensor: nested sequences must be rectangular ({e})") from None
    return arr


def tensor(data: Any, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Copy `data` (nested lists, numbers, numpy arrays, tensors) into a new tensor."""
    arr = _infer_np(data, None if dtype is None else dt.get_dtype(dtype))
    if dtype is not None:
        arr = arr.astype(dt.get_dtype(dtype).np_dtype)
    # np.ascontiguousarray would turn a 0-d array into a 1-d one; keep the rank.
    return _finish(_constant_tensor(np.require(arr, requirements="C")), requires_grad, device)


def as_tensor(data: Any, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor):
        return data if dtype is None or dt.get_dtype(dtype) == data.dtype else _cast(data, dt.get_dtype(dtype))
    if isinstance(data, np.ndarray) and dtype is None and active_trace() is None:
        try:
            dt.from_numpy_dtype(data.dtype)
            return from_numpy(data)
        except TypeError:
            pass
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with `ndarray` (writes through either are seen by both)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    if np.dtype(ndarray.dtype) not in _SUPPORTED_NP:
        raise TypeError(f"can't convert np.ndarray of type {ndarray.dtype}: from_numpy shares memory, so the dtype "
                        "must be one kiln supports (float16, float32, float64, int32, int64, bool); use "
                        "kiln.tensor(array) to copy it with a conversion")
    if active_trace() is not None:
        return _constant_tensor(ndarray)
    if not ndarray.flags.writeable:
        warnings.warn("The given NumPy array is not writable; the tensor shares its memory, so in-place operations "
                      "on it will fail. Copy the array (or use kiln.tensor(array)) to get a writable tensor.",
                      UserWarning, stacklevel=2)
    return Tensor._make(ndarray)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    size = _size_arg((size,) if not isinstance(size, (list, tuple)) else tuple(size))
    if dtype is None:
        d = dt.scalar_dtype(fill_value)
        dtype = get_default_dtype() if d.is_floating_point else d
    return _finish(full_const(fill_value, size, dt.get_dtype(dtype)), requires_grad, device)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False, out=None) -> Tensor:
    return _finish(full_const(0, _size_arg(size), _resolve(dtype)), requires_grad, device)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _finish(full_const(1, _size_arg(size), _resolve(dtype)), requires_grad, device)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def _device_like(input: Tensor, device):
    """A `*_like` function's device: the one given, else the input's (when that is not the CPU)."""
    if device is not None:
        return device
    d = input.device
    return None if d.type == "cpu" else d


def zeros_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(tuple(input.shape), dtype=dtype or input.dtype, device=_device_like(input, device),
                 requires_grad=requires_grad)


def ones_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(tuple(input.shape), dtype=dtype or input.dtype, device=_device_like(input, device),
                requires_grad=requires_grad)


def empty_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input: Tensor, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(tuple(input.shape), fill_value, dtype=dtype or input.dtype, device=_device_like(input, device),
                requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]  # keeps ints ints
    start, end, step = vals
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    n = max(int(math.ceil((end - start) / step)), 0)
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        d = dt.int64 if is_int else get_default_dtype()
    else:
        d = dt.get_dtype(dtype)
    idx = apply("iota", shape=(n,), axis=0, dtype=dt.float64 if d.is_floating_point else dt.int64)
    if step != 1:
        idx = idx * step
    if start != 0:
        idx = idx + start
    return _finish(_cast(idx, d), requires_grad, device)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    d = _resolve(dtype)
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    if steps == 1:
        return full((1,), start, dtype=d, device=device, requires_grad=requires_grad)
    i = apply("iota", shape=(steps,), axis=0, dtype=dt.float64)
    step = (end - start) / max(steps - 1, 1)
    half = steps // 2
    lo = i * step + start
    hi = (i - (steps - 1)) * step + end
    vals = apply("select", i < half, lo, hi)
    return _finish(_cast(vals, d), requires_grad, device)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    m = n if m is None else m
    r = apply("iota", shape=(n, m), axis=0, dtype=dt.int64)
    c = apply("iota", shape=(n, m), axis=1, dtype=dt.int64)
    return _finish(_cast(apply("eq", r, c), _resolve(dtype)), requires_grad, device)


# ======================================================================================
# random numbers
# ======================================================================================

class Generator:
    """A counter-based random generator; its state is the int64 tensor [seed, offset]."""

    def __init__(self, device="cpu"):
        self.state = Tensor._make(np.array([67280421310721, 0], dtype=np.int64))

    def manual_seed(self, seed: int) -> "Generator":
        with no_grad():
            self.state._assign_value(np.array([int(seed), 0], dtype=np.int64))
        return self

    def seed(self) -> int:
        s = random.getrandbits(63)
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return int(self.state._concrete("Generator.initial_seed()")[0])

    def get_state(self) -> Tensor:
        return tensor(self.state)

    def set_state(self, state: Tensor) -> None:
        self.state._assign_value(np.asarray(state, dtype=np.int64))

    def uniform(self, shape, dtype: DType, stream: int = 0) -> Tensor:
        """U[0, 1) of `shape`, advancing the offset by the number of elements.

        `stream` (0-127) selects a disjoint counter range, so different kinds of draws
        (rand, randint, randperm, normal, ...) from equal seeds are not the same numbers.
        """
        n = math.prod(shape)
        with no_grad():
            seed = apply("reshape", apply("slice", self.state, starts=(0,), stops=(1,), steps=(1,)), shape=())
            off = apply("reshape", apply("slice", self.state, starts=(1,), stops=(2,), steps=(1,)), shape=())
            if stream:
                off = apply("add", off, apply("constant", value=stream << 56, shape=(), dtype=dt.int64))
            u = apply("random_uniform", seed, off, shape=tuple(shape), dtype=dtype)
            if n:
                inc = apply("constant", value=[0, n], shape=(2,), dtype=dt.int64)
                self.state._assign_value(apply("add", self.state, inc) if active_trace() else
                                         self.state._cell.value + np.array([0, n], dtype=np.int64))
        return u


# counter streams of the different kinds of draws (rand and friends use stream 0)
_NORMAL, _RANDINT, _RANDPERM, _BERNOULLI = 1, 2, 3, 4

default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (eager and compiled code draw the same numbers)."""
    default_generator.manual_seed(seed)
    return default_generator


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def _gen(generator) -> Generator:
    return default_generator if generator is None else generator


def _float_dtype(dtype) -> DType:
    d = _resolve(dtype)
    if not d.is_floating_point:
        raise RuntimeError(f"expected a floating-point dtype for random numbers, got {d.name}")
    return d


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    d = _float_dtype(dtype)
    u = _gen(generator).uniform(_size_arg(size), d)
    return _finish(u, requires_grad, device)


def _normal(shape, d: DType, generator) -> Tensor:
    """Box-Muller on two uniform draws (computed in float64 for accuracy, then cast)."""
    g = _gen(generator)
    n = math.prod(shape)
    with no_grad():
        u = g.uniform((2, n), dt.float64, stream=_NORMAL)
        u1 = apply("reshape", apply("slice", u, starts=(0, 0), stops=(1, n), steps=(1, 1)), shape=tuple(shape))
        u2 = apply("reshape", apply("slice", u, starts=(1, 0), stops=(2, n), steps=(1, 1)), shape=tuple(shape))
        r = ((1.0 - u1).log() * -2.0).sqrt()
        z = r * (u2 * (2 * math.pi)).cos()
    return _cast(z, d)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    d = _float_dtype(dtype)
    return _finish(_normal(_size_arg(size), d, generator), requires_grad, device)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high  # randint(high, size)
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    shape = _size_arg((size,) if not isinstance(size, (list, tuple)) else tuple(size))
    u = _gen(generator).uniform(shape, dt.float64, stream=_RANDINT)
    with no_grad():
        v = (u * float(high - low)).floor() + float(low)
    return _finish(_cast(v, dt.get_dtype(dtype) if dtype else dt.int64), False, device)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    if active_trace() is not None:
        raise RuntimeError("randperm inside kiln.compile is not supported (it needs a sort); draw the permutation "
                           "outside the compiled function")
    u = _gen(generator).uniform((n,), dt.float64, stream=_RANDPERM)
    perm = np.argsort(u._cell.value, kind="stable").astype(dt.get_dtype(dtype).np_dtype if dtype else np.int64)
    return _finish(Tensor._make(perm), False, device)


def rand_like(input: Tensor, *, dtype=None, generator=None, device=None) -> Tensor:
    return rand(tuple(input.shape), dtype=dtype or input.dtype, generator=generator, device=_device_like(input, device))


def randn_like(input: Tensor, *, dtype=None, generator=None, device=None) -> Tensor:
    return randn(tuple(input.shape), dtype=dtype or input.dtype, generator=generator,
                 device=_device_like(input, device))


def randint_like(input: Tensor, low, high=None, *, dtype=None, device=None) -> Tensor:
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype, device=_device_like(input, device))


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None) -> Tensor:
    if size is None:
        shape = tuple((mean if isinstance(mean, Tensor) else std).shape)
    else:
        shape = _size_arg((size,) if not isinstance(size, (list, tuple)) else tuple(size))
    return _normal(shape, _float_dtype(dtype), generator) * std + mean


def bernoulli(input: Tensor, p=None, *, generator=None) -> Tensor:
    probs = input if p is None else full_like(input, p)
    u = _gen(generator).uniform(tuple(input.shape), probs.dtype if probs.dtype.is_floating_point else dt.float32,
                                stream=_BERNOULLI)
    if input.device.type == "cuda" and active_trace() is None:
        u._cell.value = to_device_value(u._cell.value, input.device)  # the same numbers as on the CPU
    return _cast(u < probs, input.dtype)

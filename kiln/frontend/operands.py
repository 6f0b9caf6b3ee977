"""How Python numbers, numpy arrays and tensors become primitive operands.

Type promotion, broadcasting, casts and constants: the small core that creation, the
ops and indexing all build on (it imports only `tensor` and `dims`).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import SCALAR, TENSOR, ZERODIM, DType, scalar_dtype
from ..ir.primitives import broadcast_shapes
from .dims import _broadcast_error
from .tensor import Tensor, active_trace, apply


_Number = (int, float, bool, np.number, np.bool_)


def _is_scalar(x) -> bool:
    return isinstance(x, _Number)


def _operand(x):
    """(dtype, priority) of an operand for type promotion."""
    if isinstance(x, Tensor):
        return x.dtype, (ZERODIM if x.ndim == 0 else TENSOR)
    if _is_scalar(x):
        return scalar_dtype(x), SCALAR
    hint = " (convert it with kiln.from_numpy(...) or kiln.tensor(...))" if isinstance(x, np.ndarray) else ""
    raise TypeError(f"expected a Tensor or a Python number, got {type(x).__name__}{hint}")


def _promote(*xs) -> DType:
    return dt.result_type(*(_operand(x) for x in xs))


def full_const(value, shape, dtype: DType) -> Tensor:
    """A tensor filled with a Python number (one `constant` primitive)."""
    value = dtype.python_scalar(value)
    return apply("constant", value=value, shape=tuple(int(s) for s in shape), dtype=dtype)


def _cast(x: Tensor, dtype: DType) -> Tensor:
    return x if x.dtype == dtype else apply("cast", x, dtype=dtype)


def _bcast(x: Tensor, shape) -> Tensor:
    shape = tuple(shape)
    return x if tuple(x.shape) == shape else apply("broadcast_to", x, shape=shape)


def _prep(x, dtype: DType, shape) -> Tensor:
    if not isinstance(x, Tensor):
        return full_const(x, shape, dtype)
    return _bcast(_cast(x, dtype), shape)


def _shape_of(x):
    return tuple(x.shape) if isinstance(x, Tensor) else ()


def _broadcast_operands(*xs):
    shapes = [_shape_of(x) for x in xs]
    try:
        return broadcast_shapes(*shapes)
    except ValueError:
        raise _broadcast_error(shapes) from None


def _binary(name: str, a, b, dtype: DType | None = None, float_result: bool = False) -> Tensor:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{name}: expected at least one Tensor operand")
    if dtype is None:
        dtype = _promote(a, b)
        if float_result and not dtype.is_floating_point:
            dtype = dt.float32
    shape = _broadcast_operands(a, b)
    return apply(name, _prep(a, dtype, shape), _prep(b, dtype, shape))


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    out = []
    for s in shape:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"shape entries must be ints, got {type(s).__name__}")
        out.append(int(s))
    return tuple(out)


def _constant_tensor(arr: np.ndarray) -> Tensor:
    """A tensor holding `arr`: wrapped directly when eager, a `constant` node when tracing."""
    if active_trace() is None:
        return Tensor._make(arr)
    d = dt.from_numpy_dtype(arr.dtype)
    flat = arr.reshape(-1).tolist()
    if arr.size and np.all(arr == arr.reshape(-1)[0]):
        return full_const(flat[0], arr.shape, d)
    return apply("constant", value=flat, shape=tuple(arr.shape), dtype=d)

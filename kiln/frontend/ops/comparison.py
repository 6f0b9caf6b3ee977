"""Comparisons, logic and selection by a mask: eq/lt/..., logical_*, where, isnan/isinf, nonzero.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes as dt
from ...ir.primitives import broadcast_shapes
from ..creation import from_numpy
from ..operands import _bcast, _binary, _broadcast_operands, _cast, _prep, _promote, full_const
from ..tensor import Tensor, apply


def _compare(name, a, b) -> Tensor:
    return _binary(name, a, b, dtype=_promote(a, b))


def _comparison(name: str, symbol: str):
    """The comparison op `name` (input `symbol` other), elementwise with broadcasting and promotion."""
    def op(input, other) -> Tensor:
        return _compare(name, input, other)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"input {symbol} other, elementwise (broadcast, compared in the promoted dtype); a bool tensor."
    return op


eq = _comparison("eq", "==")
ne = _comparison("ne", "!=")
lt = _comparison("lt", "<")
le = _comparison("le", "<=")
gt = _comparison("gt", ">")
ge = _comparison("ge", ">=")


less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def _logical(name, a, b) -> Tensor:
    shape = _broadcast_operands(a, b)
    return apply(name, _prep(_to_bool(a), dt.bool_, shape), _prep(_to_bool(b), dt.bool_, shape))


def _to_bool(x):
    if isinstance(x, Tensor):
        return x if x.dtype.is_bool else ne(x, 0)
    return bool(x)


def _logical_op(name: str):
    """The logical op `name` ('logical_and', ...): nonzero counts as True; a bool tensor."""
    def op(input, other) -> Tensor:
        return _logical(name, input, other)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"{name.replace('_', ' ')} of input and other, elementwise (nonzero is True); a bool tensor."
    return op


logical_and = _logical_op("logical_and")
logical_or = _logical_op("logical_or")
logical_xor = _logical_op("logical_xor")


def logical_not(input: Tensor) -> Tensor:
    return apply("logical_not", _to_bool(input))


def _bitwise(name, a, b):
    if _promote(a, b).is_bool:
        return _logical(name, a, b)
    raise TypeError(f"bitwise operators on {_promote(a, b).name} tensors are not supported by kiln; "
                    "use them on bool tensors")


def isnan(input: Tensor) -> Tensor:
    return ne(input, input)


def isinf(input: Tensor) -> Tensor:
    if not input.dtype.is_floating_point:
        return full_const(False, input.shape, dt.bool_)
    return eq(apply("abs", input), math.inf)  # (abs() itself lives in pointwise, above this module)


def isfinite(input: Tensor) -> Tensor:
    return logical_not(logical_or(isnan(input), isinf(input)))


def where(condition: Tensor, input=None, other=None) -> Tensor:
    """Select `input` where `condition` is true, else `other` (both broadcast)."""
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    d = _promote(input, other)
    shape = _broadcast_operands(condition, input, other) if isinstance(condition, Tensor) else None
    cond = _bcast(_to_bool(condition), shape)
    return apply("select", cond, _prep(input, d, shape), _prep(other, d, shape))


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError("masked_fill only supports a 0-dimensional value tensor")
    if not mask.dtype.is_bool:
        raise RuntimeError(f"masked_fill only supports boolean masks, but got mask with dtype {mask.dtype.name}")
    v = _cast(value, input.dtype) if isinstance(value, Tensor) else full_const(value, (), input.dtype)
    shape = broadcast_shapes(tuple(input.shape), tuple(mask.shape))
    if shape != tuple(input.shape):
        raise RuntimeError(f"masked_fill: mask of shape {tuple(mask.shape)} cannot be broadcast to input shape "
                           f"{tuple(input.shape)}")
    return where(mask, v, input)


def nonzero(input: Tensor, *, as_tuple: bool = False):
    arr = input._concrete("nonzero() (its result's shape depends on the data)")
    idx = np.nonzero(arr)
    if as_tuple:
        return tuple(from_numpy(np.ascontiguousarray(i.astype(np.int64))) for i in idx)
    return from_numpy(np.ascontiguousarray(np.stack(idx, axis=1).astype(np.int64)))


def allclose(input: Tensor, other: Tensor, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    return bool(np.allclose(np.asarray(input), np.asarray(other), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input: Tensor, other: Tensor) -> bool:
    return tuple(input.shape) == tuple(other.shape) and bool(np.array_equal(np.asarray(input), np.asarray(other)))

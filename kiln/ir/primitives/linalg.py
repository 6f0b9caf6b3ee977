"""`matmul`: batched matrix product with equal batch dims."""
from __future__ import annotations

import numpy as np

from .registry import MATMUL, ShapeError, fmt_shape, register

def _matmul_rule(avals):
    a, b = avals
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ShapeError(f"matmul: operands need at least 2 dims, got {fmt_shape(a.shape)} and {fmt_shape(b.shape)}")
    if a.dtype != b.dtype:
        raise ShapeError(f"matmul: operand dtypes {a.dtype.name} and {b.dtype.name} differ")
    if a.dtype.is_bool:
        raise ShapeError("matmul: bool operands are not supported")
    if tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        raise ShapeError(f"matmul: batch dims {fmt_shape(a.shape[:-2])} and {fmt_shape(b.shape[:-2])} differ "
                         "(broadcast first)")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {fmt_shape(a.shape)} and {fmt_shape(b.shape)} cannot be multiplied "
                         f"({a.shape[-2]}x{a.shape[-1]} and {b.shape[-2]}x{b.shape[-1]})")
    return tuple(a.shape[:-1]) + (b.shape[-1],), a.dtype


def _matmul_vjp(ops, g, inputs, out):
    a, b = inputs
    return ops.matmul(g, ops.transpose_last(b)), ops.matmul(ops.transpose_last(a), g)


register("matmul", MATMUL, _matmul_rule, lambda a, b: np.matmul(a, b), _matmul_vjp, 2,
         saves="i", save_deps={0: "1", 1: "0"}, doc="batched (..., m, k) @ (..., k, n) with equal batch dims")

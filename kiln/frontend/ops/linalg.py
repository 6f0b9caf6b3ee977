"""Matrix products (matmul, mm, bmm, addmm, ...) and matrix structure (tril, triu, diagonal, diag, trace).
"""
from __future__ import annotations

import builtins

from ...ir.primitives import broadcast_shapes
from ..creation import arange
from ..dims import _norm_dim
from ..operands import _bcast, full_const
from ..tensor import Tensor, apply
from .comparison import eq, ge, le, where
from .indexing import getitem
from .joining import stack, unbind
from .pointwise import add, clamp, mul, sub
from .reductions import norm, sum
from .selection import index_select
from .shape import broadcast_tensors, expand, movedim, reshape, unsqueeze


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    return _tri(input, diagonal, lower=True)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    return _tri(input, diagonal, lower=False)


def _tri(input, diagonal, lower):
    r, c = input.shape[-2], input.shape[-1]
    rows = unsqueeze(arange(r), 1)
    cols = unsqueeze(arange(c), 0)
    keep = le(sub(cols, rows), diagonal) if lower else ge(sub(cols, rows), diagonal)
    return where(keep, input, full_const(0, (), input.dtype))


def matmul(input: Tensor, other: Tensor) -> Tensor:
    a, b = input, other
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.dtype != b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {a.dtype.name} != {b.dtype.name}")
    if a.dtype.is_bool:
        raise RuntimeError("matmul is not implemented for bool tensors")
    squeeze_a = a.ndim == 1
    squeeze_b = b.ndim == 1
    if squeeze_a and squeeze_b and a.shape[0] != b.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] to have "
                           f"the same number of elements, but got {a.shape[0]} and {b.shape[0]} elements respectively")
    if squeeze_a:
        a = reshape(a, (1, a.shape[0]))
    if squeeze_b:
        b = reshape(b, (b.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a.shape[-2]}x{a.shape[-1]} and "
                           f"{b.shape[-2]}x{b.shape[-1]})")
    try:
        batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    except ValueError:
        raise RuntimeError(f"matmul: batch dimensions {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])} of shapes "
                           f"{tuple(input.shape)} and {tuple(other.shape)} cannot be broadcast") from None
    a = _bcast(a, batch + tuple(a.shape[-2:]))
    b = _bcast(b, batch + tuple(b.shape[-2:]))
    out = apply("matmul", a, b)
    if squeeze_a or squeeze_b:
        shape = batch + ((out.shape[-2],) if not squeeze_a else ()) + ((out.shape[-1],) if not squeeze_b else ())
        out = reshape(out, shape)
    return out


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2D tensors, got {input.ndim}D and {mat2.ndim}D")
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3D tensors, got {input.ndim}D and {mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {input.shape[0]} and {mat2.shape[0]}")
    return matmul(input, mat2)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    return matmul(input, vec)


def dot(input: Tensor, other: Tensor) -> Tensor:
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    return mul(unsqueeze(input, 1), unsqueeze(vec2, 0))


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    prod_ = mm(mat1, mat2)
    if alpha != 1:
        prod_ = mul(prod_, alpha)
    return add(mul(input, beta) if beta != 1 else input, prod_)


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal over dims (dim1, dim2), appended as the last dim (a view-like gather)."""
    d1, d2 = _norm_dim(dim1, input.ndim), _norm_dim(dim2, input.ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    x = movedim(input, (d1, d2), (-2, -1))
    r, c = x.shape[-2], x.shape[-1]
    n = builtins.max(0, builtins.min(r + builtins.min(offset, 0), c - builtins.max(offset, 0)))
    rows = add(arange(n), builtins.max(-offset, 0))
    cols = add(arange(n), builtins.max(offset, 0))
    return getitem(x, (Ellipsis, rows, cols))


def diag(input: Tensor, diagonal_: int = 0, **kwargs) -> Tensor:
    k = kwargs.pop("diagonal", diagonal_)
    if input.ndim == 2:
        return diagonal(input, k)
    if input.ndim != 1:
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    m = input.shape[0]
    n = m + builtins.abs(k)
    i = unsqueeze(arange(n), 1)
    j = unsqueeze(arange(n), 0)
    pos = expand(i if k >= 0 else j, (n, n))  # which element of `input` lands at (i, j) on the diagonal
    if m == 0:
        return full_const(0, (n, n), input.dtype)
    src = reshape(index_select(input, 0, reshape(clamp(pos, 0, m - 1), (-1,))), (n, n))
    return where(eq(sub(j, i), k), src, full_const(0, (), input.dtype))


def trace(input: Tensor) -> Tensor:
    if input.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {input.ndim}")
    return sum(diagonal(input))


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    p = bmm(batch1, batch2)
    return add(input if beta == 1 else mul(input, beta), p if alpha == 1 else mul(p, alpha))


def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    p = sum(bmm(batch1, batch2), 0)
    return add(input if beta == 1 else mul(input, beta), p if alpha == 1 else mul(p, alpha))


def cross(input: Tensor, other: Tensor, dim=None) -> Tensor:
    a, b = broadcast_tensors(input, other)
    if dim is None:
        dim = next((i for i, s in enumerate(a.shape) if s == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    d = _norm_dim(dim, a.ndim)
    if a.shape[d] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got {a.shape[d]} and "
                           f"{b.shape[d]}")
    a0, a1, a2 = unbind(a, d)
    b0, b1, b2 = unbind(b, d)
    return stack([sub(mul(a1, b2), mul(a2, b1)), sub(mul(a2, b0), mul(a0, b2)), sub(mul(a0, b1), mul(a1, b0))], d)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0) -> Tensor:
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} X2: {x2.shape[-1]}")
    return norm(sub(unsqueeze(x1, -2), unsqueeze(x2, -3)), p, dim=-1)

"""Scans along one dim: cumsum, cumprod, logcumsumexp (log-step scans), and diff.
"""
from __future__ import annotations

import math

from ...ir import dtypes as dt
from ..dims import _norm_dim, accept_axis
from ..operands import _cast
from ..tensor import Tensor, apply
from .comparison import logical_xor
from .joining import cat
from .pointwise import add, logaddexp, mul, sub
from .shape import _slice_dim, clone


@accept_axis
def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Cumulative sum along `dim` (ints and bools accumulate in int64, as in PyTorch).

    A log-step scan (x + x shifted by 1, 2, 4, ... with pad + slice): memory stays linear in
    the size, and a nan/inf only reaches the positions after it (a triangular-mask matmul
    would spread nan * 0 to every output).
    """
    return _accumulate(input, dim, dtype, add, 0)


def _accumulate(input: Tensor, dim: int, dtype, combine, identity: int) -> Tensor:
    """cumsum/cumprod: scan in `dtype`, by default the input's float dtype or int64 (as PyTorch)."""
    out_dtype = dt.get_dtype(dtype) if dtype is not None else (
        input.dtype if input.dtype.is_floating_point else dt.int64)
    x = _cast(input, out_dtype)
    if x.ndim == 0:
        return clone(x)
    return _scan(x, _norm_dim(dim, x.ndim), combine, float(identity) if out_dtype.is_floating_point else identity)


def _scan(x: Tensor, d: int, combine, identity) -> Tensor:
    """Inclusive log-step scan along dim `d` with an associative `combine` (pad with `identity`)."""
    n, nd, k = x.shape[d], x.ndim, 1
    while k < n:
        lo = tuple(k if i == d else 0 for i in range(nd))
        shifted = apply("pad", x, lo=lo, hi=(0,) * nd, interior=(0,) * nd, value=identity)
        x = combine(x, _slice_dim(shifted, d, 0, n))
        k *= 2
    return x


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    return _accumulate(input, dim, dtype, mul, 1)


def logcumsumexp(input: Tensor, dim: int) -> Tensor:
    x = input if input.dtype.is_floating_point else _cast(input, dt.float32)
    if x.ndim == 0:
        return clone(x)
    return _scan(x, _norm_dim(dim, x.ndim), logaddexp, -math.inf)


def diff(input: Tensor, n: int = 1, dim: int = -1, prepend=None, append=None) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    x = input
    if prepend is not None or append is not None:
        x = cat([t for t in (prepend, x, append) if t is not None], d)
    for _ in range(n):
        m = x.shape[d]
        if m == 0:
            break
        a, b = _slice_dim(x, d, 1, m), _slice_dim(x, d, 0, m - 1)
        x = logical_xor(a, b) if x.dtype.is_bool else sub(a, b)
    return x

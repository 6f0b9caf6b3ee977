"""Sorting, searching and counting: sort, topk, median, unique, bincount, searchsorted.

Sort-like ops compute their permutation eagerly (like nonzero()); values stay differentiable via gather.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ...ir import dtypes as dt
from ..creation import from_numpy
from ..dims import _norm_dim
from ..operands import _cast, full_const
from ..tensor import Tensor
from .comparison import le, lt
from .pointwise import _as_tensor
from .reductions import MinMax, sum
from .selection import gather, scatter_add
from .shape import _slice_dim, clone, reshape, select, squeeze, unsqueeze


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """Values (differentiable, via gather) and indices; the order is computed eagerly like nonzero()."""
    d = _norm_dim(dim, input.ndim) if input.ndim else 0
    if input.ndim == 0:
        return MinMax(clone(input), full_const(0, (), dt.int64))
    arr = input._concrete("sort() (its permutation depends on the data)")
    if descending:  # NaN counts as the largest value (first when descending), as in torch
        key = ~arr if arr.dtype == np.bool_ else np.where(np.isnan(arr), -np.inf, -arr.astype(np.float64))
    else:
        key = arr
    idx = np.argsort(key, axis=d, kind="stable")
    indices = from_numpy(np.ascontiguousarray(idx.astype(np.int64)))
    return MinMax(gather(input, d, indices), indices)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    return sort(input, dim, descending, stable)[1]


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    d = _norm_dim(dim, input.ndim) if input.ndim else 0
    n = input.shape[d] if input.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError(f"selected index k out of range (k={k}, size {n} at dim {d})")
    values, indices = sort(input, d, descending=largest)
    if input.ndim == 0:
        return MinMax(values, indices)
    return MinMax(_slice_dim(values, d, 0, k), _slice_dim(indices, d, 0, k))


def median(input: Tensor, dim=None, keepdim: bool = False):
    """The lower median (as torch.median); with `dim`: (values, indices)."""
    if dim is None:
        flat = reshape(input, (-1,))
        if flat.shape[0] == 0:
            return full_const(math.nan, (), input.dtype)
        values, _ = sort(flat)
        return select(values, 0, (flat.shape[0] - 1) // 2)
    d = _norm_dim(dim, input.ndim)
    values, indices = sort(input, d, stable=True)
    k = (input.shape[d] - 1) // 2
    v, i = _slice_dim(values, d, k, k + 1), _slice_dim(indices, d, k, k + 1)
    return MinMax(v, i) if keepdim else MinMax(squeeze(v, d), squeeze(i, d))


def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False,
           dim=None):
    """Distinct values (computed eagerly, like nonzero(); the result's shape depends on the data)."""
    if dim is not None:
        raise NotImplementedError("unique(dim=...) is not supported; use unique() on the flattened tensor")
    arr = input._concrete("unique() (its result's shape depends on the data)")
    vals, inv, counts = np.unique(arr, return_inverse=True, return_counts=True)
    out = [from_numpy(np.ascontiguousarray(vals))]
    if return_inverse:
        out.append(from_numpy(np.ascontiguousarray(inv.reshape(arr.shape).astype(np.int64))))
    if return_counts:
        out.append(from_numpy(np.ascontiguousarray(counts.astype(np.int64))))
    return out[0] if len(out) == 1 else tuple(out)


def bincount(input: Tensor, weights=None, minlength: int = 0) -> Tensor:
    if input.ndim != 1 or not input.dtype.is_integer:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    arr = input._concrete("bincount() (its length depends on the data)")
    if arr.size and arr.min() < 0:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    n = builtins.max(int(arr.max()) + 1 if arr.size else 0, minlength)
    if weights is None:
        return scatter_add(full_const(0, (n,), dt.int64), 0, input, full_const(1, tuple(input.shape), dt.int64))
    w = weights if weights.dtype.is_floating_point else _cast(weights, dt.float64)
    return scatter_add(full_const(0, (n,), w.dtype), 0, input, w)


def searchsorted(sorted_sequence: Tensor, values, *, right: bool = False, side=None, out_int32: bool = False):
    """Insertion points, counted as comparisons (differentiable-free, traceable)."""
    if side is not None:
        right = side == "right"
    v = values if isinstance(values, Tensor) else _as_tensor(values)
    seq = sorted_sequence
    if seq.ndim == 1:
        cmp = (le if right else lt)(unsqueeze(seq, 0), unsqueeze(reshape(v, (-1,)), 1))
        out = reshape(sum(_cast(cmp, dt.int64), 1), tuple(v.shape))
    else:
        cmp = (le if right else lt)(unsqueeze(seq, -2), unsqueeze(v, -1))
        out = sum(_cast(cmp, dt.int64), -1)
    return _cast(out, dt.int32) if out_int32 else out


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False, right: bool = False) -> Tensor:
    return searchsorted(boundaries, input, right=right, out_int32=out_int32)

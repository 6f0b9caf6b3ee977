"""Joining, splitting and rearranging tensors: cat/stack, split/chunk/unbind, flip, repeat, roll, meshgrid.
"""
from __future__ import annotations

import builtins
from typing import Sequence

from ...ir import dtypes as dt
from ..creation import arange
from ..dims import _dims, _norm_dim, accept_axis
from ..operands import _bcast, _cast, _operand, _shape_arg
from ..tensor import Tensor, apply
from .selection import index_select
from .shape import _slice_dim, clone, expand, reshape, squeeze, unsqueeze


@accept_axis
def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    # PyTorch skips legacy empty 1-D tensors
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected a sequence of Tensors, but element {k} is {type(t).__name__}")
        if t.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {k}) cannot be concatenated")
    nonempty = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
    d0 = nonempty[0].ndim
    d = _norm_dim(dim, d0)
    for k, t in enumerate(nonempty):
        if t.ndim != d0:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {d0} and {t.ndim}")
        for i in range(d0):
            if i != d and t.shape[i] != nonempty[0].shape[i]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{nonempty[0].shape[i]} but got size {t.shape[i]} for tensor number {k} in the list.")
    dtype = dt.result_type(*(_operand(t) for t in nonempty))
    parts = [_cast(t, dtype) for t in nonempty]
    if len(parts) == 1:
        return clone(parts[0])
    return apply("concat", *parts, axis=d)


concat = concatenate = cat


@accept_axis
def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape0 = tuple(tensors[0].shape)
    for k, t in enumerate(tensors):
        if tuple(t.shape) != shape0:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(shape0)} at entry 0 and "
                               f"{list(t.shape)} at entry {k}")
    d = _norm_dim(dim, len(shape0) + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def hstack(tensors):
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t if t.ndim >= 2 else reshape(t, (1, -1)) for t in tensors], 0)


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    d = _norm_dim(dim, tensor.ndim)
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise RuntimeError(f"split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        if n == 0:
            sizes = [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at "
                               f"dimension {d}), but got split_sizes={sizes}")
    out, off = [], 0
    for s in sizes:
        out.append(_slice_dim(tensor, d, off, off + s))
        off += s
    return tuple(out)


@accept_axis
def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = _norm_dim(dim, input.ndim)
    size = -(-input.shape[d] // chunks) if input.shape[d] else 1
    return split(input, builtins.max(size, 1), d)


@accept_axis
def unbind(input: Tensor, dim: int = 0) -> tuple:
    d = _norm_dim(dim, input.ndim)
    return tuple(squeeze(_slice_dim(input, d, i, i + 1), d) for i in range(input.shape[d]))


def flip(input: Tensor, dims) -> Tensor:
    dims = _dims(tuple(dims) if isinstance(dims, (list, tuple)) else (dims,), input.ndim, empty_means_all=False)
    out = input
    for d in dims:
        n = input.shape[d]
        idx = arange(n - 1, -1, -1)
        out = index_select(out, d, idx)
    return out


def repeat(input: Tensor, *sizes) -> Tensor:
    """`input` tiled `sizes[i]` times along each dim: a new tensor, never a view of `input` (as PyTorch)."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of "
                           f"tensor (repeat got {len(sizes)} sizes for a {input.ndim}-d tensor)")
    shape = (1,) * (len(sizes) - input.ndim) + tuple(input.shape)
    x = reshape(input, tuple(v for s in shape for v in (1, s)))
    x = _bcast(x, tuple(v for r, s in zip(sizes, shape) for v in (r, s)))
    # reshape/broadcast are views of `input`; the copy makes the result own its memory.
    return clone(reshape(x, tuple(r * s for r, s in zip(sizes, shape))))


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    if dims is None:
        return reshape(roll(reshape(input, (-1,)), shifts, 0), tuple(input.shape))
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    out = input
    for sft, d in zip(shifts, dims):
        d = _norm_dim(d, input.ndim)
        n = input.shape[d]
        if n == 0:
            continue
        k = sft % n
        if k:
            out = cat([_slice_dim(out, d, n - k, n), _slice_dim(out, d, 0, n - k)], d)
    return out


def tile(input: Tensor, dims) -> Tensor:
    dims = tuple(dims)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return repeat(input, *dims)


def meshgrid(*tensors, indexing: str = "ij"):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but received: {indexing}")
    ts = list(tensors)
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    shape = tuple(t.numel() for t in ts)
    out = [expand(reshape(t, tuple(-1 if i == k else 1 for i in range(len(ts)))), shape) for k, t in enumerate(ts)]
    if swap:
        out[0], out[1] = out[1], out[0]
    return tuple(out)


def tensor_split(input: Tensor, indices_or_sections, dim: int = 0) -> tuple:
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {k}")
        base, extra = divmod(n, k)
        sizes = [base + 1] * extra + [base] * (k - extra)
        bounds = [builtins.sum(sizes[:i]) for i in range(k + 1)]
    else:
        cuts = [builtins.min(builtins.max(int(i), 0), n) for i in indices_or_sections]
        bounds = [0] + cuts + [n]
    return tuple(_slice_dim(input, d, a, builtins.max(a, b)) for a, b in zip(bounds[:-1], bounds[1:]))


def hsplit(input: Tensor, indices_or_sections) -> tuple:
    return tensor_split(input, indices_or_sections, 1 if input.ndim > 1 else 0)


def vsplit(input: Tensor, indices_or_sections) -> tuple:
    if input.ndim < 2:
        raise RuntimeError(f"torch.vsplit requires a tensor with at least 2 dimension, but got a tensor with "
                           f"{input.ndim} dimensions!")
    return tensor_split(input, indices_or_sections, 0)

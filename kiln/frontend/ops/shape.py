"""Shape and view ops: reshape, permute, transpose, squeeze, expand, flatten, slicing along one dim.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.dtypes import DType
from ..dims import _dims, _infer_shape, _norm_dim, accept_axis
from ..operands import _bcast, _broadcast_operands, _shape_arg
from ..tensor import Tensor, apply


def reshape(input: Tensor, *shape) -> Tensor:
    shape = _infer_shape(_shape_arg(shape), input.numel())
    return apply("reshape", input, shape=shape)  # a new view also when the shape is unchanged, as PyTorch


def alias(input: Tensor) -> Tensor:
    """A new view of all of `input`: what PyTorch's view ops return when they change nothing
    (`x[:]`, `x.view(x.shape)`, `x.permute(0, 1)`): a new tensor object sharing `input`'s memory,
    version counter and autograd history, never `input` itself."""
    return apply("reshape", input, shape=tuple(input.shape))


def view(input: Tensor, *shape) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (DType, str, type)) and not isinstance(shape[0], (tuple, list)):
        raise NotImplementedError("view(dtype) reinterpretation is not supported by kiln")
    return reshape(input, *shape)


def view_as(input: Tensor, other: Tensor) -> Tensor:
    return reshape(input, tuple(other.shape))


reshape_as = view_as


def permute(input: Tensor, *dims) -> Tensor:
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                           f"length of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not "
                           f"equal to len(dims) = {len(dims)}")
    perm = tuple(_norm_dim(d, input.ndim) for d in dims)
    if len(set(perm)) != len(perm):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    if perm == tuple(range(input.ndim)):
        return alias(input)
    return apply("permute", input, perm=perm)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    if input.ndim == 0:
        return alias(input)
    d0, d1 = _norm_dim(dim0, input.ndim), _norm_dim(dim1, input.ndim)
    perm = list(range(input.ndim))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(input, perm)


swapaxes = swapdims = transpose


def t(input: Tensor) -> Tensor:
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return alias(input) if input.ndim < 2 else transpose(input, 0, 1)


def movedim(input: Tensor, source, destination) -> Tensor:
    src = tuple(source) if isinstance(source, (list, tuple)) else (source,)
    dst = tuple(destination) if isinstance(destination, (list, tuple)) else (destination,)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({list(src)} dims) should "
                           f"contain the same number of dims as destination ({list(dst)} dims)")
    s = [_norm_dim(d, input.ndim) for d in src]
    d = [_norm_dim(d, input.ndim) for d in dst]
    if len(set(s)) != len(s):
        raise RuntimeError(f"movedim: repeated dim in `source` ({list(src)})")
    if len(set(d)) != len(d):
        raise RuntimeError(f"movedim: repeated dim in `destination` ({list(dst)})")
    perm = [-1] * input.ndim
    for a, b in zip(s, d):
        perm[b] = a
    rest = iter(i for i in range(input.ndim) if i not in s)
    perm = [p if p >= 0 else next(rest) for p in perm]
    return permute(input, perm)


moveaxis = movedim


@accept_axis
def squeeze(input: Tensor, dim=None) -> Tensor:
    if dim is None:
        shape = tuple(s for s in input.shape if s != 1)
    else:
        dims = _dims(dim, input.ndim, empty_means_all=False)
        shape = tuple(s for i, s in enumerate(input.shape) if not (i in dims and s == 1))
    return reshape(input, shape)


def _squeeze_dims(x: Tensor, axes) -> Tensor:
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


@accept_axis
def unsqueeze(input: Tensor, dim: int) -> Tensor:
    d = _norm_dim(dim, input.ndim + 1)
    shape = list(input.shape)
    shape.insert(d, 1)
    return apply("reshape", input, shape=tuple(shape))


def expand(input: Tensor, *sizes) -> Tensor:
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the "
                           f"number of dimensions in the tensor ({input.ndim})")
    lead = len(sizes) - input.ndim
    target = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise RuntimeError("expand: -1 is not allowed in a leading, non-existing dimension")
            s = input.shape[i - lead]
        target.append(s)
    target = tuple(target)
    if target == tuple(input.shape):
        return alias(input)
    for i, s in enumerate(input.shape):
        if s != 1 and s != target[lead + i]:
            raise RuntimeError(f"The expanded size of the tensor ({target[lead + i]}) must match the existing size "
                               f"({s}) at non-singleton dimension {lead + i}.  Target sizes: {list(sizes)}.  "
                               f"Tensor sizes: {list(input.shape)}")
    return _bcast(input, target)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return expand(input, tuple(other.shape))


def broadcast_to(input: Tensor, shape) -> Tensor:
    return expand(input, tuple(shape))


def broadcast_tensors(*tensors):
    shape = _broadcast_operands(*tensors)
    return tuple(_bcast(t, shape) for t in tensors)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = _norm_dim(start_dim, input.ndim), _norm_dim(end_dim, input.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = tuple(input.shape[:s]) + (math.prod(input.shape[s:e + 1]),) + tuple(input.shape[e + 1:])
    return input if shape == tuple(input.shape) else reshape(input, shape)  # nothing flattened: input (as PyTorch)


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    sizes = _infer_shape(tuple(sizes), input.shape[d])
    return reshape(input, tuple(input.shape[:d]) + sizes + tuple(input.shape[d + 1:]))


def contiguous(input: Tensor, memory_format=None) -> Tensor:
    """`input` itself when its elements are in row-major order, else a row-major copy (as PyTorch;
    `memory_format=channels_last` gives the same values in kiln's row-major layout). Traced values
    are logical: always `input`."""
    v = input._cell.value
    if not isinstance(v, np.ndarray) or v.flags.c_contiguous:
        return input
    out = clone(input)
    out._cell.value = np.ascontiguousarray(out._cell.value)  # the copy's values, in row-major order
    return out


def clone(input: Tensor, *, memory_format=None) -> Tensor:
    return apply("cast", input, dtype=input.dtype)


def _slice_dim(x: Tensor, d: int, start: int, stop: int, step: int = 1) -> Tensor:
    starts = tuple(start if i == d else 0 for i in range(x.ndim))
    stops = tuple(stop if i == d else s for i, s in enumerate(x.shape))
    steps = tuple(step if i == d else 1 for i in range(x.ndim))
    if starts == (0,) * x.ndim and stops == tuple(x.shape) and step == 1:
        return alias(x)
    return apply("slice", x, starts=starts, stops=stops, steps=steps)


@accept_axis
def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    if start < 0:
        start += input.shape[d]
    if not (0 <= start and start + length <= input.shape[d]):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({input.shape[d]}).")
    return _slice_dim(input, d, start, start + length)


def select(input: Tensor, dim: int, index: int) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size {list(input.shape)} at "
                         f"dimension {d}")
    return squeeze(_slice_dim(input, d, index % n, index % n + 1), d)

"""Reading and writing along an index tensor: gather, scatter, index_select/add/fill, one_hot, masked_select.
"""
from __future__ import annotations

from ...ir import dtypes as dt
from ..creation import arange
from ..dims import _norm_dim, accept_axis
from ..operands import _bcast, _cast, full_const
from ..tensor import Tensor, apply
from .comparison import eq, where
from .indexing import getitem
from .pointwise import add, mul
from .reductions import any, sum
from .shape import broadcast_tensors, reshape, unsqueeze


def _check_index(index: Tensor, name: str) -> Tensor:
    if not isinstance(index, Tensor) or not index.dtype.is_integer:
        d = index.dtype.name if isinstance(index, Tensor) else type(index).__name__
        raise RuntimeError(f"{name}(): Expected dtype int64 for index, got {d}")
    return _cast(index, dt.int64)


@accept_axis
def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    index = _check_index(index, "gather")
    d = _norm_dim(dim, input.ndim)
    if input.ndim == 0 and index.ndim == 0:  # torch allows gathering from a 0-d tensor with a 0-d index
        return reshape(gather(reshape(input, (1,)), 0, reshape(index, (1,))), ())
    return apply("gather", input, index, axis=d)


def scatter(input: Tensor, dim: int, index: Tensor, src=None, *, value=None, reduce=None) -> Tensor:
    if src is None:
        src = value
    index = _check_index(index, "scatter")
    d = _norm_dim(dim, input.ndim)
    if not isinstance(src, Tensor):
        src = full_const(src, index.shape, input.dtype)
    else:
        src = _cast(src, input.dtype)
        if tuple(src.shape) != tuple(index.shape):
            src = _slice_to(src, index.shape)
    if reduce == "add":
        return apply("scatter_add", input, index, src, axis=d)
    if reduce is not None:
        raise NotImplementedError(f"scatter reduce={reduce!r} is not supported")
    return apply("scatter", input, index, src, axis=d)


def _slice_to(src: Tensor, shape) -> Tensor:
    for d, (s, t) in enumerate(zip(src.shape, shape)):
        if t > s:
            raise RuntimeError(f"Expected index {tuple(shape)} to be smaller than src {tuple(src.shape)} "
                               f"apart from dimension {d}")
    return apply("slice", src, starts=(0,) * src.ndim, stops=tuple(shape), steps=(1,) * src.ndim)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    return scatter(input, dim, index, src, reduce="add")


@accept_axis
def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    index = _check_index(index, "index_select")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    d = _norm_dim(dim, input.ndim) if input.ndim else 0
    if input.ndim == 0:
        return gather(reshape(input, (1,)), 0, reshape(index, (-1,)))
    index = reshape(index, (-1,))
    n = index.shape[0]
    idx_shape = tuple(n if i == d else 1 for i in range(input.ndim))
    out_shape = tuple(n if i == d else s for i, s in enumerate(input.shape))
    idx = _bcast(reshape(index, idx_shape), out_shape)
    return apply("gather", input, idx, axis=d)


def take_along_dim(input: Tensor, indices: Tensor, dim: int) -> Tensor:
    return gather(input, dim, indices)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    if not tensor.dtype.is_integer:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        num_classes = int(tensor._concrete("one_hot without num_classes").max()) + 1
    if tensor.is_tracer and tensor.numel():
        # compiled: read the classes through a gather of arange, whose bounds check fails on a value
        # outside [0, num_classes) as the eager check above does (eq alone would give a zero row)
        flat = reshape(_cast(tensor, dt.int64), (tensor.numel(),))
        tensor = reshape(apply("gather", arange(num_classes), flat, axis=0), tuple(tensor.shape))
    return _cast(eq(unsqueeze(tensor, -1), arange(num_classes)), dt.int64)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    x, m = broadcast_tensors(input, mask)
    return getitem(x, m)


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha=1) -> Tensor:
    index = _check_index(index, "index_add")
    d = _norm_dim(dim, input.ndim)
    src = _cast(source if alpha == 1 else mul(source, alpha), input.dtype)
    if input.ndim == 0:
        return add(input, sum(src))
    idx_shape = tuple(index.shape[0] if i == d else 1 for i in range(input.ndim))
    idx = _bcast(reshape(index, idx_shape), tuple(src.shape))
    return apply("scatter_add", input, idx, src, axis=d)


def index_fill(input: Tensor, dim: int, index: Tensor, value) -> Tensor:
    index = _check_index(index, "index_fill")
    d = _norm_dim(dim, input.ndim)
    pos = reshape(arange(input.shape[d]), tuple(-1 if i == d else 1 for i in range(input.ndim)))
    hit = any(eq(unsqueeze(pos, -1), reshape(index, (1,) * input.ndim + (-1,))), -1)
    v = _cast(value, input.dtype) if isinstance(value, Tensor) else full_const(value, (), input.dtype)
    return where(hit, v, input)

"""Reductions: sum/mean/var/std/prod, max/min and their indices, all/any, logsumexp, softmax, norms.
"""
from __future__ import annotations

import builtins
import math
from collections import namedtuple

from ...ir import dtypes as dt
from ..dims import _dims, _norm_dim, _reduced_shape, accept_axis
from ..operands import _cast, full_const
from ..tensor import Tensor, apply
from .comparison import _to_bool, eq, isinf, isnan, ne, where
from .pointwise import abs, add, div, exp, log, maximum, minimum, mul, pow, sqrt, sub
from .shape import _squeeze_dims, clone, reshape, squeeze


def _reduce(name, x: Tensor, dim, keepdim) -> Tensor:
    axes = _dims(dim, x.ndim)
    return apply(name, x, axes=axes, keepdims=bool(keepdim))


def _accumulate_wide(x: Tensor) -> Tensor:
    """float16 reductions accumulate in float32 (as PyTorch does); the caller casts back."""
    return _cast(x, dt.float32) if x.dtype == dt.float16 else x


def _sum_or_prod(name: str, input: Tensor, dim, keepdim: bool, dtype) -> Tensor:
    """sum/prod in `dtype`; by default floats keep their dtype and ints and bools become int64 (as PyTorch)."""
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    elif not input.dtype.is_floating_point:
        input = _cast(input, dt.int64)
    return _cast(_reduce(name, _accumulate_wide(input), dim, keepdim), input.dtype)


@accept_axis
def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    return _sum_or_prod("reduce_sum", input, dim, keepdim, dtype)


@accept_axis
def mean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point or "
                           f"complex dtype. Got: {input.dtype.name}")
    out_dtype = input.dtype
    axes = _dims(dim, input.ndim)
    n = math.prod(input.shape[a] for a in axes)
    s = _reduce("reduce_sum", _accumulate_wide(input), dim, keepdim)
    return _cast(div(s, float(n) if n else float("nan")), out_dtype)


@accept_axis
def var(input: Tensor, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None) -> Tensor:
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"std and var only support floating point and complex dtypes, got {input.dtype.name}")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    out_dtype = input.dtype
    x = _accumulate_wide(input)
    axes = _dims(dim, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    mu = mean(x, dim=axes, keepdim=True)
    d = sub(x, mu)
    ss = _reduce("reduce_sum", mul(d, d), axes, keepdim)
    return _cast(div(ss, float(builtins.max(n - correction, 0))), out_dtype)


@accept_axis
def std(input: Tensor, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None) -> Tensor:
    v = var(input, dim, unbiased, keepdim, correction=correction)
    # sqrt's gradient is infinite at 0; like PyTorch, a zero std gets a zero gradient (double-where trick)
    zero = eq(v, 0)
    z = full_const(0, (), v.dtype)
    return where(zero, z, sqrt(where(zero, full_const(1, (), v.dtype), v)))


@accept_axis
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


@accept_axis
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


@accept_axis
def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    return _sum_or_prod("reduce_prod", input, dim, keepdim, dtype)


def _check_nonempty(name: str, x: Tensor, dim) -> None:
    """PyTorch's errors for max/min-like reductions over nothing."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        if x.numel() == 0:
            exc = IndexError if name.startswith("arg") else RuntimeError  # (PyTorch's choice of classes)
            raise exc(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                      "Specify the reduction dim with the 'dim' argument.")
        return
    for a in _dims(dim, x.ndim):
        if x.shape[a] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {a} to have non-zero size.")


@accept_axis
def amax(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    _check_nonempty("amax", input, dim)
    return _cast(_reduce("reduce_max", _no_bool(input), dim, keepdim), input.dtype)


@accept_axis
def amin(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    _check_nonempty("amin", input, dim)
    return _cast(_reduce("reduce_min", _no_bool(input), dim, keepdim), input.dtype)


def _no_bool(x: Tensor) -> Tensor:
    return _cast(x, dt.int32) if x.dtype.is_bool else x


MinMax = namedtuple("MinMax", ["values", "indices"])


max_return_types = MinMax


def _extreme(name, argname, input, dim, keepdim):
    if isinstance(dim, Tensor):
        return maximum(input, dim) if name == "reduce_max" else minimum(input, dim)
    _check_nonempty(name[7:], input, dim)
    if dim is None:
        out = _reduce(name, _no_bool(input), None, False)
        return _cast(out, input.dtype)
    d = _norm_dim(dim, input.ndim)
    x = _no_bool(input)
    if x.ndim == 0:
        return MinMax(input, full_const(0, (), dt.int64))
    idx = apply(argname, x, axis=d, keepdims=True)
    values = apply("gather", input, idx, axis=d)
    if not keepdim:
        values = squeeze(values, d)
        idx = squeeze(idx, d)
    return MinMax(values, idx)


@accept_axis
def max(input: Tensor, dim=None, keepdim: bool = False):
    """max(x) -> tensor; max(x, dim) -> (values, indices); max(x, other) -> maximum."""
    return _extreme("reduce_max", "argmax", input, dim, keepdim)


@accept_axis
def min(input: Tensor, dim=None, keepdim: bool = False):
    return _extreme("reduce_min", "argmin", input, dim, keepdim)


def _no_bool_arg(name: str, x: Tensor) -> Tensor:
    if x.dtype.is_bool:
        raise RuntimeError(f"{name}(): does not support bool input")
    return x


def _arg_extreme(name: str, input: Tensor, dim, keepdim: bool) -> Tensor:
    """argmax / argmin (`name`): the index of the extreme value over `dim`, or over all elements."""
    x = _no_bool_arg(name, input)
    _check_nonempty(name, x, dim)
    if dim is None:
        r = apply(name, reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(r, (1,) * input.ndim) if keepdim else r
    return apply(name, x, axis=_norm_dim(dim, x.ndim), keepdims=bool(keepdim)) if x.ndim else \
        full_const(0, (), dt.int64)


@accept_axis
def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return _arg_extreme("argmax", input, dim, keepdim)


@accept_axis
def argmin(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return _arg_extreme("argmin", input, dim, keepdim)


@accept_axis
def all(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = _dims(dim, input.ndim, empty_means_all=False)  # torch.all(x, dim=()) reduces nothing
    b = _cast(_to_bool(input), dt.int32)
    if not input.numel():
        return full_const(True, _reduced_shape(input, axes, keepdim), dt.bool_)
    return _cast(apply("reduce_min", b, axes=axes, keepdims=bool(keepdim)), dt.bool_)


@accept_axis
def any(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = _dims(dim, input.ndim, empty_means_all=False)
    b = _cast(_to_bool(input), dt.int32)
    if not input.numel():
        return full_const(False, _reduced_shape(input, axes, keepdim), dt.bool_)
    return _cast(apply("reduce_max", b, axes=axes, keepdims=bool(keepdim)), dt.bool_)


@accept_axis
def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    if not input.dtype.is_floating_point:
        input = _cast(input, dt.float32)
    out_dtype = input.dtype
    x = _accumulate_wide(input)
    axes = _dims(dim, x.ndim)
    if builtins.any(x.shape[a] == 0 for a in axes):  # log of an empty sum: -inf
        m = full_const(0.0, _reduced_shape(x, axes, True), x.dtype)
    else:
        m = amax(x, axes, keepdim=True).detach()
        m = where(isinf(m), full_const(0.0, (), m.dtype), m)
    s = sum(exp(sub(x, m)), axes, keepdim=True)
    out = add(log(s), m)
    return _cast(out if keepdim else _squeeze_dims(out, axes), out_dtype)


def _softmax_operand(input: Tensor, dim: int, dtype):
    """softmax/log_softmax's input: cast to `dtype` (or float32 for ints), widened from float16;
    returns (x, dim, out_dtype, empty), `empty` when reducing over a size-0 dim."""
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    if not input.dtype.is_floating_point:
        input = _cast(input, dt.float32)
    x = _accumulate_wide(input)
    d = _norm_dim(dim, x.ndim) if x.ndim else ()
    return x, d, input.dtype, bool(x.ndim and x.shape[d] == 0)


@accept_axis
def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    x, d, out_dtype, empty = _softmax_operand(input, dim, dtype)
    if empty:
        return _cast(clone(x), out_dtype)  # softmax over an empty dim is empty
    m = amax(x, d, keepdim=True).detach()
    e = exp(sub(x, m))
    return _cast(div(e, sum(e, d, keepdim=True)), out_dtype)


@accept_axis
def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    x, d, out_dtype, empty = _softmax_operand(input, dim, dtype)
    if empty:
        return _cast(clone(x), out_dtype)
    return _cast(sub(x, logsumexp(x, d, keepdim=True)), out_dtype)


def norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """torch.norm: vector p-norms over `dim` (all elements by default); 'fro' is the 2-norm."""
    x = _cast(input, dt.get_dtype(dtype)) if dtype is not None else input
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"norm(): input dtype should be floating point, but got {x.dtype.name}")
    if p == "fro" or p == 2:
        s = sum(mul(x, x), dim, keepdim)
        zero = eq(s, 0)  # a zero norm gets a zero gradient, as in torch
        return where(zero, full_const(0, (), s.dtype), sqrt(where(zero, full_const(1, (), s.dtype), s)))
    if p == math.inf or p == "inf":
        return amax(abs(x), () if dim is None else dim, keepdim)
    if p == -math.inf:
        return amin(abs(x), () if dim is None else dim, keepdim)
    if p == 1:
        return sum(abs(x), dim, keepdim)
    if p == 0:
        return sum(_cast(ne(x, 0), x.dtype), dim, keepdim)
    if isinstance(p, (int, float)):
        return pow(sum(pow(abs(x), float(p)), dim, keepdim), 1.0 / p)
    raise RuntimeError(f"norm(): unsupported norm type {p!r}")


def dist(input: Tensor, other: Tensor, p=2) -> Tensor:
    return norm(sub(input, other), p)


def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    x = where(isnan(input), full_const(0, (), input.dtype), input) if input.dtype.is_floating_point else input
    return sum(x, dim, keepdim, dtype=dtype)


def count_nonzero(input: Tensor, dim=None) -> Tensor:
    return sum(_cast(ne(input, 0), dt.int64), dim)

"""User-facing tensor operations with PyTorch's names, broadcasting and type promotion.

Every op here is a composition of primitives applied through `apply`; none has its own
gradient: gradients come from the primitives' VJP rules.
"""
from __future__ import annotations

import builtins
import math
from collections import namedtuple
from typing import Sequence

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import TENSOR, DType
from ..ir.primitives import broadcast_shapes
from .creation import arange, from_numpy, tensor
from .dims import _dims, _infer_shape, _norm_dim, _reduced_shape, accept_axis
from .operands import (_bcast, _binary, _broadcast_operands, _cast, _is_scalar, _operand, _prep, _promote, _shape_arg,
                       full_const)
from .tensor import Tensor, apply


def _as_tensor(x, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return tensor(x)


def _float_unary(name: str, x: Tensor) -> Tensor:
    x = _as_tensor(x)
    if not x.dtype.is_floating_point:
        x = _cast(x, dt.float32)
    return apply(name, x)


# ======================================================================================
# elementwise arithmetic
# ======================================================================================

def _check_alpha(input, other, alpha) -> None:
    if isinstance(alpha, float) and not _promote(input, other).is_floating_point:
        raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")


def add(input, other, *, alpha=1) -> Tensor:
    _check_alpha(input, other, alpha)
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, Tensor) else other * alpha
    if _promote(input, other).is_bool:
        return logical_or(input, other)
    return _binary("add", input, other)


def sub(input, other, *, alpha=1) -> Tensor:
    _check_alpha(input, other, alpha)
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, Tensor) else other * alpha
    if _promote(input, other).is_bool:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if builtins.any(isinstance(v, (bool, np.bool_)) or (isinstance(v, Tensor) and v.dtype.is_bool)
                    for v in (input, other)):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    return _binary("sub", input, other)


subtract = sub


def rsub(input, other, *, alpha=1) -> Tensor:
    return sub(other, input, alpha=alpha)


def mul(input, other) -> Tensor:
    if _promote(input, other).is_bool:
        return logical_and(input, other)
    return _binary("mul", input, other)


multiply = mul


def div(input, other, *, rounding_mode: str | None = None) -> Tensor:
    if rounding_mode is None:
        return _binary("div", input, other, float_result=True)
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        d = _promote(input, other)
        if d.is_floating_point:
            q = _binary("div", input, other)
            return where(q < 0, neg(floor(neg(q))), floor(q))
        _check_int_divisor(input, other)
        return _binary("div", input, other)
    raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '{rounding_mode}'")


divide = true_divide = div


def _check_int_divisor(input, other) -> None:
    """PyTorch raises for integer division by zero; kiln checks eagerly (compiled code cannot)."""
    if not _promote(input, other).is_floating_point:
        if isinstance(other, Tensor):
            if other._cell.trace is None and other.numel() and not np.all(other._cell.value):
                raise RuntimeError("ZeroDivisionError")
        elif other == 0:
            raise RuntimeError("ZeroDivisionError")


def floor_divide(input, other) -> Tensor:
    _check_int_divisor(input, other)
    return _binary("floor_divide", input, other)


def remainder(input, other) -> Tensor:
    _check_int_divisor(input, other)
    return _binary("remainder", input, other)


fmod_ = None


def pow(input, exponent) -> Tensor:
    if isinstance(input, Tensor) and input.dtype.is_bool and isinstance(exponent, (bool, np.bool_)):
        return clone(input) if exponent else full_const(True, input.shape, dt.bool_)
    if isinstance(input, Tensor) and _is_scalar(exponent) and not isinstance(exponent, bool):
        if exponent == 1:
            return clone(input) if not input.dtype.is_bool else input
        if exponent == 2 and input.dtype.is_floating_point:
            return mul(input, input)
        if exponent == 0.5 and input.dtype.is_floating_point:
            return sqrt(input)
    d = _promote(input, exponent)
    if d.is_integer and isinstance(exponent, int) and exponent < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    if d.is_integer and isinstance(exponent, Tensor):
        # PyTorch: x ** e for a negative integer e is 1/x truncated: 1 for x == 1, +-1 for x == -1, else 0.
        shape = _broadcast_operands(input, exponent)
        x, e = _prep(input, d, shape), _prep(exponent, d, shape)
        zero = full_const(0, (), d)
        pos = apply("pow", x, _bcast(where(lt(e, zero), zero, e), shape))
        odd = ne(remainder(e, 2), 0)
        neg_pow = where(eq(x, 1), full_const(1, (), d),
                        where(eq(x, -1), where(odd, full_const(-1, (), d), full_const(1, (), d)), zero))
        return where(lt(e, zero), neg_pow, pos)
    return _binary("pow", input, exponent)


def neg(input: Tensor) -> Tensor:
    if input.dtype.is_bool:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    return apply("neg", input)


negative = neg


def abs(input: Tensor) -> Tensor:
    if input.dtype.is_bool:
        raise RuntimeError("abs is not implemented for bool tensors")
    return apply("abs", input)


def sign(input: Tensor) -> Tensor:
    if input.dtype.is_bool:
        return input
    out = apply("sign", input)
    if input.dtype.is_floating_point:  # torch.sign(nan) is 0
        out = where(isnan(input), full_const(0, (), input.dtype), out)
    return out


def exp(input) -> Tensor:
    return _float_unary("exp", input)


def log(input) -> Tensor:
    return _float_unary("log", input)


def log1p(input) -> Tensor:
    return _float_unary("log1p", input)


def log2(input) -> Tensor:
    return mul(log(input), 1.0 / math.log(2.0))


def log10(input) -> Tensor:
    return mul(log(input), 1.0 / math.log(10.0))


def expm1(input) -> Tensor:
    return sub(exp(input), 1)


def sqrt(input) -> Tensor:
    return _float_unary("sqrt", input)


def rsqrt(input) -> Tensor:
    return _float_unary("rsqrt", input)


def square(input) -> Tensor:
    return mul(input, input)


def reciprocal(input) -> Tensor:
    return div(1.0, input)


def sin(input) -> Tensor:
    return _float_unary("sin", input)


def cos(input) -> Tensor:
    return _float_unary("cos", input)


def tan(input) -> Tensor:
    return div(sin(input), cos(input))


def tanh(input) -> Tensor:
    return _float_unary("tanh", input)


def sigmoid(input) -> Tensor:
    return _float_unary("logistic", input)


def erf(input) -> Tensor:
    return _float_unary("erf", input)


def floor(input: Tensor) -> Tensor:
    return input if not input.dtype.is_floating_point else apply("floor", input)


def ceil(input: Tensor) -> Tensor:
    return input if not input.dtype.is_floating_point else neg(apply("floor", neg(input)))


def trunc(input: Tensor) -> Tensor:
    return input if not input.dtype.is_floating_point else where(input < 0, ceil(input), floor(input))


def round(input: Tensor) -> Tensor:
    """Round half to even, as torch.round."""
    if not input.dtype.is_floating_point:
        return input
    f = floor(input)
    diff = sub(input, f)
    up = add(f, 1)
    even_up = eq(remainder(f, 2), 1)
    return where(diff > 0.5, up, where(diff < 0.5, f, where(even_up, up, f)))


def relu(input: Tensor) -> Tensor:
    if input.dtype.is_bool:
        raise RuntimeError("Boolean inputs not supported for relu")
    return where(le(input, 0), full_const(0, (), input.dtype), input)  # relu(nan) is nan, like torch


def relu6(input: Tensor) -> Tensor:
    return hardtanh(input, 0.0, 6.0)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return clamp(input, min_val, max_val)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return where(input > 0, input, mul(input, negative_slope))


def elu(input: Tensor, alpha: float = 1.0) -> Tensor:
    return where(input > 0, input, mul(expm1(input), alpha))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"gelu is only implemented for floating-point tensors, got {input.dtype.name}")
    if approximate == "tanh":
        inner = mul(add(input, mul(pow(input, 3), 0.044715)), math.sqrt(2.0 / math.pi))
        return mul(mul(input, 0.5), add(tanh(inner), 1.0))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return mul(mul(input, 0.5), add(erf(mul(input, 1.0 / math.sqrt(2.0))), 1.0))


def silu(input: Tensor) -> Tensor:
    return mul(input, sigmoid(input))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    bx = mul(input, beta)
    soft = div(log1p(exp(neg(abs(bx)))), beta)
    soft = add(soft, div(relu(bx), beta))
    return where(bx > threshold, input, soft)


def logsigmoid(input: Tensor) -> Tensor:
    return neg(softplus(neg(input)))


def maximum(input: Tensor, other: Tensor) -> Tensor:
    return _binary("maximum", input, other)


def minimum(input: Tensor, other: Tensor) -> Tensor:
    return _binary("minimum", input, other)


def clamp(input: Tensor, min=None, max=None) -> Tensor:
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    out = input
    d = input.dtype
    if min is not None:
        d = _promote(input, min)
    if max is not None:
        d = dt.result_type(_operand(input), *( [_operand(min)] if min is not None else []), _operand(max))
    out = _cast(out, d)
    if min is not None:
        out = where(lt(out, min), _clamp_bound(min, d), out)
    if max is not None:
        out = where(gt(out, max), _clamp_bound(max, d), out)
    return out


def _clamp_bound(b, d):
    return full_const(b, (), d) if not isinstance(b, Tensor) else _cast(b, d)


clip = clamp


def clamp_min(input, min) -> Tensor:
    return clamp(input, min=min)


def clamp_max(input, max) -> Tensor:
    return clamp(input, max=max)


def lerp(input: Tensor, end: Tensor, weight) -> Tensor:
    return add(input, mul(sub(end, input), weight))


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    return add(input, mul(mul(tensor1, tensor2), value))


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    return add(input, mul(div(tensor1, tensor2), value))


# ======================================================================================
# comparisons and logic
# ======================================================================================

def _compare(name, a, b) -> Tensor:
    return _binary(name, a, b, dtype=_promote(a, b))


def eq(input, other) -> Tensor:
    return _compare("eq", input, other)


def ne(input, other) -> Tensor:
    return _compare("ne", input, other)


def lt(input, other) -> Tensor:
    return _compare("lt", input, other)


def le(input, other) -> Tensor:
    return _compare("le", input, other)


def gt(input, other) -> Tensor:
    return _compare("gt", input, other)


def ge(input, other) -> Tensor:
    return _compare("ge", input, other)


less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def _logical(name, a, b) -> Tensor:
    shape = _broadcast_operands(a, b)
    return apply(name, _prep(_to_bool(a), dt.bool_, shape), _prep(_to_bool(b), dt.bool_, shape))


def _to_bool(x):
    if isinstance(x, Tensor):
        return x if x.dtype.is_bool else ne(x, 0)
    return bool(x)


def logical_and(input, other) -> Tensor:
    return _logical("logical_and", input, other)


def logical_or(input, other) -> Tensor:
    return _logical("logical_or", input, other)


def logical_xor(input, other) -> Tensor:
    return _logical("logical_xor", input, other)


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
    return eq(abs(input), math.inf)


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


# ======================================================================================
# reductions
# ======================================================================================

def _reduce(name, x: Tensor, dim, keepdim) -> Tensor:
    axes = _dims(dim, x.ndim)
    return apply(name, x, axes=axes, keepdims=bool(keepdim))


def _accumulate_wide(x: Tensor) -> Tensor:
    """float16 reductions accumulate in float32 (as PyTorch does); the caller casts back."""
    return _cast(x, dt.float32) if x.dtype == dt.float16 else x


@accept_axis
def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    elif not input.dtype.is_floating_point:
        input = _cast(input, dt.int64)
    out_dtype = input.dtype
    return _cast(_reduce("reduce_sum", _accumulate_wide(input), dim, keepdim), out_dtype)


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


def is_floating_point(input: Tensor) -> bool:
    return input.dtype.is_floating_point


@accept_axis
def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    elif not input.dtype.is_floating_point:
        input = _cast(input, dt.int64)
    out_dtype = input.dtype
    return _cast(_reduce("reduce_prod", _accumulate_wide(input), dim, keepdim), out_dtype)


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


@accept_axis
def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    x = _no_bool_arg("argmax", input)
    _check_nonempty("argmax", x, dim)
    if dim is None:
        r = apply("argmax", reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(r, (1,) * input.ndim) if keepdim else r
    return apply("argmax", x, axis=_norm_dim(dim, x.ndim), keepdims=bool(keepdim)) if x.ndim else \
        full_const(0, (), dt.int64)


@accept_axis
def argmin(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    x = _no_bool_arg("argmin", input)
    _check_nonempty("argmin", x, dim)
    if dim is None:
        r = apply("argmin", reshape(x, (-1,)), axis=0, keepdims=False)
        return reshape(r, (1,) * input.ndim) if keepdim else r
    return apply("argmin", x, axis=_norm_dim(dim, x.ndim), keepdims=bool(keepdim)) if x.ndim else \
        full_const(0, (), dt.int64)


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


@accept_axis
def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    if not input.dtype.is_floating_point:
        input = _cast(input, dt.float32)
    out_dtype = input.dtype
    x = _accumulate_wide(input)
    d = _norm_dim(dim, x.ndim) if x.ndim else ()
    if x.ndim and x.shape[d] == 0:
        return _cast(clone(x), out_dtype)  # softmax over an empty dim is empty
    m = amax(x, d, keepdim=True).detach()
    e = exp(sub(x, m))
    return _cast(div(e, sum(e, d, keepdim=True)), out_dtype)


@accept_axis
def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    if dtype is not None:
        input = _cast(input, dt.get_dtype(dtype))
    if not input.dtype.is_floating_point:
        input = _cast(input, dt.float32)
    out_dtype = input.dtype
    x = _accumulate_wide(input)
    d = _norm_dim(dim, x.ndim) if x.ndim else ()
    if x.ndim and x.shape[d] == 0:
        return _cast(clone(x), out_dtype)
    return _cast(sub(x, logsumexp(x, d, keepdim=True)), out_dtype)


@accept_axis
def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Cumulative sum along `dim` (ints and bools accumulate in int64, as in PyTorch).

    A log-step scan (x + x shifted by 1, 2, 4, ... with pad + slice): memory stays linear in
    the size, and a nan/inf only reaches the positions after it (a triangular-mask matmul
    would spread nan * 0 to every output).
    """
    out_dtype = dt.get_dtype(dtype) if dtype is not None else (
        input.dtype if input.dtype.is_floating_point else dt.int64)
    x = _cast(input, out_dtype)
    if x.ndim == 0:
        return clone(x)
    return _scan(x, _norm_dim(dim, x.ndim), add, 0.0 if out_dtype.is_floating_point else 0)


# ======================================================================================
# shape manipulation
# ======================================================================================

def reshape(input: Tensor, *shape) -> Tensor:
    shape = _infer_shape(_shape_arg(shape), input.numel())
    if shape == tuple(input.shape):
        return input if input._grad_fn is None and not input._requires_grad else apply("reshape", input, shape=shape)
    return apply("reshape", input, shape=shape)


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
        return input
    return apply("permute", input, perm=perm)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    if input.ndim == 0:
        return input
    d0, d1 = _norm_dim(dim0, input.ndim), _norm_dim(dim1, input.ndim)
    perm = list(range(input.ndim))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(input, perm)


swapaxes = swapdims = transpose


def t(input: Tensor) -> Tensor:
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return input if input.ndim < 2 else transpose(input, 0, 1)


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
    return reshape(input, shape) if shape != tuple(input.shape) else input


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
    return reshape(input, shape)


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    sizes = _infer_shape(tuple(sizes), input.shape[d])
    return reshape(input, tuple(input.shape[:d]) + sizes + tuple(input.shape[d + 1:]))


def contiguous(input: Tensor, memory_format=None) -> Tensor:
    return input


def clone(input: Tensor, *, memory_format=None) -> Tensor:
    return apply("cast", input, dtype=input.dtype)


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


def _slice_dim(x: Tensor, d: int, start: int, stop: int, step: int = 1) -> Tensor:
    starts = tuple(start if i == d else 0 for i in range(x.ndim))
    stops = tuple(stop if i == d else s for i, s in enumerate(x.shape))
    steps = tuple(step if i == d else 1 for i in range(x.ndim))
    if starts == (0,) * x.ndim and stops == tuple(x.shape) and step == 1:
        return x
    return apply("slice", x, starts=starts, stops=stops, steps=steps)


@accept_axis
def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    if start < 0:
        start += input.shape[d]
    if not (0 <= start and start + length <= input.shape[d]):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({input.shape[d]}).")
    return _slice_dim(input, d, start, start + length)


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
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    x = reshape(input, (1,) * (len(sizes) - input.ndim) + tuple(input.shape))
    inter = []
    for r, s in zip(sizes, x.shape):
        inter += [r, s]
    x = reshape(x, tuple(v for pair in zip([1] * x.ndim, x.shape) for v in pair))
    x = _bcast(x, tuple(inter))
    return reshape(x, tuple(r * s for r, s in zip(sizes, input.shape if len(sizes) == input.ndim else
                                                   (1,) * (len(sizes) - input.ndim) + tuple(input.shape))))


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


# ======================================================================================
# matrix products
# ======================================================================================

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


def einsum(equation: str, *operands) -> Tensor:
    """torch.einsum: explicit ('ij,jk->ik') or implicit ('ij,jk') output, '...', repeated subscripts
    (diagonals). Operands are contracted pairwise, each pair as one batched matmul."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise RuntimeError("einsum(): must provide at least one operand")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): {len(terms)} subscripts in the equation ({equation!r}) but "
                           f"{len(operands)} operands were given")
    # '...' becomes one upper-case-free placeholder letter per broadcast dim
    ell_nd = 0
    for t, x in zip(terms, operands):
        if "..." in t:
            ell_nd = builtins.max(ell_nd, x.ndim - len(t.replace("...", "")))
    ell = [chr(0x100 + i) for i in range(ell_nd)]  # never collide with user letters
    subs = []
    for t, x in zip(terms, operands):
        if t.count("...") > 1 or (t.replace("...", "") and not t.replace("...", "").isalpha()):
            raise RuntimeError(f"einsum(): invalid subscript {t!r} in {equation!r}")
        if "..." in t:
            n = x.ndim - len(t.replace("...", ""))
            a, b = t.split("...")
            letters = list(a) + ell[ell_nd - n:] + list(b)
        else:
            letters = list(t)
        if len(letters) != x.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in {t!r} does not match the number of "
                               f"dimensions ({x.ndim}) of operand {len(subs)}")
        subs.append(letters)
    counts = {}
    for letters in subs:
        for c in letters:
            counts[c] = counts.get(c, 0) + 1
    if arrow:
        if rhs.count("...") > 1 or not rhs.replace("...", "").isalpha() and rhs.replace("...", ""):
            raise RuntimeError(f"einsum(): invalid output subscript {rhs!r}")
        a, _, b = rhs.partition("...")
        out = list(a) + (ell if "..." in rhs else []) + list(b)
        for c in out:
            if c not in counts:
                raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any input "
                                   "operand")
        if len(set(out)) != len(out):
            raise RuntimeError(f"einsum(): output subscript appears more than once in {rhs!r}")
    else:
        out = ell + sorted(c for c in counts if counts[c] == 1 and c not in ell)
    sizes = {}
    xs = []
    for x, letters in zip(operands, subs):
        x, letters = _einsum_diagonal(x, letters)
        for c, n in zip(letters, x.shape):
            if sizes.get(c, 1) != 1 and n != 1 and sizes[c] != n:
                raise RuntimeError(f"einsum(): operands do not broadcast with remapped shapes: subscript {c} has "
                                   f"size {sizes[c]} and {n}")
            sizes[c] = builtins.max(sizes.get(c, 1), n)
        xs.append((x, letters))
    x, letters = xs[0]
    for k in range(1, len(xs)):
        keep = set(out) | {c for _, ls in xs[k + 1:] for c in ls}
        x, letters = _einsum_pair(x, letters, *xs[k], keep)
    # sum letters not in the output, then order as the output
    gone = [i for i, c in enumerate(letters) if c not in out]
    if gone:
        x = sum(x, tuple(gone))
        letters = [c for c in letters if c in out]
    x = permute(x, [letters.index(c) for c in out]) if letters != out else x
    return x


def _einsum_diagonal(x: Tensor, letters: list):
    """Take the diagonal over repeated subscripts of one operand ('ii->i')."""
    while len(set(letters)) != len(letters):
        c = next(c for c in letters if letters.count(c) > 1)
        i, j = [k for k, l in enumerate(letters) if l == c][:2]
        if x.shape[i] != x.shape[j]:
            raise RuntimeError(f"einsum(): subscript {c} is repeated for operand but the sizes don't match, "
                               f"{x.shape[i]} != {x.shape[j]}")
        x = movedim(x, (i, j), (-2, -1))
        letters = [l for k, l in enumerate(letters) if k not in (i, j)] + [c]
        idx = arange(x.shape[-1])
        x = x[(Ellipsis, idx, idx)]
    return x, letters


def _einsum_pair(a: Tensor, la: list, b: Tensor, lb: list, keep: set):
    """Contract two operands as one batched matmul: (batch, M, K) @ (batch, K, N)."""
    # letters only in one operand and needed nowhere else are summed out first
    for t, ls, other in ((0, la, lb), (1, lb, la)):
        gone = [i for i, c in enumerate(ls) if c not in keep and c not in other]
        if gone:
            if t == 0:
                a = sum(a, tuple(gone))
                la = [c for c in la if c in keep or c in lb]
            else:
                b = sum(b, tuple(gone))
                lb = [c for c in lb if c in keep or c in la]
    batch = [c for c in la if c in lb and c in keep]
    contract = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]

    def size(x, ls, c):
        return x.shape[ls.index(c)] if c in ls else 1

    bshape = tuple(builtins.max(size(a, la, c), size(b, lb, c)) for c in batch)
    a = permute(a, [la.index(c) for c in batch + left + contract])
    b = permute(b, [lb.index(c) for c in batch + contract + right])
    ab = tuple(a.shape[:len(batch)])
    bb = tuple(b.shape[:len(batch)])
    m = math.prod(a.shape[len(batch):len(batch) + len(left)])
    kk = math.prod(a.shape[len(batch) + len(left):])
    n = math.prod(b.shape[len(batch) + len(contract):])
    lshape = tuple(a.shape[len(batch):len(batch) + len(left)])
    rshape = tuple(b.shape[len(batch) + len(contract):])
    if kk != math.prod(b.shape[len(batch):len(batch) + len(contract)]):
        raise RuntimeError("einsum(): contracted subscripts have different sizes in the two operands")
    a = reshape(a, ab + (m, kk))
    b = reshape(b, bb + (kk, n))
    if a.dtype != b.dtype:
        d = _promote(a, b)
        a, b = _cast(a, d), _cast(b, d)
    r = matmul(a, b)
    r = reshape(r, bshape + lshape + rshape)
    return r, batch + left + right


# ======================================================================================
# gather / scatter / index_select
# ======================================================================================

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
    return _cast(eq(unsqueeze(tensor, -1), arange(num_classes)), dt.int64)


# ======================================================================================
# more of torch's functions, composed from the ops above
# ======================================================================================

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


def isclose(input: Tensor, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    diff = abs(sub(input, other))
    tol = add(mul(abs(other), rtol), atol) if isinstance(other, Tensor) else builtins.abs(other) * rtol + atol
    close = logical_or(eq(input, other), le(diff, tol))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(input), isnan(other) if isinstance(other, Tensor) else
                                              other != other))
    return close


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    x, m = broadcast_tensors(input, mask)
    from .indexing import getitem  # function-local: indexing builds on these ops
    return getitem(x, m)


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
    from .indexing import getitem  # function-local: indexing builds on these ops
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


def nan_to_num(input: Tensor, nan: float = 0.0, posinf=None, neginf=None) -> Tensor:
    if not input.dtype.is_floating_point:
        return clone(input)
    info = np.finfo(input.dtype.np_dtype)
    big = float(info.max) if posinf is None else posinf
    small = float(info.min) if neginf is None else neginf
    out = where(isnan(input), full_const(nan, (), input.dtype), input)
    out = where(eq(out, math.inf), full_const(big, (), input.dtype), out)
    return where(eq(out, -math.inf), full_const(small, (), input.dtype), out)


def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    x = where(isnan(input), full_const(0, (), input.dtype), input) if input.dtype.is_floating_point else input
    return sum(x, dim, keepdim, dtype=dtype)


def count_nonzero(input: Tensor, dim=None) -> Tensor:
    return sum(_cast(ne(input, 0), dt.int64), dim)


def fmod(input, other) -> Tensor:
    """C-style remainder (sign of the dividend)."""
    d = _promote(input, other)
    if not d.is_floating_point:
        _check_int_divisor(input, other)
        return sub(input, mul(div(input, other, rounding_mode="trunc"), other))
    q = div(input, other, rounding_mode="trunc")
    return sub(input, mul(q, other))


def sinh(input) -> Tensor:
    x = _as_tensor(input)
    x = x if x.dtype.is_floating_point else _cast(x, dt.float32)
    return mul(sub(exp(x), exp(neg(x))), 0.5)


def cosh(input) -> Tensor:
    x = _as_tensor(input)
    x = x if x.dtype.is_floating_point else _cast(x, dt.float32)
    return mul(add(exp(x), exp(neg(x))), 0.5)


def exp2(input) -> Tensor:
    x = _as_tensor(input)
    return exp(mul(x if x.dtype.is_floating_point else _cast(x, dt.float32), math.log(2.0)))


def logaddexp(input: Tensor, other: Tensor) -> Tensor:
    m = maximum(input, other)
    m = where(isinf(m), full_const(0.0, (), m.dtype), m) if m.dtype.is_floating_point else m
    return add(m, log(add(exp(sub(input, m)), exp(sub(other, m)))))


def xlogy(input, other) -> Tensor:
    x = input if isinstance(input, Tensor) else _as_tensor(input)
    r = mul(x, log(other))
    return where(logical_and(eq(x, 0), logical_not(isnan(other) if isinstance(other, Tensor) else
                                                   _as_tensor(other) != _as_tensor(other))),
                 full_const(0, (), r.dtype), r)


def frac(input: Tensor) -> Tensor:
    return sub(input, trunc(input))


def hypot(input: Tensor, other: Tensor) -> Tensor:
    return sqrt(add(mul(input, input), mul(other, other)))


def select(input: Tensor, dim: int, index: int) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size {list(input.shape)} at "
                         f"dimension {d}")
    return squeeze(_slice_dim(input, d, index % n, index % n + 1), d)


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
    out_dtype = dt.get_dtype(dtype) if dtype is not None else (
        input.dtype if input.dtype.is_floating_point else dt.int64)
    x = _cast(input, out_dtype)
    if x.ndim == 0:
        return clone(x)
    return _scan(x, _norm_dim(dim, x.ndim), mul, 1.0 if out_dtype.is_floating_point else 1)


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


def hsplit(input: Tensor, indices_or_sections) -> tuple:
    return tensor_split(input, indices_or_sections, 1 if input.ndim > 1 else 0)


def vsplit(input: Tensor, indices_or_sections) -> tuple:
    if input.ndim < 2:
        raise RuntimeError(f"torch.vsplit requires a tensor with at least 2 dimension, but got a tensor with "
                           f"{input.ndim} dimensions!")
    return tensor_split(input, indices_or_sections, 0)


def heaviside(input: Tensor, values: Tensor) -> Tensor:
    one = full_const(1, (), input.dtype)
    zero = full_const(0, (), input.dtype)
    return where(eq(input, 0), _cast(values, input.dtype), where(gt(input, 0), one, zero))


def float_power(input, exponent) -> Tensor:
    a = _cast(input, dt.float64) if isinstance(input, Tensor) else float(input)
    b = _cast(exponent, dt.float64) if isinstance(exponent, Tensor) else float(exponent)
    if not isinstance(a, Tensor):
        a = full_const(a, (), dt.float64)
    return pow(a, b)


def rad2deg(input: Tensor) -> Tensor:
    return mul(input if input.dtype.is_floating_point else _cast(input, dt.float32), 180.0 / math.pi)


def deg2rad(input: Tensor) -> Tensor:
    return mul(input if input.dtype.is_floating_point else _cast(input, dt.float32), math.pi / 180.0)


def result_type(tensor1, tensor2) -> DType:
    return _promote(tensor1, tensor2)


def promote_types(type1, type2) -> DType:
    return dt.result_type((dt.get_dtype(type1), TENSOR), (dt.get_dtype(type2), TENSOR))


def can_cast(from_, to) -> bool:
    return dt.get_dtype(from_).category <= dt.get_dtype(to).category

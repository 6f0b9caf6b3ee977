"""Pointwise math with PyTorch's broadcasting and type promotion: arithmetic, exp/log, trig,
rounding, clamping (torch's "pointwise ops").
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ...ir import dtypes as dt
from ..creation import tensor
from ..operands import _bcast, _binary, _broadcast_operands, _cast, _is_scalar, _operand, _prep, _promote, full_const
from ..tensor import Tensor, apply
from .comparison import eq, gt, isinf, isnan, le, logical_and, logical_not, logical_or, lt, ne, where
from .shape import clone


def _as_tensor(x, like: Tensor | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return tensor(x)


def _float_unary(name: str, x: Tensor) -> Tensor:
    x = _as_tensor(x)
    if not x.dtype.is_floating_point:
        x = _cast(x, dt.float32)
    return apply(name, x)


def _float_op(name: str, primitive: str):
    """The op `name`: primitive `primitive` on the input, ints and bools first cast to float32."""
    def op(input) -> Tensor:
        return _float_unary(primitive, input)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"{name}(input), elementwise; integer and bool inputs give float32."
    return op


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
            if other._cell.trace is None and other.numel() and not np.all(other._concrete("the integer divisor check")):
                raise RuntimeError("ZeroDivisionError")
        elif other == 0:
            raise RuntimeError("ZeroDivisionError")


def floor_divide(input, other) -> Tensor:
    _check_int_divisor(input, other)
    return _binary("floor_divide", input, other)


def remainder(input, other) -> Tensor:
    _check_int_divisor(input, other)
    return _binary("remainder", input, other)


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


exp = _float_op("exp", "exp")


log = _float_op("log", "log")


log1p = _float_op("log1p", "log1p")


def log2(input) -> Tensor:
    return mul(log(input), 1.0 / math.log(2.0))


def log10(input) -> Tensor:
    return mul(log(input), 1.0 / math.log(10.0))


def expm1(input) -> Tensor:
    return sub(exp(input), 1)


sqrt = _float_op("sqrt", "sqrt")


rsqrt = _float_op("rsqrt", "rsqrt")


def square(input) -> Tensor:
    return mul(input, input)


def reciprocal(input) -> Tensor:
    return div(1.0, input)


sin = _float_op("sin", "sin")


cos = _float_op("cos", "cos")


def tan(input) -> Tensor:
    return div(sin(input), cos(input))


tanh = _float_op("tanh", "tanh")


sigmoid = _float_op("sigmoid", "logistic")


erf = _float_op("erf", "erf")


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


def isclose(input: Tensor, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    diff = abs(sub(input, other))
    tol = add(mul(abs(other), rtol), atol) if isinstance(other, Tensor) else builtins.abs(other) * rtol + atol
    close = logical_or(eq(input, other), le(diff, tol))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(input), isnan(other) if isinstance(other, Tensor) else
                                              other != other))
    return close


def nan_to_num(input: Tensor, nan: float = 0.0, posinf=None, neginf=None) -> Tensor:
    if not input.dtype.is_floating_point:
        return clone(input)
    info = np.finfo(input.dtype.np_dtype)
    big = float(info.max) if posinf is None else posinf
    small = float(info.min) if neginf is None else neginf
    out = where(isnan(input), full_const(nan, (), input.dtype), input)
    out = where(eq(out, math.inf), full_const(big, (), input.dtype), out)
    return where(eq(out, -math.inf), full_const(small, (), input.dtype), out)


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

"""Elementwise primitives: unary and binary math, comparisons and logic, `select`, `cast`.

All operands have equal shapes (and, except `select`'s condition, equal dtypes): the
frontend inserts `broadcast_to` and `cast` first.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from .registry import ELEMENTWISE, Prop, ShapeError, fmt_shape, register

_EXP = Prop.EXPENSIVE

def _same_shapes(name, avals):
    s0, d0 = avals[0].shape, avals[0].dtype
    for a in avals[1:]:
        if tuple(a.shape) != tuple(s0):
            raise ShapeError(f"{name}: operand shapes {fmt_shape(s0)} and {fmt_shape(a.shape)} differ "
                             "(primitives take equal shapes; broadcast first)")
        if a.dtype != d0:
            raise ShapeError(f"{name}: operand dtypes {d0.name} and {a.dtype.name} differ (cast first)")
    return tuple(s0), d0


def _unary_rule(name, float_only):
    def rule(avals):
        (a,) = avals
        if float_only and not a.dtype.is_floating_point:
            raise ShapeError(f"{name}: expected a floating-point operand, got {a.dtype.name}")
        if name == "logical_not" and not a.dtype.is_bool:
            raise ShapeError(f"{name}: expected a bool operand, got {a.dtype.name}")
        if name in ("neg", "abs", "sign") and a.dtype.is_bool:
            raise ShapeError(f"{name}: expected a numeric operand, got bool")
        return tuple(a.shape), a.dtype
    return rule


def _unary(name, fn, vjp, float_only=True, **facts):
    def impl(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x)).astype(x.dtype, copy=False)
    register(name, ELEMENTWISE, _unary_rule(name, float_only), impl, vjp, 1, **facts)


_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function elementwise, in float64 (numpy has none: math.erf through a ufunc, exact to libm)."""
    return np.asarray(_erf_ufunc(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def _g_times(fn):
    """VJP for unary y = f(x): returns g * fn(ops, x, y)."""
    def vjp(ops, g, inputs, out):
        return (ops.mul(g, fn(ops, inputs[0], out)),)
    return vjp


_unary("neg", np.negative, lambda ops, g, inputs, out: (ops.neg(g),), float_only=False, saves="")
_unary("abs", np.abs, _g_times(lambda ops, x, y: ops.sign(x)), float_only=False, saves="i")
_unary("sign", np.sign, lambda ops, g, inputs, out: (ops.zeros_like(g),), float_only=False, saves="")
_unary("exp", np.exp, _g_times(lambda ops, x, y: y), saves="o", props=_EXP)
_unary("log", np.log, lambda ops, g, inputs, out: (ops.div(g, inputs[0]),), saves="i", props=_EXP)
_unary("log1p", np.log1p, lambda ops, g, inputs, out: (ops.div(g, ops.add(inputs[0], ops.full_like(1, g))),),
       saves="i", props=_EXP)
_unary("sqrt", np.sqrt, lambda ops, g, inputs, out: (ops.div(ops.scale(g, 0.5), out),), saves="o", props=_EXP)
_unary("rsqrt", lambda x: 1 / np.sqrt(x),
       _g_times(lambda ops, x, y: ops.scale(ops.mul(y, ops.mul(y, y)), -0.5)), saves="o", props=_EXP)
_unary("sin", np.sin, _g_times(lambda ops, x, y: ops.cos(x)), saves="i", props=_EXP)
_unary("cos", np.cos, _g_times(lambda ops, x, y: ops.neg(ops.sin(x))), saves="i", props=_EXP)
_unary("tanh", np.tanh, _g_times(lambda ops, x, y: ops.sub(ops.full_like(1, y), ops.mul(y, y))),
       saves="o", props=_EXP)
_unary("logistic", lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                                      np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))),
       _g_times(lambda ops, x, y: ops.mul(y, ops.sub(ops.full_like(1, y), y))), saves="o", props=_EXP,
       doc="sigmoid")
_unary("erf", erf, _g_times(
    lambda ops, x, y: ops.scale(ops.exp(ops.neg(ops.mul(x, x))), 2.0 / math.sqrt(math.pi))),
       saves="i", props=_EXP)
_unary("floor", np.floor, lambda ops, g, inputs, out: (ops.zeros_like(g),), saves="")
_unary("logical_not", np.logical_not, None, float_only=False)
register("stop_gradient", ELEMENTWISE, lambda avals: (tuple(avals[0].shape), avals[0].dtype), lambda x: x, None, 1,
         doc="identity whose gradient is zero: a value read through detach() / .data inside a trace")


def _binary_rule(name, out_bool=False, kinds=None):
    def rule(avals):
        shape, d = _same_shapes(name, avals)
        if kinds == "float" and not d.is_floating_point:
            raise ShapeError(f"{name}: expected floating-point operands, got {d.name}")
        if kinds == "bool" and not d.is_bool:
            raise ShapeError(f"{name}: expected bool operands, got {d.name}")
        if kinds == "number" and d.is_bool:
            raise ShapeError(f"{name}: expected numeric operands, got bool")
        return shape, (dt.bool_ if out_bool else d)
    return rule


def _binary(name, fn, vjp, out_bool=False, kinds=None, **facts):
    def impl(x, y):
        with np.errstate(all="ignore"):
            r = fn(x, y)
        return np.asarray(r).astype(np.bool_ if out_bool else x.dtype, copy=False)
    register(name, ELEMENTWISE, _binary_rule(name, out_bool, kinds), impl, vjp, 2, **facts)


def _max_min_vjp(cmp):
    def vjp(ops, g, inputs, out):
        x, y = inputs
        half = ops.scale(g, 0.5)
        zero = ops.zeros_like(g)
        eq = ops.eq(x, y)
        gx = ops.select(eq, half, ops.select(ops.bind(cmp, x, y), g, zero))
        gy = ops.select(eq, half, ops.select(ops.bind(cmp, y, x), g, zero))
        return gx, gy
    return vjp


def _pow_vjp(ops, g, inputs, out):
    x, y = inputs
    one = ops.full_like(1, y)
    gx = ops.mul(g, ops.mul(y, ops.pow(x, ops.sub(y, one))))
    zero = ops.zeros_like(x)
    safe = ops.select(ops.gt(x, zero), x, ops.full_like(1, x))
    # d/dy x**y = x**y * log(x): 0 at x == 0 (as PyTorch), nan for x < 0 (log of a negative number, as PyTorch)
    logx = ops.select(ops.gt(x, zero), ops.log(safe),
                      ops.select(ops.eq(x, zero), ops.zeros_like(x), ops.full_like(float("nan"), x)))
    gy = ops.mul(g, ops.mul(out, logx))
    return gx, gy


def _int_safe_div(x, y):
    if np.issubdtype(x.dtype, np.integer):
        return np.trunc(np.true_divide(x, np.where(y == 0, 1, y))).astype(x.dtype)
    return np.true_divide(x, y)


# `save_deps[k]`: what input k's cotangent alone reads (mul's x-gradient needs only y, ...)
_binary("add", np.add, lambda ops, g, i, o: (g, g), kinds="number", saves="")
_binary("sub", np.subtract, lambda ops, g, i, o: (g, ops.neg(g)), kinds="number", saves="")
_binary("mul", np.multiply, lambda ops, g, i, o: (ops.mul(g, i[1]), ops.mul(g, i[0])),
        saves="i", save_deps={0: "1", 1: "0"})
_binary("div", _int_safe_div, lambda ops, g, i, o: (ops.div(g, i[1]), ops.neg(ops.div(ops.mul(g, o), i[1]))),
        kinds="number", saves="1o", save_deps={0: "1", 1: "1o"}, props=_EXP, doc="true division (integers truncate)")
_binary("floor_divide", lambda x, y: np.floor_divide(x, np.where(y == 0, 1, y)) if np.issubdtype(x.dtype, np.integer)
        else np.floor(x / y), lambda ops, g, i, o: (ops.zeros_like(g), ops.zeros_like(g)), kinds="number",
        saves="", props=_EXP)
_binary("remainder", lambda x, y: np.remainder(x, np.where(y == 0, 1, y)) if np.issubdtype(x.dtype, np.integer)
        else np.remainder(x, y),
        lambda ops, g, i, o: (g, ops.neg(ops.mul(g, ops.floor_divide(i[0], i[1])))), kinds="number",
        saves="i", save_deps={0: "", 1: "01"}, props=_EXP)
_binary("pow", np.power, _pow_vjp, kinds="number", saves="io", save_deps={0: "01", 1: "0o"}, props=_EXP)
_binary("maximum", np.maximum, _max_min_vjp("gt"), saves="i")
_binary("minimum", np.minimum, _max_min_vjp("lt"), saves="i")
for _n, _f in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
               ("gt", np.greater), ("ge", np.greater_equal)):
    _binary(_n, _f, None, out_bool=True)
_binary("logical_and", np.logical_and, None, kinds="bool")
_binary("logical_or", np.logical_or, None, kinds="bool")
_binary("logical_xor", np.logical_xor, None, kinds="bool")


def _select_rule(avals):
    c, a, b = avals
    if not c.dtype.is_bool:
        raise ShapeError(f"select: condition must be bool, got {c.dtype.name}")
    if tuple(c.shape) != tuple(a.shape):
        raise ShapeError(f"select: condition shape {fmt_shape(c.shape)} differs from operand shape "
                         f"{fmt_shape(a.shape)}")
    return _same_shapes("select", [a, b])


def _select_vjp(ops, g, inputs, out):
    c = inputs[0]
    zero = ops.zeros_like(g)
    return None, ops.select(c, g, zero), ops.select(c, zero, g)


register("select", ELEMENTWISE, _select_rule, lambda c, a, b: np.where(c, a, b), _select_vjp, 3,
         saves="0", save_deps={1: "0", 2: "0"}, doc="where(cond, a, b)")


def _cast_rule(avals, dtype):
    return tuple(avals[0].shape), dt.get_dtype(dtype)


def _cast_impl(x, dtype):
    d = dt.get_dtype(dtype)
    with np.errstate(all="ignore"):  # overflow to inf (or wrap for ints) as PyTorch, without warnings
        if d.is_integer and x.dtype.kind == "f":
            return np.trunc(x).astype(d.np_dtype)
        return x.astype(d.np_dtype)


def _cast_vjp(ops, g, inputs, out, dtype):
    x = inputs[0]
    if not x.dtype.is_floating_point:
        return (None,)
    return (ops.cast(g, x.dtype),)


register("cast", ELEMENTWISE, _cast_rule, _cast_impl, _cast_vjp, 1, ("dtype",), saves="")

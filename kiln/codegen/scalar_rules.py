"""Per-primitive scalar rules: an elementwise primitive as a kernel-IR expression of its
operands' values at one position. One entry per elementwise primitive; lowering reads
this table (and `kiln.codegen.index` for movement), renderers never see primitives.

Semantics follow each primitive's numpy reference: integer division by zero uses a
divisor of 1, float comparisons with nan are false (except `ne`), `maximum`/`minimum`
propagate nan, casts to bool test `!= 0`.
"""
from __future__ import annotations

from typing import Callable

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from .kir import Const, Expr, const, op

Rule = Callable[[list[Expr], dict, DType], Expr]


def _zero(e: Expr) -> Expr:
    return const(0, e.dtype)


def _sign(a: list[Expr], attrs, out) -> Expr:
    x = a[0]
    return op("select", op("gt", x, _zero(x)), const(1, x.dtype),
              op("select", op("lt", x, _zero(x)), const(-1, x.dtype), x))


def _int_divisor(x: Expr, y: Expr) -> Expr:
    """y, with 0 replaced by 1 (numpy's reference) and -1 by 1 (x / -1 is taken as -x, so the
    INT_MIN / -1 overflow never reaches the hardware divide)."""
    bad = op("or", op("eq", y, const(0, y.dtype)), op("eq", y, const(-1, y.dtype)))
    return op("select", bad, const(1, y.dtype), y)


def _div(a, attrs, out):
    x, y = a
    if x.dtype.is_floating_point:
        return op("div", x, y)
    q = op("div", x, _int_divisor(x, y))
    return op("select", op("eq", y, const(-1, y.dtype)), op("neg", x), q)


def _floor_divide(a, attrs, out):
    x, y = a
    if x.dtype.is_floating_point:
        return op("floor", op("div", x, y))
    q = _div(a, attrs, out)
    ys = op("select", op("eq", y, const(0, y.dtype)), const(1, y.dtype), y)
    r = op("sub", x, op("mul", q, ys))
    fix = op("and", op("ne", r, _zero(r)), op("ne", op("lt", r, _zero(r)), op("lt", ys, _zero(ys))))
    return op("select", fix, op("sub", q, const(1, q.dtype)), q)


def _remainder(a, attrs, out):
    x, y = a
    if x.dtype.is_floating_point:
        r = op("rem", x, y)  # fmod
        fix = op("and", op("ne", r, _zero(r)), op("ne", op("lt", r, _zero(r)), op("lt", y, _zero(y))))
        return op("select", fix, op("add", r, y), r)
    ys = _int_divisor(x, y)
    r = op("select", op("eq", y, const(-1, y.dtype)), _zero(x), op("rem", x, ys))
    ys = op("select", op("eq", y, const(0, y.dtype)), const(1, y.dtype), y)
    fix = op("and", op("ne", r, _zero(r)), op("ne", op("lt", r, _zero(r)), op("lt", ys, _zero(ys))))
    return op("select", fix, op("add", r, ys), r)


def _pow(a, attrs, out):
    """x ** y; a small integral constant exponent (x ** 2, x ** 3, x ** -1 ...) is a product,
    as numpy's own fast paths do, instead of the general exp/log evaluation."""
    x, y = a
    if isinstance(y, Const) and x.dtype.is_floating_point and float(y.value).is_integer() and abs(y.value) <= 4:
        k = int(y.value)
        if k == 0:
            return const(1, x.dtype)
        r = x
        for _ in range(abs(k) - 1):
            r = op("mul", r, x)
        return r if k > 0 else op("div", const(1, x.dtype), r)
    if isinstance(y, Const) and x.dtype.is_floating_point and y.value == 0.5:
        return op("select", op("eq", x, const(float("-inf"), x.dtype)), const(float("inf"), x.dtype), op("sqrt", x))
    return op("pow", x, y)


def _mul(a, attrs, out):
    x, y = a
    return op("and", x, y) if x.dtype.is_bool else op("mul", x, y)


def cast_value(x: Expr, to: DType) -> Expr:
    """numpy's astype: bool is `!= 0` (nan is true), float -> int truncates (saturating)."""
    if x.dtype == to:
        return x
    if to.is_bool:
        return op("ne", x, const(0, x.dtype))
    return op("cast", x, dtype=to)


def _unary(name: str) -> Rule:
    return lambda a, attrs, out: op(name, a[0])


def _binary(name: str) -> Rule:
    return lambda a, attrs, out: op(name, a[0], a[1])


SCALAR_RULES: dict[str, Rule] = {
    "neg": _unary("neg"), "abs": _unary("abs"), "sign": _sign,
    "exp": _unary("exp"), "log": _unary("log"), "log1p": _unary("log1p"), "sqrt": _unary("sqrt"),
    "rsqrt": _unary("rsqrt"), "sin": _unary("sin"), "cos": _unary("cos"), "tanh": _unary("tanh"),
    "logistic": _unary("logistic"), "erf": _unary("erf"), "floor": _unary("floor"),
    "logical_not": _unary("not"), "stop_gradient": lambda a, attrs, out: a[0],
    "add": _binary("add"), "sub": _binary("sub"), "mul": _mul, "div": _div,
    "floor_divide": _floor_divide, "remainder": _remainder, "pow": _pow,
    "maximum": _binary("max"), "minimum": _binary("min"),
    "eq": _binary("eq"), "ne": _binary("ne"), "lt": _binary("lt"), "le": _binary("le"),
    "gt": _binary("gt"), "ge": _binary("ge"),
    "logical_and": _binary("and"), "logical_or": _binary("or"), "logical_xor": _binary("xor"),
    "select": lambda a, attrs, out: op("select", a[0], a[1], a[2]),
    "cast": lambda a, attrs, out: cast_value(a[0], out),
}

# ops computed in float32 when their operands are float16 (numpy rounds each op to float16)
_F16_NATIVE = frozenset({"select", "cast", "stop_gradient", "neg", "abs"})


def scalar_value(prim: str, args: list[Expr], attrs: dict, out: DType) -> Expr:
    """The value of elementwise primitive `prim` applied to `args`."""
    rule = SCALAR_RULES[prim]
    if prim not in _F16_NATIVE and any(x.dtype == dt.float16 for x in args):
        wide = [op("cast", x, dtype=dt.float32) if x.dtype == dt.float16 else x for x in args]
        r = rule(wide, attrs, dt.float32 if out == dt.float16 else out)
        return op("cast", r, dtype=dt.float16) if out == dt.float16 else r
    return rule(args, attrs, out)

"""The closed primitive set. Each primitive is defined once, here, with:

- `shape_rule(avals, **attrs) -> (shape, dtype)`: abstract evaluation and input checks,
- `impl(*arrays, **attrs) -> ndarray`: the numpy reference (eager CPU and test oracle),
- `vjp(ops, g, inputs, out, **attrs) -> tuple`: cotangent per input (None: no gradient),
  written against `RuleOps`, so eager autograd and graph autodiff share it,
- `kind`: what the fusion planner and codegen need to know.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from . import dtypes as dt
from .dtypes import DType

ELEMENTWISE, REDUCTION, MOVEMENT, INDEX, MATMUL, CONV, CREATION, RANDOM = (
    "elementwise", "reduction", "movement", "index", "matmul", "conv", "creation", "random")


class ShapeError(ValueError, RuntimeError):
    """An operand's shape, dtype or attribute does not fit the primitive."""


@dataclass(frozen=True)
class Primitive:
    name: str
    kind: str
    shape_rule: Callable[..., tuple[tuple[int, ...], DType]]
    impl: Callable[..., np.ndarray]
    vjp: Callable[..., tuple] | None
    arity: int | None  # number of inputs; None = variadic (at least one)
    attrs: tuple[str, ...] = ()
    doc: str = ""
    saves: str = "io"  # what the VJP reads: "i" all inputs, digits: those inputs, "o" output
    save_deps: dict | None = None  # finer: input k's cotangent reads only save_deps[k]

    def saved_for(self, needed: list[int]) -> str:
        """What the VJP reads when only the cotangents of inputs `needed` are wanted."""
        if self.save_deps is None:
            return self.saves
        return "".join(self.save_deps.get(k, self.saves) for k in needed)

    def abstract_eval(self, avals, attrs: dict[str, Any]):
        if self.arity is not None and len(avals) != self.arity:
            raise ShapeError(f"{self.name}: expected {self.arity} inputs, got {len(avals)}")
        if len(attrs) != len(self.attrs) or not all(a in attrs for a in self.attrs):
            missing = [a for a in self.attrs if a not in attrs]
            unknown = [a for a in attrs if a not in self.attrs]
            raise ShapeError(f"{self.name}: missing attributes {missing}, unknown attributes {unknown}")
        return self.shape_rule(avals, **attrs)


PRIMITIVES: dict[str, Primitive] = {}


def get_primitive(name: str) -> Primitive:
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}; known: {', '.join(sorted(PRIMITIVES))}") from None


def _register(name, kind, shape_rule, impl, vjp, arity, attrs=(), doc=""):
    PRIMITIVES[name] = Primitive(name, kind, shape_rule, impl, vjp, arity, tuple(attrs), doc)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _np(dtype: DType):
    return dtype.np_dtype


# ======================================================================================
# Elementwise
# ======================================================================================

def _same_shapes(name, avals):
    s0, d0 = avals[0].shape, avals[0].dtype
    for a in avals[1:]:
        if tuple(a.shape) != tuple(s0):
            raise ShapeError(f"{name}: operand shapes {_fmt(s0)} and {_fmt(a.shape)} differ "
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


def _unary(name, fn, vjp, float_only=True, doc=""):
    def impl(x):
        with np.errstate(all="ignore"):
            return np.asarray(fn(x)).astype(x.dtype, copy=False)
    _register(name, ELEMENTWISE, _unary_rule(name, float_only), impl, vjp, 1, doc=doc)


def _erf(x):
    # numpy has no erf; use math.erf elementwise through a vectorized ufunc (exact to libm).
    return _erf_ufunc(x)


_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def _erf_impl(x):
    return np.asarray(_erf_ufunc(x.astype(np.float64)), dtype=np.float64)


def _g_times(fn):
    """VJP for unary y = f(x): returns g * fn(ops, x, y)."""
    def vjp(ops, g, inputs, out):
        return (ops.mul(g, fn(ops, inputs[0], out)),)
    return vjp


_unary("neg", np.negative, lambda ops, g, inputs, out: (ops.neg(g),), float_only=False)
_unary("abs", np.abs, _g_times(lambda ops, x, y: ops.sign(x)), float_only=False)
_unary("sign", np.sign, lambda ops, g, inputs, out: (ops.zeros_like(g),), float_only=False)
_unary("exp", np.exp, _g_times(lambda ops, x, y: y))
_unary("log", np.log, lambda ops, g, inputs, out: (ops.div(g, inputs[0]),))
_unary("log1p", np.log1p, lambda ops, g, inputs, out: (ops.div(g, ops.add(inputs[0], ops.full_like(1, g))),))
_unary("sqrt", np.sqrt, lambda ops, g, inputs, out: (ops.div(ops.scale(g, 0.5), out),))
_unary("rsqrt", lambda x: 1 / np.sqrt(x),
       _g_times(lambda ops, x, y: ops.scale(ops.mul(y, ops.mul(y, y)), -0.5)))
_unary("sin", np.sin, _g_times(lambda ops, x, y: ops.cos(x)))
_unary("cos", np.cos, _g_times(lambda ops, x, y: ops.neg(ops.sin(x))))
_unary("tanh", np.tanh, _g_times(lambda ops, x, y: ops.sub(ops.full_like(1, y), ops.mul(y, y))))
_unary("logistic", lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                                      np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))),
       _g_times(lambda ops, x, y: ops.mul(y, ops.sub(ops.full_like(1, y), y))), doc="sigmoid")
_unary("erf", _erf_impl, _g_times(
    lambda ops, x, y: ops.scale(ops.exp(ops.neg(ops.mul(x, x))), 2.0 / math.sqrt(math.pi))))
_unary("floor", np.floor, lambda ops, g, inputs, out: (ops.zeros_like(g),))
_unary("logical_not", np.logical_not, None, float_only=False)
_register("stop_gradient", ELEMENTWISE, lambda avals: (tuple(avals[0].shape), avals[0].dtype), lambda x: x, None, 1,
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


def _binary(name, fn, vjp, out_bool=False, kinds=None, doc=""):
    def impl(x, y):
        with np.errstate(all="ignore"):
            r = fn(x, y)
        return np.asarray(r).astype(np.bool_ if out_bool else x.dtype, copy=False)
    _register(name, ELEMENTWISE, _binary_rule(name, out_bool, kinds), impl, vjp, 2, doc=doc)


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
    logx = ops.select(ops.gt(x, zero), ops.log(safe), ops.zeros_like(x))
    gy = ops.mul(g, ops.mul(out, logx))
    return gx, gy


def _int_safe_div(x, y):
    if np.issubdtype(x.dtype, np.integer):
        return np.trunc(np.true_divide(x, np.where(y == 0, 1, y))).astype(x.dtype)
    return np.true_divide(x, y)


_binary("add", np.add, lambda ops, g, i, o: (g, g), kinds="number")
_binary("sub", np.subtract, lambda ops, g, i, o: (g, ops.neg(g)), kinds="number")
_binary("mul", np.multiply, lambda ops, g, i, o: (ops.mul(g, i[1]), ops.mul(g, i[0])))
_binary("div", _int_safe_div, lambda ops, g, i, o: (ops.div(g, i[1]), ops.neg(ops.div(ops.mul(g, o), i[1]))),
        kinds="number", doc="true division (integers truncate)")
_binary("floor_divide", lambda x, y: np.floor_divide(x, np.where(y == 0, 1, y)) if np.issubdtype(x.dtype, np.integer)
        else np.floor(x / y), lambda ops, g, i, o: (ops.zeros_like(g), ops.zeros_like(g)), kinds="number")
_binary("remainder", lambda x, y: np.remainder(x, np.where(y == 0, 1, y)) if np.issubdtype(x.dtype, np.integer)
        else np.remainder(x, y),
        lambda ops, g, i, o: (g, ops.neg(ops.mul(g, ops.floor_divide(i[0], i[1])))), kinds="number")
_binary("pow", np.power, _pow_vjp, kinds="number")
_binary("maximum", np.maximum, _max_min_vjp("gt"))
_binary("minimum", np.minimum, _max_min_vjp("lt"))
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
        raise ShapeError(f"select: condition shape {_fmt(c.shape)} differs from operand shape {_fmt(a.shape)}")
    return _same_shapes("select", [a, b])


def _select_vjp(ops, g, inputs, out):
    c = inputs[0]
    zero = ops.zeros_like(g)
    return None, ops.select(c, g, zero), ops.select(c, zero, g)


_register("select", ELEMENTWISE, _select_rule, lambda c, a, b: np.where(c, a, b), _select_vjp, 3,
          doc="where(cond, a, b)")


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


_register("cast", ELEMENTWISE, _cast_rule, _cast_impl, _cast_vjp, 1, ("dtype",))


# ======================================================================================
# Reductions
# ======================================================================================

def _check_axes(name, shape, axes):
    nd = len(shape)
    axes = tuple(axes)
    for a in axes:
        if not isinstance(a, int) or not 0 <= a < nd:
            raise ShapeError(f"{name}: axis {a} out of range for shape {_fmt(shape)} (axes are normalised, 0..{nd - 1})")
    if len(set(axes)) != len(axes):
        raise ShapeError(f"{name}: repeated axis in {axes}")
    return axes


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _reduce_rule(name, out_dtype=None, numeric=True):
    def rule(avals, axes, keepdims):
        (a,) = avals
        axes = _check_axes(name, a.shape, axes)
        if numeric and a.dtype.is_bool:
            raise ShapeError(f"{name}: expected a numeric operand, got bool (cast first)")
        for ax in axes:
            if a.shape[ax] == 0 and name in ("reduce_max", "reduce_min", "argmax", "argmin"):
                raise ShapeError(f"{name}: cannot reduce over axis {ax} of size 0 in shape {_fmt(a.shape)}")
        return _reduced_shape(a.shape, axes, keepdims), (out_dtype or a.dtype)
    return rule


def _sum_vjp(ops, g, inputs, out, axes, keepdims):
    return (ops.expand_reduced(g, inputs[0].shape, axes, keepdims),)


def _maxmin_vjp(ops, g, inputs, out, axes, keepdims):
    x = inputs[0]
    o = ops.expand_reduced(out, x.shape, axes, keepdims)
    mask = ops.cast(ops.eq(x, o), x.dtype)
    count = ops.expand_reduced(ops.reduce_sum(mask, axes=axes, keepdims=keepdims), x.shape, axes, keepdims)
    gx = ops.expand_reduced(g, x.shape, axes, keepdims)
    return (ops.div(ops.mul(gx, mask), count),)


def _prod_vjp(ops, g, inputs, out, axes, keepdims):
    """d prod / dx_i = product of the others: out / x_i without zeros; with exactly one zero in a
    slice only that position gets the product of the rest; with two or more, all get 0."""
    x = inputs[0]
    zero, one = ops.zeros_like(x), ops.full_like(1, x)
    is_zero = ops.eq(x, zero)
    safe = ops.select(is_zero, one, x)
    prod_nz = ops.expand_reduced(ops.reduce_prod(safe, axes=axes, keepdims=keepdims), x.shape, axes, keepdims)
    n_zero = ops.expand_reduced(ops.reduce_sum(ops.cast(is_zero, x.dtype), axes=axes, keepdims=keepdims),
                                x.shape, axes, keepdims)
    others = ops.select(ops.eq(n_zero, zero), ops.div(prod_nz, safe),
                        ops.select(ops.logical_and(ops.eq(n_zero, one), is_zero), prod_nz, zero))
    return (ops.mul(ops.expand_reduced(g, x.shape, axes, keepdims), others),)


def _reduce_impl(fn):
    def impl(x, axes, keepdims):
        axes = tuple(axes)
        return np.asarray(fn(x, axis=axes, keepdims=keepdims)).astype(x.dtype, copy=False)
    return impl


_register("reduce_sum", REDUCTION, _reduce_rule("reduce_sum"), _reduce_impl(np.sum), _sum_vjp, 1, ("axes", "keepdims"))
_register("reduce_max", REDUCTION, _reduce_rule("reduce_max"), _reduce_impl(np.max), _maxmin_vjp, 1, ("axes", "keepdims"))
_register("reduce_min", REDUCTION, _reduce_rule("reduce_min"), _reduce_impl(np.min), _maxmin_vjp, 1, ("axes", "keepdims"))
_register("reduce_prod", REDUCTION, _reduce_rule("reduce_prod"), _reduce_impl(np.prod), _prod_vjp, 1, ("axes", "keepdims"))


def _arg_rule(name):
    def rule(avals, axis, keepdims):
        (a,) = avals
        _check_axes(name, a.shape, (axis,))
        if a.shape[axis] == 0:
            raise ShapeError(f"{name}: cannot reduce over axis {axis} of size 0 in shape {_fmt(a.shape)}")
        return _reduced_shape(a.shape, (axis,), keepdims), dt.int64
    return rule


def _arg_impl(fn):
    def impl(x, axis, keepdims):
        r = fn(x, axis=axis)
        if keepdims:
            r = np.expand_dims(r, axis)
        return np.asarray(r).astype(np.int64)
    return impl


_register("argmax", REDUCTION, _arg_rule("argmax"), _arg_impl(np.argmax), None, 1, ("axis", "keepdims"))
_register("argmin", REDUCTION, _arg_rule("argmin"), _arg_impl(np.argmin), None, 1, ("axis", "keepdims"))


# ======================================================================================
# Movement
# ======================================================================================

def _reshape_rule(avals, shape):
    (a,) = avals
    shape = tuple(shape)
    if any((not isinstance(s, int)) or s < 0 for s in shape):
        raise ShapeError(f"reshape: target shape {_fmt(shape)} must be non-negative integers")
    if math.prod(shape) != math.prod(a.shape):
        raise ShapeError(f"reshape: shape {_fmt(shape)} is invalid for input of shape {_fmt(a.shape)} "
                         f"({math.prod(a.shape)} elements)")
    return shape, a.dtype


_register("reshape", MOVEMENT, _reshape_rule, lambda x, shape: np.reshape(x, shape),
          lambda ops, g, i, o, shape: (ops.reshape(g, shape=tuple(i[0].shape)),), 1, ("shape",))


def _permute_rule(avals, perm):
    (a,) = avals
    perm = tuple(perm)
    if sorted(perm) != list(range(len(a.shape))):
        raise ShapeError(f"permute: {perm} is not a permutation of the {len(a.shape)} dims of shape {_fmt(a.shape)}")
    return tuple(a.shape[p] for p in perm), a.dtype


def _permute_vjp(ops, g, inputs, out, perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return (ops.permute(g, perm=tuple(inv)),)


_register("permute", MOVEMENT, _permute_rule, lambda x, perm: np.transpose(x, perm), _permute_vjp, 1, ("perm",))


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    """numpy/PyTorch broadcasting of shapes; ShapeError names the mismatching dimension."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        size = 1
        for s in shapes:
            k = i - (nd - len(s))
            if k < 0:
                continue
            d = s[k]
            if d == 1:
                continue
            if size != 1 and d != size:
                raise ShapeError(f"shapes {' and '.join(_fmt(x) for x in shapes)} cannot be broadcast: "
                                 f"size {size} does not match size {d} at dimension {i - nd}")
            size = d
        out.append(size)
    return tuple(out)


def _broadcast_rule(avals, shape):
    (a,) = avals
    shape = tuple(shape)
    src = tuple(a.shape)
    if len(src) > len(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast shape {_fmt(src)} to fewer dims {_fmt(shape)}")
    for k, s in enumerate(src):
        t = shape[len(shape) - len(src) + k]
        if s != t and s != 1:
            raise ShapeError(f"broadcast_to: shape {_fmt(src)} cannot be broadcast to {_fmt(shape)} "
                             f"(dimension {k} has size {s}, target {t})")
    return shape, a.dtype


_register("broadcast_to", MOVEMENT, _broadcast_rule, lambda x, shape: np.broadcast_to(x, shape),
          lambda ops, g, i, o, shape: (ops.sum_to(g, i[0].shape),), 1, ("shape",))


def _slice_rule(avals, starts, stops, steps):
    (a,) = avals
    nd = len(a.shape)
    if not (len(starts) == len(stops) == len(steps) == nd):
        raise ShapeError(f"slice: starts/stops/steps need {nd} entries for shape {_fmt(a.shape)}")
    out = []
    for d, (b, e, s) in enumerate(zip(starts, stops, steps)):
        if s < 1 or not 0 <= b <= e <= a.shape[d]:
            raise ShapeError(f"slice: [{b}:{e}:{s}] is not a valid slice of dimension {d} (size {a.shape[d]})")
        out.append((e - b + s - 1) // s)
    return tuple(out), a.dtype


def _slice_vjp(ops, g, inputs, out, starts, stops, steps):
    shape = inputs[0].shape
    lo = tuple(starts)
    hi = []
    for d, (b, s) in enumerate(zip(starts, steps)):
        last = b + (out.shape[d] - 1) * s if out.shape[d] > 0 else b
        hi.append(shape[d] - (last + 1) if out.shape[d] > 0 else shape[d] - b)
    interior = tuple(s - 1 for s in steps)
    return (ops.pad(g, lo=lo, hi=tuple(hi), interior=interior, value=0.0),)


_register("slice", MOVEMENT, _slice_rule,
          lambda x, starts, stops, steps: x[tuple(slice(b, e, s) for b, e, s in zip(starts, stops, steps))],
          _slice_vjp, 1, ("starts", "stops", "steps"))


def _pad_rule(avals, lo, hi, interior, value):
    (a,) = avals
    nd = len(a.shape)
    if not (len(lo) == len(hi) == len(interior) == nd):
        raise ShapeError(f"pad: lo/hi/interior need {nd} entries for shape {_fmt(a.shape)}")
    if any(v < 0 for v in tuple(lo) + tuple(hi) + tuple(interior)):
        raise ShapeError("pad: padding amounts must be non-negative (use slice to crop)")
    out = tuple(l + h + s + max(s - 1, 0) * i for s, l, h, i in zip(a.shape, lo, hi, interior))
    return out, a.dtype


def _pad_impl(x, lo, hi, interior, value):
    shape, _ = _pad_rule([x], lo, hi, interior, value)
    out = np.full(shape, value, dtype=x.dtype)
    idx = tuple(slice(l, l + (s - 1) * (i + 1) + 1 if s else l, i + 1) for s, l, i in zip(x.shape, lo, interior))
    out[idx] = x
    return out


def _pad_vjp(ops, g, inputs, out, lo, hi, interior, value):
    x = inputs[0]
    starts = tuple(lo)
    steps = tuple(i + 1 for i in interior)
    stops = tuple(l + (s - 1) * st + 1 if s else l for l, s, st in zip(lo, x.shape, steps))
    return (ops.slice(g, starts=starts, stops=stops, steps=steps),)


_register("pad", MOVEMENT, _pad_rule, _pad_impl, _pad_vjp, 1, ("lo", "hi", "interior", "value"),
          doc="constant padding with `value`; `interior` inserts that many elements between neighbours")


def _concat_rule(avals, axis):
    a0 = avals[0]
    nd = len(a0.shape)
    if not 0 <= axis < nd:
        raise ShapeError(f"concat: axis {axis} out of range for shape {_fmt(a0.shape)}")
    total = 0
    for k, a in enumerate(avals):
        if a.dtype != a0.dtype:
            raise ShapeError(f"concat: input {k} has dtype {a.dtype.name}, expected {a0.dtype.name}")
        if len(a.shape) != nd or any(s != t for d, (s, t) in enumerate(zip(a.shape, a0.shape)) if d != axis):
            raise ShapeError(f"concat: input {k} has shape {_fmt(a.shape)}, which does not match {_fmt(a0.shape)} "
                             f"outside dimension {axis}")
        total += a.shape[axis]
    out = list(a0.shape)
    out[axis] = total
    return tuple(out), a0.dtype


def _concat_vjp(ops, g, inputs, out, axis):
    res = []
    off = 0
    for x in inputs:
        n = x.shape[axis]
        starts = tuple(off if d == axis else 0 for d in range(len(x.shape)))
        stops = tuple(off + n if d == axis else s for d, s in enumerate(g.shape))
        res.append(ops.slice(g, starts=starts, stops=stops, steps=(1,) * len(x.shape)))
        off += n
    return tuple(res)


_register("concat", MOVEMENT, _concat_rule, lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp, None,
          ("axis",))


# ======================================================================================
# Indexing: gather / scatter along one axis (PyTorch's torch.gather / scatter semantics)
# ======================================================================================

def _index_rule(name, with_src):
    def rule(avals, axis):
        x, idx = avals[0], avals[1]
        nd = len(x.shape)
        if not 0 <= axis < nd:
            raise ShapeError(f"{name}: axis {axis} out of range for shape {_fmt(x.shape)}")
        if not idx.dtype.is_integer:
            raise ShapeError(f"{name}: index must be an integer tensor, got {idx.dtype.name}")
        if len(idx.shape) != nd:
            raise ShapeError(f"{name}: index has {len(idx.shape)} dims, input has {nd}")
        for d in range(nd):
            if d != axis and idx.shape[d] > x.shape[d]:
                raise ShapeError(f"{name}: index shape {_fmt(idx.shape)} exceeds input shape {_fmt(x.shape)} "
                                 f"at dimension {d}")
        if with_src:
            src = avals[2]
            if src.dtype != x.dtype:
                raise ShapeError(f"{name}: src dtype {src.dtype.name} differs from input dtype {x.dtype.name}")
            if tuple(src.shape) != tuple(idx.shape):
                raise ShapeError(f"{name}: src shape {_fmt(src.shape)} must equal index shape {_fmt(idx.shape)}")
            return tuple(x.shape), x.dtype
        return tuple(idx.shape), x.dtype
    return rule


def _check_index_range(name, x, idx, axis):
    n = x.shape[axis]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].flat[0]
        raise IndexError(f"{name}: index {bad} is out of bounds for dimension {axis} with size {n}")


def _sub_block(x, shape, axis):
    return x[tuple(slice(None) if d == axis else slice(0, s) for d, s in enumerate(shape))]


def _gather_impl(x, idx, axis):
    _check_index_range("gather", x, idx, axis)
    if idx.size and all(st == 0 or n == 1 for d, (st, n) in enumerate(zip(idx.strides, idx.shape)) if d != axis) \
            and all(idx.shape[d] == x.shape[d] for d in range(x.ndim) if d != axis):
        # the index only varies along `axis` (index_select, row gathers): one np.take
        line = idx[tuple(slice(None) if d == axis else 0 for d in range(idx.ndim))]
        return np.take(x, line, axis=axis)
    return np.take_along_axis(_sub_block(x, idx.shape, axis), idx, axis=axis)


def _scatter_positions(x, idx, axis):
    grids = np.indices(idx.shape, sparse=True)
    return tuple(idx if d == axis else grids[d] for d in range(x.ndim))


def _scatter_add_impl(x, idx, src, axis):
    _check_index_range("scatter_add", x, idx, axis)
    out = np.array(x, copy=True)
    np.add.at(out, _scatter_positions(x, idx, axis), src)
    return out


def _scatter_impl(x, idx, src, axis):
    _check_index_range("scatter", x, idx, axis)
    out = np.array(x, copy=True)
    out[_scatter_positions(x, idx, axis)] = src
    return out


def _gather_vjp(ops, g, inputs, out, axis):
    x, idx = inputs
    return ops.scatter_add(ops.zeros_like(x), idx, g, axis=axis), None


def _scatter_add_vjp(ops, g, inputs, out, axis):
    x, idx, src = inputs
    return g, None, ops.gather(g, idx, axis=axis)


def _scatter_vjp(ops, g, inputs, out, axis):
    x, idx, src = inputs
    return ops.scatter(g, idx, ops.zeros_like(src), axis=axis), None, ops.gather(g, idx, axis=axis)


_register("gather", INDEX, _index_rule("gather", False), _gather_impl, _gather_vjp, 2, ("axis",),
          doc="out[i][j] = x[idx[i][j]][j] along `axis` (torch.gather)")
_register("scatter_add", INDEX, _index_rule("scatter_add", True), _scatter_add_impl, _scatter_add_vjp, 3, ("axis",))
_register("scatter", INDEX, _index_rule("scatter", True), _scatter_impl, _scatter_vjp, 3, ("axis",))


# ======================================================================================
# Matmul
# ======================================================================================

def _matmul_rule(avals):
    a, b = avals
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ShapeError(f"matmul: operands need at least 2 dims, got {_fmt(a.shape)} and {_fmt(b.shape)}")
    if a.dtype != b.dtype:
        raise ShapeError(f"matmul: operand dtypes {a.dtype.name} and {b.dtype.name} differ")
    if a.dtype.is_bool:
        raise ShapeError("matmul: bool operands are not supported")
    if tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        raise ShapeError(f"matmul: batch dims {_fmt(a.shape[:-2])} and {_fmt(b.shape[:-2])} differ (broadcast first)")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {_fmt(a.shape)} and {_fmt(b.shape)} cannot be multiplied "
                         f"({a.shape[-2]}x{a.shape[-1]} and {b.shape[-2]}x{b.shape[-1]})")
    return tuple(a.shape[:-1]) + (b.shape[-1],), a.dtype


def _matmul_vjp(ops, g, inputs, out):
    a, b = inputs
    return ops.matmul(g, ops.transpose_last(b)), ops.matmul(ops.transpose_last(a), g)


_register("matmul", MATMUL, _matmul_rule, lambda a, b: np.matmul(a, b), _matmul_vjp, 2,
          doc="batched (..., m, k) @ (..., k, n) with equal batch dims")


# ======================================================================================
# Creation and random numbers
# ======================================================================================

def _constant_rule(avals, value, shape, dtype):
    shape = tuple(shape)
    d = dt.get_dtype(dtype)
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.size != math.prod(shape):
            raise ShapeError(f"constant: value has {arr.size} elements, shape {_fmt(shape)} needs {math.prod(shape)}")
    return shape, d


def _constant_impl(value, shape, dtype):
    d = dt.get_dtype(dtype)
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=d.np_dtype).reshape(shape)
    return np.full(tuple(shape), value, dtype=d.np_dtype)


_register("constant", CREATION, _constant_rule, _constant_impl, None, 0, ("value", "shape", "dtype"),
          doc="a literal: a scalar (filled) or a flat list of values")


def _iota_rule(avals, shape, axis, dtype):
    shape = tuple(shape)
    if not 0 <= axis < max(len(shape), 1):
        raise ShapeError(f"iota: axis {axis} out of range for shape {_fmt(shape)}")
    return shape, dt.get_dtype(dtype)


def _iota_impl(shape, axis, dtype):
    d = dt.get_dtype(dtype)
    shape = tuple(shape)
    if not shape:
        return np.zeros((), d.np_dtype)
    r = np.arange(shape[axis], dtype=d.np_dtype).reshape([-1 if k == axis else 1 for k in range(len(shape))])
    return np.broadcast_to(r, shape).copy()


_register("iota", CREATION, _iota_rule, _iota_impl, None, 0, ("shape", "axis", "dtype"),
          doc="0, 1, 2, ... along `axis`")

_M64 = (1 << 64) - 1


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_bits(seed: int, offset: int, n: int) -> np.ndarray:
    """The counter-based generator: 64 random bits for counters offset..offset+n-1."""
    with np.errstate(over="ignore"):
        # offset the seed before mixing: the finaliser maps 0 to 0, which made seed 0's first draw 0.0
        key = _mix64(np.asarray([(seed + 0x632BE59BD9B4E019) & _M64], dtype=np.uint64))[0]
        ctr = np.arange(n, dtype=np.uint64) + np.uint64(offset & _M64)
        return _mix64(key + ctr * np.uint64(0x9E3779B97F4A7C15))


def _random_rule(avals, shape, dtype):
    for a in avals:
        if a.dtype != dt.int64 or tuple(a.shape) != ():
            raise ShapeError("random_uniform: seed and offset must be int64 scalars")
    d = dt.get_dtype(dtype)
    if not d.is_floating_point:
        raise ShapeError(f"random_uniform: dtype must be floating point, got {d.name}")
    return tuple(shape), d


def _random_impl(seed, offset, shape, dtype):
    d = dt.get_dtype(dtype)
    n = math.prod(shape)
    bits = random_bits(int(seed), int(offset), n)
    if d == dt.float64:
        u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    else:
        u = (bits >> np.uint64(40)).astype(np.float64) * (1.0 / (1 << 24))
    return u.astype(d.np_dtype).reshape(shape)


_register("random_uniform", RANDOM, _random_rule, _random_impl, lambda ops, g, i, o, shape, dtype: (None, None), 2,
          ("shape", "dtype"), doc="uniform [0, 1) from a counter-based hash of (seed, offset + element index)")


# What each VJP rule reads besides shapes and dtypes: eager autograd saves only these
# (and checks their versions), so in-place updates of anything else stay legal.
_SAVES = {
    "neg": "", "sign": "", "floor": "", "abs": "i", "exp": "o", "log": "i", "log1p": "i", "sqrt": "o",
    "rsqrt": "o", "sin": "i", "cos": "i", "tanh": "o", "logistic": "o", "erf": "i",
    "add": "", "sub": "", "mul": "i", "div": "1o", "floor_divide": "", "pow": "io",
    "maximum": "i", "minimum": "i", "select": "0", "cast": "",
    "reduce_sum": "", "reduce_max": "io", "reduce_min": "io", "reduce_prod": "i",
    "reshape": "", "permute": "", "broadcast_to": "", "slice": "", "pad": "", "concat": "",
    "gather": "1", "scatter_add": "1", "scatter": "1", "matmul": "i", "remainder": "i",
}
# Per-input refinements: the cotangent of input k reads only these.
_SAVE_DEPS = {
    "mul": {0: "1", 1: "0"}, "div": {0: "1", 1: "1o"}, "pow": {0: "01", 1: "0o"}, "matmul": {0: "1", 1: "0"},
    "remainder": {0: "", 1: "01"}, "select": {1: "0", 2: "0"},
}
for _name, _s in _SAVES.items():
    PRIMITIVES[_name] = replace(PRIMITIVES[_name], saves=_s, save_deps=_SAVE_DEPS.get(_name))
from . import conv_prims  # noqa: E402,F401

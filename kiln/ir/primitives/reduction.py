"""Reductions over normalised axes (`reduce_*`) and the index reductions `argmax`/`argmin`."""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from .registry import REDUCTION, ShapeError, fmt_shape, register

def _check_axes(name, shape, axes):
    nd = len(shape)
    axes = tuple(axes)
    for a in axes:
        if not isinstance(a, int) or not 0 <= a < nd:
            raise ShapeError(f"{name}: axis {a} out of range for shape {fmt_shape(shape)} (axes are normalised, "
                             f"0..{nd - 1})")
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
                raise ShapeError(f"{name}: cannot reduce over axis {ax} of size 0 in shape {fmt_shape(a.shape)}")
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


_AXES = ("axes", "keepdims")
register("reduce_sum", REDUCTION, _reduce_rule("reduce_sum"), _reduce_impl(np.sum), _sum_vjp, 1, _AXES, saves="")
register("reduce_max", REDUCTION, _reduce_rule("reduce_max"), _reduce_impl(np.max), _maxmin_vjp, 1, _AXES, saves="io")
register("reduce_min", REDUCTION, _reduce_rule("reduce_min"), _reduce_impl(np.min), _maxmin_vjp, 1, _AXES, saves="io")
register("reduce_prod", REDUCTION, _reduce_rule("reduce_prod"), _reduce_impl(np.prod), _prod_vjp, 1, _AXES, saves="i")


def _arg_rule(name):
    def rule(avals, axis, keepdims):
        (a,) = avals
        _check_axes(name, a.shape, (axis,))
        if a.shape[axis] == 0:
            raise ShapeError(f"{name}: cannot reduce over axis {axis} of size 0 in shape {fmt_shape(a.shape)}")
        return _reduced_shape(a.shape, (axis,), keepdims), dt.int64
    return rule


def _arg_impl(fn):
    def impl(x, axis, keepdims):
        r = fn(x, axis=axis)
        if keepdims:
            r = np.expand_dims(r, axis)
        return np.asarray(r).astype(np.int64)
    return impl


register("argmax", REDUCTION, _arg_rule("argmax"), _arg_impl(np.argmax), None, 1, ("axis", "keepdims"))
register("argmin", REDUCTION, _arg_rule("argmin"), _arg_impl(np.argmin), None, 1, ("axis", "keepdims"))

"""Movement primitives: reshape, permute, broadcast_to, slice, pad, concat (and shape broadcasting)."""
from __future__ import annotations

import math

import numpy as np

from .registry import MOVEMENT, Prop, ShapeError, fmt_shape, register

_VIEW = Prop.INDEX_MAP | Prop.VIEW
_BIJECTIVE_VIEW = _VIEW | Prop.BIJECTIVE

def _reshape_rule(avals, shape):
    (a,) = avals
    shape = tuple(shape)
    if any((not isinstance(s, int)) or s < 0 for s in shape):
        raise ShapeError(f"reshape: target shape {fmt_shape(shape)} must be non-negative integers")
    if math.prod(shape) != math.prod(a.shape):
        raise ShapeError(f"reshape: shape {fmt_shape(shape)} is invalid for input of shape {fmt_shape(a.shape)} "
                         f"({math.prod(a.shape)} elements)")
    return shape, a.dtype


register("reshape", MOVEMENT, _reshape_rule, lambda x, shape: np.reshape(x, shape),
         lambda ops, g, i, o, shape: (ops.reshape(g, shape=tuple(i[0].shape)),), 1, ("shape",),
         saves="", props=_BIJECTIVE_VIEW)


def _permute_rule(avals, perm):
    (a,) = avals
    perm = tuple(perm)
    if sorted(perm) != list(range(len(a.shape))):
        raise ShapeError(f"permute: {perm} is not a permutation of the {len(a.shape)} dims of shape "
                         f"{fmt_shape(a.shape)}")
    return tuple(a.shape[p] for p in perm), a.dtype


def _permute_vjp(ops, g, inputs, out, perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return (ops.permute(g, perm=tuple(inv)),)


register("permute", MOVEMENT, _permute_rule, lambda x, perm: np.transpose(x, perm), _permute_vjp, 1, ("perm",),
         saves="", props=_BIJECTIVE_VIEW)


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
                raise ShapeError(f"shapes {' and '.join(fmt_shape(x) for x in shapes)} cannot be broadcast: "
                                 f"size {size} does not match size {d} at dimension {i - nd}")
            size = d
        out.append(size)
    return tuple(out)


def _broadcast_rule(avals, shape):
    (a,) = avals
    shape = tuple(shape)
    src = tuple(a.shape)
    if len(src) > len(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast shape {fmt_shape(src)} to fewer dims {fmt_shape(shape)}")
    for k, s in enumerate(src):
        t = shape[len(shape) - len(src) + k]
        if s != t and s != 1:
            raise ShapeError(f"broadcast_to: shape {fmt_shape(src)} cannot be broadcast to {fmt_shape(shape)} "
                             f"(dimension {k} has size {s}, target {t})")
    return shape, a.dtype


register("broadcast_to", MOVEMENT, _broadcast_rule, lambda x, shape: np.broadcast_to(x, shape),
         lambda ops, g, i, o, shape: (ops.sum_to(g, i[0].shape),), 1, ("shape",), saves="", props=_VIEW)


def _slice_rule(avals, starts, stops, steps):
    (a,) = avals
    nd = len(a.shape)
    if not (len(starts) == len(stops) == len(steps) == nd):
        raise ShapeError(f"slice: starts/stops/steps need {nd} entries for shape {fmt_shape(a.shape)}")
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


register("slice", MOVEMENT, _slice_rule,
         lambda x, starts, stops, steps: x[tuple(slice(b, e, s) for b, e, s in zip(starts, stops, steps))],
         _slice_vjp, 1, ("starts", "stops", "steps"), saves="", props=_VIEW)


def _pad_rule(avals, lo, hi, interior, value):
    (a,) = avals
    nd = len(a.shape)
    if not (len(lo) == len(hi) == len(interior) == nd):
        raise ShapeError(f"pad: lo/hi/interior need {nd} entries for shape {fmt_shape(a.shape)}")
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


register("pad", MOVEMENT, _pad_rule, _pad_impl, _pad_vjp, 1, ("lo", "hi", "interior", "value"),
         saves="", props=Prop.INDEX_MAP,
         doc="constant padding with `value`; `interior` inserts that many elements between neighbours")


def _concat_rule(avals, axis):
    a0 = avals[0]
    nd = len(a0.shape)
    if not 0 <= axis < nd:
        raise ShapeError(f"concat: axis {axis} out of range for shape {fmt_shape(a0.shape)}")
    total = 0
    for k, a in enumerate(avals):
        if a.dtype != a0.dtype:
            raise ShapeError(f"concat: input {k} has dtype {a.dtype.name}, expected {a0.dtype.name}")
        if len(a.shape) != nd or any(s != t for d, (s, t) in enumerate(zip(a.shape, a0.shape)) if d != axis):
            raise ShapeError(f"concat: input {k} has shape {fmt_shape(a.shape)}, which does not match "
                             f"{fmt_shape(a0.shape)} outside dimension {axis}")
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


register("concat", MOVEMENT, _concat_rule, lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp, None,
         ("axis",), saves="")

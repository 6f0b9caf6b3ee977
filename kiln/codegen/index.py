"""Index arithmetic: movement primitives as maps from an output index to an input index.

An index is a tuple of int64 kernel-IR expressions, one per dimension. Nothing is copied:
reshape, permute, broadcast, slice and pad only rewrite the index a load uses.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..ir import dtypes as dt
from .kir import Const, Expr, Op, idx, op

Index = tuple[Expr, ...]


def linearize(index: Sequence[Expr], shape: Sequence[int]) -> Expr:
    """Row-major flat position of `index` in `shape` (size-1 dims contribute nothing)."""
    flat: Expr = idx(0)
    for e, s in zip(index, shape):
        if s == 1:
            continue
        flat = op("add", op("mul", flat, idx(s)), e)
    return flat


def delinearize(flat: Expr, shape: Sequence[int]) -> Index:
    """The index of flat position `flat` in `shape`."""
    out: list[Expr] = []
    stride = math.prod(shape)
    for s in shape:
        stride //= max(s, 1)
        if s == 1:
            out.append(idx(0))
            continue
        q = _div(flat, stride) if stride != 1 else flat
        out.append(_rem(q, s) if len(out) else q)
    return tuple(out)


def _exact_split(e: Expr, s: int) -> tuple[Expr, Expr] | None:
    """(e / s, e % s) without division when e = a*m + c with s | m, m > 0, c >= 0 constant: a position
    (e >= 0) of that form has a >= 0, so the quotient is a*(m/s) + c // s and the remainder c % s. A loop split
    into lanes (i*k + lane) meets the reshape that splits the same axis (k) this way."""
    a, c = (e.args if isinstance(e, Op) and e.name == "add" else (e, idx(0)))
    if not (isinstance(c, Const) and 0 <= c.value and isinstance(a, Op) and a.name == "mul"):
        return None
    x, m = a.args
    if not (isinstance(m, Const) and m.value > 0 and m.value % s == 0):
        return None
    return op("add", op("mul", x, idx(m.value // s)), idx(c.value // s)), idx(c.value % s)


def _div(e: Expr, s: int) -> Expr:
    split = _exact_split(e, s)
    return split[0] if split else op("div", e, idx(s))


def _rem(e: Expr, s: int) -> Expr:
    split = _exact_split(e, s)
    return split[1] if split else op("rem", e, idx(s))


def reshape_index(out_index: Index, out_shape: Sequence[int], in_shape: Sequence[int]) -> Index:
    """Map an index of the reshaped value to the input's index, group by group: runs of
    dimensions with equal products map without division (a unit or identical dim is free)."""
    out_shape, in_shape = list(out_shape), list(in_shape)
    res: list[Expr] = []
    i = j = 0
    while i < len(out_shape) or j < len(in_shape):
        # skip unit dims on either side
        if j < len(in_shape) and in_shape[j] == 1:
            res.append(idx(0))
            j += 1
            continue
        if i < len(out_shape) and out_shape[i] == 1:
            i += 1
            continue
        if i >= len(out_shape) or j >= len(in_shape):  # a zero-size dim: any index is unreachable
            res.extend(idx(0) for _ in range(len(in_shape) - j))
            break
        i0, j0 = i, j
        po, pi = out_shape[i], in_shape[j]
        i += 1
        j += 1
        while po != pi:
            if po < pi and i < len(out_shape):
                po *= out_shape[i]
                i += 1
            elif j < len(in_shape):
                pi *= in_shape[j]
                j += 1
            else:
                break
        if i - i0 == 1 and j - j0 == 1:
            res.append(out_index[i0])
        else:
            flat = linearize(out_index[i0:i], out_shape[i0:i])
            res.extend(delinearize(flat, in_shape[j0:j]))
    return tuple(res)


def permute_index(out_index: Index, perm: Sequence[int]) -> Index:
    res: list[Expr] = [idx(0)] * len(perm)
    for k, p in enumerate(perm):
        res[p] = out_index[k]
    return tuple(res)


def broadcast_index(out_index: Index, in_shape: Sequence[int], out_shape: Sequence[int]) -> Index:
    lead = len(out_shape) - len(in_shape)
    return tuple(idx(0) if s == 1 else out_index[lead + k] for k, s in enumerate(in_shape))


def slice_index(out_index: Index, starts: Sequence[int], steps: Sequence[int]) -> Index:
    return tuple(op("add", idx(b), op("mul", e, idx(s))) for e, b, s in zip(out_index, starts, steps))


def pad_index(out_index: Index, in_shape: Sequence[int], lo: Sequence[int], hi: Sequence[int],
              interior: Sequence[int]) -> tuple[Index, Expr | None]:
    """(input index clamped into range, condition that the position holds an input element;
    None when every position does)."""
    res: list[Expr] = []
    valid: Expr | None = None
    for e, s, l, h, it in zip(out_index, in_shape, lo, hi, interior):
        if l == 0 and it == 0:
            if h == 0:
                res.append(e)
                continue
            cond = op("lt", e, idx(s))  # hi padding only
            res.append(op("select", cond, e, idx(0)))
        else:
            t = op("sub", e, idx(l))
            step = it + 1
            q = op("div", t, idx(step)) if step != 1 else t
            cond = op("and", op("ge", t, idx(0)), op("lt", q, idx(s)))
            if step != 1:
                cond = op("and", cond, op("eq", op("rem", t, idx(step)), idx(0)))
            res.append(op("select", cond, q, idx(0)))
        valid = cond if valid is None else op("and", valid, cond)
    return tuple(res), valid


def in_bounds(e: Expr, size: int) -> Expr:
    return op("and", op("ge", e, idx(0)), op("lt", e, idx(size)))


def as_index(e: Expr) -> Expr:
    return e if e.dtype == dt.int64 else op("cast", e, dtype=dt.int64)

"""Indexing: gather / scatter / scatter_add along one axis (torch.gather / scatter semantics)."""
from __future__ import annotations

import numpy as np

from .registry import INDEX, Prop, ShapeError, fmt_shape, register

def _index_rule(name, with_src):
    def rule(avals, axis):
        x, idx = avals[0], avals[1]
        nd = len(x.shape)
        if not 0 <= axis < nd:
            raise ShapeError(f"{name}: axis {axis} out of range for shape {fmt_shape(x.shape)}")
        if not idx.dtype.is_integer:
            raise ShapeError(f"{name}: index must be an integer tensor, got {idx.dtype.name}")
        if len(idx.shape) != nd:
            raise ShapeError(f"{name}: index has {len(idx.shape)} dims, input has {nd}")
        for d in range(nd):
            if d != axis and idx.shape[d] > x.shape[d]:
                raise ShapeError(f"{name}: index shape {fmt_shape(idx.shape)} exceeds input shape {fmt_shape(x.shape)} "
                                 f"at dimension {d}")
        if with_src:
            src = avals[2]
            if src.dtype != x.dtype:
                raise ShapeError(f"{name}: src dtype {src.dtype.name} differs from input dtype {x.dtype.name}")
            if tuple(src.shape) != tuple(idx.shape):
                raise ShapeError(f"{name}: src shape {fmt_shape(src.shape)} must equal index shape "
                                 f"{fmt_shape(idx.shape)}")
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


register("gather", INDEX, _index_rule("gather", False), _gather_impl, _gather_vjp, 2, ("axis",), saves="1",
         doc="out[i][j] = x[idx[i][j]][j] along `axis` (torch.gather)")
register("scatter_add", INDEX, _index_rule("scatter_add", True), _scatter_add_impl, _scatter_add_vjp, 3, ("axis",),
         saves="1", props=Prop.SCATTER)
register("scatter", INDEX, _index_rule("scatter", True), _scatter_impl, _scatter_vjp, 3, ("axis",),
         saves="1", props=Prop.SCATTER)

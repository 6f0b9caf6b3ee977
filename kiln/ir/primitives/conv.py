"""The `conv` primitive: N-d grouped, strided, dilated, padded cross-correlation.

    conv(x: (N, C, *S), w: (O, C // groups, *K)) -> (N, O, *S_out)
    attrs: strides (per spatial dim), padding ((lo, hi) per spatial dim), dilation, groups

The numpy reference sums per-kernel-offset matmuls for small kernels and uses im2col (a strided
window view and one batched matmul) for large ones (the weight gradients' "kernels").
The VJP is written with `conv` itself plus `pad`, `slice`, `permute`, `reshape` and a flip by
`gather`: the input gradient is the transposed convolution, the weight gradient a
convolution of the input with the output gradient (stride and dilation swapped).
"""
from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import dtypes as dt
from .registry import CONV, ShapeError, fmt_shape, register

_ATTRS = ("strides", "padding", "dilation", "groups")


def _norm_attrs(nsp, strides, padding, dilation, groups):
    strides, dilation = tuple(strides), tuple(dilation)
    padding = tuple(tuple(p) for p in padding)
    if len(strides) != nsp or len(dilation) != nsp or len(padding) != nsp:
        raise ShapeError(f"conv: strides {strides}, padding {padding} and dilation {dilation} need one entry per "
                         f"spatial dimension ({nsp})")
    for name, vals in (("strides", strides), ("dilation", dilation)):
        if any((not isinstance(v, (int, np.integer))) or v < 1 for v in vals):
            raise ShapeError(f"conv: {name} must be positive integers, got {vals}")
    if any(len(p) != 2 or any((not isinstance(v, (int, np.integer))) or v < 0 for v in p) for p in padding):
        raise ShapeError(f"conv: padding must be non-negative (lo, hi) pairs, got {padding}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ShapeError(f"conv: groups must be a positive integer, got {groups}")
    return strides, padding, dilation, int(groups)


def _out_sizes(spatial, ksize, strides, padding, dilation):
    out = []
    for s, k, st, (lo, hi), d in zip(spatial, ksize, strides, padding, dilation):
        eff = d * (k - 1) + 1
        n = s + lo + hi - eff
        out.append(n // st + 1 if n >= 0 else 0)
    return tuple(out)


def _conv_rule(avals, strides, padding, dilation, groups):
    x, w = avals
    xs, ws = tuple(x.shape), tuple(w.shape)
    if len(xs) < 3:
        raise ShapeError(f"conv: input must have shape (N, C, *spatial) with at least one spatial dim, "
                         f"got {fmt_shape(xs)}")
    if len(ws) != len(xs):
        raise ShapeError(f"conv: weight {fmt_shape(ws)} must have the same rank as input {fmt_shape(xs)} "
                         "(out_channels, in_channels // groups, *kernel)")
    if x.dtype != w.dtype:
        raise ShapeError(f"conv: input dtype {x.dtype.name} and weight dtype {w.dtype.name} differ")
    if not x.dtype.is_floating_point:
        raise ShapeError(f"conv: expected floating-point operands, got {x.dtype.name}")
    nsp = len(xs) - 2
    strides, padding, dilation, groups = _norm_attrs(nsp, strides, padding, dilation, groups)
    if ws[0] % groups:
        raise ShapeError(f"conv: out_channels {ws[0]} (weight {fmt_shape(ws)}) is not divisible by groups={groups}")
    if xs[1] != ws[1] * groups:
        raise ShapeError(f"conv: input {fmt_shape(xs)} has {xs[1]} channels, but weight {fmt_shape(ws)} with "
                         f"groups={groups} expects {ws[1] * groups}")
    if any(k < 1 for k in ws[2:]):
        raise ShapeError(f"conv: kernel sizes must be positive, weight is {fmt_shape(ws)}")
    for d, (s, k, (lo, hi), dl) in enumerate(zip(xs[2:], ws[2:], padding, dilation)):
        if s + lo + hi < dl * (k - 1) + 1:
            raise ShapeError(f"conv: padded input size {s + lo + hi} of spatial dim {d} (input {fmt_shape(xs)}) "
                             f"is smaller than the dilated kernel size {dl * (k - 1) + 1} (weight {fmt_shape(ws)})")
    return (xs[0], ws[0]) + _out_sizes(xs[2:], ws[2:], strides, padding, dilation), x.dtype


_OFFSET_KERNEL_LIMIT = 64  # kernels up to this many taps use per-offset matmuls, larger ones im2col


def _conv_by_offsets(x, w, strides, dilation, groups, outs):
    """Sum over kernel offsets of (strided slice of channels-last x) @ (that tap of w): no im2col buffer.

    Faster than im2col for small kernels (measured 1.4-2.8x on the CNN's 3x3 convs and their input
    gradients); huge kernels (weight gradients) have too many taps and use im2col.
    """
    n, c = x.shape[:2]
    oc, cg = w.shape[0], w.shape[1]
    og = oc // groups
    ks = w.shape[2:]
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))  # (N, *S, C)
    no = n * int(np.prod(outs))
    wg = w.reshape((groups, og, cg) + tuple(ks))
    acc = None
    for off in itertools.product(*(range(k) for k in ks)):
        sl = (slice(None),) + tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                                    for o, d, m, s in zip(off, dilation, outs, strides)) + (slice(None),)
        patch = xl[sl].reshape(no, groups, cg)
        tap = wg[(slice(None), slice(None), slice(None)) + off]  # (G, Og, Cg)
        if groups == 1:
            part = patch.reshape(no, cg) @ tap[0].T  # (NO, OC)
        else:
            part = np.matmul(patch.transpose(1, 0, 2), tap.transpose(0, 2, 1))  # (G, NO, Og)
        if acc is None:
            acc = part
        else:
            acc += part
    if groups != 1:
        acc = acc.transpose(1, 0, 2).reshape(no, oc)
    out = acc.reshape((n,) + tuple(outs) + (oc,))
    return np.ascontiguousarray(np.moveaxis(out, -1, 1)).astype(x.dtype, copy=False)


def _conv_impl(x, w, strides, padding, dilation, groups):
    # the VJP hands over permuted views; windows of a non-contiguous array gather with poor locality
    # (measured 300x slower for conv1's weight gradient), so copy to C order first
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    nsp = x.ndim - 2
    n, c = x.shape[:2]
    oc = w.shape[0]
    ks = w.shape[2:]
    if any(lo or hi for lo, hi in padding):
        x = np.pad(x, ((0, 0), (0, 0)) + tuple(tuple(p) for p in padding))
    eff = tuple(d * (k - 1) + 1 for d, k in zip(dilation, ks))
    outs = _out_sizes(x.shape[2:], ks, strides, ((0, 0),) * nsp, dilation)
    if int(np.prod(ks)) <= _OFFSET_KERNEL_LIMIT:
        return _conv_by_offsets(x, w, strides, dilation, groups, outs)
    # window view: (N, C, *S_full, *eff) -> strided to (N, C, *outs, *ks)
    win = sliding_window_view(x, eff, axis=tuple(range(2, 2 + nsp)))
    sl = (slice(None), slice(None)) + tuple(slice(0, (o - 1) * st + 1, st) for o, st in zip(outs, strides)) \
        + tuple(slice(None, None, d) for d in dilation)
    win = win[sl]
    # -> (N, *outs, C, *ks)
    perm = (0,) + tuple(range(2, 2 + nsp)) + (1,) + tuple(range(2 + nsp, 2 + 2 * nsp))
    win = win.transpose(perm)
    no = n * int(np.prod(outs))
    cg, og = c // groups, oc // groups
    kk = int(np.prod(ks))
    if groups == 1:
        cols = win.reshape(no, c * kk)
        out = cols @ w.reshape(oc, c * kk).T  # (NO, OC)
    else:
        cols = win.reshape(no, groups, cg * kk).transpose(1, 0, 2)  # (G, NO, Cg*K)
        out = np.matmul(cols, w.reshape(groups, og, cg * kk).transpose(0, 2, 1))  # (G, NO, Og)
        out = out.transpose(1, 0, 2).reshape(no, oc)
    out = out.reshape((n,) + outs + (oc,))
    return np.ascontiguousarray(np.moveaxis(out, -1, 1)).astype(x.dtype, copy=False)


def _flip_spatial(ops, w):
    """Reverse every spatial axis of `w` (N, C, *K) with gathers (the flip is its own VJP's partner)."""
    for ax in range(2, len(w.shape)):
        k = w.shape[ax]
        if k == 1:
            continue
        idx = ops.sub(ops.full(k - 1, w.shape, dt.int64), ops.iota(shape=tuple(w.shape), axis=ax, dtype=dt.int64))
        w = ops.gather(w, idx, axis=ax)
    return w


def _conv_vjp(ops, g, inputs, out, strides, padding, dilation, groups):
    x, w = inputs
    xs, ws, gs = tuple(x.shape), tuple(w.shape), tuple(g.shape)
    nsp = len(xs) - 2
    n, c = xs[:2]
    oc = ws[0]
    cg, og = c // groups, oc // groups
    ks = ws[2:]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(xs[2:], padding))

    # ---- input gradient: dilate g by the stride, pad by the dilated kernel, conv with the flipped kernel;
    # where the forward padding fits inside that pad, pad less and compute only the unpadded input's
    # positions (no gradient of the border computed and sliced off)
    lo_p = tuple(d * (k - 1) for d, k in zip(dilation, ks))
    hi_p = tuple(p - (o - 1) * st - 1 for p, o, st in zip(padded, gs[2:], strides))
    direct = all(lp >= lo and hp >= hi for lp, hp, (lo, hi) in zip(lo_p, hi_p, padding))
    if direct:
        lo_p = tuple(lp - lo for lp, (lo, _) in zip(lo_p, padding))
        hi_p = tuple(hp - hi for hp, (_, hi) in zip(hi_p, padding))
    gd = ops.pad(g, lo=(0, 0) + lo_p, hi=(0, 0) + hi_p, interior=(0, 0) + tuple(st - 1 for st in strides),
                 value=0.0)
    wt = ops.reshape(w, shape=(groups, og, cg) + ks)
    wt = ops.permute(wt, perm=(0, 2, 1) + tuple(range(3, 3 + nsp)))
    wt = _flip_spatial(ops, ops.reshape(wt, shape=(c, og) + ks))
    gxp = ops.conv(gd, wt, strides=(1,) * nsp, padding=((0, 0),) * nsp, dilation=tuple(dilation), groups=groups)
    if not direct and any(lo or hi for lo, hi in padding):
        gx = ops.slice(gxp, starts=(0, 0) + tuple(lo for lo, _ in padding),
                       stops=(n, c) + tuple(lo + s for s, (lo, _) in zip(xs[2:], padding)), steps=(1,) * len(xs))
    else:
        gx = gxp

    # ---- weight gradient: batch <-> channels, conv of the padded input with g (stride and dilation swap)
    xp = x
    if any(lo or hi for lo, hi in padding):
        xp = ops.pad(x, lo=(0, 0) + tuple(lo for lo, _ in padding), hi=(0, 0) + tuple(hi for _, hi in padding),
                     interior=(0,) * len(xs), value=0.0)
    xt = ops.reshape(xp, shape=(n, groups, cg) + padded)
    xt = ops.permute(xt, perm=(2, 1, 0) + tuple(range(3, 3 + nsp)))
    xt = ops.reshape(xt, shape=(cg, groups * n) + padded)
    gt = ops.permute(g, perm=(1, 0) + tuple(range(2, 2 + nsp)))  # (OC, N, *O)
    gw = ops.conv(xt, gt, strides=tuple(dilation), padding=((0, 0),) * nsp, dilation=tuple(strides), groups=groups)
    if tuple(gw.shape[2:]) != tuple(ks):
        gw = ops.slice(gw, starts=(0,) * len(xs), stops=(cg, oc) + tuple(ks), steps=(1,) * len(xs))
    gw = ops.permute(gw, perm=(1, 0) + tuple(range(2, 2 + nsp)))  # (OC, Cg, *K)
    return gx, gw


# the input cotangent reads only the weight, the weight cotangent only the input
register("conv", CONV, _conv_rule, _conv_impl, _conv_vjp, 2, _ATTRS, saves="i", save_deps={0: "1", 1: "0"},
         doc="grouped N-d cross-correlation of x (N, C, *S) with w (O, C/groups, *K); "
             "padding is a (lo, hi) pair per spatial dim")

"""The block statements (`tile_mma`, `transpose_copy`) as plain kernel IR, for renderers without
a native form of them (and as a check of their semantics against the numpy evaluator).

`expand_tile_mma(kernel)` rewrites every `TileMMA` into the loops its definition states:

    for i < mr: for j < nr:
        acc = select(accumulate, c[c_index + i*ldc + j], 0)
        for k < kc: acc = fma(a[a_index + k*mr + i], b[b_index + k*nr + j], acc)
        (operands read in place: their steps, `TileMMA.a_step` / `b_step`, instead of mr / nr)
        c[c_index + i*ldc + j] = acc

`expand_transpose_copy(kernel)` every `TransposeCopy` into

    for c < cols: for r < rows: dst[dst_index + c*dst_ld + r] = src[src_index + r*src_ld + c]

and `expand_block_stmts(kernel)` both. The result has only loops, locals, loads and stores: any
renderer of the basic kernel IR runs it (the CUDA emitter may instead map a tile to a thread
block's registers).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Callable

from ..ir import dtypes as dt
from .kir import (Assign, If, KernelFunc, Let, Load, Loop, Stmt, Store, TileMMA, TransposeCopy, Var, const, idx, op,
                  walk_stmts)


def expand_tile_mma(kernel: KernelFunc) -> KernelFunc:
    """A copy of `kernel` with every `tile_mma` statement written out as loops."""
    return _expand(kernel, (TileMMA,))


def expand_transpose_copy(kernel: KernelFunc) -> KernelFunc:
    """A copy of `kernel` with every `transpose_copy` statement written out as loops."""
    return _expand(kernel, (TransposeCopy,))


def expand_block_stmts(kernel: KernelFunc) -> KernelFunc:
    """A copy of `kernel` with every block statement (`tile_mma`, `transpose_copy`) written out."""
    return _expand(kernel, (TileMMA, TransposeCopy))


def _expand(kernel: KernelFunc, kinds: tuple[type, ...]) -> KernelFunc:
    taken = {s.var.name for s in walk_stmts(kernel.body) if isinstance(s, (Loop, Let, Assign))}
    counter = itertools.count()
    dtypes = {p.name: p.dtype for p in kernel.params}

    def fresh(hint: str, d) -> Var:
        while True:
            name = f"_blk_{hint}{next(counter)}"
            if name not in taken:
                taken.add(name)
                return Var(name, d)

    def tile_mma(s: TileMMA) -> Stmt:
        d = dtypes[s.c]
        i, j, k = fresh("i", dt.int64), fresh("j", dt.int64), fresh("k", dt.int64)
        acc = fresh("acc", d)
        at = op("add", s.c_index, op("add", op("mul", i, idx(s.ldc)), j))
        (ars, aks), bks = s.a_step, s.b_step
        av = Load(s.a, op("add", s.a_index, op("add", op("mul", k, idx(aks)), op("mul", i, idx(ars)))), d)
        bv = Load(s.b, op("add", s.b_index, op("add", op("mul", k, idx(bks)), j)), d)
        inner = [Let(acc, const(0, d)),
                 If(s.accumulate, [Assign(acc, Load(s.c, at, d))]),
                 Loop(k, s.kc, [Assign(acc, op("fma", av, bv, acc))]),
                 Store(s.c, at, acc)]
        return Loop(i, idx(s.mr), [Loop(j, idx(s.nr), inner)])

    def transpose_copy(s: TransposeCopy) -> Stmt:
        r, c = fresh("r", dt.int64), fresh("c", dt.int64)
        v = Load(s.src, op("add", s.src_index, op("add", op("mul", r, idx(s.src_ld)), c)), dtypes[s.src])
        at = op("add", s.dst_index, op("add", op("mul", c, idx(s.dst_ld)), r))
        return Loop(c, idx(s.cols), [Loop(r, idx(s.rows), [Store(s.dst, at, v)])])

    rules: dict[type, Callable] = {TileMMA: tile_mma, TransposeCopy: transpose_copy}

    def block(body: list[Stmt]) -> list[Stmt]:
        out: list[Stmt] = []
        for s in body:
            if isinstance(s, kinds):
                out.append(rules[type(s)](s))
            elif isinstance(s, Loop):
                out.append(Loop(s.var, s.extent, block(s.body)))
            elif isinstance(s, If):
                out.append(If(s.cond, block(s.then), block(s.orelse)))
            else:
                out.append(s)
        return out

    return dataclasses.replace(kernel, params=list(kernel.params), body=block(kernel.body),
                               schedule=copy.deepcopy(kernel.schedule))

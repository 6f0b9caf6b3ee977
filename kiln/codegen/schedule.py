"""Scheduling decisions, kept apart from what the kernels compute: which loops run in
parallel (and, later, vector widths and tiling)."""
from __future__ import annotations

from .kir import KernelFunc, Loop, Store, walk_stmts


def schedule_parallel(k: KernelFunc, min_cost: int) -> KernelFunc:
    """Mark the top-level output loops of `k` parallel when it touches at least `min_cost`
    elements. Each iteration of an output nest writes its own elements, so iterations are
    independent (unless the kernel says otherwise: a scatter's updates may collide); small
    kernels stay serial."""
    if k.cost < min_cost or not k.independent_outer:
        return k
    for s in k.body:
        if isinstance(s, Loop) and any(isinstance(x, Store) for x in walk_stmts(s.body)):
            k.schedule.of(s.var).parallel = True
    return k

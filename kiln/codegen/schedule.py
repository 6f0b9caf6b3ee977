"""Scheduling decisions, kept apart from what the kernels compute: which loops run in
parallel (and, later, vector widths and tiling)."""
from __future__ import annotations

from typing import Sequence

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


def barrier_plan(split: Sequence[bool]) -> list[tuple[bool, bool]]:
    """For a program's kernel calls in order (`split[c]`: call c has a parallel loop, so every
    thread runs a share of it), whether call c starts at a barrier and whether it ends at one.

    A split call ends at a barrier (thread 0 must not read its results before the workers are
    done) and starts at one when thread 0 ran serial calls since the last barrier (the workers
    must not read theirs before they are in). A serial call runs on thread 0 alone, between no
    barriers: the workers skip it. Two split calls in a row meet at one barrier between them."""
    plan = []
    pending = False  # serial work by thread 0 since the last barrier
    for s in split:
        plan.append((s and pending, s))
        pending = not s
    return plan

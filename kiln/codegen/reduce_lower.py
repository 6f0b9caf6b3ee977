"""Reduction schedules: small windows unrolled, outer-axis reductions as column blocks, sweeps.

The generic lowering of a reduction kernel (`kiln.codegen.lower`) loops over the kept
("row") axes and opens an accumulation loop per reduction and per row. Two shapes of
reduction run far below memory speed that way, and this module lowers them instead:

- **Windows** (pooling: `reduce_max` / `reduce_sum` over the 2x2 or 3x3 window axes of a
  split view, plus the argmax bookkeeping that max pooling saves for its backward): a
  reduction of at most `WINDOW_UNROLL` elements is written out in the kernel IR, one
  statement per element, with constant window indices (`accumulate_unrolled`). Every
  reduction of the kernel then reads the same window elements through the lowering's
  memo, so the input (and the producer fused into it: bias + ReLU) is read and computed
  once per element, not once per reduction; the full-size outputs written beside the
  window reductions (the ReLU and argmax masks) unroll the same way. The output loop is
  then straight-line code over the contiguous output axis, which LLVM vectorizes with
  interleaved (stride-2) loads and stores.
- **Columns** (a reduction over outer axes that keeps the contiguous last axis: bias
  gradients `sum(dy, 0)` with the optimizer update fused in): `lower_columns` runs the
  reduced axes outside and a block of `width` consecutive columns inside, `width`
  accumulators per reduction, so each step of the reduction loop reads `width`
  contiguous elements (one vector load each, by LLVM's SLP vectorizer) and adds them into
  a vector of partial sums. The blocks of columns are the parallel loop; the epilogue
  (the optimizer update) runs per column after its block; full-size outputs of the kernel
  are stored from the same loop, where their values are computed anyway.
- **Row sweeps** (a reduction over axes that include the last, beside full-size outputs that
  do not read it: a conv's bias gradient `sum(dy, (0, 2, 3))` in the kernel that writes `dy`):
  `lower_row_sweep` stores the full-size outputs from the reduction's own loop, so each element
  is computed once, not once for the reduction and again in a second loop nest; a pool
  gradient's sweep takes a vector of consecutive elements per step, one accumulator each.
"""
from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from ..ir.graph import Node
from . import index as ix
from .emitter import Emitter
from .host import host_info
from .kir import Expr, const, idx, op
from .scalar_rules import cast_value

if TYPE_CHECKING:  # the lowering object of kiln.codegen.lower, passed in by it
    from .lower import _KernelLowering

# a reduction over at most this many elements (a pooling window: 2x2, 3x3, 2x2x2) is unrolled
WINDOW_UNROLL = 16
# column blocks: 4 vectors of accumulators per reduction while the kernel is this small (nodes),
# one vector above it (a long fused body, written out once per column, would grow too much)
WIDE_BLOCK_NODES = 24
BLOCK_VECTORS = 4
# an elementwise kernel's last axis is split into at most this many lanes (a pooling window's width)
MAX_LANES = 4

ASSOCIATIVE_REDUCTIONS = frozenset({"reduce_sum", "reduce_prod", "reduce_max", "reduce_min"})
_REDUCE_PRIMS = ASSOCIATIVE_REDUCTIONS | {"argmax", "argmin"}


def combine(prim: str, acc: Expr, v: Expr) -> Expr:
    """One step of reduction `prim`: the accumulator `acc` with the next element `v` (same dtype).
    Float max/min propagate nan (numpy's maximum); bools reduce with or/and."""
    d = acc.dtype
    if prim == "reduce_sum":
        return op("or", acc, v) if d.is_bool else op("add", acc, v)
    if prim == "reduce_prod":
        return op("and", acc, v) if d.is_bool else op("mul", acc, v)
    if d.is_bool:
        return op("or" if prim == "reduce_max" else "and", acc, v)
    return op("max" if prim == "reduce_max" else "min", acc, v)


def accumulator_dtype(d: DType) -> DType:
    """float16 sums and products accumulate in float32, every other dtype in itself."""
    return dt.float32 if d == dt.float16 else d


def is_window(extents: Sequence[int]) -> bool:
    """Is a reduction over these extents small enough to be written out element by element?"""
    return math.prod(extents) <= WINDOW_UNROLL


def accumulate_unrolled(em: Emitter, extents: Sequence[int], body: Callable, inits: Sequence[Expr]) -> list[Expr]:
    """`_accumulate` without loops: `body(index constants, accs) -> new accs` once per element of
    the window, in row-major order (the loop's order, so results match it bit for bit)."""
    accs = list(inits)
    for pos in itertools.product(*(range(e) for e in extents)):
        new = body([idx(p) for p in pos], accs)
        accs = [em.bind(v, "a") for v in new]
    return accs


def window_positions(domain: Sequence[int], axes: Sequence[int]) -> list[dict[int, Expr]]:
    """Every position of the window axes `axes` of `domain`, as {axis: constant}, row-major."""
    return [{a: idx(p) for a, p in zip(axes, pos)}
            for pos in itertools.product(*(range(domain[a]) for a in axes))]


def lane_split(low: "_KernelLowering", domain: Sequence[int]) -> int:
    """How many lanes to split the last axis of an elementwise kernel's `domain` into: k when a
    reshape of the kernel splits an axis of that length into (length / k, k) with k <= MAX_LANES
    (a pooling window's axis: the gradient of max / average pooling scatters into it), else 1.
    The loop then runs over length / k with k stores per step, and the reshape's index
    arithmetic (`index.delinearize`) resolves without division."""
    if not domain:
        return 1
    n = domain[-1]
    for m in low.k.nodes:
        if m.op != "reshape" or id(m) in low.inputs:
            continue
        for merged, split in ((m.shape, m.inputs[0].shape), (m.inputs[0].shape, m.shape)):
            if (merged and len(split) >= 2 and merged[-1] == n and split[-2] * split[-1] == n
                    and 1 < split[-1] <= MAX_LANES):
                return split[-1]
    return 1


def _reads_reduction(low: "_KernelLowering", o: Node) -> bool:
    """Does kernel value `o` depend on a reduction computed in this kernel?"""
    stack, seen = [o], set()
    while stack:
        n = stack.pop()
        if id(n) in seen or id(n) not in low.members or id(n) in low.inputs:
            continue
        seen.add(id(n))
        if n.op in ("reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "argmax", "argmin"):
            return True
        stack.extend(n.inputs)
    return False


def lower_columns(low: "_KernelLowering", full: Sequence[Node], rows: Sequence[Node],
                  domain: tuple[int, ...], R: tuple[int, ...]) -> bool:
    """Write a reduction kernel whose reduced axes `R` keep the last (contiguous) axis of
    `domain` as column blocks (see the module docstring): for each block of `width` columns,
    the reduction loops over `R` with `width` accumulators per reduction, the full-size
    outputs stored inside them, then the row outputs per column. The last `n % width` columns
    are one narrower block. Returns False (nothing emitted) when it does not apply: the last
    axis is reduced, no reduction of the kernel runs over (domain, R), a full-size output
    reads a reduction, the kept axis is narrower than a vector, or the lowering is for a GPU
    (`cpu_blocking` off: its threads take the columns)."""
    last = len(domain) - 1
    if not low.cpu_blocking or not rows or not R or last in R:
        return False  # (a GPU maps the columns to threads itself)
    reds = [m for m in low.k.nodes if m.op in ASSOCIATIVE_REDUCTIONS and id(m) not in low.inputs
            and tuple(m.inputs[0].shape) == tuple(domain) and tuple(sorted(m.attrs["axes"])) == tuple(R)]
    if not reds or any(_reads_reduction(low, o) for o in full):
        return False
    n = domain[last]
    itemsize = max(accumulator_dtype(m.inputs[0].dtype).itemsize for m in reds)
    vec = host_info().lanes(itemsize)
    if n < vec:
        return False
    width = BLOCK_VECTORS * vec if n >= BLOCK_VECTORS * vec and len(low.k.nodes) <= WIDE_BLOCK_NODES else vec
    em = low.em
    kept = [d for d in range(len(domain)) if d not in R]
    lead: dict[int, Expr] = {}
    tokens = []
    for d in kept[:-1]:
        if domain[d] == 1:
            lead[d] = idx(0)
            continue
        lead[d], t = em.open_loop(domain[d], hint="i")
        tokens.append(t)
    blocks = n // width
    _column_block(low, reds, full, rows, domain, R, lead, blocks, width, 0)
    if n % width:  # the last columns: one narrower block (a loop of one: the outer loop of its kernel)
        _column_block(low, reds, full, rows, domain, R, lead, 1, n % width, blocks * width)
    for t in reversed(tokens):
        em.close_loop(t)
    return True


def _column_block(low: "_KernelLowering", reds: Sequence[Node], full: Sequence[Node], rows: Sequence[Node],
                  domain: tuple[int, ...], R: tuple[int, ...], lead: dict[int, Expr],
                  count: int, width: int, offset: int) -> None:
    em = low.em
    jb, token = em.open_loop(count, hint="jb")
    level = len(em.frames) - 1
    base = op("add", op("mul", jb, idx(width)), idx(offset))
    cols = [op("add", base, idx(t)) for t in range(width)]
    last = len(domain) - 1

    def position(rv: Sequence[Expr], c: Expr) -> ix.Index:
        at = dict(lead)
        at.update(zip(R, rv))
        at[last] = c
        return tuple(at[d] for d in range(len(domain)))

    def body(rv, accs):
        new = []
        for m in reds:
            x = m.inputs[0]
            for c in cols:
                v = low.value(x, position(rv, c))
                new.append(combine(m.op, accs[len(new)], cast_value(v, accs[len(new)].dtype)))
        for o in full:
            for c in cols:
                p = position(rv, c)
                low.store(o, ix.reshape_index(p, domain, o.shape) if tuple(o.shape) != domain else p)
        return new

    inits = [reduce_init(m.op, accumulator_dtype(m.inputs[0].dtype)) for m in reds for _ in cols]
    accs = low._accumulate([domain[d] for d in R], body, inits, level)
    row_shape = [domain[d] for d in range(len(domain)) if d not in R]
    for k, m in enumerate(reds):  # the reductions' values, where the epilogue will look them up
        for t, c in enumerate(cols):
            v = em.bind(cast_value(accs[k * width + t], m.dtype), "v")
            rix = tuple(c if d == last else lead[d] for d in range(len(domain)) if d not in R)
            key = (tuple(idx(0) if d in R else (c if d == last else lead[d]) for d in range(len(domain)))
                   if m.attrs.get("keepdims", False) else rix)
            em.remember((id(m), key), v)
    for c in cols:
        rix = tuple(c if d == last else lead[d] for d in range(len(domain)) if d not in R)
        for o in rows:
            low.store(o, ix.reshape_index(tuple(rix), row_shape, o.shape)
                      if tuple(o.shape) != tuple(row_shape) else rix)
    em.close_loop(token)


def lower_row_sweep(low: "_KernelLowering", full: Sequence[Node], rows: Sequence[Node],
                    domain: tuple[int, ...], R: tuple[int, ...]) -> bool:
    """Write a reduction kernel that reduces the last axis of `domain` (with others, `R`) and also
    writes full-size outputs that do not read its reductions, in one sweep: per row (the kept
    axes), the reduction loops compute each element once, store the full-size outputs and add it
    into the accumulators; the row outputs follow the loops. (The generic lowering reads and
    computes every element twice: once in the reduction's loop, once in a second loop nest for the
    full-size outputs.) When a reshape splits the last axis (`lane_split`: a pooling window's
    gradient) it runs in lanes, the pooled value read once per window row with no division in the
    index, one scalar accumulator per lane (two add chains); otherwise one loop whose single
    accumulator per reduction, `acc = acc op v`, is the loop reduction LLVM vectorizes. The conv's
    bias gradient fused with ReLU and max-pool backward (`sum(dy, (0, 2, 3))` beside `dy` itself)
    is this shape. Returns False (nothing emitted) when it does not apply: no
    full-size or row outputs, the last axis kept (`lower_columns`), a window reduction, a
    reduction of the kernel over other axes or not associative, a full-size output reading a
    reduction, or a GPU lowering (`cpu_blocking` off)."""
    last = len(domain) - 1
    if not low.cpu_blocking or not full or not rows or last not in R or is_window([domain[d] for d in R]):
        return False
    reds = [m for m in low.k.nodes if m.op in _REDUCE_PRIMS and id(m) not in low.inputs]
    if not reds or any(m.op not in ASSOCIATIVE_REDUCTIONS or tuple(m.inputs[0].shape) != tuple(domain)
                       or tuple(sorted(m.attrs["axes"])) != tuple(R) for m in reds):
        return False
    if any(_reads_reduction(low, o) for o in full):
        return False
    em = low.em
    kept = [d for d in range(len(domain)) if d not in R]
    lead: dict[int, Expr] = {}
    tokens = []
    for d in kept:
        if domain[d] == 1:
            lead[d] = idx(0)
            continue
        lead[d], t = em.open_loop(domain[d], hint="i")
        tokens.append(t)
    level = len(em.frames) - 1
    lanes = lane_split(low, domain)
    extents = [domain[d] for d in R]
    extents[-1] //= lanes
    # lanes (a pool gradient): a chunk of `chunk` steps of the last axis per iteration, one
    # accumulator per element, so the chunk's elements are consecutive and LLVM's SLP vectorizer
    # makes its loads, stores and accumulators vectors (one scalar add chain per lane, which LLVM
    # may not reorder, left the loop scalar); without lanes the single accumulator per reduction
    # is the renderer's reassociable loop reduction, vectorized as it is
    itemsize = max(accumulator_dtype(m.inputs[0].dtype).itemsize for m in reds)
    chunk = _chunk(extents[-1], host_info().lanes(itemsize) // lanes) if lanes > 1 else 1
    extents[-1] //= chunk
    width = chunk * lanes

    def position(rv: Sequence[Expr], t: int) -> ix.Index:
        at = dict(lead)
        at.update(zip(R, rv))
        if width > 1:  # step * width + t: consecutive; a split of the axis needs no division (index._exact_split)
            at[last] = op("add", op("mul", rv[-1], idx(width)), idx(t))
        return tuple(at[d] for d in range(len(domain)))

    def body(rv, accs):  # one accumulator per chunk element and reduction, each `acc = acc op v`
        new = []
        for t in range(width):
            p = position(rv, t)
            for m in reds:
                a = accs[len(new)]
                new.append(combine(m.op, a, cast_value(low.value(m.inputs[0], p), a.dtype)))
            for o in full:
                low.store(o, ix.reshape_index(p, domain, o.shape) if tuple(o.shape) != domain else p)
        return new

    inits = [reduce_init(m.op, accumulator_dtype(m.inputs[0].dtype)) for _ in range(width) for m in reds]
    part_accs = low._accumulate(extents, body, inits, level)
    accs = []
    for k, m in enumerate(reds):  # the partial results, combined pairwise (a tree, as numpy's sum)
        part: list[Expr] = [part_accs[t * len(reds) + k] for t in range(width)]
        while len(part) > 1:
            part = [em.bind(combine(m.op, part[t], part[t + 1]), "h") if t + 1 < len(part) else part[t]
                    for t in range(0, len(part), 2)]
        accs.append(part[0])
    row_shape = [domain[d] for d in kept]
    rix = tuple(lead[d] for d in kept)
    for m, acc in zip(reds, accs):  # the reductions' values, where the row outputs will look them up
        key = (tuple(idx(0) if d in R else lead[d] for d in range(len(domain)))
               if m.attrs.get("keepdims", False) else rix)
        em.remember((id(m), key), em.bind(cast_value(acc, m.dtype), "v"))
    for o in rows:
        low.store(o, ix.reshape_index(rix, row_shape, o.shape) if tuple(o.shape) != tuple(row_shape) else rix)
    for t in reversed(tokens):
        em.close_loop(t)
    return True


def _chunk(n: int, limit: int) -> int:
    """The largest power of two <= `limit` that divides `n` (1 when none does)."""
    c = 1
    while c * 2 <= limit and n % (c * 2) == 0:
        c *= 2
    return c


def reduce_init(prim: str, d: DType) -> Expr:
    """The identity of reduction `prim` in dtype `d` (max: -inf / the dtype's minimum, ...)."""
    if prim == "reduce_sum":
        return const(0, d)
    if prim == "reduce_prod":
        return const(1, d)
    if d.is_floating_point:
        return const(float("-inf") if prim == "reduce_max" else float("inf"), d)
    if d.is_bool:
        return const(prim != "reduce_max", d)
    info = np.iinfo(d.np_dtype)
    return const(int(info.min) if prim == "reduce_max" else int(info.max), d)

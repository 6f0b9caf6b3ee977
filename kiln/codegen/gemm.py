"""kiln's own GEMM: a matmul kernel lowered to packed panels, cache blocks and a register-tile
microkernel (`TileMMA`), with the fusion plan's prologue and epilogue inside its loops.

The loop nest (one plan kernel; see docs/gemm.md):

    for slot, t in tasks:                        # parallel over slots; t: (batch, row group, column block)
      for pc in K / kc:                          # depth block
        pack B[pc-block, t's columns] -> Bp[t]   # nr-column panels, k-major (prologue: value(b, ...))
        for ic in t's rows / mc:                 # row block
          pack A[ic-block, pc-block] -> Ap[t]    # mr-row panels, k-major (prologue: value(a, ...))
          for q in panels of Bp:                 # the b panel stays in L1 ...
            for p in panels of Ap:               # ... while a panels stream from L2
              tile_mma Cs[t] tile += Ap panel p x Bp panel q
              if pc is the last block:           # epilogue on the tile while it is hot
                for i, j in the tile's valid part: outputs[pos] = epilogue(Cs tile[i, j])

Blocking comes from the host (`kiln.codegen.host`): nr = two vector registers of lanes, mr
as many rows as the registers hold (12 with 32 registers, 6 with 16), kc so a b panel fills
L1, mc so an A block fills half of L2, nc so a B block stays well inside L3.
Operands are read through `value(node, index)` while packing, so transposes, strided
views, broadcasts and zero pads cost nothing beyond the packing itself; edge panels are
filled with clamped (real) elements, and only the valid part of a tile is written out.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..ir import dtypes as dt
from ..ir.graph import Node
from . import index as ix
from .host import HostInfo, host_info
from .kir import Expr, Store, TileMMA, idx, op
from .scalar_rules import SCALAR_RULES

# Below MIN_DIM rows, columns or depth, or fewer multiply-adds per matrix than
# `Blocking.min_macs`, packing does not pay: the unpacked kernels of lower.py run. Measured on
# the development box, 1 thread, GEMM / unpacked time (m x k x n; noisy, load 9-11): 64^3 1.09,
# 128^3 0.82, 4x256x256 1.4, 8x256x256 0.93, 256x256x4 1.6, 256x256x8 0.55, 256x256x16 1.0,
# 1024x1024x8 0.45, 1024x1024x16 1.1, 64x784x128 0.6.
MIN_DIM = 8
MIN_MACS = 80 ** 3
SLOTS_PER_THREAD = 4  # scratch slots (each a set of panels and a C block) per CPU
# From this many multiply-adds a product is cut into a task per thread and its kernel reports
# them as its cost, so it runs threaded (the backend's PARALLEL_MIN_COST is also 2^21): ~4
# MFLOP, ~50 us on one core, against ~8 us to start the native workers and a barrier. A
# 64x784x128 product (6.4M) is split in two; 64x128x64 (0.5M) stays on one thread.
THREAD_MIN_MACS = 1 << 21


@dataclass(frozen=True)
class Blocking:
    """Microkernel tile (mr x nr) and cache blocks (kc deep, mc rows, nc columns)."""
    mr: int
    nr: int
    kc: int
    mc: int
    nc: int
    min_macs: int = MIN_MACS  # smaller products take the unpacked paths

    def __post_init__(self):
        for name in ("mr", "nr", "kc", "mc", "nc", "min_macs"):
            if getattr(self, name) < 1:
                raise ValueError(f"GEMM blocking: {name}={getattr(self, name)} must be >= 1")
        if self.mc % self.mr or self.nc % self.nr:
            raise ValueError(f"GEMM blocking: mc={self.mc} must be a multiple of mr={self.mr} and "
                             f"nc={self.nc} of nr={self.nr}")


_override: Blocking | None = None


@contextlib.contextmanager
def override_blocking(b: Blocking) -> Iterator[None]:
    """Lower GEMMs with blocking `b` inside the block (tests use tiny blocks to reach every edge)."""
    global _override
    old, _override = _override, b
    try:
        yield
    finally:
        _override = old


def _round_down(v: int, m: int) -> int:
    return max(m, v // m * m)


def host_blocking(itemsize: int, host: HostInfo | None = None) -> Blocking:
    """The blocking for `itemsize`-byte floats on `host` (default: this machine)."""
    if _override is not None:
        return _override
    h = host or host_info()
    lanes = h.lanes(itemsize)
    nr = 2 * lanes
    # 2 * mr accumulator registers, 2 for the b row, 1 for a broadcast, 1 spare
    mr = max(1, min(12, (h.vector_registers - 4) // 2))
    # a b panel fills L1d (measured on Zen 4, 1024^3: kc=256 beat 128 by 10-30% and 384, 512 too)
    kc = max(32, min(512, _round_down(h.l1d // (nr * itemsize), 8)))
    mc = max(mr, min(1536, _round_down(h.l2 // 2 // (kc * itemsize), mr)))
    nc = max(nr, min(4096, _round_down(h.l3 // 4 // (kc * itemsize), nr)))
    return Blocking(mr, nr, kc, mc, nc)


TILE_WASTE = 0.05  # padded rows a task may compute past its own before a shorter tile is tried


def tile_rows(rows: int, blk: Blocking) -> int:
    """The microkernel's row count for a task of `rows` rows: the blocking's mr, unless its edge
    panel would pad the task by more than TILE_WASTE; then the mr' in [max(4, mr/2), mr] that
    pads least (the largest on a tie). 64 rows under mr=12 compute 72 (12% wasted); mr=8 fits
    them exactly, at the same FMAs per load in the k loop (16 accumulators instead of 24)."""
    def padded(r: int) -> int:
        return _ceil(rows, r) * r
    if padded(blk.mr) <= rows * (1 + TILE_WASTE):
        return blk.mr
    return min(range(blk.mr, max(4, blk.mr // 2) - 1, -1), key=lambda r: (padded(r), -r), default=blk.mr)


def host_threads() -> int:
    """CPUs this process may run on (the task split aims at a multiple of it)."""
    import os
    from .. import config
    n = config.get().num_threads
    if n:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def balanced_block(total: int, cap: int, multiple: int) -> int:
    """The block size that cuts `total` into as few blocks of at most about `cap` as possible,
    all about equal (1024 rows under a cap of 1020 make two blocks of 516, not 1020 + 4),
    rounded up to `multiple`."""
    blocks = _ceil(total, max(cap, 1))
    return _ceil(_ceil(total, blocks), multiple) * multiple


def _cdiv(e: Expr, b: int) -> Expr:
    return op("div", op("add", e, idx(b - 1)), idx(b))


def _min(a: Expr, b: Expr) -> Expr:
    return op("min", a, b)


def epilogue_is_pointwise(mm: Node, kernel_nodes: Sequence[Node]) -> bool:
    """Does every node computed from the matmul's result read it at the same element (elementwise
    ops over its shape, and reshapes, which keep the flat order)? Then a tile's epilogue needs
    only that tile."""
    after = {id(mm)}
    for m in kernel_nodes:
        if any(id(i) in after for i in m.inputs):
            if m.numel != mm.numel or (m.op not in SCALAR_RULES and m.op != "reshape"):
                return False
            after.add(id(m))
    return True


def applies(mm: Node, kernel_nodes: Sequence[Node]) -> bool:
    """Should this matmul anchor lower to the packed GEMM?"""
    a, b = mm.inputs
    if mm.dtype not in (dt.float32, dt.float64) or a.dtype != mm.dtype or b.dtype != mm.dtype:
        return False
    return packs(mm.shape[-2], mm.shape[-1], a.shape[-1], mm.dtype.itemsize) and \
        epilogue_is_pointwise(mm, kernel_nodes)


def packs(m: int, n: int, k: int, itemsize: int) -> bool:
    """Does an m x k @ k x n product of `itemsize`-byte floats pay for packing?"""
    blk = host_blocking(itemsize)
    return min(m, n, k) >= MIN_DIM and m * n * k >= blk.min_macs


@dataclass(frozen=True)
class TaskSplit:
    """How the work is cut into independent tasks: batch x row groups (mg of rows_per_group
    rows) x column blocks (nj of nc columns)."""
    batch: int
    mg: int
    rows_per_group: int
    nj: int
    nc: int

    @property
    def tasks(self) -> int:
        return self.batch * self.mg * self.nj


def split_tasks(batch: int, m: int, n: int, k: int, blk: Blocking, threads: int) -> TaskSplit:
    """At least `threads` tasks when the product is large enough to thread (splitting the
    longer of M and N; each task packs its own panels), else one per batch and column block."""
    nc = min(blk.nc, _ceil(n, blk.nr) * blk.nr)
    rows = m
    want = threads if batch < threads and m * n * k >= THREAD_MIN_MACS else 1
    nj = _ceil(n, nc)
    if batch * nj < want:
        if n >= m and n >= want * blk.nr:
            nc = _ceil(_ceil(n, want), blk.nr) * blk.nr
            nj = _ceil(n, nc)
        elif m >= want * blk.mr:
            rows = _ceil(_ceil(m, want), blk.mr) * blk.mr
    mg = _ceil(m, rows)
    return TaskSplit(batch, mg, rows, nj, nc)


def last_axis_contiguous(low, n: Node) -> bool:
    """Is `n`'s last axis contiguous in the memory it is read from? (Views that keep the last
    axis last lead to a kernel input; a graph input may arrive as a strided view.)"""
    while id(n) in low.members and id(n) not in low.inputs:
        if n.op == "permute" and n.attrs["perm"][-1] == len(n.shape) - 1:
            n = n.inputs[0]
        elif n.op == "broadcast_to" and n.inputs[0].shape and n.inputs[0].shape[-1] == n.shape[-1]:
            n = n.inputs[0]
        elif n.op == "slice" and n.attrs["steps"][-1] == 1:
            n = n.inputs[0]
        else:
            return False
    strides = low.strides.get(id(n))
    return strides is None or not n.shape or n.shape[-1] == 1 or strides[-1] == 1


def lower_gemm(low, outputs: Sequence[Node]) -> None:
    """Write the matmul kernel's `outputs` (each of the anchor's numel) through the packed GEMM.
    `low` is the kernel's `_KernelLowering` (lower.py): its emitter, `value`, `store`, scratch."""
    mm = low.k.anchor
    a, b = mm.inputs
    d = mm.dtype
    batch_shape = tuple(mm.shape[:-2])
    nb = math.prod(batch_shape)
    M, N, K = mm.shape[-2], mm.shape[-1], a.shape[-1]
    blk = host_blocking(d.itemsize)
    KC = balanced_block(K, blk.kc, 1)
    sp = split_tasks(nb, M, N, K, blk, host_threads())
    NC, RG = sp.nc, sp.rows_per_group
    MR, NR = tile_rows(RG, blk), blk.nr
    MC = balanced_block(RG, blk.mc, MR)       # a multiple of MR: row blocks never share a tile
    ncp = _ceil(NC, NR) * NR                  # columns of a task's C block / B panel set
    rgp = _ceil(RG, MR) * MR                  # rows of a task's C block
    asz, bsz, csz = MC * KC, KC * ncp, rgp * ncp
    T = sp.tasks
    # scratch slots: each runs its tasks one after another in its own panels and C block, so
    # the scratch is bounded however many tasks there are (a batch of 10^4 small matrices)
    S = min(T, SLOTS_PER_THREAD * host_threads())
    ap = low.scratch_param(mm, S * asz, "gemm_a")
    bp = low.scratch_param(mm, S * bsz, "gemm_b")
    cs = low.scratch_param(mm, S * csz, "gemm_c")
    em = low.em

    tokens = []

    def open_(extent, hint):
        v, t = em.open_loop(extent, hint=hint)
        tokens.append(t)
        return v

    def close_to(depth):
        while len(tokens) > depth:
            em.close_loop(tokens.pop())

    slot = open_(S, "slot")  # the parallel loop: threads take whole slots
    t = op("add", slot, op("mul", open_(_cdiv(op("sub", idx(T), slot), S), "task"), idx(S)))
    bt = op("div", t, idx(sp.mg * sp.nj))
    g = op("rem", op("div", t, idx(sp.nj)), idx(sp.mg))
    jc = op("rem", t, idx(sp.nj))
    batch = list(ix.delinearize(bt, batch_shape)) if batch_shape else []
    row0 = op("mul", g, idx(RG))
    rows = _min(idx(RG), op("sub", idx(M), row0))
    col0 = op("mul", jc, idx(NC))
    cols = _min(idx(NC), op("sub", idx(N), col0))
    nq = _cdiv(cols, NR)
    abase, bbase, cbase = (op("mul", slot, idx(s)) for s in (asz, bsz, csz))

    # the product's value at any position of this task's block: its element of the C block
    def c_addr(index: ix.Index) -> Expr:
        r, c = index[-2], index[-1]
        return op("add", cbase, op("add", op("mul", op("sub", r, row0), idx(ncp)), op("sub", c, col0)))
    low.inputs.add(id(mm))  # from here on the product is read, from the C blocks
    low.addressers[id(mm)] = (cs, c_addr)

    npc = _ceil(K, KC)
    pc = open_(npc, "pc")
    k0 = op("mul", pc, idx(KC))
    kc = _min(idx(KC), op("sub", idx(K), k0))
    depth = len(tokens)

    # pack B: panel q, k-major, nr columns per k; clamped columns fill the edge panel
    q = open_(nq, "qb")
    if last_axis_contiguous(low, b):
        kk, j = open_(kc, "kb"), open_(NR, "jb")
    else:  # read along k; the panel is written nr apart: scalar copies (a scatter is slower)
        j, kk = open_(NR, "jb"), open_(kc, "kb")
        low.vector_hints[kk.name] = 1
    col = _min(op("add", col0, op("add", op("mul", q, idx(NR)), j)), idx(N - 1))
    v = low.value(b, tuple(batch + [op("add", k0, kk), col]))
    dst = op("add", bbase, op("add", op("mul", q, op("mul", kc, idx(NR))), op("add", op("mul", kk, idx(NR)), j)))
    em.emit(Store(bp, dst, v), em.level(v, dst))
    close_to(depth)

    ic = open_(_cdiv(rows, MC), "ic")
    r0 = op("mul", ic, idx(MC))
    mrows = _min(idx(MC), op("sub", rows, r0))
    npan = _cdiv(mrows, MR)
    depth_ic = len(tokens)

    # pack A: panel p, k-major, mr rows per k; clamped rows fill the edge panel
    p = open_(npan, "pa")
    if last_axis_contiguous(low, a):  # read along k; written mr apart: scalar copies
        i, kk = open_(MR, "ia"), open_(kc, "ka")
        low.vector_hints[kk.name] = 1
    else:
        kk, i = open_(kc, "ka"), open_(MR, "ia")
    row = _min(op("add", row0, op("add", r0, op("add", op("mul", p, idx(MR)), i))), idx(M - 1))
    v = low.value(a, tuple(batch + [row, op("add", k0, kk)]))
    dst = op("add", abase, op("add", op("mul", p, op("mul", kc, idx(MR))), op("add", op("mul", kk, idx(MR)), i)))
    em.emit(Store(ap, dst, v), em.level(v, dst))
    close_to(depth_ic)

    q = open_(nq, "q")
    p = open_(npan, "p")
    tile_r = op("add", r0, op("mul", p, idx(MR)))    # the tile's first row within the task's rows
    tile_c = op("mul", q, idx(NR))
    em.emit(TileMMA(cs, op("add", cbase, op("add", op("mul", tile_r, idx(ncp)), tile_c)), ncp,
                    ap, op("add", abase, op("mul", p, op("mul", kc, idx(MR)))),
                    bp, op("add", bbase, op("mul", q, op("mul", kc, idx(NR)))),
                    kc, MR, NR, op("gt", pc, idx(0))), len(em.frames) - 1)
    # the epilogue, once the last depth block is in: a loop of one iteration (or none)
    open_(op("select", op("eq", pc, idx(npc - 1)), idx(1), idx(0)), "last")
    i = open_(_min(idx(MR), op("sub", mrows, op("mul", p, idx(MR)))), "i")
    j = open_(_min(idx(NR), op("sub", cols, tile_c)), "j")
    pos = tuple(batch + [op("add", row0, op("add", tile_r, i)), op("add", col0, op("add", tile_c, j))])
    domain = tuple(mm.shape)
    for o in outputs:
        low.store(o, ix.delinearize(ix.linearize(pos, domain), o.shape) if tuple(o.shape) != domain else pos)
    close_to(0)
    low.flop_cost = nb * M * N * K  # one multiply-add counts as one element touched

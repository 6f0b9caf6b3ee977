"""Convolutions with a long reduction and a small output (weight gradients) as a packed GEMM,
the im2col matrix packed on the fly.

A conv y[b, o, *p] = sum over (c, *k) of x[b, g*Cg + c, *(p*stride + k*dilation)] * w[o, c, *k]
is, per group g, the product C = A @ B of

    A[i, kk] = x[b, g*Cg + c, *(p*stride + k*dilation)]   rows i = (b, *p), depth kk = (c, *k)
    B[kk, j] = w[g*Og + j, c, *k]                          columns j = the group's output channels

A weight gradient (`kiln.ir.primitives.conv`'s VJP: the "kernel" is the forward's output
gradient, the output the forward's kernel taps) has a tiny M (input channels x taps) and N
(output channels) and a huge depth (batch x output positions): the register blocks of
`conv_lower` reuse each load only a few times there, while the packed GEMM's microkernel
(`tile_mma`, docs/gemm.md) makes 2*mr FMAs per 2 + mr loads. Here the packing *is* the im2col:
each task copies, per depth block, the mr-row panels of A straight from `x` (and the nr-column
panels of B from `w`) into its scratch, so the im2col matrix never exists whole.

The loop nest is the GEMM's (`kiln.codegen.gemm.lower_gemm`): tasks over (group, row group,
column block), parallel over slots; depth blocks over (c, a run of kernel rows, a run of the
kernel's last dimension), so the packing walks `x` and `w` along their contiguous last axis
without a division per element; after the last depth block each tile runs the fusion plan's
epilogue (the optimizer update of a weight) on its elements while they are in cache. Rows are
split between the threads in panels of at most the host's mr rows, balanced (27 rows on two
threads: 2 x 2 panels of 7, not 24 + 3).
"""
from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from ..ir import dtypes as dt
from ..ir.graph import Node
from . import index as ix
from .host import host_info
from .gemm import MIN_DIM, SLOTS_PER_THREAD, TaskSplit, balanced_block, host_blocking, host_threads
from .kir import Const, Expr, Store, TileMMA, idx, op
from .scalar_rules import SCALAR_RULES

if TYPE_CHECKING:  # the lowering object of kiln.codegen.lower, passed in by it
    from .lower import _KernelLowering

# the shape the packed path is for: a reduction long against the output (the CNN's weight
# gradients: depth / max(M, N) = 57 and 2048); forward convs (depth 27 and 288 against 65536
# rows) stay with conv_lower's rows blocks, which reach the peak there
MIN_DEPTH_RATIO = 8  # depth >= MIN_DEPTH_RATIO * max(M, N)
THREAD_MACS = 1 << 21  # below this many multiply-adds one task: threads would not pay
# cost model (cycles per thread, `packed_pays`), in units of one microkernel vector FMA: A's
# rows are packed by vector copies (one per `lanes` elements), B's transpose by scalar copies
# (B_COPY_COST each); conv_lower's taps blocks (4 vector FMAs per 5 loads, re-reading the output
# gradient from L2/L3 for every block of outputs) cost BLOCKED_CYCLES_PER_FMA per vector FMA.
# Calibrated on the CNN's weight gradients (thread CPU time, one core, float32): conv1 (M=27,
# N=32, K=65536) packed 2.1-2.4 ms, of which B's copies 1.1, taps 3.6; conv2 (M=288, N=64,
# K=16384) packed 6.4-6.7, taps 14.6
BLOCKED_CYCLES_PER_FMA = 3.2
B_COPY_COST = 1.7
COPY_UNROLL = 8  # taps per block of B's transposing copy (unrolled: LLVM's unroller is off)

IndexMap = Callable[[ix.Index], ix.Index]


def gemm_shape(conv: Node) -> tuple[int, int, int, int]:
    """(groups, M, N, K) of `conv` as a GEMM per group."""
    x, w = conv.inputs
    groups = conv.attrs["groups"]
    return groups, conv.shape[0] * math.prod(conv.shape[2:]), w.shape[0] // groups, w.shape[1] * math.prod(w.shape[2:])


def applies(conv: Node) -> bool:
    """Can `conv` lower to the packed im2col GEMM, and is it the shape it is for? float32/float64,
    no padding (made explicit by `kiln.passes.conv_padding`), and a depth long against its rows
    and columns. (Any stride and dilation: the packing reads `x` through them; with a unit
    dilation along the last kernel axis, the weight gradient of a unit-stride conv, it reads
    contiguous runs.)"""
    if conv.dtype not in (dt.float32, dt.float64) or conv.numel == 0:
        return False
    if any(lo or hi for lo, hi in conv.attrs["padding"]):
        return False
    _, m, n, k = gemm_shape(conv)
    return min(m, n, k) >= MIN_DIM and k >= MIN_DEPTH_RATIO * max(m, n)


_forced: bool | None = None


@contextlib.contextmanager
def force_packed(on: bool) -> Iterator[None]:
    """Inside the block, every conv that `applies` takes the packed path (True) or none does
    (False), whatever the cost model says: tests reach both paths on the same shapes."""
    global _forced
    old, _forced = _forced, on
    try:
        yield
    finally:
        _forced = old


def packed_pays(conv: Node, threads: int | None = None) -> bool:
    """Is the packed GEMM cheaper than conv_lower's taps blocks for `conv` (the cost model above)?"""
    G, M, N, K = gemm_shape(conv)
    threads = threads or host_threads()
    blk = host_blocking(conv.dtype.itemsize)
    lanes = host_info().lanes(conv.dtype.itemsize)
    sp, mr = split_rows(G, M, N, K, threads, blk.mr, blk.nr, blk.nc)
    rows = -(-sp.rows_per_group // mr) * mr
    cols = -(-min(N, sp.nc) // blk.nr) * blk.nr
    packed = -(-sp.tasks // threads) * K * (rows / lanes + B_COPY_COST * cols + rows * cols / lanes)
    blocked = BLOCKED_CYCLES_PER_FMA * G * M * N * K / lanes / threads
    return packed < blocked


def output_maps(conv: Node, nodes: Sequence[Node], outputs: Sequence[Node]) -> dict[int, IndexMap] | None:
    """For each output, the map from a conv position to the output's index whose value reads the
    conv there and nowhere else (elementwise ops, reshapes and permutes of the product); None when
    some node reads the product otherwise (a reduction, a broadcast of it): then a tile's epilogue
    would need elements of other tiles."""
    maps: dict[int, IndexMap] = {id(conv): lambda pos: pos}
    for m in nodes:
        deps = [i for i in m.inputs if id(i) in maps]
        if not deps or m is conv:
            continue
        src = deps[0]
        f = maps[id(src)]
        if m.op in SCALAR_RULES:
            if any(tuple(d.shape) != tuple(m.shape) or maps[id(d)] is not f for d in deps):
                return None
            maps[id(m)] = f
        elif m.op == "reshape":
            maps[id(m)] = lambda pos, f=f, a=tuple(src.shape), b=tuple(m.shape): ix.reshape_index(f(pos), a, b)
        elif m.op == "permute":
            perm = m.attrs["perm"]
            maps[id(m)] = lambda pos, f=f, perm=perm: tuple(f(pos)[p] for p in perm)
        else:
            return None
    if any(id(o) not in maps for o in outputs):
        return None
    return {id(o): maps[id(o)] for o in outputs}


def split_rows(groups: int, m: int, n: int, k: int, threads: int, mr_max: int, nr: int,
               nc_max: int) -> tuple[TaskSplit, int]:
    """Tasks (group x row groups x column blocks) and the microkernel's mr: at least `threads`
    tasks when the product is large enough, cutting the columns when they are the longer side
    (whole nr panels), else the rows into equal groups, each in panels of at most `mr_max` rows
    as equal as possible."""
    nc = min(nc_max, -(-n // nr) * nr)
    nj = -(-n // nc)
    rows = m
    want = threads if groups < threads and groups * m * n * k >= THREAD_MACS else 1
    if groups * nj < want:
        if n >= m and n >= want * nr:
            nc = -(-(-(-n // want)) // nr) * nr
            nj = -(-n // nc)
        else:
            rows = -(-m // -(-want // (groups * nj)))
    mg = -(-m // rows)
    mr = -(-rows // -(-rows // mr_max))
    return TaskSplit(groups, mg, rows, nj, nc), mr


def lower_packed_conv(low: "_KernelLowering", outputs: Sequence[Node], versus_blocked: bool) -> bool:
    """Write the conv kernel's `outputs` (each of the anchor's numel) through the packed im2col
    GEMM; False (nothing emitted) when `applies` or `output_maps` declines, the kernel has other
    outputs, or (`versus_blocked`: conv_lower has a register block for it) the block is cheaper."""
    conv = low.k.anchor
    if _forced is False or not applies(conv) or len(outputs) != len(low.k.outputs):
        return False
    if versus_blocked and not _forced and not packed_pays(conv):
        return False
    maps = output_maps(conv, low.k.nodes, outputs)
    if maps is None:
        return False
    x, w = conv.inputs
    a = conv.attrs
    d = conv.dtype
    G, M, N, K = gemm_shape(conv)
    cg = w.shape[1]
    ks, ps = tuple(w.shape[2:]), tuple(conv.shape[2:])
    strides, dilation = a["strides"], a["dilation"]
    L, R = ks[-1], math.prod(ks[:-1])
    blk = host_blocking(d.itemsize)
    NR = blk.nr
    sp, MR = split_rows(G, M, N, K, host_threads(), blk.mr, NR, blk.nc)
    # depth blocks: (c, RB kernel rows, LB of the last kernel dim), about blk.kc deep
    if L >= blk.kc:
        LB, RB = balanced_block(L, blk.kc, 1), 1
    else:
        LB, RB = L, balanced_block(R, max(1, blk.kc // L), 1)
    nR, nL = -(-R // RB), -(-L // LB)
    KC = RB * LB
    NC, RG = sp.nc, sp.rows_per_group
    MC = balanced_block(RG, blk.mc, MR)
    ncp = -(-NC // NR) * NR
    rgp = -(-RG // MR) * MR
    asz, bsz, csz = MC * KC, KC * ncp, rgp * ncp
    T = sp.tasks
    S = min(T, SLOTS_PER_THREAD * host_threads())
    ap = low.scratch_param(conv, S * asz, "conv_a")
    bp = low.scratch_param(conv, S * bsz, "conv_b")
    cs = low.scratch_param(conv, S * csz, "conv_c")
    em = low.em
    tokens: list = []

    def open_(extent, hint):
        v, t = em.open_loop(extent, hint=hint)
        tokens.append(t)
        return v

    def close_to(depth):
        while len(tokens) > depth:
            em.close_loop(tokens.pop())

    def lo(e: Expr, b: int) -> Expr:  # min(e, b)
        return op("min", e, idx(b))

    slot = open_(S, "slot")  # the parallel loop: threads take whole slots
    t = op("add", slot, op("mul", open_(op("div", op("add", op("sub", idx(T), slot), idx(S - 1)), idx(S)), "task"),
                           idx(S)))
    g = op("div", t, idx(sp.mg * sp.nj))
    row0 = op("mul", op("rem", op("div", t, idx(sp.nj)), idx(sp.mg)), idx(RG))
    col0 = op("mul", op("rem", t, idx(sp.nj)), idx(NC))
    rows = op("min", idx(RG), op("sub", idx(M), row0))
    cols = op("min", idx(NC), op("sub", idx(N), col0))
    nq = op("div", op("add", cols, idx(NR - 1)), idx(NR))
    abase, bbase, cbase = (op("mul", slot, idx(s)) for s in (asz, bsz, csz))
    gc = op("mul", g, idx(cg))   # the group's first input channel
    go = op("mul", g, idx(N))    # ... and output channel

    def c_addr(pos: ix.Index) -> Expr:
        """The product at conv position `pos`: its element of this task's C block."""
        i = ix.linearize((pos[0],) + tuple(pos[2:]), (conv.shape[0],) + ps)
        j = op("sub", pos[1], go)
        return op("add", cbase, op("add", op("mul", op("sub", i, row0), idx(ncp)), op("sub", j, col0)))
    low.inputs.add(id(conv))  # from here on the product is read, from the C blocks
    low.addressers[id(conv)] = (cs, c_addr)

    npc = cg * nR * nL
    pc = open_(npc, "pc")
    c = op("div", pc, idx(nR * nL))
    r0 = op("mul", op("rem", op("div", pc, idx(nL)), idx(nR)), idx(RB))
    l0 = op("mul", op("rem", pc, idx(nL)), idx(LB))
    rb, lb = op("min", idx(RB), op("sub", idx(R), r0)), op("min", idx(LB), op("sub", idx(L), l0))
    kc = op("mul", rb, lb)
    depth = len(tokens)

    def taps(rr: Expr, ll: Expr) -> list[Expr]:
        return list(ix.delinearize(op("add", r0, rr), ks[:-1])) + [op("add", l0, ll)]

    # pack B: panel q, k-major, nr columns per k, from w[o, c, *k] along its last axis: a
    # transpose, in blocks of COPY_UNROLL taps x nr columns (read along the taps, written nr
    # apart), so the COPY_UNROLL panel lines being written stay in L1 across the nr columns
    # (column by column over the whole panel, 32 KB of lines: conv1's 2.9 -> 2.4 ms)
    q = open_(nq, "qb")
    rr = open_(rb, "rb")
    blocked = isinstance(lb, Const) and lb.value % COPY_UNROLL == 0
    lblk = open_(lb.value // COPY_UNROLL, "lbk") if blocked else None
    jj = open_(NR, "jb")
    o = op("add", go, lo(op("add", col0, op("add", op("mul", q, idx(NR)), jj)), N - 1))

    def copy_b(ll: Expr) -> None:
        v = low.value(w, tuple([o, c] + taps(rr, ll)))
        kk = op("add", op("mul", rr, lb), ll)
        dst = op("add", bbase, op("add", op("mul", q, op("mul", kc, idx(NR))), op("add", op("mul", kk, idx(NR)), jj)))
        em.emit(Store(bp, dst, v), em.level(v, dst))
    if lblk is not None:
        low.vector_hints[jj.name] = 1  # scalar copies: a gather or scatter is slower
        for t in range(COPY_UNROLL):
            copy_b(op("add", op("mul", lblk, idx(COPY_UNROLL)), idx(t)))
    else:
        ll = open_(lb, "lb")
        low.vector_hints[ll.name] = 1
        copy_b(ll)
    close_to(depth)

    ic = open_(op("div", op("add", rows, idx(MC - 1)), idx(MC)), "ic")
    i0 = op("mul", ic, idx(MC))
    mrows = op("min", idx(MC), op("sub", rows, i0))
    npan = op("div", op("add", mrows, idx(MR - 1)), idx(MR))
    depth_ic = len(tokens)

    # pack A: panel p, row-major (each of its mr rows kc deep, KC apart; the microkernel reads
    # it with a_steps (KC, 1)): an im2col row (b, *p) is a run of x along its last axis, so the
    # copy is contiguous on both sides and LLVM vectorizes it (the k-major panel of the GEMM
    # would be a transpose: one scalar copy per element). Full panels read unclamped rows; only
    # the edge panel clamps them to real ones.
    def pack_a(p: Expr, edge: bool) -> None:
        ii = open_(MR, "ia")
        row = op("add", row0, op("add", i0, op("add", op("mul", p, idx(MR)), ii)))
        bpos = ix.delinearize(lo(row, M - 1) if edge else row, (conv.shape[0],) + ps)
        rr = open_(rb, "ra")
        ll = open_(lb, "la")
        sp_ = [op("add", op("mul", pp, idx(s)), op("mul", tk, idx(dl)))
               for pp, tk, s, dl in zip(bpos[1:], taps(rr, ll), strides, dilation)]
        v = low.value(x, tuple([bpos[0], op("add", gc, c)] + sp_))
        kk = op("add", op("mul", rr, lb), ll)
        dst = op("add", abase, op("add", op("mul", p, idx(MR * KC)), op("add", op("mul", ii, idx(KC)), kk)))
        em.emit(Store(ap, dst, v), em.level(v, dst))
        close_to(depth_ic)
    full = op("div", mrows, idx(MR))
    pack_a(open_(full, "pa"), False)
    pack_a(op("add", full, open_(op("sub", npan, full), "pae")), True)

    q = open_(nq, "q")
    p = open_(npan, "p")
    tile_r = op("add", i0, op("mul", p, idx(MR)))
    tile_c = op("mul", q, idx(NR))
    em.emit(TileMMA(cs, op("add", cbase, op("add", op("mul", tile_r, idx(ncp)), tile_c)), ncp,
                    ap, op("add", abase, op("mul", p, idx(MR * KC))),
                    bp, op("add", bbase, op("mul", q, op("mul", kc, idx(NR)))),
                    kc, MR, NR, op("gt", pc, idx(0)), a_steps=(KC, 1)), len(em.frames) - 1)
    # the epilogue, once the last depth block is in: a loop of one iteration (or none)
    open_(op("select", op("eq", pc, idx(npc - 1)), idx(1), idx(0)), "last")
    i = open_(op("min", idx(MR), op("sub", mrows, op("mul", p, idx(MR)))), "i")
    j = open_(op("min", idx(NR), op("sub", cols, tile_c)), "j")
    bp_ = ix.delinearize(op("add", row0, op("add", tile_r, i)), (conv.shape[0],) + ps)
    pos = (bp_[0], op("add", go, op("add", col0, op("add", tile_c, j)))) + tuple(bp_[1:])
    for out in outputs:
        low.store(out, maps[id(out)](pos))
    close_to(0)
    low.flop_cost = G * M * N * K // 16
    return True

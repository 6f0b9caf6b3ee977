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
from .kir import Expr, Load, Store, TileMMA, TransposeCopy, const, idx, op
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
# them as its cost, so it runs threaded (the backend's PARALLEL_MIN_COST is 2^21): ~8 MFLOP,
# ~50 us on one core of the development box. Threading is per kernel (`render_program`): only
# split kernels meet the other threads at a barrier, the small kernels around them run inline on
# the calling thread, so the batch-64 MLP's two 6.4M-MAC products use both cores and its dozen
# small kernels pay nothing. (When every kernel of a threaded program ended at a barrier, this
# was 2^23: at 2^21 that step took 1.08 ms threaded against 0.46 ms serial.)
THREAD_MIN_MACS = 1 << 22
B_DIRECT_ROWS = 256  # a row-major B is read in place (not packed) by products of at most this many rows
PACK_COST = 4  # multiply-adds one packed element costs (a copy against 32 lane-FMAs a cycle), for the split


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


def gemm_blocking(itemsize: int, n: int, host: HostInfo | None = None) -> Blocking:
    """The blocking for a product of `n` columns: the host's, or for n of at most one vector
    (`matmul[1024, 10]`: a classifier's logits) the narrow tile, one vector wide and twice as
    tall (24 x 16 float32 on AVX-512, 24 accumulators and no spill), so that 10 columns are
    computed as 16, not 32. Tests' `override_blocking` is kept as given."""
    blk = host_blocking(itemsize, host)
    lanes = (host or host_info()).lanes(itemsize)
    if _override is not None or n > lanes or blk.nr != 2 * lanes:
        return blk
    regs = (host or host_info()).vector_registers
    mr = max(blk.mr, min(2 * blk.mr, regs - 4))  # accumulators, the b vector, a broadcast, a spare
    return Blocking(mr, lanes, blk.kc, _round_down(blk.mc, mr), _round_down(blk.nc, lanes), blk.min_macs)


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


# How an epilogue node reads the product: node = reshape(transpose(product, perm), node.shape)
ViewMap = tuple[tuple[int, ...], tuple[int, ...]]


def epilogue_maps(mm: Node, kernel_nodes: Sequence[Node]) -> dict[int, ViewMap] | None:
    """For every node computed from the matmul's result, its view map `(perm, shape)`: the node's
    element at index e is computed from the product's element p with e = reshape(transpose
    index of p under perm, shape). Elementwise ops over the product's numel keep their inputs'
    map, reshapes keep the flat order, permutes compose. None when some node reads the product
    at more than one position (two maps meet in one op) or moves it otherwise: then a tile's
    epilogue would need elements of other tiles."""
    ident = tuple(range(len(mm.shape)))
    maps: dict[int, ViewMap] = {id(mm): (ident, tuple(mm.shape))}
    for m in kernel_nodes:
        ins = [maps[id(i)] for i in m.inputs if id(i) in maps]
        if not ins:
            continue
        if m.numel != mm.numel:
            return None
        if m.op in SCALAR_RULES:
            keys = {_map_key(mm, perm) for perm, _ in ins}
            if len(keys) != 1:
                return None
            maps[id(m)] = (ins[0][0], tuple(m.shape))
        elif m.op == "reshape":
            maps[id(m)] = (ins[0][0], tuple(m.shape))
        elif m.op == "permute":
            perm, shape = ins[0]
            if shape != tuple(mm.shape[q] for q in perm):
                return None  # a permute of a reshaped product: not a transpose of it
            maps[id(m)] = (tuple(perm[q] for q in m.attrs["perm"]), tuple(m.shape))
        else:
            return None
    return maps


def _map_key(mm: Node, perm: Sequence[int]) -> tuple[int, ...]:
    """The flat-order signature of a transpose: its permutation without the unit axes."""
    return tuple(q for q in perm if mm.shape[q] != 1)


def map_index(pos: ix.Index, vm: ViewMap, mm_shape: Sequence[int]) -> ix.Index:
    """The index, in the node with view map `vm`, of the product's element at `pos`."""
    perm, shape = vm
    t = tuple(pos[q] for q in perm)
    tshape = tuple(mm_shape[q] for q in perm)
    return t if tshape == tuple(shape) else ix.delinearize(ix.linearize(t, tshape), shape)


def epilogue_is_pointwise(mm: Node, kernel_nodes: Sequence[Node]) -> bool:
    """Does every node computed from the matmul's result read it at one element (elementwise ops
    over its shape, reshapes and permutes)? Then a tile's epilogue needs only that tile."""
    return epilogue_maps(mm, kernel_nodes) is not None


def transposed_store(mm: Node, kernel_nodes: Sequence[Node], outputs: Sequence[Node]) -> bool:
    """Should the GEMM compute the transposed product (operands swapped in the packing: Cᵀ = Bᵀ Aᵀ)
    so that its tiles run along the epilogue's memory? Counts the epilogue's full-size stores and
    loads of kernel inputs (also those under elementwise ops that do not read the product: the
    LSTM sums 31 per-step gradients in the product's layout before its permute) in the product's
    orientation and in the transposed one; the transpose wins only with more."""
    maps = epilogue_maps(mm, kernel_nodes)
    if maps is None or len(mm.shape) < 2 or mm.shape[-1] == 1 or mm.shape[-2] == 1:
        return False
    r = len(mm.shape)
    straight = _map_key(mm, tuple(range(r)))
    swapped = _map_key(mm, tuple(range(r - 2)) + (r - 1, r - 2))
    weight = {straight: 0, swapped: 0}
    members = {id(m) for m in kernel_nodes}
    for o in outputs:
        if id(o) in maps:
            key = _map_key(mm, maps[id(o)][0])
            if key in weight:
                weight[key] += 1
    seen: set[tuple[int, tuple[int, ...]]] = set()

    def count_loads(n: Node, key: tuple[int, ...]) -> None:
        """Kernel inputs read at the element of `n` (full-size, through elementwise ops of `n`'s shape)."""
        if (id(n), key) in seen or n.numel != mm.numel or id(n) in maps:
            return
        seen.add((id(n), key))
        if id(n) not in members:
            weight[key] += 1
        elif n.op in SCALAR_RULES:
            for i in n.inputs:
                count_loads(i, key)
    for m in kernel_nodes:
        if id(m) in maps and m is not mm:
            key = _map_key(mm, maps[id(m)][0])
            if key in weight:
                for i in m.inputs:
                    count_loads(i, key)
    return weight[swapped] > weight[straight]


def applies(mm: Node, kernel_nodes: Sequence[Node], outputs: Sequence[Node] = ()) -> bool:
    """Should this matmul anchor lower to the packed GEMM? `outputs` (the kernel's) may include
    side values of another size (a step count, a bias gradient) that do not read the product."""
    a, b = mm.inputs
    if mm.dtype not in (dt.float32, dt.float64) or a.dtype != mm.dtype or b.dtype != mm.dtype:
        return False
    if not packs(mm.shape[-2], mm.shape[-1], a.shape[-1], mm.dtype.itemsize):
        return False
    maps = epilogue_maps(mm, kernel_nodes)
    return maps is not None and all(id(o) not in maps for o in outputs if o.numel != mm.numel)


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
    """At least `threads` tasks when the product is large enough to thread, else one per batch
    and column block. The cut is along M or N, whichever gives the cheaper largest task: its
    padded tiles (`tile_rows` rows, nr-wide panels) plus its packing (each task packs its own
    panels of both operands, `PACK_COST` per element). 64x784x128 splits N (each task packs
    half of B); 128x784 at K=64 splits M (two tasks of 64 rows in exact 8-row tiles, where
    cutting N's 25 panels 13 + 12 would leave one thread 8% more)."""
    nc = min(blk.nc, _ceil(n, blk.nr) * blk.nr)
    want = threads if batch < threads and m * n * k >= THREAD_MIN_MACS else 1
    nj = _ceil(n, nc)
    options = [(m, nc)]
    if batch * nj < want:
        options = []
        if n >= want * blk.nr:
            options.append((m, _ceil(_ceil(n, want), blk.nr) * blk.nr))
        if m >= want * blk.mr:
            options.append((_ceil(_ceil(m, want), blk.mr) * blk.mr, nc))
        if m >= want * 4:  # rows in tile_rows' shorter tiles (64 rows: two tasks of 32 in 8-row tiles)
            options.append((_ceil(m, want), nc))
        options = options or [(m, nc)]
    rows, nc = min(options, key=lambda o: (_task_cost(min(o[0], m), min(o[1], n), k, blk), -o[1]))
    return TaskSplit(batch, _ceil(m, rows), rows, _ceil(n, nc), nc)


def _task_cost(rows: int, cols: int, k: int, blk: Blocking) -> int:
    """Multiply-adds (padded to whole tiles) plus packing of a task of rows x cols, depth k."""
    mr = tile_rows(rows, blk)
    return _ceil(rows, mr) * mr * _ceil(cols, blk.nr) * blk.nr * k + PACK_COST * (rows + cols) * k


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
        elif n.op == "reshape" and n.inputs[0].shape and n.inputs[0].shape[-1] == n.shape[-1]:
            n = n.inputs[0]
        elif n.op == "reshape" and _dense_input(low, n.inputs[0]):
            return True  # a row-major buffer reshaped: every axis of the reshape is contiguous
        else:
            return False
    strides = low.strides.get(id(n))
    return strides is None or not n.shape or n.shape[-1] == 1 or strides[-1] == 1


def _dense_input(low, n: Node) -> bool:
    """Is `n` read from a kernel input that lies row-major (no strides recorded)?"""
    return (id(n) not in low.members or id(n) in low.inputs) and low.strides.get(id(n)) is None \
        and id(n) not in low.addressers


def direct_operand(low, n: Node) -> tuple[str, tuple[int, ...]] | None:
    """(buffer, element strides over `n`'s axes) when `n` is read from memory as it lies: a
    kernel input or a permute of one (no other prologue op, no C block); else None."""
    perm = list(range(len(n.shape)))
    while id(n) in low.members and id(n) not in low.inputs:
        if n.op != "permute":
            return None
        perm = [n.attrs["perm"][q] for q in perm]
        n = n.inputs[0]
    if id(n) in low.addressers:
        return None
    name = low.read_back.get(id(n)) or low.buf_names.get(id(n))
    if name is None:
        return None
    strides = low.strides.get(id(n))
    if strides is None:
        strides, step = [], 1
        for size in reversed(n.shape):
            strides.insert(0, step)
            step *= size
    return name, tuple(strides[q] for q in perm)


def _flat(index: Sequence[Expr], strides: Sequence[int]) -> Expr:
    flat: Expr = idx(0)
    for e, st in zip(index, strides):
        if st:
            flat = op("add", flat, op("mul", e, idx(st)))
    return flat


@dataclass(frozen=True)
class FusedSum:
    """A reduce_sum over the contraction axis of one GEMM operand (the bias gradient Σ_batch dy
    beside the weight gradient dyᵀ @ x), computed from that operand's packed panels.
    `operand` is 0 (a: one sum per product row) or 1 (b: one per column); `outputs` are the
    kernel outputs computed from the sum alone, elementwise (its optimizer update)."""
    node: Node
    operand: int
    outputs: tuple[Node, ...]
    maps: dict


def _operand_source(low, operand: Node, contraction_axis: int) -> tuple[Node, int] | None:
    """(the node whose values `operand` shows, the axis of it that is the contraction axis):
    the operand itself, or the value it transposes (a permute in the prologue)."""
    if operand.op == "permute" and id(operand) in low.members and id(operand) not in low.inputs:
        return operand.inputs[0], operand.attrs["perm"][contraction_axis]
    return operand, contraction_axis


def fused_sums(low, side: Sequence[Node]) -> list[FusedSum]:
    """The reduce_sums of this matmul kernel that the GEMM computes while packing: a 2-d
    product, a sum over exactly the contraction axis of the value an operand reads (`dy` for
    the operand `dyᵀ`), of the product's dtype, whose dependents in `side` (the kernel's outputs
    of another size) are elementwise in it and read nothing of the product."""
    mm = low.k.anchor
    if len(mm.shape) != 2:
        return []
    nodes = low.k.nodes
    mm_maps = epilogue_maps(mm, nodes) or {}
    srcs = [_operand_source(low, op_, ax) for op_, ax in ((mm.inputs[0], 1), (mm.inputs[1], 0))]
    found = []
    for s in nodes:
        if s.op != "reduce_sum" or s.dtype != mm.dtype or id(s) in low.inputs:
            continue
        x = s.inputs[0]
        axes = tuple(s.attrs["axes"]) if "axes" in s.attrs else (s.attrs["axis"],)
        for operand, (src, ax) in enumerate(srcs):
            if x is src and len(x.shape) == 2 and tuple(a % 2 for a in axes) == (ax,):
                break
        else:
            continue
        maps = epilogue_maps(s, nodes)
        if maps is None or any(n in mm_maps for n in maps):
            continue
        outs = tuple(o for o in side if id(o) in maps)
        found.append(FusedSum(s, operand, outs, maps))
    claimed = [o for f in found for o in f.outputs]
    return [f for f in found if all(claimed.count(o) == 1 for o in f.outputs)]


def lower_gemm(low, outputs: Sequence[Node], side: Sequence[Node] = ()) -> list[Node]:
    """Write the matmul kernel's `outputs` (each of the anchor's numel) through the packed GEMM,
    and those of the `side` outputs (other sizes) that come from sums the GEMM fuses; returns
    the side outputs left for the caller to write (scalars: computed once, outside the loops).
    `low` is the kernel's `_KernelLowering` (lower.py): its emitter, `value`, `store`, scratch."""
    mm = low.k.anchor
    a, b = mm.inputs
    d = mm.dtype
    batch_shape = tuple(mm.shape[:-2])
    nb = math.prod(batch_shape)
    K = a.shape[-1]
    maps = epilogue_maps(mm, low.k.nodes)
    swap = transposed_store(mm, low.k.nodes, outputs)
    # the computed product P: the matmul's, or its transpose Pᵀ = Bᵀ Aᵀ (operands swapped)
    M, N = (mm.shape[-1], mm.shape[-2]) if swap else (mm.shape[-2], mm.shape[-1])
    batch_vars: list[Expr] = []

    def a_value(row: Expr, k: Expr) -> Expr:
        return low.value(b, tuple(batch_vars + [k, row])) if swap else low.value(a, tuple(batch_vars + [row, k]))

    def b_value(k: Expr, col: Expr) -> Expr:
        return low.value(a, tuple(batch_vars + [col, k])) if swap else low.value(b, tuple(batch_vars + [k, col]))
    a_along_k = not last_axis_contiguous(low, b) if swap else last_axis_contiguous(low, a)
    b_along_cols = not last_axis_contiguous(low, a) if swap else last_axis_contiguous(low, b)
    sums = fused_sums(low, side)
    row_sums = [f for f in sums if (f.operand == 1) == swap]   # over P's left operand: one per row
    col_sums = [f for f in sums if (f.operand == 1) != swap]   # over P's right operand: one per column

    blk = gemm_blocking(d.itemsize, N)
    sp = split_tasks(nb, M, N, K, blk, host_threads())
    NC, RG = sp.nc, sp.rows_per_group
    MR, NR = tile_rows(RG, blk), blk.nr
    a_src = direct_operand(low, b if swap else a)
    if a_src is not None:  # (buffer, strides, row step) when its depth axis is contiguous
        st = a_src[1]
        rs, ks = (st[-1], st[-2]) if swap else (st[-2], st[-1])
        a_src = (a_src[0], st, rs) if ks == 1 and rs >= 1 and not row_sums else None
    if a_src is not None and (M % MR or RG % MR):
        # A could be read in place if the tiles covered its rows exactly: take the tallest tile
        # height in tile_rows' range that does (1024 rows: 8, not 12 with a 4-row edge), which
        # saves the transposing copy of A
        exact = [r for r in range(blk.mr, max(4, blk.mr // 2) - 1, -1) if M % r == 0 and RG % r == 0]
        if exact:
            MR = exact[0]
    MC = balanced_block(RG, blk.mc, MR)       # a multiple of MR: row blocks never share a tile
    ncp = _ceil(NC, NR) * NR                  # columns of a task's C block / B panel set
    rgp = _ceil(RG, MR) * MR                  # rows of a task's C block
    # operands read in place instead of packed (the small-matrix path): a k-contiguous A (x in
    # x @ w.T, whose packing is a transposing scalar copy) when every tile is a full one, and a
    # row-major B when its panels are full and each is read by few A panels (M <= B_DIRECT_ROWS)
    b_src = direct_operand(low, a if swap else b)
    a_direct = b_direct = None
    if a_src is not None and M % MR == 0 and RG % MR == 0:
        a_direct = a_src
    if b_src is not None and not col_sums and N % NR == 0 and NC % NR == 0 and M <= B_DIRECT_ROWS:
        st = b_src[1]
        ks, cs_ = (st[-1], st[-2]) if swap else (st[-2], st[-1])
        if cs_ == 1 and ks >= NR:
            b_direct = (b_src[0], st, ks)
    # an operand packed along k from memory as it lies (k contiguous): its whole blocks of `lanes`
    # depths are packed by transposing block copies (register shuffles), the rest by scalar copies
    lanes = host_info().lanes(d.itemsize)

    def k_source(n: Node, k_last: bool) -> tuple[str, tuple[int, ...], int] | None:
        """(buffer, strides, stride of the other axis) of operand `n` read in place with its depth
        axis (the last when `k_last`, else the one before) contiguous; None otherwise."""
        src = direct_operand(low, n) if min(K, blk.kc) >= lanes else None
        if src is None:
            return None
        st = src[1]
        ks, other = (st[-1], st[-2]) if k_last else (st[-2], st[-1])
        return (src[0], st, other) if ks == 1 else None
    b_k_src = None if b_along_cols or b_direct else k_source(a if swap else b, swap)
    a_k_src = k_source(b if swap else a, not swap) if a_along_k and a_direct is None else None
    # depth blocks of whole blocks of lanes when a copy transposes (784 = 4 x 196 -> 3 x 208 + 160:
    # no scalar rest where K is a multiple of the lanes)
    KC = balanced_block(K, blk.kc, lanes if a_k_src or b_k_src else 1)
    whole_blocks = K % lanes == 0 and KC % lanes == 0  # every depth block: no scalar rest
    npc = _ceil(K, KC)
    # with one depth block a tile is complete after one tile_mma: it goes to an mr x nr tile of
    # scratch that stays in L1, read back by the epilogue at once, instead of a C block of the
    # task's rows x columns (the K=64 weight gradient's 128x800 block: 400 KB written, evicted)
    one_tile = npc == 1
    ldc = NR if one_tile else ncp
    asz = 1 if a_direct else MC * KC
    bsz = 1 if b_direct else KC * ncp
    csz = MR * NR if one_tile else rgp * ncp
    T = sp.tasks
    # scratch slots: each runs its tasks one after another in its own panels and C block, so
    # the scratch is bounded however many tasks there are (a batch of 10^4 small matrices)
    S = min(T, SLOTS_PER_THREAD * host_threads())
    ap = low.scratch_param(mm, S * asz, "gemm_a")
    bp = low.scratch_param(mm, S * bsz, "gemm_b")
    cs = low.scratch_param(mm, S * csz, "gemm_c")
    rsum = [low.scratch_param(mm, S * rgp, "gemm_r") for _ in row_sums]  # a task's row sums
    csum = [low.scratch_param(mm, S * ncp, "gemm_s") for _ in col_sums]  # a task's column sums
    em = low.em

    tokens = []

    def open_(extent, hint):
        v, t = em.open_loop(extent, hint=hint)
        tokens.append(t)
        return v

    def close_to(depth):
        while len(tokens) > depth:
            em.close_loop(tokens.pop())

    def panel_loops(panels: Expr, valid: Expr, width: int, hint: str) -> Iterator[tuple[Expr, bool]]:
        """Open the loop over the full panels (`valid // width` of them: read unclamped, so the
        copy is contiguous vector code), then over the edge panel (clamped indices fill it with
        real elements); yields (panel index, edge?) with the loop open. The caller closes it."""
        full = op("div", valid, idx(width))
        yield open_(full, hint), False
        yield op("add", full, open_(op("sub", panels, full), hint + "e")), True

    def once_if(cond: Expr, hint: str) -> None:
        """A loop of one iteration when `cond` holds, else none."""
        open_(op("select", cond, idx(1), idx(0)), hint)

    slot = open_(S, "slot")  # the parallel loop: threads take whole slots
    t = op("add", slot, op("mul", open_(_cdiv(op("sub", idx(T), slot), S), "task"), idx(S)))
    bt = op("div", t, idx(sp.mg * sp.nj))
    g = op("rem", op("div", t, idx(sp.nj)), idx(sp.mg))
    jc = op("rem", t, idx(sp.nj))
    batch_vars[:] = list(ix.delinearize(bt, batch_shape)) if batch_shape else []
    batch = batch_vars
    row0 = op("mul", g, idx(RG))
    rows = _min(idx(RG), op("sub", idx(M), row0))
    col0 = op("mul", jc, idx(NC))
    cols = _min(idx(NC), op("sub", idx(N), col0))
    nq = _cdiv(cols, NR)
    abase, bbase, cbase = (op("mul", slot, idx(s)) for s in (asz, bsz, csz))
    rbase, sbase = op("mul", slot, idx(rgp)), op("mul", slot, idx(ncp))

    tile_at: list[Expr] = []  # the current tile's first (row, column) in the task (one_tile)

    # the product's value at any position of this task's block: its element of the C block (of
    # the tile, with one depth block: the epilogue reads only the tile it runs on)
    def c_addr(index: ix.Index) -> Expr:
        r, c = (index[-1], index[-2]) if swap else (index[-2], index[-1])
        r, c = op("sub", r, row0), op("sub", c, col0)
        if one_tile:
            r, c = op("sub", r, tile_at[0]), op("sub", c, tile_at[1])
        return op("add", cbase, op("add", op("mul", r, idx(ldc)), c))
    low.inputs.add(id(mm))  # from here on the product is read, from the C blocks
    low.addressers[id(mm)] = (cs, c_addr)
    # a fused sum's value at any position: the task's row (column) sums
    for f, buf in zip(row_sums, rsum):
        low.inputs.add(id(f.node))
        low.addressers[id(f.node)] = (buf, lambda index, f=f: op("add", rbase, op(
            "sub", ix.linearize(index, f.node.shape), row0)))
    for f, buf in zip(col_sums, csum):
        low.inputs.add(id(f.node))
        low.addressers[id(f.node)] = (buf, lambda index, f=f: op("add", sbase, op(
            "sub", ix.linearize(index, f.node.shape), col0)))

    def accumulate_sums(bufs, base, panels, width, panel_base, hint):
        """buf[base + panel*width + lane] (+)= Σ_k of the packed panels (zeroed in the first depth
        block): the lane loop innermost, contiguous in both."""
        depth0 = len(tokens)
        pn = open_(panels, hint + "p")
        at = op("add", base, op("add", op("mul", pn, idx(width)), open_(op("select", op("eq", pc, idx(0)),
                                                                           idx(width), idx(0)), hint + "z")))
        for buf in bufs:
            em.emit(Store(buf, at, const(0, d)), len(em.frames) - 1)
        close_to(depth0 + 1)
        kk2, ln = open_(kc, hint + "k"), open_(width, hint + "l")
        at = op("add", base, op("add", op("mul", pn, idx(width)), ln))
        v = Load(panel_base[0], op("add", panel_base[1], op("add", op("mul", pn, op("mul", kc, idx(width))),
                                                             op("add", op("mul", kk2, idx(width)), ln))), d)
        for buf in bufs:
            em.emit(Store(buf, at, op("add", Load(buf, at, d), v)), len(em.frames) - 1)
        close_to(depth0)

    def store_sums(fs, first, count, hint):
        """The fused sums' outputs for logical rows (columns) first .. first+count."""
        if not any(f.outputs for f in fs):
            return
        depth0 = len(tokens)
        e = op("add", first, open_(count, hint))
        for f in fs:
            spos = ix.delinearize(e, f.node.shape)
            for o in f.outputs:
                low.store(o, map_index(spos, f.maps[id(o)], f.node.shape))
        close_to(depth0)

    pc = open_(npc, "pc")
    k0 = op("mul", pc, idx(KC))
    kc = _min(idx(KC), op("sub", idx(K), k0))
    depth = len(tokens)

    def transpose_blocks(dst_buf: str, dst_at, src: tuple[str, tuple[int, ...], int], src_pos, width: int) -> Expr:
        """Pack the depths of a panel (`width` rows or columns of an operand read along k) that
        fill whole blocks of `lanes`: a loop over them, a transpose_copy of width x lanes each, from
        the operand in place (`src`: buffer, strides, stride of its other axis) at `src_pos(kk0)`
        (its (row, k) or (k, col) position at panel depth kk0) to the panel at `dst_at(kk0)`.
        Returns the depth the rest of the panel (the scalar copy's) starts at."""
        name, st, ld = src
        nkb = op("div", kc, idx(lanes))
        depth0 = len(tokens)
        kk0 = op("mul", open_(nkb, "kt"), idx(lanes))
        pos = src_pos(kk0)
        at = _flat(batch_vars + (pos[::-1] if swap else pos), st)
        dst = dst_at(kk0)
        em.emit(TransposeCopy(dst_buf, dst, width, name, at, ld, width, lanes), em.level(at, dst))
        close_to(depth0)
        return op("mul", nkb, idx(lanes))

    def pack_panels(buf: str, base: Expr, panels: Expr, valid: Expr, width: int, limit: int, along_k: bool,
                    k_src, first, value, src_pos, hints: tuple[str, str, str], depth0: int) -> None:
        """Pack one operand's panels into `buf` at `base`: panel p holds `width` lanes (A's rows or
        B's columns, from `first(p)`) per depth, k-major. Full panels read unclamped (contiguous
        copies), the edge panel clamps its lanes to `limit` (real elements fill it). `value(kk, lane)`
        reads the operand at block depth kk. Read along k (`along_k`: the panel is written `width`
        apart), whole blocks of lanes are transposed in registers from the operand in place
        (`k_src`, at `src_pos(first, kk0)`), and the rest are scalar copies (a strided-store
        vectorization is a scatter, slower still)."""
        hp, hk, hl = hints
        for p, edge in panel_loops(panels, valid, width, hp):
            panel_at = op("add", base, op("mul", p, op("mul", kc, idx(width))))
            if along_k:
                kk_from: Expr = idx(0)  # the depth the scalar copy starts at
                if k_src is not None and not edge:
                    kk_from = transpose_blocks(buf, lambda kk0: op("add", panel_at, op("mul", kk0, idx(width))), k_src,
                                               lambda kk0: src_pos(first(p), kk0), width)
                    if whole_blocks:
                        close_to(depth0)
                        continue
                lane, kr = open_(width, hl), open_(op("sub", kc, kk_from), hk)
                kk = op("add", kk_from, kr)
                low.vector_hints[kr.name] = 1
            else:
                kk, lane = open_(kc, hk), open_(width, hl)
            at = op("add", first(p), lane)
            v = value(kk, _min(at, idx(limit)) if edge else at)
            dst = op("add", panel_at, op("add", op("mul", kk, idx(width)), lane))
            em.emit(Store(buf, dst, v), em.level(v, dst))
            close_to(depth0)

    # pack B: panel q, k-major, nr columns per k; clamped columns fill the edge panel
    if b_direct is None:  # else the microkernel reads B as it lies
        pack_panels(bp, bbase, nq, cols, NR, N - 1, not b_along_cols, b_k_src,
                    lambda q: op("add", col0, op("mul", q, idx(NR))),
                    lambda kk, col: b_value(op("add", k0, kk), col),
                    lambda col, kk0: [op("add", k0, kk0), col], ("qb", "kb", "jb"), depth)
    if col_sums:  # column sums of the right operand: once per column, by the first row group's task
        once_if(op("eq", g, idx(0)), "colsum")
        accumulate_sums(csum, sbase, nq, NR, (bp, bbase), "cs")
        once_if(op("eq", pc, idx(npc - 1)), "colsum_last")
        store_sums(col_sums, col0, cols, "cj")
        close_to(depth)

    ic = open_(_cdiv(rows, MC), "ic")
    r0 = op("mul", ic, idx(MC))
    mrows = _min(idx(MC), op("sub", rows, r0))
    npan = _cdiv(mrows, MR)
    depth_ic = len(tokens)

    # pack A: panel p, k-major, mr rows per k; clamped rows fill the edge panel
    if a_direct is None:  # else the microkernel reads A as it lies
        pack_panels(ap, abase, npan, mrows, MR, M - 1, a_along_k, a_k_src,
                    lambda p: op("add", row0, op("add", r0, op("mul", p, idx(MR)))),
                    lambda kk, row: a_value(row, op("add", k0, kk)),
                    lambda row, kk0: [row, op("add", k0, kk0)], ("pa", "ka", "ia"), depth_ic)
    if row_sums:  # row sums of the left operand: once per row, by the first column block's task
        once_if(op("eq", jc, idx(0)), "rowsum")
        accumulate_sums(rsum, op("add", rbase, r0), npan, MR, (ap, abase), "rs")
        once_if(op("eq", pc, idx(npc - 1)), "rowsum_last")
        store_sums(row_sums, op("add", row0, r0), mrows, "ri")
        close_to(depth_ic)

    q = open_(nq, "q")
    p = open_(npan, "p")
    tile_r = op("add", r0, op("mul", p, idx(MR)))    # the tile's first row within the task's rows
    tile_c = op("mul", q, idx(NR))
    tile_at[:] = [tile_r, tile_c]
    c_at = cbase if one_tile else op("add", cbase, op("add", op("mul", tile_r, idx(ncp)), tile_c))
    a_buf, a_at, a_steps = ap, op("add", abase, op("mul", p, op("mul", kc, idx(MR)))), None
    if a_direct is not None:  # row row0 + tile_r, depth k0 of the operand as it lies
        name, st, rs = a_direct
        pos = [op("add", row0, tile_r), k0]
        a_buf, a_at, a_steps = name, _flat(batch_vars + (pos[::-1] if swap else pos), st), (rs, 1)
    b_buf, b_at, b_kstep = bp, op("add", bbase, op("mul", q, op("mul", kc, idx(NR)))), None
    if b_direct is not None:
        name, st, ks = b_direct
        pos = [k0, op("add", col0, tile_c)]
        b_buf, b_at, b_kstep = name, _flat(batch_vars + (pos[::-1] if swap else pos), st), ks
    em.emit(TileMMA(cs, c_at, ldc, a_buf, a_at, b_buf, b_at, kc, MR, NR, op("gt", pc, idx(0)),
                    a_steps, b_kstep), len(em.frames) - 1)
    # the epilogue, once the last depth block is in: a loop of one iteration (or none)
    once_if(op("eq", pc, idx(npc - 1)), "last")
    i = open_(_min(idx(MR), op("sub", mrows, op("mul", p, idx(MR)))), "i")
    j = open_(_min(idx(NR), op("sub", cols, tile_c)), "j")
    prow, pcol = op("add", row0, op("add", tile_r, i)), op("add", col0, op("add", tile_c, j))
    pos = tuple(batch + ([pcol, prow] if swap else [prow, pcol]))  # the matmul's element
    domain = tuple(mm.shape)
    for o in outputs:
        if id(o) in maps:
            low.store(o, map_index(pos, maps[id(o)], domain))
        else:  # a full-size output that does not read the product: any bijection writes it once
            low.store(o, ix.delinearize(ix.linearize(pos, domain), o.shape) if tuple(o.shape) != domain else pos)
    close_to(0)
    # one multiply-add counts as one element touched; a product run as one task offers the
    # thread pool nothing, so it does not push its program onto the threads
    low.flop_cost = nb * M * N * K if sp.tasks > 1 else 0
    done = {id(o) for f in sums for o in f.outputs}
    return [o for o in side if id(o) not in done]

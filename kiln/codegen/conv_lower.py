"""Convolution kernels as register-blocked implicit GEMM.

A `conv` kernel computes y[n, o, *p] = sum over (c, *k) of x[n, g*Cg + c, *(p*stride + k*dilation)]
* w[o, c, *k]: a GEMM whose rows are the output positions, whose columns are the output
channels and whose reduction runs over (input channel, kernel tap); the im2col matrix is
never built, the loads read `x` in place ("implicit GEMM"). Each step of the loop nest
computes a block of `OB` output channels x `PW` consecutive positions of the last output
dimension in `OB * PW` accumulators: every x value loaded serves `OB` products, every
weight `PW` of them.

Two shapes of block, picked from the convolution's shape (`plan_conv`):

- rows (forward convolutions and input gradients: wide outputs): PW = one vector of output
  positions (16 float32 / 8 float64); with unit stride the PW loads of a tap are one vector
  load and the PW products of a channel one vector FMA (LLVM's SLP vectorizer).
- taps (weight gradients: a huge "kernel", the output positions, and a small output, the
  kernel taps): PW covers the whole (short) last output dimension, and the innermost
  reduction loop runs along the kernel's last dimension, contiguous in both operands, so
  LLVM's loop vectorizer turns the `OB * PW` sums into vector accumulators.

The convolution must have no padding (`kiln.passes.conv_padding` makes padding an explicit,
materialized `pad`), so every load index is affine. The epilogue (bias, activation, an
optimizer update of a weight gradient) runs per element after the block; a large one reads
the products back from a kernel-private scratch buffer instead of being unrolled per
accumulator. What does not fit a block (the last positions of a row, a convolution the
planner rejects) is computed one element at a time by the generic lowering.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..ir import dtypes as dt
from ..ir.graph import Node
from . import index as ix
from .conv_packed import lower_packed_conv
from .kir import Expr, Store, const, idx, op

if TYPE_CHECKING:  # the lowering object of kiln.codegen.lower, passed in by it
    from .lower import _KernelLowering

# accumulators per block: rows, 64 scalars (4 vectors of 16 float32); taps, 4 vectors of partial sums
# (LLVM's SLP vectorizer builds <64 x float> bundles; at 8 or more vectors it may leave the loop scalar)
ROW_ACCUMULATORS = 64
TAP_VECTORS = 4
# a taps block needs a kernel this long in its last dimension (the vectorized reduction)
MIN_TAP_RUN = 8


@dataclass(frozen=True)
class ConvBlock:
    """How one conv kernel is blocked: `kind` "rows" or "taps"; per step NB batch entries x OB output
    channels x PW positions of the last output dimension, each accumulator `lanes` partial sums."""
    kind: str
    nb: int
    ob: int
    pw: int
    lanes: int = 1


def _lanes(d: dt.DType) -> int:
    return 16 if d == dt.float32 else 8


def _divisor(n: int, limit: int) -> int:
    """The largest of 8, 4, 2, 1 that divides `n` and is <= limit."""
    for b in (8, 4, 2, 1):
        if b <= limit and n % b == 0:
            return b
    return 1


def plan_conv(conv: Node) -> ConvBlock | None:
    """The block for `conv`, or None when it is left to the generic lowering (padding not made
    explicit, half precision, an output row too short to vectorize and a kernel too short too)."""
    if conv.dtype not in (dt.float32, dt.float64) or conv.numel == 0:
        return None
    a = conv.attrs
    if any(lo or hi for lo, hi in a["padding"]):
        return None
    w = conv.inputs[1]
    og = w.shape[0] // a["groups"]
    width = conv.shape[-1]
    lanes = _lanes(conv.dtype)
    if width >= lanes // 2:
        pw = lanes if width >= lanes else lanes // 2
        return ConvBlock("rows", 1, _divisor(og, max(ROW_ACCUMULATORS // pw, 1)), pw)
    if a["dilation"][-1] == 1:
        for run in (lanes, lanes // 2):
            if w.shape[-1] % run == 0 and w.shape[-1] >= MIN_TAP_RUN:
                ob = _divisor(og, 4)
                return ConvBlock("taps", _divisor(conv.shape[0], TAP_VECTORS // ob), ob, 1, run)
    return None


def lower_blocked_conv(low: "_KernelLowering", full: Sequence[Node], domain: tuple[int, ...]) -> bool:
    """Write the conv kernel's full-shaped outputs `full` by blocks; False when `plan_conv` declines
    (the caller then lowers it element by element)."""
    conv = low.k.anchor
    block = plan_conv(conv)
    # a long reduction into a small output (a weight gradient): the packed im2col GEMM, where it
    # beats the taps blocks or there is no block (conv_packed.py)
    if (block is None or block.kind == "taps") and lower_packed_conv(low, full, versus_blocked=block is not None):
        return True
    if block is None:
        return False
    from .lower import EPILOGUE_UNROLL_LIMIT  # the matmul's limit: one rule for both anchors
    low.work += conv_flops(conv) // 2
    x, w = conv.inputs
    a = conv.attrs
    shape = tuple(conv.shape)
    groups, cg = a["groups"], w.shape[1]
    og = shape[1] // groups
    ks = tuple(w.shape[2:])
    strides, dilation = a["strides"], a["dilation"]
    em = low.em
    nb, ob, pw, nl = block.nb, block.ob, block.pw, block.lanes
    width = shape[-1]
    blocks = width // pw
    scratch = low.scratch_param(conv) if low._epilogue_size(conv) > EPILOGUE_UNROLL_LIMIT else None
    grid = (shape[0] // nb, shape[1] // ob) + shape[2:-1] + (blocks,)

    def block_positions(index) -> list[tuple[Expr, ...]]:
        """The NB x OB x PW output positions of the block at `index` of `grid`, in accumulator order."""
        n0, o0 = op("mul", index[0], idx(nb)), op("mul", index[1], idx(ob))
        p0 = op("mul", index[-1], idx(pw))
        return [tuple([op("add", n0, idx(b)), op("add", o0, idx(i))] + list(index[2:-1]) + [op("add", p0, idx(j))])
                for b in range(nb) for i in range(ob) for j in range(pw)]

    def write(pos: tuple[Expr, ...], value: Expr | None) -> None:
        """The conv's value at `pos` (None: computed here by the generic lowering) to its outputs,
        or to the scratch buffer when the epilogue runs in a second phase."""
        if scratch:
            v = value if value is not None else low.value(conv, pos)
            em.emit(Store(scratch, ix.linearize(pos, shape), v), em.level(v, *pos))
            return
        if value is not None:
            em.remember((id(conv), pos), value)
        for o in full:
            low.store(o, ix.reshape_index(pos, domain, o.shape) if tuple(o.shape) != domain else pos)

    # phase 1: per block of the grid, NB x OB x PW accumulators (x `lanes` partial sums)
    index, tokens = low.nest(grid)
    positions = block_positions(index)
    o0 = positions[0][1]
    gbase = op("mul", op("div", o0, idx(og)), idx(cg)) if groups > 1 else idx(0)

    def body(rv, accs):
        c, taps = rv[0], list(rv[1:])
        if len(taps) < len(ks):  # the last kernel dim is one run of partial sums: no loop for it
            taps.append(idx(0))
        new = list(accs)
        for lane in range(nl):
            tl = op("add", op("mul", taps[-1], idx(nl)), idx(lane)) if nl > 1 else taps[-1]
            tap = taps[:-1] + [tl]
            xs, ws = {}, {}
            for k, pos in enumerate(positions):
                b, i, j = k // (ob * pw), (k // pw) % ob, k % pw
                if (b, j) not in xs:
                    xs[b, j] = low.value(x, tuple([pos[0], op("add", gbase, c)] + [
                        op("add", op("mul", p, idx(s)), op("mul", t, idx(d)))
                        for p, t, s, d in zip(pos[2:], tap, strides, dilation)]))
                if i not in ws:
                    ws[i] = low.value(w, tuple([pos[1], c] + tap))
                new[k * nl + lane] = op("fma", xs[b, j], ws[i], accs[k * nl + lane])
        return new

    loops = [cg] + list(ks[:-1]) + ([ks[-1] // nl] if ks[-1] > nl else [])
    accs = low._accumulate(loops, body, [const(0, conv.dtype)] * (len(positions) * nl), len(em.frames) - 1)
    for k, pos in enumerate(positions):
        part = list(accs[k * nl:(k + 1) * nl])
        while len(part) > 1:  # the partial sums, added pairwise
            part = [em.bind(op("add", part[t], part[t + 1]), "h") for t in range(0, len(part), 2)]
        write(pos, part[0])
    low.close(tokens)

    def outputs_at(pos: tuple[Expr, ...]) -> None:
        for o in full:
            low.store(o, ix.reshape_index(pos, domain, o.shape) if tuple(o.shape) != domain else pos)

    def tail(epilogue: bool) -> None:
        """The last `width % PW` positions of every row, one at a time: the product (phase 1, by the
        generic lowering) or the epilogue over the products read back (phase 2)."""
        index, tokens = low.nest(shape[:-1] + (width % pw,))
        pos = tuple(list(index[:-1]) + [op("add", index[-1], idx(blocks * pw))])
        outputs_at(pos) if epilogue else write(pos, None)
        low.close(tokens)

    if width % pw:
        tail(False)
    if scratch:
        # phase 2: the epilogue per element, reading the products back; its loops mirror phase 1's,
        # so each thread reads back exactly what it wrote (the threads split each top loop alike)
        low.inputs.add(id(conv))
        low.read_back[id(conv)] = scratch
        index, tokens = low.nest(grid)
        base = block_positions(index)[0]
        inner, itok = low.nest((nb, ob, pw))
        outputs_at((op("add", base[0], inner[0]), op("add", base[1], inner[1])) + tuple(base[2:-1])
                   + (op("add", base[-1], inner[2]),))
        low.close(itok)
        low.close(tokens)
        if width % pw:
            tail(True)
    return True


def conv_flops(conv: Node) -> int:
    """Multiply-adds x 2 of one convolution (for GFLOP/s figures)."""
    w = conv.inputs[1]
    return 2 * conv.numel * w.shape[1] * math.prod(w.shape[2:])

"""Lowering: a fusion plan becomes a `LoweredProgram` of kernel-IR functions.

Every kernel of the plan lowers through one evaluator, `_KernelLowering.value(node, index)`:
the value of a node at one position of its shape, as a kernel-IR expression. Elementwise
primitives use the scalar rules (`scalar_rules.py`), movement primitives rewrite the
index (`index.py`), a reduction (and matmul / conv, which are reductions of products)
opens an accumulation loop at the level of its row index, gather reads its operand at a
bounds-checked computed index. The kernel kinds differ only in the loop nest they write
their outputs from (`lower_kernel`): elementwise and gather kernels over their domain,
reduction kernels over (row axes, reduced axes), matmul/conv over the anchor's shape, and
scatter kernels as a copy of the base followed by a loop over the updates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from ..ir.graph import Node
from ..ir.primitives import get_primitive
from ..passes.fusion import FusionPlan, Kernel, KernelKind
from . import gemm
from . import index as ix
from .conv_lower import lower_blocked_conv
from .emitter import Emitter
from . import reduce_lower
from .kir import BufferParam, Const, Expr, Fail, If, KernelFunc, Load, LoopSchedule, Store, Var, const, idx, op
from .reduce_lower import accumulator_dtype, combine, reduce_init
from .scalar_rules import SCALAR_RULES, cast_value, scalar_value
from .kir_verify import check_store_bounds, strided_spans
from .loop_partition import partition_kernel
from .. import config

ELEMENTWISE_PRIMS = frozenset(SCALAR_RULES)
MOVEMENT_PRIMS = frozenset({"reshape", "permute", "broadcast_to", "slice", "pad", "concat"})
REDUCE_PRIMS = frozenset({"reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "argmax", "argmin"})
OTHER_PRIMS = frozenset({"gather", "scatter", "scatter_add", "matmul", "conv", "constant", "iota",
                         "random_uniform"})


def lowerable_primitives() -> frozenset[str]:
    """Every primitive this lowering handles natively."""
    return ELEMENTWISE_PRIMS | MOVEMENT_PRIMS | REDUCE_PRIMS | OTHER_PRIMS


# a blocked matmul writes its epilogue out once per column of the block (64): above this many
# epilogue nodes (an optimizer update fused into a weight gradient, say) the code grows too much
EPILOGUE_UNROLL_LIMIT = 4


class LoweringError(NotImplementedError):
    pass


@dataclass
class IndexCheck:
    """A native bounds check: what the runtime reports when index `code` fails."""
    code: int
    op: str
    axis: int
    size: int
    node: str
    loc: object = None

    def message(self, value: int) -> str:
        where = f" (at {self.loc})" if self.loc else ""
        return (f"{self.op}: index {value} is out of bounds for dimension {self.axis} with size {self.size}"
                f" in compiled code{where}")


@dataclass
class ProgramBuffer:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    role: str  # input | output | temp | const | scratch (kernel-private, never a graph value)
    data: np.ndarray | None = None  # const buffers
    value: str = ""  # the graph value it holds (its node's name)
    strides: tuple[int, ...] | None = None  # inputs: the element strides it is read through (None: contiguous)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class LoweredProgram:
    """A whole graph as kernels and the buffers they run over, in call order."""
    name: str
    kernels: list[KernelFunc]
    buffers: list[ProgramBuffer]
    calls: list[tuple[str, list[str]]]  # kernel name, program buffer per kernel param
    inputs: list[str]                   # program buffer per graph input
    outputs: list[str]                  # program buffer per graph output
    checks: list[IndexCheck] = field(default_factory=list)

    def buffer(self, name: str) -> ProgramBuffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def as_text(self) -> str:
        lines = [f"program {self.name}:"]
        for b in self.buffers:
            lines.append(f"  buffer {b.name}: {b.role} {b.dtype.short}{list(b.shape)}")
        for kname, args in self.calls:
            lines.append(f"  call {kname}({', '.join(args)})")
        lines.append("  return " + ", ".join(self.outputs))
        return "\n".join(lines) + "\n\n" + "\n".join(str(k) for k in self.kernels)


class _KernelLowering:
    def __init__(self, kernel: Kernel, name: str, checks: list[IndexCheck]):
        self.k = kernel
        self.name = name
        self.em = Emitter()
        self.buf_names: dict[int, str] = {}  # id(node) -> kernel param name for kernel inputs and outputs
        self.consts: dict[int, str] = {}  # id(node) -> kernel param name of a literal array
        self.checks = checks
        self.members = {id(n) for n in kernel.nodes}
        self.inputs = {id(n) for n in kernel.inputs}
        self.scratch: list[tuple[str, Node, int]] = []  # (param name, the value it serves, elements)
        self.strides: dict[int, tuple[int, ...]] = {}  # graph inputs read through element strides
        self.addressers: dict = {}  # id(node) -> (buffer, index -> flat position): a GEMM's C blocks
        # id(node) -> the scratch buffer a computed value is read back from (its output buffer, when
        # it is also a kernel output, keeps its own name in buf_names: stores still go there)
        self.read_back: dict[int, str] = {}
        self.flop_cost = 0  # a GEMM's work, for the parallel threshold (cost counts elements otherwise)
        self.work = 0  # multiply-adds of a blocked conv: part of the kernel's cost (parallel or not)
        self.vector_hints: dict[str, int] = {}  # loop variable -> vector width (1: keep it scalar)
        self.cpu_blocking = True  # the CPU's GEMM / register-blocked matmul and conv (CUDA maps them itself)

    # -- values ----------------------------------------------------------------------------------
    def load(self, n: Node, index: ix.Index) -> Expr:
        name = self.read_back.get(id(n)) or self.buf_names.get(id(n))
        strides = self.strides.get(id(n))
        if id(n) in self.addressers:
            name, address = self.addressers[id(n)]
            flat = address(index)
        elif strides is None:
            flat = ix.linearize(index, n.shape)
        else:  # a strided view of the caller's memory, read in place (element strides, any sign)
            flat = idx(0)
            for e, st, size in zip(index, strides, n.shape):
                if st and size != 1:
                    flat = op("add", flat, op("mul", e, idx(st)))
        return self.em.bind(Load(name, flat, n.dtype), "x")

    def value(self, n: Node, index: ix.Index) -> Expr:
        key = (id(n), index)
        hit = self.em.lookup(key)
        if hit is not None:
            return hit
        if id(n) in self.inputs or id(n) not in self.members:
            v = self.load(n, index)
        else:
            v = self.em.bind(self._compute(n, index), "v")
        return self.em.remember(key, v)

    def _compute(self, n: Node, index: ix.Index) -> Expr:
        p = n.op
        a = n.attrs
        if p in SCALAR_RULES:
            args = [self.value(i, ix.broadcast_index(index, i.shape, n.shape) if tuple(i.shape) != tuple(n.shape)
                               else index) for i in n.inputs]
            return scalar_value(p, args, a, n.dtype)
        if p == "reshape":
            x = n.inputs[0]
            return self.value(x, ix.reshape_index(index, n.shape, x.shape))
        if p == "permute":
            return self.value(n.inputs[0], ix.permute_index(index, a["perm"]))
        if p == "broadcast_to":
            x = n.inputs[0]
            return self.value(x, ix.broadcast_index(index, x.shape, n.shape))
        if p == "slice":
            return self.value(n.inputs[0], ix.slice_index(index, a["starts"], a["steps"]))
        if p == "pad":
            x = n.inputs[0]
            if x.numel == 0:
                return const(a["value"], n.dtype)
            src, valid = ix.pad_index(index, x.shape, a["lo"], a["hi"], a["interior"])
            v = self.value(x, src)
            return v if valid is None else op("select", valid, v, const(a["value"], n.dtype))
        if p == "concat":
            return self._concat(n, index)
        if p == "iota":
            return cast_value(index[a["axis"]], n.dtype) if n.shape else const(0, n.dtype)
        if p == "constant":
            if isinstance(a["value"], (list, tuple)):
                return Load(self.consts[id(n)], ix.linearize(index, n.shape), n.dtype)
            return const(a["value"], n.dtype)
        if p == "random_uniform":
            return self._random(n, index)
        if p == "gather":
            return self._gather(n, index)
        if p in REDUCE_PRIMS:
            return self._reduce(n, index)
        if p == "matmul":
            return self._matmul(n, index)
        if p == "conv":
            return self._conv(n, index)
        raise LoweringError(f"no native lowering for primitive {p!r} (%{n.name})")

    def _concat(self, n: Node, index: ix.Index) -> Expr:
        axis = n.attrs["axis"]
        parts = [(x, x.shape[axis]) for x in n.inputs]
        pos = index[axis]
        off = 0
        result: Expr | None = None
        pieces = []
        for x, size in parts:
            if size == 0:
                continue
            local = op("sub", pos, idx(off))
            inside = op("and", op("ge", local, idx(0)), op("lt", local, idx(size)))
            clamped = op("select", inside, local, idx(0))
            sub = tuple(clamped if d == axis else e for d, e in enumerate(index))
            pieces.append((inside, sub, x))
            off += size
        for inside, sub, x in reversed(pieces):
            v = self.value(x, sub)
            result = v if result is None else op("select", inside, v, result)
        return result if result is not None else const(0, n.dtype)

    def _check(self, n: Node, value: Expr, axis: int, size: int) -> Expr:
        """Emit a native bounds check of index `value` against `size`; returns it as int64.

        A gather or scatter whose index tensor (input 1) is empty reads no index: it gets no
        check, since the emitter would hoist a loop-invariant one out of the loops that never run."""
        if n.inputs[1].numel == 0:
            return idx(0)
        v = self.em.bind(ix.as_index(value), "ix")
        code = len(self.checks) + 1
        self.checks.append(IndexCheck(code, n.op, axis, size, n.name, n.loc))
        bad = self.em.bind(op("or", op("lt", v, idx(0)), op("ge", v, idx(size))), "bad")
        self.em.emit(If(bad, [Fail(code, (v,))]), self.em.level(bad))
        return self.em.bind(op("select", bad, idx(0), v), "ix")  # never read outside the buffer

    def _gather(self, n: Node, index: ix.Index) -> Expr:
        x, ind = n.inputs
        axis = n.attrs["axis"]
        v = self._check(n, self.value(ind, index), axis, x.shape[axis])
        src = tuple(v if d == axis else e for d, e in enumerate(index))
        return self.value(x, src)

    def _random(self, n: Node, index: ix.Index) -> Expr:
        seed = self.value(n.inputs[0], ())
        offset = self.value(n.inputs[1], ())
        i64 = dt.int64

        def mix(z: Expr) -> Expr:
            z = op("mul", op("xor", z, op("lshr", z, idx(30))), Const(_s64(0xBF58476D1CE4E5B9), i64))
            z = op("mul", op("xor", z, op("lshr", z, idx(27))), Const(_s64(0x94D049BB133111EB), i64))
            return op("xor", z, op("lshr", z, idx(31)))

        key = self.em.bind(mix(op("add", seed, Const(_s64(0x632BE59BD9B4E019), i64))), "key")
        ctr = op("add", ix.linearize(index, n.shape), offset)
        bits = mix(op("add", key, op("mul", ctr, Const(_s64(0x9E3779B97F4A7C15), i64))))
        if n.dtype == dt.float64:
            u = op("mul", op("cast", op("lshr", bits, idx(11)), dtype=dt.float64), const(1.0 / (1 << 53), dt.float64))
            return u
        u = op("mul", op("cast", op("lshr", bits, idx(40)), dtype=dt.float64), const(1.0 / (1 << 24), dt.float64))
        return op("cast", u, dtype=n.dtype)

    # -- reductions ------------------------------------------------------------------------------
    def _accumulate(self, loops: Sequence[int], body, inits: Sequence[Expr], level: int) -> list[Var]:
        """Run `body(loop_vars, accs) -> new accs` over nested loops of the given extents,
        opened at `level`; returns the accumulators, valid after the loops."""
        em = self.em
        accs = [em.local(i, level) for i in inits]
        tokens, vars_ = [], []
        lv = level
        for ext in loops:
            v, t = em.open_loop(ext, level=lv, hint="r")
            tokens.append(t)
            vars_.append(v)
            lv = len(em.frames) - 1
        inner = len(em.frames) - 1
        for a in accs:  # read inside the loop, an accumulator varies with it: nothing using it is hoisted
            em.var_level[a.name] = inner
        new = body(vars_, accs)
        if len(accs) > 1:  # every new value from the old ones, then the updates
            new = [em.bind(nv, "t") for nv in new]
        for a, nv in zip(accs, new):
            em.assign(a, nv)
        for t in reversed(tokens):
            em.close_loop(t)
        for a in accs:
            em.var_level[a.name] = level
        return accs

    def _reduce(self, n: Node, index: ix.Index) -> Expr:
        x = n.inputs[0]
        p = n.op
        if p in ("argmax", "argmin"):
            axes = (n.attrs["axis"],)
        else:
            axes = tuple(sorted(n.attrs["axes"]))
        keep = n.attrs.get("keepdims", False)
        kept = [d for d in range(len(x.shape)) if d not in axes]
        if keep:
            outer = [index[d] for d in kept]
        else:
            outer = list(index)
        level = self.em.level(*outer) if outer else 0
        acc_dtype = accumulator_dtype(x.dtype)

        def src_index(rvars):
            full: list[Expr] = [idx(0)] * len(x.shape)
            for d, e in zip(kept, outer):
                full[d] = e
            for d, v in zip(axes, rvars):
                full[d] = v
            return tuple(full)

        extents = [x.shape[d] for d in axes]
        if reduce_lower.is_window(extents):  # a pooling window: one statement per element, no loop
            def accumulate(body, inits):
                return reduce_lower.accumulate_unrolled(self.em, extents, body, inits)
        else:
            def accumulate(body, inits):
                return self._accumulate(extents, body, inits, level)
        if p in ("argmax", "argmin"):
            cmp = "gt" if p == "argmax" else "lt"
            init_v = reduce_init("reduce_max" if p == "argmax" else "reduce_min", acc_dtype)

            def body(rv, accs):
                best, arg = accs
                v = self.value(x, src_index(rv))
                v = op("cast", v, dtype=acc_dtype) if v.dtype != acc_dtype else v
                take = op(cmp, v, best)
                if acc_dtype.is_floating_point:  # the first nan wins, as in numpy
                    take = op("or", take, op("and", op("isnan", v), op("not", op("isnan", best))))
                    if not isinstance(rv[0], Const):
                        take = op("or", take, op("eq", rv[0], idx(0)))
                    elif rv[0].value == 0:
                        take = const(True, dt.bool_)
                return [op("select", take, v, best), op("select", take, rv[0], arg)]
            best, arg = accumulate(body, [init_v, idx(0)])
            return cast_value(arg, n.dtype)

        def body(rv, accs):
            (acc,) = accs
            return [combine(p, acc, cast_value(self.value(x, src_index(rv)), acc_dtype))]
        (acc,) = accumulate(body, [reduce_init(p, acc_dtype)])
        return cast_value(acc, n.dtype)

    def _matmul(self, n: Node, index: ix.Index) -> Expr:
        a, b = n.inputs
        kdim = a.shape[-1]
        batch = list(index[:-2])
        i, j = index[-2], index[-1]
        acc_dtype = dt.float32 if n.dtype == dt.float16 else n.dtype
        level = self.em.level(*index)

        def body(rv, accs):
            (acc,) = accs
            (k,) = rv
            av = self.value(a, tuple(batch + [i, k]))
            bv = self.value(b, tuple(batch + [k, j]))
            if av.dtype != acc_dtype:
                av, bv = op("cast", av, dtype=acc_dtype), op("cast", bv, dtype=acc_dtype)
            return [op("add", acc, op("mul", av, bv))]
        (acc,) = self._accumulate([kdim], body, [const(0, acc_dtype)], level)
        return cast_value(acc, n.dtype)

    def _conv(self, n: Node, index: ix.Index) -> Expr:
        x, w = n.inputs
        a = n.attrs
        groups = a["groups"]
        cg = w.shape[1]
        og = w.shape[0] // groups
        ks = w.shape[2:]
        nb, o = index[0], index[1]
        sp = index[2:]
        acc_dtype = dt.float32 if n.dtype == dt.float16 else n.dtype
        level = self.em.level(*index)
        gbase = op("mul", op("div", o, idx(og)), idx(cg)) if groups > 1 else idx(0)

        def body(rv, accs):
            (acc,) = accs
            c, taps = rv[0], rv[1:]
            pos, valid = [], None
            for d, (t, p_out) in enumerate(zip(taps, sp)):
                lo = a["padding"][d][0]
                q = op("sub", op("add", op("mul", p_out, idx(a["strides"][d])), op("mul", t, idx(a["dilation"][d]))),
                       idx(lo))
                size = x.shape[2 + d]
                inside = ix.in_bounds(q, size)
                pos.append(op("select", inside, q, idx(0)) if (lo or a["padding"][d][1]) else q)
                if lo or a["padding"][d][1]:
                    valid = inside if valid is None else op("and", valid, inside)
            xv = self.value(x, tuple([nb, op("add", gbase, c)] + pos))
            wv = self.value(w, tuple([o, c] + list(taps)))
            if xv.dtype != acc_dtype:
                xv, wv = op("cast", xv, dtype=acc_dtype), op("cast", wv, dtype=acc_dtype)
            prod = op("mul", xv, wv)
            if valid is not None:
                prod = op("select", valid, prod, const(0, acc_dtype))
            return [op("add", acc, prod)]
        (acc,) = self._accumulate([cg] + list(ks), body, [const(0, acc_dtype)], level)
        return cast_value(acc, n.dtype)

    # -- loop nests that write the outputs ----------------------------------------------------------
    def nest(self, shape: Sequence[int], order: Sequence[int] | None = None) -> tuple[ix.Index, list]:
        order = list(range(len(shape))) if order is None else list(order)
        vars_: list[Expr] = [idx(0)] * len(shape)
        tokens = []
        for d in order:
            if shape[d] == 1:
                continue
            v, t = self.em.open_loop(shape[d], hint="i")
            vars_[d] = v
            tokens.append(t)
        return tuple(vars_), tokens

    def close(self, tokens) -> None:
        for t in reversed(tokens):
            self.em.close_loop(t)

    def store(self, o: Node, index: ix.Index) -> None:
        if o.numel == 0:
            # Nothing to write. Its index is not even meaningful: in a zero-size domain every
            # value has numel 0 and is taken as a reshape of the domain, which can map it to a
            # loop that runs (out0[i1] for i1 in 0..5 into an empty buffer: a heap overwrite).
            return
        v = self.value(o, index)
        self.em.emit(Store(self.buf_names[id(o)], ix.linearize(index, o.shape), v), self.em.level(v, *index))

    def write_outputs(self, outs: Sequence[Node]) -> None:
        k = self.k
        if k.kind == KernelKind.SCATTER:
            self._scatter(outs)
            return
        domain = tuple(k.anchor.shape) if k.anchor is not None else tuple(k.domain)
        order = None
        row_of = None
        if k.kind == KernelKind.REDUCTION and k.reduce_axes is not None:
            R = tuple(k.reduce_axes)
            order = [d for d in range(len(domain)) if d not in R] + list(R)
            row_shape = [domain[d] for d in range(len(domain)) if d not in R]
            row_of = (R, row_shape)
        numel = math.prod(domain)
        full = [o for o in outs if o.numel == numel]
        rows = [o for o in outs if row_of is not None and o.numel == math.prod(row_of[1]) and o not in full]
        rest = [o for o in outs if o not in full and o not in rows]
        if full and k.anchor is not None and k.anchor.op == "matmul" and self.cpu_blocking:
            if not rows and gemm.applies(k.anchor, k.nodes, outs):
                rest = gemm.lower_gemm(self, full, rest)  # side outputs: fused sums, else written below
                full = []
            elif self._blocked_matmul(full, domain):
                full = []
        if (full and k.anchor is not None and k.anchor.op == "conv" and self.cpu_blocking
                and lower_blocked_conv(self, full, domain)):
            full = []
        if rows and reduce_lower.lower_columns(self, full, rows, domain, row_of[0]):
            full, rows = [], []  # an outer-axis reduction: blocks of contiguous columns
        if rows and full and reduce_lower.lower_row_sweep(self, full, rows, domain, row_of[0]):
            full, rows = [], []  # full-size outputs stored from the reduction's own loop
        if full or rows:
            windows, full_domain, lanes = [{}], domain, 1
            if not full:  # row values only: loop over the rows, the reductions open their own loops
                R = row_of[0]
                domain = tuple(1 if d in R else s for d, s in enumerate(domain))
            elif row_of is not None and reduce_lower.is_window([domain[d] for d in row_of[0]]):
                # the full-size outputs of a window reduction (pooling's masks): one store per window
                # element at constant window indices, reading the values the reductions computed
                R = row_of[0]
                windows = reduce_lower.window_positions(domain, R)
                domain = tuple(1 if d in R else s for d, s in enumerate(domain))
            elif k.kind == KernelKind.ELEMENTWISE:  # a pooling window's gradient: the last axis in lanes
                lanes = reduce_lower.lane_split(self, domain)
                domain = domain[:-1] + (domain[-1] // lanes,) if lanes > 1 else domain
            index, tokens = self.nest(domain, order)
            for o in rows:  # one value per row, stored at the row's loop level
                R, row_shape = row_of
                rix = [e for d, e in enumerate(index) if d not in R]
                self.store(o, ix.reshape_index(tuple(rix), row_shape, o.shape)
                           if tuple(o.shape) != tuple(row_shape) else tuple(rix))
            positions = [tuple(at.get(d, e) for d, e in enumerate(index)) for at in windows]
            if lanes > 1:
                positions = [index[:-1] + (op("add", op("mul", index[-1], idx(lanes)), idx(lane)),)
                             for lane in range(lanes)]
            for pos in positions:
                for o in full:  # a reshape of the domain: runs of equal products map without division
                    self.store(o, ix.reshape_index(pos, full_domain, o.shape) if tuple(o.shape) != full_domain
                               else pos)
            self.close(tokens)
        for o in rest:
            index, tokens = self.nest(o.shape)
            self.store(o, index)
            self.close(tokens)

    def _blocked_matmul(self, full: Sequence[Node], domain: tuple[int, ...]) -> bool:
        """Write a matmul kernel's outputs with `width` columns of the result per step: for each
        (row, block of columns), `width` accumulators over k, each update a row of the right
        operand that is contiguous in memory (the SLP vectorizer makes it one vector FMA), then
        the epilogue per element. Only when the right operand's rows are contiguous (as in
        `x @ w` and the weight gradient `g.T @ x`); `x @ w.T` reads both operands along k
        and vectorizes the k reduction instead. Returns False when it does not apply."""
        mm = self.k.anchor
        a, b = mm.inputs
        n, kdim = mm.shape[-1], a.shape[-1]
        vec = 16 if mm.dtype == dt.float32 else 8
        # four vectors of accumulators when the row is wide enough: independent FMA chains hide latency
        width = 4 * vec if n >= 4 * vec else vec
        if mm.dtype not in (dt.float32, dt.float64) or n < width or kdim == 0 or not self._rows_contiguous(b):
            return False
        lead = list(domain[:-1])
        scratch = self._epilogue_size(mm) > EPILOGUE_UNROLL_LIMIT
        if scratch and math.prod(lead) <= 1:
            return False  # phase 2 would be chunked over other loops than phase 1 (threads)
        blocks = n // width
        em = self.em
        index, tokens = self.nest(tuple(lead) + (1,))
        outer = list(index[:-1])
        jb, tok = em.open_loop(blocks, hint="jb")
        tokens.append(tok)
        level = len(em.frames) - 1
        base = op("mul", jb, idx(width))
        cols = [op("add", base, idx(t)) for t in range(width)]
        batch, i = outer[:-1], outer[-1]

        def body(rv, accs):
            (kk,) = rv
            av = self.value(a, tuple(batch + [i, kk]))
            return [op("fma", av, self.value(b, tuple(batch + [kk, c])), acc) for acc, c in zip(accs, cols)]
        accs = self._accumulate([kdim], body, [const(0, mm.dtype)] * width, level)
        if scratch:
            # a large epilogue (an optimizer update fused into a weight gradient) is not written out
            # once per column: phase 1 stores the products into a scratch buffer, phase 2 runs the
            # epilogue over it per element (the same rows on the same thread: same outer loop)
            sname = self.scratch_param(mm)
            for acc, c in zip(accs, cols):
                em.emit(Store(sname, ix.linearize(tuple(outer + [c]), mm.shape), acc), em.level(acc))
            self.close(tokens)
            if n % width:
                index, tokens = self.nest(tuple(lead) + (n % width,))
                pos = tuple(list(index[:-1]) + [op("add", index[-1], idx(blocks * width))])
                v = self._matmul(mm, pos)
                em.emit(Store(sname, ix.linearize(pos, mm.shape), v), em.level(v, *pos))
                self.close(tokens)
            self.inputs.add(id(mm))  # from here on the product is read from the scratch buffer
            self.read_back[id(mm)] = sname
            index, tokens = self.nest(domain)
            for o in full:
                self.store(o, ix.delinearize(ix.linearize(index, domain), o.shape) if tuple(o.shape) != domain
                           else index)
            self.close(tokens)
            return True
        for acc, c in zip(accs, cols):
            em.remember((id(mm), tuple(outer + [c])), acc)
        for c in cols:
            pos = tuple(outer + [c])
            for o in full:
                self.store(o, ix.delinearize(ix.linearize(pos, domain), o.shape) if tuple(o.shape) != domain else pos)
        self.close(tokens)
        if n % width:  # the last columns, one at a time
            index, tokens = self.nest(tuple(lead) + (n % width,))
            pos = tuple(list(index[:-1]) + [op("add", index[-1], idx(blocks * width))])
            for o in full:
                self.store(o, ix.delinearize(ix.linearize(pos, domain), o.shape) if tuple(o.shape) != domain else pos)
            self.close(tokens)
        return True

    def scratch_param(self, n: Node, numel: int | None = None, hint: str = "s") -> str:
        """A kernel-private buffer of `n`'s dtype, `numel` elements (default: `n`'s), e.g. the
        values of `n` or a GEMM's packed panels. The runtime allocates it once per program;
        kernels run one after another, so every kernel's scratch of one name and dtype shares it."""
        pname = f"{hint}{len(self.scratch)}"
        self.scratch.append((pname, n, n.numel if numel is None else numel))
        return pname

    def _epilogue_size(self, anchor: Node) -> int:
        """How many of this kernel's nodes compute from the anchor's result."""
        after = {id(anchor)}
        for m in self.k.nodes:
            if any(id(i) in after for i in m.inputs):
                after.add(id(m))
        return len(after) - 1

    def _rows_contiguous(self, n: Node) -> bool:
        """Is `n`'s last dimension contiguous in the memory it is read from (a kernel input, or
        views that keep the last axis last)?"""
        while id(n) in self.members and id(n) not in self.inputs:
            if n.op == "permute" and n.attrs["perm"][-1] == len(n.shape) - 1:
                n = n.inputs[0]
            elif n.op == "broadcast_to" and n.inputs[0].shape and n.inputs[0].shape[-1] == n.shape[-1]:
                n = n.inputs[0]
            elif n.op == "slice" and n.attrs["steps"][-1] == 1:
                n = n.inputs[0]
            else:
                return False
        return True

    def _scatter(self, outs: Sequence[Node]) -> None:
        s = self.k.anchor
        base, ind, src = s.inputs
        axis = s.attrs["axis"]
        out = self.buf_names[id(s)]
        # 1. the base, copied into the output
        index, tokens = self.nest(s.shape)
        v = self.value(base, index)
        self.em.emit(Store(out, ix.linearize(index, s.shape), v), self.em.level(v, *index))
        self.close(tokens)
        # 2. every update, in order (a later write to one position wins, as in numpy)
        index, tokens = self.nest(ind.shape)
        pos = self._check(s, self.value(ind, index), axis, s.shape[axis])
        dst = ix.linearize(tuple(pos if d == axis else e for d, e in enumerate(index)), s.shape)
        val = self.value(src, index)
        if s.op == "scatter_add":
            cur = Load(out, dst, s.dtype)
            val = scalar_value("add", [cur, val], {}, s.dtype) if not s.dtype.is_bool else op("or", cur, val)
        self.em.emit(Store(out, dst, val), len(self.em.frames) - 1)
        self.close(tokens)
        for o in outs:
            if o is not s:
                raise LoweringError(f"scatter kernel {self.k.id} writes %{o.name} besides its scatter")

    def finish(self, params: list[BufferParam], source: str) -> KernelFunc:
        elements = sum(n.numel for n in self.k.nodes) + sum(n.numel for n in self.k.inputs)
        cost = max(elements + self.work, self.flop_cost)
        # a scatter's updates may hit one position twice: its loops must run in order
        kf = KernelFunc(self.name, params, self.em.body, source=source, cost=cost,
                        independent_outer=self.k.kind != KernelKind.SCATTER)
        for var, width in self.vector_hints.items():
            kf.schedule.loops.setdefault(var, LoopSchedule()).vector_width = width
        return kf


def _s64(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


def lower_kernel(kernel: Kernel, name: str, const_nodes: dict[int, Node], checks: list[IndexCheck],
                 strides: dict[int, tuple[int, ...]] | None = None, cpu_blocking: bool = True
                 ) -> tuple[KernelFunc, list[tuple[str, Node]]]:
    """Lower one plan kernel. Returns the kernel and, per param, (its role, the node behind it):
    role "in"/"out" for values in memory, "const" for a literal array the kernel reads.
    `strides`: graph inputs given as strided views (element strides), read without copies.
    `cpu_blocking=False` writes a matmul or conv per output element (one dot product each: GPU threads)."""
    low = _KernelLowering(kernel, name, checks)
    low.cpu_blocking = cpu_blocking
    low.strides = dict(strides or {})
    params: list[BufferParam] = []
    nodes: list[tuple[str, Node]] = []
    for k, i in enumerate(kernel.inputs):
        pname = f"in{k}"
        low.buf_names[id(i)] = pname
        params.append(BufferParam(pname, i.dtype, i.numel, "r"))
        nodes.append(("in", i))
    for k, n in enumerate(m for m in kernel.nodes if id(m) in const_nodes):
        pname = f"c{k}"
        low.consts[id(n)] = pname
        params.append(BufferParam(pname, n.dtype, n.numel, "r"))
        nodes.append(("const", n))
    outs = list(kernel.outputs)
    for k, o in enumerate(outs):
        pname = f"out{k}"
        low.buf_names[id(o)] = pname
        params.append(BufferParam(pname, o.dtype, o.numel, "rw" if kernel.kind == KernelKind.SCATTER else "w"))
        nodes.append(("out", o))
    low.write_outputs(outs)
    for pname, n, numel in low.scratch:
        params.append(BufferParam(pname, n.dtype, numel, "rw"))
        nodes.append(("scratch", n))
    return low.finish(params, f"plan kernel {kernel.id} [{kernel.kind}] domain={list(kernel.domain)}"), nodes


def lower_plan(plan: FusionPlan, name: str = "main",
               input_strides: Sequence[tuple[int, ...] | None] | None = None,
               cpu_blocking: bool = True) -> LoweredProgram:
    """Lower every kernel of `plan`; graph inputs, outputs and intermediates become buffers.
    `input_strides[k]`: the element strides graph input k arrives with (None: C-contiguous);
    `cpu_blocking`: the CPU's packed GEMM and register-blocked matmul/conv (False for the CUDA backend)."""
    g = plan.graph
    strided = {id(n): tuple(st) for n, st in zip(g.inputs, input_strides or ()) if st is not None}
    buffers: list[ProgramBuffer] = []
    bname: dict[int, str] = {}      # values in memory
    cname: dict[int, str] = {}      # literal arrays
    sname: dict[tuple[str, str], ProgramBuffer] = {}  # kernel-private scratch by (param, dtype): kernels share it

    def buf(table: dict, n: Node, role: str, data=None) -> str:
        if id(n) not in table:
            table[id(n)] = f"b{len(buffers)}"
            buffers.append(ProgramBuffer(table[id(n)], n.dtype, tuple(n.shape), role, data, n.name))
        return table[id(n)]

    for n in g.inputs:
        buf(bname, n, "input")
        buffers[-1].strides = strided.get(id(n))
    outs = {id(o) for o in g.outputs}
    const_nodes: dict[int, Node] = {}
    for k in plan.kernels:
        for n in k.nodes:
            if n.op == "constant" and isinstance(n.attrs["value"], (list, tuple)):
                const_nodes[id(n)] = n
    kernels, calls, checks = [], [], []
    for k in plan.kernels:
        for o in k.outputs:
            buf(bname, o, "output" if id(o) in outs else "temp")
        kf, params = lower_kernel(k, f"{name}_k{k.id}", const_nodes, checks, strided, cpu_blocking)
        # the CUDA backend splits top-level loops only: its threads take a whole collapsed nest
        kf = partition_kernel(kf, nested=cpu_blocking)
        args = []
        for (role, n), param in zip(params, kf.params):
            if role == "const":
                args.append(buf(cname, n, "const", get_primitive("constant").impl(**n.attrs)))
            elif role == "scratch":
                key = (param.name, param.dtype.name)
                if key not in sname:
                    sname[key] = ProgramBuffer(f"b{len(buffers)}", param.dtype, (0,), "scratch",
                                               value=f"scratch {param.name}")
                    buffers.append(sname[key])
                sb = sname[key]
                sb.shape = (max(sb.shape[0], param.numel),)
                args.append(sb.name)
            else:
                args.append(bname[id(n)])
        if config.get().verify:  # every load and store within its buffer (a strided input: its span)
            check_store_bounds(kf, spans=strided_spans(kf.params, params, strided))
        kernels.append(kf)
        calls.append((kf.name, args))
    for o in g.outputs:
        if id(o) not in bname:
            raise LoweringError(f"graph output %{o.name} is written by no kernel")
    return LoweredProgram(name, kernels, buffers, calls, [bname[id(n)] for n in g.inputs],
                          [bname[id(o)] for o in g.outputs], checks)

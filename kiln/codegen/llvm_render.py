"""Kernel IR -> LLVM IR text (llvmlite.ir). Knows kernel IR, not primitives.

Each kernel becomes one internal function over `noalias` buffer pointers returning an i32
status (0: ok; otherwise the code of a failed native check, with its payload written to
the status buffer). Locals are stack slots that LLVM promotes to registers; float ops
carry `reassoc contract` fast-math flags (so reductions vectorize) unless strict.
`render_program` adds one entry point that runs every kernel of a lowered program.
"""
from __future__ import annotations

from typing import Sequence

import llvmlite.ir as ir

from ..ir.dtypes import DType
from .kir import (COMPOSITE_OPS, Assign, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op, Store, TileMMA,
                  TransposeCopy, Var)
from .schedule import barrier_plan

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()

_LTYPE = {"bool": I1, "int32": I32, "int64": I64, "float16": ir.HalfType(), "float32": ir.FloatType(),
          "float64": ir.DoubleType()}
TRANSPOSE_SIDE = 16  # largest square a transpose_copy is cut into (16 x 16 float32: 64 permutes)
_ICMP = {"lt": "<", "le": "<=", "eq": "==", "ne": "!=", "gt": ">", "ge": ">="}


def ltype(d: DType) -> ir.Type:
    return _LTYPE[d.name]


def storage_type(d: DType) -> ir.Type:
    return I8 if d.is_bool else ltype(d)


class _FunctionRenderer:
    def __init__(self, module: ir.Module, k: KernelFunc, strict_fp: bool):
        self.m = module
        self.k = k
        # fast-math only where a reduction accumulates (`acc = acc + v`): re-associating it lets the
        # loop vectorize; every other op rounds as written (the vector-math polynomials need that)
        self.acc_flags = () if strict_fp else ("reassoc", "contract")
        self.flags = ()
        ftype = ir.FunctionType(I32, [PTR] * (len(k.params) + 1) + [I64, I64])
        self.fn = ir.Function(module, ftype, name=k.name)
        self.fn.linkage = "internal"
        self.fn.attributes.add("nounwind")
        self.bufs: dict[str, tuple[ir.Value, DType]] = {}
        for arg, p in zip(self.fn.args, k.params):
            arg.name = p.name
            arg.add_attribute("noalias")
            self.bufs[p.name] = (arg, p.dtype)
        self.status, self.tid, self.nthreads = self.fn.args[-3:]
        self.status.name, self.tid.name, self.nthreads.name = "status", "tid", "nthreads"
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.slots: dict[str, ir.Value] = {}
        self._n = 0

    # -- helpers --------------------------------------------------------------------------------
    def _slot(self, v: Var) -> ir.Value:
        s = self.slots.get(v.name)
        if s is None:
            with self.b.goto_block(self.entry):
                self.b.position_at_start(self.entry)
                s = self.b.alloca(ltype(v.dtype), name=v.name)
            self.slots[v.name] = s
        return s

    def _intrinsic(self, name: str, d: DType, args: Sequence[ir.Value], extra_types=()) -> ir.Value:
        t = ltype(d)
        suffix = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
                  "bool": "i1"}[d.name]
        full = f"{name}.{suffix}"
        fn = self.m.globals.get(full)
        if fn is None:
            argt = [a.type for a in args]
            fn = ir.Function(self.m, ir.FunctionType(t if not extra_types else extra_types[0], argt), name=full)
        return self.b.call(fn, list(args))

    # -- expressions ----------------------------------------------------------------------------
    def expr(self, e: Expr) -> ir.Value:
        b = self.b
        if isinstance(e, Const):
            t = ltype(e.dtype)
            if e.dtype.is_floating_point:
                return ir.Constant(t, float(e.value))
            v = int(e.value)
            return ir.Constant(t, v & ((1 << t.width) - 1) if v < 0 else v)
        if isinstance(e, Var):
            return b.load(self._slot(e), typ=ltype(e.dtype))
        if isinstance(e, Load):
            ptr, d = self.bufs[e.buf]
            p = b.gep(ptr, [self.expr(e.index)], inbounds=True, source_etype=storage_type(d))
            v = b.load(p, typ=storage_type(d))
            return b.trunc(v, I1) if d.is_bool else v
        if isinstance(e, Op):
            return self.op(e)
        raise TypeError(f"not a kernel IR expression: {e!r}")

    def op(self, e: Op) -> ir.Value:
        b = self.b
        name, d = e.name, e.args[0].dtype
        a = [self.expr(x) for x in e.args]
        fl = d.is_floating_point
        f = self.flags
        if name == "add":
            return b.fadd(a[0], a[1], flags=f) if fl else b.add(a[0], a[1])
        if name == "sub":
            return b.fsub(a[0], a[1], flags=f) if fl else b.sub(a[0], a[1])
        if name == "mul":
            return b.fmul(a[0], a[1], flags=f) if fl else b.mul(a[0], a[1])
        if name == "div":
            return b.fdiv(a[0], a[1], flags=f) if fl else b.sdiv(a[0], a[1])
        if name == "rem":
            return b.frem(a[0], a[1]) if fl else b.srem(a[0], a[1])
        if name == "neg":
            return b.fneg(a[0], flags=f) if fl else b.sub(ir.Constant(a[0].type, 0), a[0])
        if name == "abs":
            if fl:
                return self._intrinsic("llvm.fabs", d, a)
            return self._intrinsic("llvm.abs", d, [a[0], ir.Constant(I1, 0)])
        if name in ("min", "max"):
            if fl:
                return self._intrinsic("llvm.minimum" if name == "min" else "llvm.maximum", d, a)
            if d.is_bool:
                return b.and_(a[0], a[1]) if name == "min" else b.or_(a[0], a[1])
            return self._intrinsic("llvm.smin" if name == "min" else "llvm.smax", d, a)
        if name == "fma":
            return self._intrinsic("llvm.fma", d, a) if fl else b.add(b.mul(a[0], a[1]), a[2])
        if name in ("floor", "ceil", "trunc", "rint", "sqrt"):
            return self._intrinsic(f"llvm.{name}", d, a) if fl else a[0]
        if name == "copysign":
            return self._intrinsic("llvm.copysign", d, a)
        if name in _ICMP:
            if fl:
                if name == "ne":
                    return b.fcmp_unordered("!=", a[0], a[1])
                return b.fcmp_ordered(_ICMP[name], a[0], a[1])
            if d.is_bool:
                return b.icmp_unsigned(_ICMP[name], a[0], a[1])
            return b.icmp_signed(_ICMP[name], a[0], a[1])
        if name == "isnan":
            return b.fcmp_unordered("uno", a[0], a[0])
        if name == "and":
            return b.and_(a[0], a[1])
        if name == "or":
            return b.or_(a[0], a[1])
        if name == "xor":
            return b.xor(a[0], a[1])
        if name == "not":
            return b.not_(a[0])
        if name == "shl":
            return b.shl(a[0], a[1])
        if name == "lshr":
            return b.lshr(a[0], a[1])
        if name == "ashr":
            return b.ashr(a[0], a[1])
        if name == "select":
            return b.select(a[0], a[1], a[2])
        if name == "cast":
            return self.cast(a[0], d, e.dtype)
        if name == "bitcast":
            return b.bitcast(a[0], ltype(e.dtype))
        if name in COMPOSITE_OPS:
            raise NotImplementedError(f"LLVM renderer: composite op {name} left in kernel {self.k.name}; "
                                      "kiln.codegen.decompose rewrites it into basic ops first")
        raise NotImplementedError(f"LLVM renderer: no rule for kernel IR op {name}")

    def cast(self, v: ir.Value, src: DType, dst: DType) -> ir.Value:
        b = self.b
        t = ltype(dst)
        if src == dst:
            return v
        if dst.is_bool:
            if src.is_floating_point:
                return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
            return b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
        if src.is_bool:
            return b.uitofp(v, t) if dst.is_floating_point else b.zext(v, t)
        if src.is_integer and dst.is_integer:
            return b.sext(v, t) if t.width > v.type.width else b.trunc(v, t)
        if src.is_integer:
            return b.sitofp(v, t)
        if dst.is_floating_point:
            if src.name == "float64" and dst.name == "float16":
                # the JIT has no __truncdfhf2 (calling it crashed): round to odd in float32, then to
                # float16 - exact, as float32 has more than 11 + 2 mantissa bits
                return b.fptrunc(self._to_f32_round_odd(v), t)
            return b.fpext(v, t) if dst.itemsize > src.itemsize else b.fptrunc(v, t)
        fn_name = f"llvm.fptosi.sat.{ {'int32': 'i32', 'int64': 'i64'}[dst.name] }.{ {'float16': 'f16', 'float32': 'f32', 'float64': 'f64'}[src.name] }"
        fn = self.m.globals.get(fn_name)
        if fn is None:
            fn = ir.Function(self.m, ir.FunctionType(t, [v.type]), name=fn_name)
        return b.call(fn, [v])

    def _to_f32_round_odd(self, v: ir.Value) -> ir.Value:
        """float64 `v` rounded to float32 towards odd: an inexact result gets an odd last bit."""
        b = self.b
        f32, i32 = ir.FloatType(), ir.IntType(32)
        t = b.fptrunc(v, f32)
        back = b.fpext(t, v.type)
        bits = b.bitcast(t, i32)
        even = b.icmp_unsigned("==", b.and_(bits, ir.Constant(i32, 1)), ir.Constant(i32, 0))
        zero = ir.Constant(v.type, 0.0)
        up = b.select(b.fcmp_ordered(">", v, zero), b.fcmp_ordered("<", back, v), b.fcmp_ordered(">", back, v))
        odd = b.select(up, b.add(bits, ir.Constant(i32, 1)), b.sub(bits, ir.Constant(i32, 1)))
        fix = b.and_(b.fcmp_ordered("!=", back, v), even)  # NaN compares unordered: kept
        return b.bitcast(b.select(fix, odd, bits), f32)

    # -- statements -----------------------------------------------------------------------------
    def block(self, body) -> None:
        for s in body:
            if self.b.block.is_terminated:
                return
            self.stmt(s)

    def stmt(self, s) -> None:
        b = self.b
        if isinstance(s, Assign) and isinstance(s.value, Op) and s.value.name in ("add", "mul") \
                and s.value.args[0] == s.var and s.var.dtype.is_floating_point:
            self.flags = self.acc_flags
            try:
                b.store(self.op(s.value), self._slot(s.var))
            finally:
                self.flags = ()
        elif isinstance(s, Let) or isinstance(s, Assign):
            b.store(self.expr(s.value), self._slot(s.var))
        elif isinstance(s, Store):
            ptr, d = self.bufs[s.buf]
            v = self.expr(s.value)
            if d.is_bool:
                v = b.zext(v, I8)
            p = b.gep(ptr, [self.expr(s.index)], inbounds=True, source_etype=storage_type(d))
            b.store(v, p)
        elif isinstance(s, Loop):
            self.loop(s)
        elif isinstance(s, TileMMA):
            self.tile_mma(s)
        elif isinstance(s, TransposeCopy):
            self.transpose_copy(s)
        elif isinstance(s, If):
            cond = self.expr(s.cond)
            if s.orelse:
                with b.if_else(cond) as (then, other):
                    with then:
                        self.block(s.then)
                    with other:
                        self.block(s.orelse)
            else:
                with b.if_then(cond, likely=False):
                    self.block(s.then)
        elif isinstance(s, Fail):
            # the first failure wins (threads race through cmpxchg); execution continues on a
            # clamped index, and the entry point stops after the kernel
            slot0 = b.gep(self.status, [ir.Constant(I64, 0)], source_etype=I64)
            res = b.cmpxchg(slot0, ir.Constant(I64, 0), ir.Constant(I64, s.code), "monotonic", "monotonic")
            won = b.extract_value(res, 1)
            with b.if_then(won, likely=False):
                for k, p in enumerate(s.payload):
                    v = self.expr(p)
                    b.store(v, b.gep(self.status, [ir.Constant(I64, k + 1)], source_etype=I64))
        else:
            raise TypeError(f"not a kernel IR statement: {s!r}")

    def tile_mma(self, s: TileMMA) -> None:
        """The microkernel: the mr x nr tile as mr rows of vectors (each of the host's vector
        width, or the largest power of two dividing nr below it: 2 zmm per row of 32 floats on
        AVX-512, 4 ymm on AVX2), kept in registers across the k loop; per k, one b row loaded
        and each a value broadcast and fused-multiply-added into its row."""
        from .host import host_info
        b = self.b
        cptr, d = self.bufs[s.c]
        aptr, _ = self.bufs[s.a]
        bptr, _ = self.bufs[s.b]
        t = ltype(d)
        w = min(host_info().lanes(d.itemsize), s.nr & -s.nr)
        nv = s.nr // w
        vt = ir.VectorType(t, w)
        align = d.itemsize
        ci, ai, bi, kc = (self.expr(e) for e in (s.c_index, s.a_index, s.b_index, s.kc))
        accumulate = self.expr(s.accumulate)
        fma_name = f"llvm.fma.v{w}{'f32' if d.itemsize == 4 else 'f64'}"
        fma = self.m.globals.get(fma_name) or ir.Function(self.m, ir.FunctionType(vt, [vt, vt, vt]), name=fma_name)
        zero = ir.Constant(vt, None)

        def c_ptr(i: int, v: int) -> ir.Value:
            return b.gep(cptr, [b.add(ci, ir.Constant(I64, i * s.ldc + v * w))], inbounds=True, source_etype=t)
        init = [[b.select(accumulate, b.load(c_ptr(i, v), typ=vt, align=align), zero) for v in range(nv)]
                for i in range(s.mr)]
        pre = b.block
        self._n += 1
        head = self.fn.append_basic_block(f"mma{self._n}.head")
        body = self.fn.append_basic_block(f"mma{self._n}.body")
        done = self.fn.append_basic_block(f"mma{self._n}.done")
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(I64, name="k")
        k.add_incoming(ir.Constant(I64, 0), pre)
        accs = []
        for i in range(s.mr):
            row = []
            for v in range(nv):
                phi = b.phi(vt, name=f"acc{i}_{v}")
                phi.add_incoming(init[i][v], pre)
                row.append(phi)
            accs.append(row)
        b.cbranch(b.icmp_signed("<", k, kc), body, done)
        b.position_at_end(body)
        (ars, aks), bks = s.a_step, s.b_step
        brow = b.add(bi, b.mul(k, ir.Constant(I64, bks)))
        bvs = [b.load(b.gep(bptr, [b.add(brow, ir.Constant(I64, v * w))], inbounds=True, source_etype=t),
                      typ=vt, align=align) for v in range(nv)]
        abase = b.add(ai, b.mul(k, ir.Constant(I64, aks)))
        mask = ir.Constant(ir.VectorType(I32, w), [0] * w)
        undef = ir.Constant(vt, ir.Undefined)
        for i, row in enumerate(accs):
            ap = b.gep(aptr, [b.add(abase, ir.Constant(I64, i * ars))], inbounds=True, source_etype=t)
            av = b.shuffle_vector(b.insert_element(undef, b.load(ap, typ=t), ir.Constant(I32, 0)), undef, mask)
            for bv, acc in zip(bvs, row):
                acc.add_incoming(b.call(fma, [av, bv, acc]), body)
        k.add_incoming(b.add(k, ir.Constant(I64, 1), flags=("nsw", "nuw")), body)
        b.branch(head)
        b.position_at_end(done)
        for i, row in enumerate(accs):
            for v, acc in enumerate(row):
                b.store(acc, c_ptr(i, v), align=align)

    def transpose_copy(self, s: TransposeCopy) -> None:
        """The block in squares of the host's lanes (at most TRANSPOSE_SIDE: 16x16 float32 and 8x8
        float64 on AVX-512, 8x8 / 4x4 on AVX2, 4x4 / 2x2 on 128-bit vectors), each as vector
        loads of its source rows, a transpose in registers and vector stores of its destination
        rows. The transpose of n x n (n a power of two: an edge square is padded to one, its
        missing rows undef, its short rows widened) is log2(n) rounds of interleaves: round by
        round, vector 2i and 2i+1 become the low and high interleave of vectors i and i + n/2.
        Each round rotates the bits of (row, lane) by one, so after log2(n) rounds element
        (r, c) sits in vector c, lane r. On x86 an interleave is one two-source permute
        (vpermt2ps, vunpcklps, ...)."""
        from .host import host_info
        b = self.b
        dptr, d = self.bufs[s.dst]
        sptr, _ = self.bufs[s.src]
        t = storage_type(d)
        side = min(TRANSPOSE_SIDE, host_info().lanes(d.itemsize))
        di, si = self.expr(s.dst_index), self.expr(s.src_index)
        align = max(1, d.itemsize)

        def at(ptr: ir.Value, base: ir.Value, offset: int) -> ir.Value:
            return b.gep(ptr, [b.add(base, ir.Constant(I64, offset))], inbounds=True, source_etype=t)

        def lanes(v: ir.Value, width: int, take: Sequence[int], other: ir.Value | None = None) -> ir.Value:
            mask = ir.Constant(ir.VectorType(I32, len(take)), [ir.Constant(I32, q) for q in take])
            return b.shuffle_vector(v, other if other is not None else ir.Constant(ir.VectorType(t, width),
                                                                                 ir.Undefined), mask)
        for r0 in range(0, s.rows, side):
            for c0 in range(0, s.cols, side):
                rb, cb = min(side, s.rows - r0), min(side, s.cols - c0)
                n = 1 << (max(rb, cb) - 1).bit_length()
                if n == 1:
                    b.store(b.load(at(sptr, si, r0 * s.src_ld + c0), typ=t), at(dptr, di, c0 * s.dst_ld + r0))
                    continue
                vt = ir.VectorType(t, n)
                vs = []
                for r in range(rb):
                    p = at(sptr, si, (r0 + r) * s.src_ld + c0)
                    if cb == 1:
                        v = b.insert_element(ir.Constant(vt, ir.Undefined), b.load(p, typ=t), ir.Constant(I32, 0))
                    else:
                        v = b.load(p, typ=ir.VectorType(t, cb), align=align)
                        if cb < n:
                            v = lanes(v, cb, list(range(cb)) + [0] * (n - cb))
                    vs.append(v)
                vs += [ir.Constant(vt, ir.Undefined)] * (n - rb)
                half = n // 2
                lo = [q for m in range(half) for q in (m, m + n)]
                hi = [q for m in range(half, n) for q in (m, m + n)]
                for _ in range(n.bit_length() - 1):
                    nxt = []
                    for i in range(half):
                        nxt += [lanes(vs[i], n, lo, vs[i + half]), lanes(vs[i], n, hi, vs[i + half])]
                    vs = nxt
                for c in range(cb):
                    p = at(dptr, di, (c0 + c) * s.dst_ld + r0)
                    if rb == 1:
                        b.store(b.extract_element(vs[c], ir.Constant(I32, 0)), p)
                    elif rb == n:
                        b.store(vs[c], p, align=align)
                    elif rb & (rb - 1) == 0:  # a power of two: the low half, quarter, ...
                        b.store(lanes(vs[c], n, list(range(rb))), p, align=align)
                    else:  # 12 of 16 lanes: one masked store (AVX-512: a vmovups under a k mask)
                        self._masked_store(vs[c], p, rb, align)

    def _masked_store(self, v: ir.Value, p: ir.Value, count: int, align: int) -> None:
        """Store the first `count` lanes of vector `v` at `p` (llvm.masked.store, a constant mask)."""
        vt = v.type
        suffix = {"float": "f32", "double": "f64", "half": "f16"}.get(str(vt.element), str(vt.element))
        name = f"llvm.masked.store.v{vt.count}{suffix}.p0"
        fn = self.m.globals.get(name) or ir.Function(
            self.m, ir.FunctionType(ir.VoidType(), [vt, PTR, I32, ir.VectorType(I1, vt.count)]), name=name)
        mask = ir.Constant(ir.VectorType(I1, vt.count), [ir.Constant(I1, int(q < count)) for q in range(vt.count)])
        self.b.call(fn, [v, p, ir.Constant(I32, align), mask])

    def loop(self, s: Loop, chunked: bool = False) -> None:
        b = self.b
        slot = self._slot(s.var)
        ext = self.expr(s.extent)
        start = ir.Constant(I64, 0)
        if chunked:  # this thread's share: [tid * ceil(ext / n), min(ext, (tid + 1) * ceil(ext / n)))
            n = self.nthreads
            chunk = b.sdiv(b.add(ext, b.sub(n, ir.Constant(I64, 1))), n)
            start = b.mul(self.tid, chunk)
            hi = b.add(start, chunk)
            ext = b.select(b.icmp_signed("<", hi, ext), hi, ext)
        b.store(start, slot)
        head = self.fn.append_basic_block(f"{s.var.name}.head")
        body = self.fn.append_basic_block(f"{s.var.name}.body")
        done = self.fn.append_basic_block(f"{s.var.name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.load(slot, typ=I64)
        b.cbranch(b.icmp_signed("<", i, ext), body, done)
        b.position_at_end(body)
        self.block(s.body)
        if not b.block.is_terminated:
            i2 = b.load(slot, typ=I64)
            b.store(b.add(i2, ir.Constant(I64, 1), flags=("nsw", "nuw")), slot)
            br = b.branch(head)
            ls = self.k.schedule.loops.get(s.var.name)
            if ls is not None and ls.vector_width:
                _loop_md(self.m, br, ls.vector_width)
        b.position_at_end(done)

    def render(self) -> ir.Function:
        b = self.b
        for st in self.k.body:
            ls = self.k.schedule.loops.get(st.var.name) if isinstance(st, Loop) else None
            if ls is not None and ls.parallel:
                self.loop(st, chunked=True)
            elif _writes(st):  # serial work with side effects: thread 0 only
                with b.if_then(b.icmp_signed("==", self.tid, ir.Constant(I64, 0))):
                    self.stmt(st)
            else:  # locals (hoisted values, reductions other loops read): every thread
                self.stmt(st)
        if not self.b.block.is_terminated:
            self.b.ret(ir.Constant(I32, 0))
        return self.fn


def _writes(s) -> bool:
    from .kir import walk_stmts
    return any(isinstance(x, (Store, TileMMA, TransposeCopy)) for x in walk_stmts([s]))


def _loop_md(m: ir.Module, br, width: int) -> None:
    """Attach a loop ID `!N = !{!N, !{"llvm.loop.vectorize.width", i32 width}}` to the latch
    branch. LLVM reads a loop's options from the operands after the first, which must be the
    ID itself (without it the option is ignored); width 1 keeps the loop scalar."""
    opt = m.add_metadata([ir.MetaDataString(m, "llvm.loop.vectorize.width"), ir.Constant(I32, width)])
    loop_id = m.add_metadata([ir.MetaDataString(m, f"kiln.loop.{len(m.metadata)}"), opt])  # unique
    loop_id.operands = (loop_id, opt)  # the self-reference llvmlite cannot build directly
    br.set_metadata("llvm.loop", loop_id)


def render_kernel(module: ir.Module, k: KernelFunc, strict_fp: bool = False) -> ir.Function:
    """Add kernel `k` to `module` as an internal function."""
    return _FunctionRenderer(module, k, strict_fp).render()


def render_program(name: str, kernels: Sequence[KernelFunc], calls: Sequence[tuple[str, Sequence[int]]],
                   strict_fp: bool = False, prefer_vector_width: int | None = None,
                   timestamps: int | None = None, clock: int = 1) -> str:
    """A module with every kernel and `@{name}`: i32 (ptr buffers, ptr status, i64 tid, i64 n,
    ptr barrier) calling each kernel on buffers[k] for its arguments. Run by `n` threads at
    once (thread `tid`); returns the first failed check's code (its payload is in the status
    buffer), 0 when every kernel ran.

    Threading is per kernel: a kernel with a parallel loop (a *split* kernel) is run by every
    thread on its share and ends at a barrier, and starts at one when thread 0 ran serial kernels
    since the last (their results must be in). A serial kernel runs on thread 0 alone, inline:
    the workers skip it and wait for nothing, and thread 0 passes no barrier. A program of 14
    kernels, 2 of them split, meets at 3-4 barriers instead of 14. When a serial kernel's check
    fails, thread 0 releases the workers waiting at the next split kernel's barrier (they read
    the status after it and return) before it returns.

    `timestamps` (profiling builds only): the index of an i64 buffer, len(calls) + 1 long, that
    thread 0 fills with `clock_gettime(clock)` in nanoseconds at entry and after each kernel
    call (and its barrier), so entry k+1 minus entry k is call k's time. The caller resolves
    the `clock_gettime` symbol."""
    m = ir.Module(name=name)
    fns = {k.name: render_kernel(m, k, strict_fp) for k in kernels}
    uses: dict[str, int] = {}
    for kname, _ in calls:
        uses[kname] = uses.get(kname, 0) + 1
    for kname, n in uses.items():
        if n > 1:  # one body called on several buffer sets: compile it once, do not copy it per call
            fns[kname].attributes.add("noinline")
    barrier = _render_barrier(m, name + "_barrier")
    entry = ir.Function(m, ir.FunctionType(I32, [PTR, PTR, I64, I64, PTR]), name=name)
    entry.attributes.add("nounwind")
    bufs, status, tid, nthreads, bar = entry.args
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    many = b.icmp_signed(">", nthreads, ir.Constant(I64, 1))
    thread0 = b.icmp_signed("==", tid, ir.Constant(I64, 0))
    split = {k.name for k in kernels if any(ls.parallel for ls in k.schedule.loops.values())}
    plan = barrier_plan([kname in split for kname, _ in calls])
    later_split = [any(kn in split for kn, _ in calls[c + 1:]) for c in range(len(calls))]
    ptrs: dict[int, ir.Value] = {}
    stamp = None
    if timestamps is not None:
        stamp_fn = _render_stamp(m, name + "_stamp", clock)
        times = b.load(b.gep(bufs, [ir.Constant(I64, timestamps)], source_etype=PTR), typ=PTR)

        def stamp(k: int) -> None:
            b.call(stamp_fn, [times, ir.Constant(I64, k), tid])
        stamp(0)
    for c, (kname, args) in enumerate(calls):
        vals = []
        for a in args:
            if a not in ptrs:
                ptrs[a] = b.load(b.gep(bufs, [ir.Constant(I64, a)], source_etype=PTR), typ=PTR)
            vals.append(ptrs[a])
        nxt = entry.append_basic_block(f"after.{kname}")
        fail = entry.append_basic_block(f"fail.{kname}")
        if kname in split:  # every thread runs its share, ending at a barrier
            if plan[c][0]:  # thread 0's serial results must be in before the workers read them
                with b.if_then(many):
                    b.call(barrier, [bar, nthreads])
                _return_on_status(b, status, entry, f"start.{kname}")
            b.call(fns[kname], vals + [status, tid, nthreads])
            with b.if_then(many):
                b.call(barrier, [bar, nthreads])
            if stamp is not None:
                stamp(c + 1)
            code = b.load_atomic(b.gep(status, [ir.Constant(I64, 0)], source_etype=I64), "acquire", 8, typ=I64)
            b.cbranch(b.icmp_signed("!=", code, ir.Constant(I64, 0)), fail, nxt)
            b.position_at_end(fail)
        else:  # serial: thread 0 alone, inline; the workers go straight on (no barrier)
            serial, skip = entry.append_basic_block(f"run.{kname}"), entry.append_basic_block(f"skip.{kname}")
            b.cbranch(thread0, serial, skip)
            b.position_at_end(serial)
            b.call(fns[kname], vals + [status, tid, nthreads])
            if stamp is not None:
                stamp(c + 1)
            code = b.load_atomic(b.gep(status, [ir.Constant(I64, 0)], source_etype=I64), "acquire", 8, typ=I64)
            b.cbranch(b.icmp_signed("!=", code, ir.Constant(I64, 0)), fail, nxt)
            b.position_at_end(skip)
            b.branch(nxt)
            b.position_at_end(fail)
            if later_split[c]:  # the workers wait at the next split kernel's barrier: release them
                with b.if_then(many):  # (they read the status after it and return)
                    b.call(barrier, [bar, nthreads])
        b.ret(b.trunc(code, I32))
        b.position_at_end(nxt)
    b.ret(ir.Constant(I32, 0))
    text = str(m)
    if prefer_vector_width:
        text = text.replace(" nounwind\n", f' nounwind "prefer-vector-width"="{prefer_vector_width}"\n')
    return text


def _return_on_status(b: ir.IRBuilder, status: ir.Value, fn: ir.Function, label: str) -> None:
    """Return the status code from `fn` if a check has failed (another thread's, read after a barrier)."""
    code = b.load_atomic(b.gep(status, [ir.Constant(I64, 0)], source_etype=I64), "acquire", 8, typ=I64)
    go, stop = fn.append_basic_block(label), fn.append_basic_block(label + ".fail")
    b.cbranch(b.icmp_signed("!=", code, ir.Constant(I64, 0)), stop, go)
    b.position_at_end(stop)
    b.ret(b.trunc(code, I32))
    b.position_at_end(go)


def _render_stamp(m: ir.Module, name: str, clock: int) -> ir.Function:
    """void stamp(ptr t, i64 k, i64 tid): on thread 0, t[k] = clock_gettime(clock) in nanoseconds."""
    gettime = ir.Function(m, ir.FunctionType(I32, [I32, PTR]), name="clock_gettime")
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, I64, I64]), name=name)
    fn.linkage = "internal"
    t, k, tid = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with b.if_then(b.icmp_signed("==", tid, ir.Constant(I64, 0))):
        ts = b.alloca(ir.ArrayType(I64, 2))
        b.call(gettime, [ir.Constant(I32, clock), ts])
        sec = b.load(b.gep(ts, [ir.Constant(I64, 0), ir.Constant(I64, 0)], source_etype=ir.ArrayType(I64, 2)), typ=I64)
        nsec = b.load(b.gep(ts, [ir.Constant(I64, 0), ir.Constant(I64, 1)], source_etype=ir.ArrayType(I64, 2)), typ=I64)
        now = b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec)
        b.store(now, b.gep(t, [k], source_etype=I64))
    b.ret_void()
    return fn


def _render_barrier(m: ir.Module, name: str) -> ir.Function:
    """void barrier(ptr b, i64 n): b[0] counts arrivals, b[1] is the generation (low 32 bits;
    the high 32 count sleeping waiters); the last thread to arrive resets the count and advances
    the generation, the others spin briefly, then sleep until it moves (`llvm_sync`)."""
    from .llvm_sync import advance, render_wait
    wait = render_wait(m, name + "_wait")
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [PTR, I64]), name=name)
    fn.linkage = "internal"
    bar, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    count = b.gep(bar, [ir.Constant(I64, 0)], source_etype=I64)
    gen_p = b.gep(bar, [ir.Constant(I64, 1)], source_etype=I64)
    gen = b.load_atomic(gen_p, "acquire", 8, typ=I64)
    arrived = b.atomic_rmw("add", count, ir.Constant(I64, 1), "acq_rel")
    last = b.icmp_signed("==", arrived, b.sub(n, ir.Constant(I64, 1)))
    release = fn.append_basic_block("last")
    spin = fn.append_basic_block("spin")
    done = fn.append_basic_block("done")
    b.cbranch(last, release, spin)
    b.position_at_end(release)
    b.atomic_rmw("xchg", count, ir.Constant(I64, 0), "monotonic")
    advance(b, gen_p)
    b.branch(done)
    b.position_at_end(spin)
    b.call(wait, [gen_p, gen])
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()
    return fn

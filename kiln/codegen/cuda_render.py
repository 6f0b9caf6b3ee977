"""Kernel IR -> CUDA C. Knows kernel IR, not primitives.

A kernel-IR function becomes one or more `__global__` functions, its *stages*: each top-level
statement that writes memory (an output loop nest, a store) is a stage, preceded by the
side-effect-free top-level statements it reads (hoisted scalars, whole-array reductions).
Stages run in order on one stream, so a later stage sees what an earlier one wrote (a
scatter's copy of its base, a matmul's scratch products). Each stage is mapped to the GPU by
what its loops do:

- `threads`: the perfect nest of output loops is collapsed into one flat index and spread over
  every thread of the grid (grid-stride); loop-free bodies read and write 16 bytes at a time
  (float4/int4) where every contiguous buffer is 16-byte aligned (checked at run time).
- `rows`: the nest's body holds a reduction whose accumulators combine associatively (sum,
  product, max, min, and/or; the fused softmax, layer norm and cross-entropy rows): one block
  per row (grid-stride over rows), the block's threads share the reduction (warp shuffles,
  then shared memory) and the row's output loops.
- `block`: a stage whose reductions are top-level (a whole-array sum): one block, as above.
- `serial`: one thread runs the stage in order (a scatter's updates, whose order matters, or a
  nest that reads what it writes).

Composite math ops are rendered with CUDA's own math functions (`expf`, `tanhf`, `erff`, ...);
float16 and bfloat16 values are stored as 16 bits and computed in float32. A failed bounds check (`Fail`)
records its code and value in a device-side status buffer (first failure wins) and carries on
with the clamped index; every stage starts by returning when a failure is already recorded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from . import index as ix
from .kir import (COMPOSITE_OPS, Assign, BufferParam, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op,
                  Store, Var, stmt_exprs, walk_exprs, walk_stmts)

PRELUDE = (Path(__file__).with_name("cuda_prelude.h")).read_text()
BLOCK = 256          # threads per block of threads/rows/block stages
MAX_GRID = 65535     # blocks of a grid-stride launch

_CTYPE = {"bool": "bool", "int32": "int", "int64": "long long", "float16": "float", "bfloat16": "float",
          "float32": "float", "float64": "double"}
_STORAGE = {"bool": "unsigned char", "float16": "unsigned short", "bfloat16": "unsigned short"}
# 16-bit floats: stored as their bits, computed in float32 (load, store, round-to-storage helpers)
_HALF = {"float16": ("kiln_h2f", "kiln_f2h", "kiln_round_h"), "bfloat16": ("kiln_bf2f", "kiln_f2bf", "kiln_round_bf")}
_VEC = {"float32": "float4", "int32": "int4"}
_INFIX = {"lt": "<", "le": "<=", "eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "xor": "^"}
_FLOAT_FN = {"floor": "floor", "ceil": "ceil", "trunc": "trunc", "rint": "rint", "sqrt": "sqrt",
             "copysign": "copysign", "rem": "fmod", "fma": "fma", "exp": "exp", "log": "log", "log1p": "log1p",
             "tanh": "tanh", "erf": "erf", "sin": "sin", "cos": "cos", "pow": "pow", "expm1": "expm1",
             "abs": "fabs"}


class CudaRenderError(NotImplementedError):
    """The kernel IR holds a construct the CUDA renderer does not render."""


def ctype(d: DType) -> str:
    return _CTYPE[d.name]


def storage_ctype(d: DType) -> str:
    return _STORAGE.get(d.name, _CTYPE[d.name])


@dataclass
class CudaStage:
    """One `__global__` function of a kernel and how to launch it."""
    func: str
    mode: str     # threads | rows | block | serial | gemm (one block per output tile, fixed block size)
    work: int     # threads (threads mode: flat items, vector groups counted once) or rows to spread
    block: int    # threads per block

    def grid(self, max_grid: int = MAX_GRID) -> int:
        if self.mode in ("block", "serial"):
            return 1
        per_block = self.block if self.mode == "threads" else 1
        return max(1, min(max_grid, -(-self.work // per_block)))


@dataclass
class CudaKernel:
    """A kernel-IR function rendered to CUDA C: its stages run in order on the same buffers."""
    name: str
    params: list[BufferParam]
    stages: list[CudaStage]
    source: str


@dataclass
class _Ctx:
    """Where a statement is rendered: `block` when every thread of a block runs it with the same
    values (stores by thread 0, output loops shared, reductions combined across the block)."""
    block: bool = False
    coop: bool = False      # may combine reductions across the block (uniform control flow)


def _free_vars(stmts: Sequence) -> set[str]:
    used, defined = set(), set()
    for s in walk_stmts(stmts):
        for e in stmt_exprs(s):
            used.update(x.name for x in walk_exprs(e) if isinstance(x, Var))
        if isinstance(s, Assign):
            used.add(s.var.name)  # an update needs the local's definition
        elif isinstance(s, Let):
            defined.add(s.var.name)
        if isinstance(s, Loop):
            defined.add(s.var.name)
    return used - defined


def _defines(s) -> set[str]:
    """Locals a side-effect-free top-level statement defines or updates."""
    out = set()
    for x in walk_stmts([s]):
        if isinstance(x, (Let, Assign)):
            out.add(x.var.name)
    return out


def _writes(s) -> bool:
    """Does `s` store to memory (a check's Fail does not count: it only reports)?"""
    return any(isinstance(x, Store) for x in walk_stmts([s]))


def _stores(stmts) -> set[str]:
    return {x.buf for x in walk_stmts(stmts) if isinstance(x, Store)}


def _loads(stmts) -> set[str]:
    out = set()
    for s in walk_stmts(stmts):
        for e in stmt_exprs(s):
            out.update(x.buf for x in walk_exprs(e) if isinstance(x, Load))
    return out


def _uses(e: Expr, name: str) -> bool:
    return any(isinstance(x, Var) and x.name == name for x in walk_exprs(e))


def _checks(s) -> bool:
    return any(isinstance(x, Fail) for x in walk_stmts([s]))


def split_stages(k: KernelFunc) -> list[list]:
    """The kernel's top-level statements grouped into stages: each statement that stores with
    the side-effect-free statements before it that it needs. A statement that only checks
    (a gather's bounds check inside a reduction) goes into the next stage whether or not that
    stage needs its values, so every check runs."""
    pure: list = []
    pending: list = []  # checking statements no stage has run yet
    stages = []
    for s in k.body:
        if not _writes(s):
            pure.append(s)
            if _checks(s):
                pending.append(s)
            continue
        need = _free_vars([s] + pending)
        forced = {id(p) for p in pending}
        prefix = []
        for p in reversed(pure):
            if id(p) in forced or _defines(p) & need:
                prefix.append(p)
                need |= _free_vars([p])
        stages.append(list(reversed(prefix)) + [s])
        pending = []
    if pending:  # checks after the last store: a stage of their own
        need = _free_vars(pending)
        forced = {id(p) for p in pending}
        prefix = []
        for p in reversed(pure):
            if id(p) in forced or _defines(p) & need:
                prefix.append(p)
                need |= _free_vars([p])
        stages.append(list(reversed(prefix)))
    return stages


def _collapse(loop: Loop) -> tuple[list[Var], list[int], list]:
    """A perfect nest (each body: pure Lets, then one loop with a constant extent) as its loop
    variables, extents and innermost body (the Lets of outer levels included, in order)."""
    vars_, exts, body = [loop.var], [int(loop.extent.value)], []
    cur = loop.body
    while True:
        lets = cur[:-1]
        last = cur[-1] if cur else None
        if (isinstance(last, Loop) and isinstance(last.extent, Const)
                and all(isinstance(s, Let) for s in lets)):
            body.extend(lets)
            vars_.append(last.var)
            exts.append(int(last.extent.value))
            cur = last.body
        else:
            body.extend(cur)
            return vars_, exts, body


_IDENTITY_OPS = {"add", "mul", "max", "min", "or", "and", "fma"}


def _is_identity(op_name: str, init: Expr) -> bool:
    """Is `init` the identity of combining op `op_name` (so per-thread partials may be combined)?"""
    if not isinstance(init, Const):
        return False
    v, d = init.value, init.dtype
    if op_name in ("add", "or"):
        return v == 0
    if op_name == "mul":
        return v == 1
    if op_name == "and":
        return v is True if d.is_bool else v == -1
    if d.is_bool:
        return bool(v) == (op_name == "min")
    if d.is_floating_point:
        return v == (-math.inf if op_name == "max" else math.inf)
    bits = 8 * d.itemsize
    return v == (-(1 << (bits - 1)) if op_name == "max" else (1 << (bits - 1)) - 1)


def _combiner(loop: Loop, inits: dict[str, Expr]) -> dict[str, tuple[str, DType]] | None:
    """For a reduction loop whose accumulators combine associatively across threads, each
    accumulator's combining op (add, mul, max, min, or, and); None otherwise."""
    body = list(walk_stmts(loop.body))
    if any(isinstance(s, Store) for s in body):
        return None
    inner_lets = {s.var.name: s for s in body if isinstance(s, Let)}
    assigns = [s for s in body if isinstance(s, Assign) and s.var.name not in inner_lets]
    if not assigns:
        return None
    names = [a.var.name for a in assigns]
    if len(set(names)) != len(names):
        return None
    out: dict[str, tuple[str, DType]] = {}
    combining: set[int] = set()
    for a in assigns:
        acc = a.var.name
        v = a.value
        via = None
        if isinstance(v, Var) and v.name in inner_lets:  # acc = t where t = op(acc, x)
            via = inner_lets[v.name]
            v = via.value
        if not isinstance(v, Op) or v.name not in _IDENTITY_OPS:
            return None
        if v.name == "fma":
            slots = [2]
        else:
            slots = [i for i, x in enumerate(v.args) if isinstance(x, Var) and x.name == acc][:1]
        if not slots or not (isinstance(v.args[slots[0]], Var) and v.args[slots[0]].name == acc):
            return None
        others = [x for i, x in enumerate(v.args) if i != slots[0]]
        if any(_uses(x, acc) for x in others):
            return None
        name = "add" if v.name == "fma" else v.name
        if v.name == "fma" and not a.var.dtype.is_floating_point:
            return None
        if acc not in inits or not _is_identity(name, inits[acc]):
            return None
        out[acc] = (name, a.var.dtype)
        combining.add(id(a))
        if via is not None:
            combining.add(id(via))
    for s in body:  # an accumulator is read only where it is combined
        if id(s) in combining:
            continue
        for e in stmt_exprs(s):
            if any(_uses(e, acc) for acc in out):
                return None
    return out


def _coop_loops(stmts: Sequence, inits: dict[str, Expr]) -> int:
    """The largest extent of a reduction among `stmts` that the block can share (0: none)."""
    best = 0
    for s in stmts:
        if isinstance(s, Let):
            inits[s.var.name] = s.value
        if isinstance(s, Loop) and not _writes(s) and isinstance(s.extent, Const) and _combiner(s, inits):
            _, exts, _ = _collapse(s)
            best = max(best, math.prod(exts))
    return best


def _has_dot(stmts) -> bool:
    """Does a loop in `stmts` accumulate products (matmul, conv: `acc + a * b`, `fma(a, b, acc)`)?"""
    for s in walk_stmts(stmts):
        if isinstance(s, Assign) and isinstance(s.value, Op):
            v = s.value
            if v.name == "fma" or (v.name == "add" and any(isinstance(a, Op) and a.name == "mul" for a in v.args)):
                return True
    return False


def _fmt_float(v: float, d: DType) -> str:
    if math.isnan(v):
        return "(0.0f / 0.0f)" if d != dt.float64 else "(0.0 / 0.0)"
    if math.isinf(v):
        one = "1.0" if d == dt.float64 else "1.0f"
        zero = "0.0" if d == dt.float64 else "0.0f"
        return f"({'-' if v < 0 else ''}{one} / {zero})"
    text = float(v).hex()
    return text if d == dt.float64 else text + "f"


class _Writer:
    def __init__(self, k: KernelFunc):
        self.k = k
        self.lines: list[str] = []
        self.depth = 1
        self.alias: dict[Expr, str] = {}      # index expressions rendered as a flat variable
        self.vec: dict[str, str] = {}         # buffer -> lane array (vectorized threads stages)
        self._n = 0

    def line(self, s: str) -> None:
        self.lines.append("  " * self.depth + s)

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"kiln_{hint}{self._n}"

    # -- expressions --------------------------------------------------------------------------------
    def expr(self, e: Expr) -> str:
        hit = self.alias.get(e) if self.alias and isinstance(e, Op) else None
        if hit is not None:
            return hit
        if isinstance(e, Const):
            return self.const(e)
        if isinstance(e, Var):
            return e.name
        if isinstance(e, Load):
            lane = self.vec.get(e.buf)
            if lane is not None and self.alias.get(e.index) == "kiln_f":
                raw = f"{lane}[kiln_lane]"
            else:
                raw = f"{e.buf}[{self.expr(e.index)}]"
            if e.dtype.is_bool:
                return f"({raw} != 0)"
            if e.dtype.name in _HALF:
                return f"{_HALF[e.dtype.name][0]}({raw})"
            return raw
        if isinstance(e, Op):
            return self.op(e)
        raise CudaRenderError(f"CUDA renderer: kernel {self.k.name}: no rule for kernel IR expression "
                              f"{type(e).__name__}")

    def const(self, e: Const) -> str:
        d = e.dtype
        if d.is_bool:
            return "true" if e.value else "false"
        if d.is_floating_point:
            return _fmt_float(float(e.value), d)
        v = int(e.value)
        if d == dt.int64:
            return "(-9223372036854775807LL - 1)" if v == -(1 << 63) else f"{v}LL"
        return "(-2147483647 - 1)" if v == -(1 << 31) else f"{v}"

    def op(self, e: Op) -> str:
        name = e.name
        src = e.args[0].dtype
        a = [self.expr(x) for x in e.args]
        fl = src.is_floating_point
        f32 = fl and src != dt.float64  # float16 and bfloat16 compute in float32

        def fn(base: str) -> str:
            return f"{base}{'f' if f32 else ''}({', '.join(a)})"
        if name in ("add", "sub", "mul"):
            if fl:
                sym = {"add": "+", "sub": "-", "mul": "*"}[name]
                return f"({a[0]} {sym} {a[1]})"
            return f"kiln_w{name}({a[0]}, {a[1]})"
        if name == "div":
            return f"({a[0]} / {a[1]})" if fl else f"kiln_idiv({a[0]}, {a[1]})"
        if name == "rem":
            return fn("fmod") if fl else f"kiln_irem({a[0]}, {a[1]})"
        if name == "neg":
            return f"(-{a[0]})" if fl else f"kiln_wsub(({ctype(src)})0, {a[0]})"
        if name == "abs":
            if fl:
                return fn("fabs")
            if src.is_bool:
                return a[0]
            return f"({a[0]} < 0 ? kiln_wsub(({ctype(src)})0, {a[0]}) : {a[0]})"
        if name in ("min", "max"):
            return f"kiln_{name}({a[0]}, {a[1]})"
        if name == "fma":
            return fn("fma") if fl else f"kiln_wadd(kiln_wmul({a[0]}, {a[1]}), {a[2]})"
        if name in ("floor", "ceil", "trunc", "rint", "sqrt"):
            return fn(name) if fl else a[0]
        if name == "copysign":
            return fn("copysign")
        if name in _INFIX:
            return f"({a[0]} {_INFIX[name]} {a[1]})"
        if name == "isnan":
            return f"({a[0]} != {a[0]})" if fl else "false"
        if name == "and":
            return f"({a[0]} {'&&' if src.is_bool else '&'} {a[1]})"
        if name == "or":
            return f"({a[0]} {'||' if src.is_bool else '|'} {a[1]})"
        if name == "not":
            return f"(!{a[0]})" if src.is_bool else f"(~{a[0]})"
        if name in ("shl", "lshr", "ashr"):
            return f"kiln_{name}({a[0]}, {a[1]})"
        if name == "select":
            return f"({a[0]} ? {a[1]} : {a[2]})"
        if name == "cast":
            return self.cast(a[0], src, e.dtype)
        if name == "bitcast":
            return self.bitcast(a[0], src, e.dtype)
        if name in COMPOSITE_OPS:
            if not fl:
                raise CudaRenderError(f"CUDA renderer: kernel {self.k.name}: {name} of {src.name} "
                                      "(integer math ops are decomposed before rendering)")
            if name == "logistic":
                return f"kiln_logistic({a[0]})"
            if name == "rsqrt":
                return fn("rsqrt")
            return fn(_FLOAT_FN[name])
        raise CudaRenderError(f"CUDA renderer: kernel {self.k.name}: no rule for kernel IR op {name!r}")

    def cast(self, v: str, src: DType, dst: DType) -> str:
        if src == dst:
            return v
        if dst.is_bool:
            return f"({v} != 0)"
        if dst.name in _HALF:
            return f"{_HALF[dst.name][2]}((float)({v}))"
        if dst.is_floating_point or dst.is_bool:
            return f"(({ctype(dst)})({v}))"
        if src.is_floating_point:
            return f"kiln_f2i{8 * dst.itemsize}((double)({v}))"
        return f"(({ctype(dst)})({v}))"

    def bitcast(self, v: str, src: DType, dst: DType) -> str:
        pair = (src.name, dst.name)
        table = {("float32", "int32"): "__float_as_int", ("int32", "float32"): "__int_as_float",
                 ("float64", "int64"): "__double_as_longlong", ("int64", "float64"): "__longlong_as_double"}
        if pair not in table:
            raise CudaRenderError(f"CUDA renderer: kernel {self.k.name}: bitcast {src.name} -> {dst.name}")
        return f"{table[pair]}({v})"

    # -- statements ---------------------------------------------------------------------------------
    def block(self, stmts: Sequence, ctx: _Ctx, inits: dict[str, Expr] | None = None) -> None:
        inits = {} if inits is None else inits
        for s in stmts:
            self.stmt(s, ctx, inits)

    def store(self, s: Store) -> str:
        d = self.k.param(s.buf).dtype
        v = self.expr(s.value)
        if d.is_bool:
            v = f"(unsigned char)({v})"
        elif d.name in _HALF:
            v = f"{_HALF[d.name][1]}({v})"
        lane = self.vec.get(s.buf)
        if lane is not None and self.alias.get(s.index) == "kiln_f":
            return f"{lane}[kiln_lane] = {v};"
        return f"{s.buf}[{self.expr(s.index)}] = {v};"

    def stmt(self, s, ctx: _Ctx, inits: dict[str, Expr]) -> None:
        if isinstance(s, Let):
            inits[s.var.name] = s.value
            self.line(f"{ctype(s.var.dtype)} {s.var.name} = {self.expr(s.value)};")
        elif isinstance(s, Assign):
            self.line(f"{s.var.name} = {self.expr(s.value)};")
        elif isinstance(s, Store):
            text = self.store(s)
            self.line(f"if (threadIdx.x == 0) {text}" if ctx.block else text)
        elif isinstance(s, Fail):
            vals = [self.expr(p) for p in s.payload] or ["0LL"]
            self.line(f"kiln_fail(kiln_status, {s.code}LL, (long long)({vals[0]}));")
        elif isinstance(s, If):
            self.line(f"if ({self.expr(s.cond)}) {{")
            inner = _Ctx(block=ctx.block, coop=False)
            self.depth += 1
            self.block(s.then, inner, dict(inits))
            self.depth -= 1
            if s.orelse:
                self.line("} else {")
                self.depth += 1
                self.block(s.orelse, inner, dict(inits))
                self.depth -= 1
            self.line("}")
        elif isinstance(s, Loop):
            self.loop(s, ctx, inits)
        else:
            raise CudaRenderError(f"CUDA renderer: kernel {self.k.name}: no rule for kernel IR statement "
                                  f"{type(s).__name__}")

    def loop(self, s: Loop, ctx: _Ctx, inits: dict[str, Expr]) -> None:
        if ctx.block and ctx.coop and not _writes(s) and isinstance(s.extent, Const):
            comb = _combiner(s, inits)
            if comb:
                self.shared_nest(s, inner=_Ctx())
                for acc, (name, d) in comb.items():
                    o = name if d.is_floating_point or d.is_bool else {"add": "iadd", "mul": "imul"}.get(name, name)
                    if d.is_bool:
                        o = {"add": "or", "mul": "and", "max": "or", "min": "and"}.get(name, name)
                        self.line(f"{acc} = kiln_block_reduce((int){acc}, kiln_op_{o}()) != 0;")
                    else:
                        self.line(f"{acc} = kiln_block_reduce({acc}, kiln_op_{o}());")
                return
        if ctx.block and _writes(s) and isinstance(s.extent, Const) and not (_stores([s]) & _loads([s])):
            self.shared_nest(s, inner=_Ctx())  # the block's threads share the output loop
            return
        v = s.var.name
        self.line(f"for (long long {v} = 0; {v} < {self.expr(s.extent)}; ++{v}) {{")
        self.depth += 1
        self.block(s.body, _Ctx(block=ctx.block, coop=ctx.coop), dict(inits))
        self.depth -= 1
        self.line("}")

    def shared_nest(self, s: Loop, inner: _Ctx) -> None:
        """The block's threads share the iterations of a (collapsed) loop nest."""
        vars_, exts, body = _collapse(s)
        f = self.fresh("f")
        self.line(f"for (long long {f} = threadIdx.x; {f} < {math.prod(exts)}LL; {f} += blockDim.x) {{")
        self.depth += 1
        self.unflatten(f, vars_, exts)
        self.block(body, inner)
        self.depth -= 1
        self.line("}")

    def unflatten(self, f: str, vars_: Sequence[Var], exts: Sequence[int]) -> None:
        stride = math.prod(exts)
        for v, e in zip(vars_, exts):
            stride //= e
            if len(vars_) == 1:
                self.line(f"const long long {v.name} = {f};")
            elif stride == 1:
                self.line(f"const long long {v.name} = {f} % {e}LL;")
            else:
                self.line(f"const long long {v.name} = ({f} / {stride}LL) % {e}LL;")


def _signature(k: KernelFunc, func: str) -> str:
    ps = []
    for p in k.params:
        const = "const " if p.mode == "r" else ""
        ps.append(f"{const}{storage_ctype(p.dtype)}* __restrict__ {p.name}")
    ps.append("long long* __restrict__ kiln_status")
    return f'extern "C" __global__ void {func}({", ".join(ps)})'


def _render_stage(k: KernelFunc, stmts: list, func: str, allow_tf32: bool = False
                  ) -> tuple[CudaStage, list[str]]:
    w = _Writer(k)
    *prefix, main = stmts
    serial = not k.independent_outer
    hazard = bool(_stores(stmts) & _loads(stmts))
    if serial:
        stage = CudaStage(func, "serial", 1, 1)
        w.block(stmts, _Ctx())
    elif (isinstance(main, Loop) and isinstance(main.extent, Const) and _writes(main)
          and not any(isinstance(p, Loop) for p in prefix)):
        w.block(prefix, _Ctx())
        if hazard:  # a nest that reads what it writes: each thread runs whole top-level iterations
            vars_, exts, body = [main.var], [int(main.extent.value)], main.body
        else:
            vars_, exts, body = _collapse(main)
        n = math.prod(exts)
        row_len = _coop_loops(body, {}) if not hazard else 0
        gemm = None
        if _has_dot(body):  # matmul / conv: a tiled GEMM, else one dot product per thread
            row_len = 0
            if not hazard:
                from .cuda_gemm import match_gemm
                gemm = match_gemm(vars_, exts, body)
        if gemm is not None:
            from .cuda_gemm import gemm_kind, render_gemm
            tiles, threads = render_gemm(w, gemm, gemm_kind(gemm, allow_tf32))
            stage = CudaStage(func, "gemm", tiles, threads)
        elif row_len >= 32:
            block = min(BLOCK, max(32, 1 << (row_len - 1).bit_length()))
            stage = CudaStage(func, "rows", n, block)
            w.line(f"for (long long kiln_r = blockIdx.x; kiln_r < {n}LL; kiln_r += gridDim.x) {{")
            w.depth += 1
            w.unflatten("kiln_r", vars_, exts)
            w.block(body, _Ctx(block=True, coop=True))
            w.depth -= 1
            w.line("}")
        else:
            vec = _vectorize(w, k, vars_, exts, body, hazard)
            stage = CudaStage(func, "threads", -(-n // vec), BLOCK)
    else:
        has_coop = _coop_loops(stmts, {}) > 0
        block = BLOCK if not hazard else 1
        stage = CudaStage(func, "block", 1, block)
        w.block(stmts, _Ctx(block=block > 1, coop=has_coop and block > 1))
    if stage.mode in ("rows", "block", "gemm") and stage.block > 1:
        # one read per block: a thread that skipped while another went on would hang at a barrier
        skip = ["  __shared__ int kiln_skip;", "  if (threadIdx.x == 0) kiln_skip = kiln_status[0] != 0;",
                "  __syncthreads();", "  if (kiln_skip) return;  // an earlier check failed"]
    else:
        skip = ["  if (kiln_status[0] != 0) return;  // an earlier check failed"]
    return stage, [_signature(k, func) + " {"] + skip + w.lines + ["}"]


def _vectorize(w: _Writer, k: KernelFunc, vars_, exts, body, hazard: bool) -> int:
    """Write a threads stage: grid-stride over the collapsed nest; 16-byte loads and stores of the
    buffers read and written at the flat index when the body has no loops. Returns the
    elements one thread handles per step (4 when vectorized, else 1)."""
    n = math.prod(exts)
    flat = ix.linearize(list(vars_), list(exts))
    w.alias = {flat: "kiln_f"} if isinstance(flat, Op) else {}
    lanes: list[str] = []
    if not hazard and not any(isinstance(s, Loop) for s in walk_stmts(body)) and len(vars_) >= 1:
        direct = set()
        for s in walk_stmts(body):
            for e in stmt_exprs(s):
                direct.update(x.buf for x in walk_exprs(e) if isinstance(x, Load) and _is_flat(x.index, flat, vars_))
        stores_top = [s for s in body if isinstance(s, Store)]
        nested_stores = [s for s in walk_stmts(body) if isinstance(s, Store) and s not in stores_top]
        out_direct = {s.buf for s in stores_top if _is_flat(s.index, flat, vars_)}
        if not nested_stores and all(_is_flat(s.index, flat, vars_) for s in stores_top):
            lanes = sorted(b for b in direct | out_direct if k.param(b).dtype.name in _VEC)
    if lanes and n >= 4:
        w.alias = {flat: "kiln_f"} if isinstance(flat, Op) else {}
        single = not isinstance(flat, Op)
        aligned = " | ".join(f"(unsigned long long){b}" for b in lanes)
        w.line(f"const long long kiln_nv = ((({aligned}) & 15ULL) == 0ULL) ? {n // 4}LL : 0LL;")
        w.line("for (long long kiln_g = blockIdx.x * (long long)blockDim.x + threadIdx.x; kiln_g < kiln_nv; "
               "kiln_g += (long long)gridDim.x * blockDim.x) {")
        w.depth += 1
        stored = {s.buf for s in body if isinstance(s, Store)}
        for b in lanes:
            p = k.param(b)
            vt, ct = _VEC[p.dtype.name], ctype(p.dtype)
            w.line(f"{ct} {b}_v[4];")
            if b in _loads(body):
                w.line(f"{{ const {vt} t = reinterpret_cast<const {vt}*>({b})[kiln_g]; "
                       f"{b}_v[0] = t.x; {b}_v[1] = t.y; {b}_v[2] = t.z; {b}_v[3] = t.w; }}")
        w.line("#pragma unroll")
        w.line("for (int kiln_lane = 0; kiln_lane < 4; ++kiln_lane) {")
        w.depth += 1
        w.line("const long long kiln_f = kiln_g * 4 + kiln_lane;")
        if single:
            w.alias = {}
            w.line(f"const long long {vars_[0].name} = kiln_f;")
            w.alias = {Var(vars_[0].name, dt.int64): "kiln_f"}
        else:
            w.unflatten("kiln_f", vars_, exts)
        w.vec = {b: f"{b}_v" for b in lanes}
        w.block(body, _Ctx())
        w.vec = {}
        w.depth -= 1
        w.line("}")
        for b in lanes:
            if b in stored:
                vt = _VEC[k.param(b).dtype.name]
                w.line(f"{{ {vt} t; t.x = {b}_v[0]; t.y = {b}_v[1]; t.z = {b}_v[2]; t.w = {b}_v[3]; "
                       f"reinterpret_cast<{vt}*>({b})[kiln_g] = t; }}")
        w.depth -= 1
        w.line("}")
        start = "kiln_nv * 4 + "
        vec = 4
    else:
        start, vec = "", 1
    w.alias = {flat: "kiln_f"} if isinstance(flat, Op) else {}
    w.line(f"for (long long kiln_f = {start}blockIdx.x * (long long)blockDim.x + threadIdx.x; kiln_f < {n}LL; "
           "kiln_f += (long long)gridDim.x * blockDim.x) {")
    w.depth += 1
    w.unflatten("kiln_f", vars_, exts)
    w.block(body, _Ctx())
    w.depth -= 1
    w.line("}")
    w.alias = {}
    return vec


def _is_flat(index: Expr, flat: Expr, vars_) -> bool:
    if isinstance(flat, Op):
        return index == flat
    return len(vars_) == 1 and isinstance(index, Var) and index.name == vars_[0].name


_STMTS = (Loop, Let, Assign, Store, If, Fail)
_EXPRS = (Const, Var, Load, Op)


def check_renderable(k: KernelFunc) -> None:
    """CudaRenderError naming the first statement, expression or op of `k` this renderer does not
    render (kernel IR constructs added for other targets, say)."""
    for s in walk_stmts(k.body):
        if not isinstance(s, _STMTS):
            raise CudaRenderError(f"CUDA renderer: kernel {k.name}: no rule for kernel IR statement "
                                  f"{type(s).__name__}")
        for e in walk_exprs(*stmt_exprs(s)):
            if not isinstance(e, _EXPRS):
                raise CudaRenderError(f"CUDA renderer: kernel {k.name}: no rule for kernel IR expression "
                                      f"{type(e).__name__}")


def render_kernel(k: KernelFunc, allow_tf32: bool = False) -> CudaKernel:
    """Kernel `k` as CUDA C (without the prelude): its stages, in launch order. `allow_tf32`: float32
    matmul/conv tiles may run on the tensor cores in TF32 (kiln.backends.cuda.matmul.allow_tf32)."""
    check_renderable(k)
    stages, text = [], [f"// {k.name}: {k.source}"] if k.source else []
    for j, stmts in enumerate(split_stages(k)):
        stage, lines = _render_stage(k, stmts, f"{k.name}_s{j}", allow_tf32)
        stages.append(stage)
        text.extend(lines)
        text.append("")
    return CudaKernel(k.name, list(k.params), stages, "\n".join(text))


def render_program(kernels: Sequence[KernelFunc], allow_tf32: bool = False) -> tuple[str, list[CudaKernel]]:
    """One CUDA C translation unit with the prelude and every kernel of `kernels`."""
    rendered = [render_kernel(k, allow_tf32) for k in kernels]
    return PRELUDE + "\n" + "\n".join(r.source for r in rendered), rendered

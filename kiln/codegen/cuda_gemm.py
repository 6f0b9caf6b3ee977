"""Matmul and convolution stages as tiled GEMM kernels (the CUDA renderer's `gemm` mode).

The CUDA lowering writes a matmul or conv anchor as one dot product per output element with
the plan's epilogue after it (`lower_plan(..., cpu_blocking=False)`):

    for <output vars>:                     # batch, rows (M), columns (N)
      acc = 0
      for <reduction vars>: acc = acc + X * Y     # X: batch, M and K vars; Y: batch, K and N vars
      <epilogue: bias, activation, casts ...; the store>

`match_gemm` recognises that nest and splits its output loops into batch vars (read by both
operands), M vars (read by X only) and N vars (read by Y only); the reduction vars are K. A
convolution is the same nest, X reading the input at `p*stride + k*dilation` (implicit GEMM:
M = batch entry x output positions, N = output channels, K = input channel x kernel taps), and a
grouped convolution's output channel `o` reaches X only as `o / per_group`: the N tiles then stay
inside one group. The input and weight gradients are convolutions of the same form.

`render_gemm` writes the tiled kernel: each block computes a BM x BN tile of one batch entry
(grid-stride over tiles); the K loop stages BK-deep slices of both operands through shared memory,
double-buffered (the next slice is loaded while this one is multiplied: float32 operands that are
plain loads with `cp.async`, others through registers); each element is X or Y evaluated at its
(m, k) / (k, n) position, zero outside the matrix, so edge tiles, transposed and strided operands,
and the input's zero padding need no special case. The tile is multiplied by

- `f16` / `bf16` (both operands loads of float16 / bfloat16): the tensor cores through the
  prelude's `kiln_wmma` (nvcuda::wmma's API on NVRTC's built-ins), m16n16k16, float32 accumulation;
- `tf32` (float32, only when `kiln.backends.cuda.matmul.allow_tf32` is set): m16n16k8 TF32 fragments;
- `simt` (otherwise): float32 FMAs, 4 x 4 outputs per thread.

The accumulators then run the epilogue per output element (bounds-checked), with the output loop
variables rebuilt from the element's (batch, m, n).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..ir import dtypes as dt
from .kir import Assign, Const, Expr, Let, Load, Loop, Op, Var, walk_exprs

SIMT = dict(bm=64, bn=64, bk=16, threads=256)
WMMA = dict(bm=64, bn=64, bk=16, threads=128)
KINDS = ("simt", "tf32", "f16", "bf16")


@dataclass
class GemmView:
    """A dot-product nest seen as a (batched, possibly grouped) GEMM."""
    batch: list[tuple[Var, int]]
    m: list[tuple[Var, int]]
    n: list[tuple[Var, int]]
    k: list[tuple[Var, int]]
    group: int          # > 0: N is one var whose columns come in groups of this many (grouped conv)
    x: Expr             # the float32 operands: x reads batch, M and K vars (and N only as n / group)
    y: Expr             # y reads batch, K and N vars
    acc: Var
    epilogue: list      # the nest's other Lets, then what follows the reduction (reads acc)

    @property
    def M(self) -> int:
        return math.prod(e for _, e in self.m)

    @property
    def N(self) -> int:
        return self.group if self.group else math.prod(e for _, e in self.n)

    @property
    def K(self) -> int:
        return math.prod(e for _, e in self.k)

    @property
    def groups(self) -> int:
        return self.n[0][1] // self.group if self.group else 1

    @property
    def nbatch(self) -> int:
        return math.prod(e for _, e in self.batch)


def _subst(e: Expr, env: dict[str, Expr]) -> Expr:
    if isinstance(e, Var):
        return env.get(e.name, e)
    if isinstance(e, Load):
        return Load(e.buf, _subst(e.index, env), e.dtype)
    if isinstance(e, Op):
        return Op(e.name, tuple(_subst(a, env) for a in e.args), e.dtype)
    return e


def _var_names(e: Expr) -> set[str]:
    return {x.name for x in walk_exprs(e) if isinstance(x, Var)}


def _only_as_group(e: Expr, name: str) -> int:
    """The divisor c when every use of var `name` in `e` is `name / c` (one c), else 0."""
    divisors, total, via = set(), 0, 0
    for x in walk_exprs(e):
        if isinstance(x, Var) and x.name == name:
            total += 1
        if (isinstance(x, Op) and x.name == "div" and isinstance(x.args[0], Var) and x.args[0].name == name
                and isinstance(x.args[1], Const)):
            via += 1
            divisors.add(int(x.args[1].value))
    if total and via == total and len(divisors) == 1:
        c = divisors.pop()
        return c if c > 0 else 0
    return 0


def _collapse_reduction(loop: Loop) -> tuple[list[tuple[Var, int]], list] | None:
    vars_, cur = [], [loop]
    while len(cur) == 1 and isinstance(cur[0], Loop):
        lp = cur[0]
        if not isinstance(lp.extent, Const):
            return None
        vars_.append((lp.var, int(lp.extent.value)))
        cur = lp.body
    return vars_, cur


def match_gemm(vars_: list[Var], exts: list[int], body: list) -> GemmView | None:
    """The GEMM view of an output nest (collapsed to `vars_`, `exts`, `body`), or None when the
    nest is not one float32 dot product per element followed by an epilogue."""
    j = next((i for i, s in enumerate(body) if not isinstance(s, Let)), None)
    if j is None or j == 0 or not isinstance(body[j], Loop):
        return None
    lets, red, rest = body[:j], body[j], body[j + 1:]
    acc_let = lets[-1]
    acc = acc_let.var
    if acc.dtype != dt.float32 or not (isinstance(acc_let.value, Const) and acc_let.value.value == 0):
        return None
    got = _collapse_reduction(red)
    if got is None:
        return None
    kvars, inner = got
    if not inner or not isinstance(inner[-1], Assign) or inner[-1].var.name != acc.name:
        return None
    env: dict[str, Expr] = {}
    for s in inner[:-1]:
        if not isinstance(s, Let):
            return None
        env[s.var.name] = _subst(s.value, env)
    v = _subst(inner[-1].value, env)
    x = y = None
    if isinstance(v, Op) and v.name == "fma" and v.args[2] == acc:
        x, y = v.args[0], v.args[1]
    elif isinstance(v, Op) and v.name == "add":
        a, b = v.args
        prod = b if a == acc else a if b == acc else None
        if isinstance(prod, Op) and prod.name == "mul":
            x, y = prod.args
    if x is None or x.dtype != dt.float32 or y.dtype != dt.float32:
        return None
    names_out = [vv.name for vv in vars_]
    allowed = set(names_out) | {kv.name for kv, _ in kvars}
    xs, ys = _var_names(x), _var_names(y)
    if not (xs | ys) <= allowed or acc.name in xs | ys:
        return None
    batch, m, n, group = [], [], [], 0
    for vv, e in zip(vars_, exts):
        inx, iny = vv.name in xs, vv.name in ys
        if inx and iny:
            c = _only_as_group(x, vv.name)
            if c and e % c == 0 and not group:
                group = c
                n.append((vv, e))
            else:
                batch.append((vv, e))
        elif inx:
            m.append((vv, e))
        elif iny:
            n.append((vv, e))
        else:
            batch.append((vv, e))
    if group and len(n) != 1:
        return None
    if not kvars:
        return None
    return GemmView(batch, m, n, kvars, group, x, y, acc, list(lets[:-1]) + list(rest))


def _half_load(e: Expr) -> tuple[Load, str] | None:
    """(the load, its dtype name) when `e` is a float16/bfloat16 load widened to float32."""
    if isinstance(e, Op) and e.name == "cast" and isinstance(e.args[0], Load):
        ld = e.args[0]
        if ld.dtype.name in ("float16", "bfloat16"):
            return ld, ld.dtype.name
    return None


def _step(e: Expr, along: list[tuple[Var, int]]) -> int | None:
    """How far the first load in `e` moves in memory for one step of the innermost var of `along`
    (None: no load, or a var of extent 1)."""
    from .kir_eval import eval_expr
    loads = [x for x in walk_exprs(e) if isinstance(x, Load)]
    if not loads or not along or along[-1][1] < 2:
        return None
    index = loads[0].index
    env = {n: 0 for n in _var_names(index)}
    at0 = int(eval_expr(index, env))
    env[along[-1][0].name] = 1
    return int(eval_expr(index, env)) - at0


def coalescing(view: GemmView) -> tuple[bool, bool]:
    """(x's tile loads run along k, y's along n): consecutive threads load consecutive addresses
    where an operand is contiguous along that dimension (x: k unless m is contiguous; y: n unless k is)."""
    x_k = not (_step(view.x, view.k) != 1 and _step(view.x, view.m) == 1)
    y_n = not (_step(view.y, view.n) != 1 and _step(view.y, view.k) == 1)
    return x_k, y_n


def gemm_kind(view: GemmView, allow_tf32: bool) -> str:
    """How the tile is multiplied: f16 / bf16 (tensor cores, both operands 16-bit loads), tf32 (float32
    allowed on the tensor cores), else simt."""
    hx, hy = _half_load(view.x), _half_load(view.y)
    if hx and hy and hx[1] == hy[1]:
        return "f16" if hx[1] == "float16" else "bf16"
    return "tf32" if allow_tf32 else "simt"


class _Gemm:
    """Writes one gemm stage through the CUDA renderer's writer `w`."""

    def __init__(self, w, view: GemmView, kind: str):
        self.w, self.v, self.kind = w, view, kind
        cfg = SIMT if kind == "simt" else WMMA
        self.bm, self.bn, self.bk, self.threads = cfg["bm"], cfg["bn"], cfg["bk"], cfg["threads"]
        self.half = kind in ("f16", "bf16")
        self.x_along_k, self.y_along_n = coalescing(view)
        self.elem = "unsigned short" if self.half else "float"
        if kind == "simt":   # A stored k-major (As[k][m]) so a thread's 4 rows are one read each
            self.a_shape, self.b_shape = (self.bk, self.bm + 4), (self.bk, self.bn + 4)
        else:                # row-major tiles for load_matrix_sync (ldm a multiple of 16 bytes)
            pad = 8 if self.half else 4
            self.a_shape, self.b_shape = (self.bm, self.bk + pad), (self.bk, self.bn + pad)

    # -- operand elements ---------------------------------------------------------------------------
    def bind(self, part: str, m: str | None, n: str | None, k: str | None) -> None:
        """Define the loop variables an operand element or an output element reads."""
        w, v = self.w, self.v
        if v.batch:
            w.unflatten("kiln_b", [x for x, _ in v.batch], [e for _, e in v.batch])
        if m is not None and v.m:
            w.unflatten(m, [x for x, _ in v.m], [e for _, e in v.m])
        if n is not None and v.n:
            if v.group:
                w.line(f"const long long {v.n[0][0].name} = kiln_g * {v.group}LL + {n};")
            else:
                w.unflatten(n, [x for x, _ in v.n], [e for _, e in v.n])
        elif v.group and part == "a":
            w.line(f"const long long {v.n[0][0].name} = kiln_g * {v.group}LL;  // x reads it as o / {v.group}")
        if k is not None:
            w.unflatten(k, [x for x, _ in v.k], [e for _, e in v.k])

    def value(self, e: Expr) -> str:
        """An operand element as the tile stores it (16-bit storage for the tensor-core halves)."""
        if self.half:
            ld = _half_load(e)[0]
            return f"{ld.buf}[{self.w.expr(ld.index)}]"
        return self.w.expr(e)

    def per_thread(self, rows: int, cols: int) -> int:
        return -(-(rows * cols) // self.threads)

    def tile_loads(self, part: str, kt: str, buf: str, stage: str) -> None:
        """Load the operand slice `kt` into shared buffer `buf`: stage "async" (cp.async of plain
        float32 loads), "regs" (into kiln_r{part}), or "store" (kiln_r{part} into shared memory)."""
        w, v = self.w, self.v
        e = v.x if part == "a" else v.y
        rows, cols = (self.bm, self.bk) if part == "a" else (self.bk, self.bn)
        per = self.per_thread(rows, cols)
        arr = "kiln_As" if part == "a" else "kiln_Bs"
        w.line(f"for (int kiln_i = 0; kiln_i < {per}; ++kiln_i) {{")
        w.depth += 1
        w.line(f"const int kiln_e = threadIdx.x + kiln_i * {self.threads};")
        w.line(f"if (kiln_e < {rows * cols}) {{")
        w.depth += 1
        if part == "a":
            if self.x_along_k:
                w.line(f"const int kiln_mm = kiln_e / {self.bk}, kiln_kk = kiln_e % {self.bk};")
            else:  # x is contiguous along m (a transposed operand): consecutive threads take consecutive rows
                w.line(f"const int kiln_mm = kiln_e % {self.bm}, kiln_kk = kiln_e / {self.bm};")
            w.line(f"const long long kiln_m = kiln_m0 + kiln_mm, kiln_k = (long long)({kt}) * {self.bk} + kiln_kk;")
            inside = f"kiln_m < {v.M}LL && kiln_k < {v.K}LL"
            slot = (f"{arr}[{buf}][kiln_kk][kiln_mm]" if self.kind == "simt" else f"{arr}[{buf}][kiln_mm][kiln_kk]")
        else:
            if self.y_along_n:
                w.line(f"const int kiln_kk = kiln_e / {self.bn}, kiln_nn = kiln_e % {self.bn};")
            else:  # y is contiguous along k (b.T): consecutive threads take consecutive k
                w.line(f"const int kiln_kk = kiln_e % {self.bk}, kiln_nn = kiln_e / {self.bk};")
            w.line(f"const long long kiln_n = kiln_n0 + kiln_nn, kiln_k = (long long)({kt}) * {self.bk} + kiln_kk;")
            inside = f"kiln_n < {v.N}LL && kiln_k < {v.K}LL"
            slot = f"{arr}[{buf}][kiln_kk][kiln_nn]"
        reg = f"kiln_r{part}[kiln_i]"
        if stage == "store":
            w.line(f"{slot} = {reg};")
        else:
            zero = "0" if self.half else "0.0f"
            w.line(f"if ({inside}) {{")
            w.depth += 1
            self.bind(part, "kiln_m" if part == "a" else None, "kiln_n" if part == "b" else None, "kiln_k")
            if stage == "async":
                w.line(f"kiln_cp_async4(&{slot}, &{e.buf}[{w.expr(e.index)}], true);")
            else:
                w.line(f"{reg} = {self.value(e)};")
            w.depth -= 1
            w.line("} else {")
            if stage == "async":
                w.line(f"  kiln_cp_async4(&{slot}, {e.buf}, false);  // zero-fill outside the matrix")
            else:
                w.line(f"  {reg} = {zero};")
            w.line("}")
        w.depth -= 1
        w.line("}")
        w.depth -= 1
        w.line("}")

    def is_async(self, part: str) -> bool:
        e = self.v.x if part == "a" else self.v.y
        return not self.half and isinstance(e, Load) and e.dtype == dt.float32

    def load_slice(self, kt: str, buf: str, phase: str) -> None:
        """phase "issue": start loading slice kt (cp.async, registers); "finish": registers to shared."""
        for part in ("a", "b"):
            if phase == "issue":
                self.tile_loads(part, kt, buf, "async" if self.is_async(part) else "regs")
            elif not self.is_async(part):
                self.tile_loads(part, kt, buf, "store")
        if phase == "issue" and (self.is_async("a") or self.is_async("b")):
            self.w.line("kiln_cp_async_commit();")

    # -- the kernel ---------------------------------------------------------------------------------
    def write(self) -> int:
        w, v = self.w, self.v
        tm, tn = -(-v.M // self.bm), -(-v.N // self.bn)
        ntiles = v.nbatch * v.groups * tm * tn
        nk = -(-v.K // self.bk)
        al, bl = self.a_shape, self.b_shape
        w.line(f"// gemm ({self.kind}): batch {v.nbatch} x groups {v.groups}, M {v.M}, N {v.N}, K {v.K}; "
               f"tiles {self.bm}x{self.bn}x{self.bk}")
        w.line(f"__shared__ __align__(32) {self.elem} kiln_As[2][{al[0]}][{al[1]}];")
        w.line(f"__shared__ __align__(32) {self.elem} kiln_Bs[2][{bl[0]}][{bl[1]}];")
        if self.kind != "simt":
            w.line(f"__shared__ __align__(32) float kiln_Cs[{self.bm}][{self.bn + 4}];")
        for part, rows, cols in (("a", self.bm, self.bk), ("b", self.bk, self.bn)):
            if not self.is_async(part):
                w.line(f"{self.elem} kiln_r{part}[{self.per_thread(rows, cols)}];")
        w.line(f"for (long long kiln_t = blockIdx.x; kiln_t < {ntiles}LL; kiln_t += gridDim.x) {{")
        w.depth += 1
        w.line(f"const long long kiln_m0 = ((kiln_t / {tn}LL) % {tm}LL) * {self.bm}LL;")
        w.line(f"const long long kiln_n0 = (kiln_t % {tn}LL) * {self.bn}LL;")
        w.line(f"const long long kiln_bg = kiln_t / {tn * tm}LL;")
        w.line(f"const long long kiln_g = kiln_bg % {v.groups}LL, kiln_b = kiln_bg / {v.groups}LL;")
        w.line("(void)kiln_g; (void)kiln_b;")
        if self.kind == "simt":
            w.line("const int kiln_tx = threadIdx.x % 16, kiln_ty = threadIdx.x / 16;")
            w.line("float kiln_c[4][4];")
            w.line("for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) kiln_c[i][j] = 0.0f;")
        else:
            acc = "frag_acc_k8" if self.kind == "tf32" else "frag_acc"
            w.line("const int kiln_warp = threadIdx.x / 32, kiln_wm = kiln_warp / 2, kiln_wn = kiln_warp % 2;")
            w.line(f"kiln_wmma::{acc} kiln_acc[2][2];")
            w.line("for (int i = 0; i < 2; ++i) for (int j = 0; j < 2; ++j) kiln_wmma::fill_fragment(kiln_acc[i][j], 0.0f);")
        self.load_slice("0", "0", "issue")
        self.load_slice("0", "0", "finish")
        w.line("kiln_cp_async_wait_all();")
        w.line("__syncthreads();")
        w.line(f"for (int kiln_kt = 0; kiln_kt < {nk}; ++kiln_kt) {{")
        w.depth += 1
        w.line("const int kiln_cur = kiln_kt & 1;")
        w.line(f"const bool kiln_more = kiln_kt + 1 < {nk};")
        w.line("if (kiln_more) {  // the next slice loads while this one is multiplied")
        w.depth += 1
        self.load_slice("kiln_kt + 1", "kiln_cur ^ 1", "issue")
        w.depth -= 1
        w.line("}")
        self.multiply()
        w.line("if (kiln_more) {")
        w.depth += 1
        self.load_slice("kiln_kt + 1", "kiln_cur ^ 1", "finish")
        w.depth -= 1
        w.line("}")
        w.line("kiln_cp_async_wait_all();")
        w.line("__syncthreads();")
        w.depth -= 1
        w.line("}")
        self.epilogue()
        w.line("__syncthreads();  // the next tile reuses shared memory")
        w.depth -= 1
        w.line("}")
        return ntiles

    def multiply(self) -> None:
        w = self.w
        if self.kind == "simt":
            w.line("#pragma unroll")
            w.line(f"for (int kiln_kk = 0; kiln_kk < {self.bk}; ++kiln_kk) {{")
            w.line("  float kiln_a[4], kiln_bv[4];")
            w.line("  for (int i = 0; i < 4; ++i) kiln_a[i] = kiln_As[kiln_cur][kiln_kk][kiln_ty + 16 * i];")
            w.line("  for (int j = 0; j < 4; ++j) kiln_bv[j] = kiln_Bs[kiln_cur][kiln_kk][kiln_tx + 16 * j];")
            w.line("  for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) "
                   "kiln_c[i][j] = fmaf(kiln_a[i], kiln_bv[j], kiln_c[i][j]);")
            w.line("}")
            return
        step = 8 if self.kind == "tf32" else 16
        fa, fb = {"f16": ("frag_a_f16", "frag_b_f16"), "bf16": ("frag_a_bf16", "frag_b_bf16"),
                  "tf32": ("frag_a_tf32", "frag_b_tf32")}[self.kind]
        w.line(f"for (int kiln_ks = 0; kiln_ks < {self.bk}; kiln_ks += {step}) {{")
        w.depth += 1
        w.line(f"kiln_wmma::{fa} kiln_fa[2];")
        w.line(f"kiln_wmma::{fb} kiln_fb[2];")
        w.line("for (int i = 0; i < 2; ++i) {")
        w.line(f"  kiln_wmma::load_matrix_sync(kiln_fa[i], &kiln_As[kiln_cur][kiln_wm * 32 + i * 16][kiln_ks], "
               f"{self.a_shape[1]});")
        w.line(f"  kiln_wmma::load_matrix_sync(kiln_fb[i], &kiln_Bs[kiln_cur][kiln_ks][kiln_wn * 32 + i * 16], "
               f"{self.b_shape[1]});")
        if self.kind == "tf32":
            w.line("  kiln_wmma::to_tf32(kiln_fa[i]);")
            w.line("  kiln_wmma::to_tf32(kiln_fb[i]);")
        w.line("}")
        w.line("for (int i = 0; i < 2; ++i) for (int j = 0; j < 2; ++j) "
               "kiln_wmma::mma_sync(kiln_acc[i][j], kiln_fa[i], kiln_fb[j], kiln_acc[i][j]);")
        w.depth -= 1
        w.line("}")

    def epilogue(self) -> None:
        from .cuda_render import _Ctx
        w, v = self.w, self.v
        if self.kind == "simt":
            w.line("for (int i = 0; i < 4; ++i) for (int j = 0; j < 4; ++j) {")
            w.depth += 1
            w.line("const long long kiln_m = kiln_m0 + kiln_ty + 16 * i, kiln_n = kiln_n0 + kiln_tx + 16 * j;")
            src = "kiln_c[i][j]"
        else:
            for i in range(2):
                for j in range(2):
                    w.line(f"kiln_wmma::store_matrix_sync(&kiln_Cs[kiln_wm * 32 + {16 * i}][kiln_wn * 32 + {16 * j}], "
                           f"kiln_acc[{i}][{j}], {self.bn + 4});")
            w.line("__syncthreads();")
            w.line(f"for (int kiln_e = threadIdx.x; kiln_e < {self.bm * self.bn}; kiln_e += {self.threads}) {{")
            w.depth += 1
            w.line(f"const long long kiln_m = kiln_m0 + kiln_e / {self.bn}, kiln_n = kiln_n0 + kiln_e % {self.bn};")
            src = f"kiln_Cs[kiln_e / {self.bn}][kiln_e % {self.bn}]"
        w.line(f"if (kiln_m < {v.M}LL && kiln_n < {v.N}LL) {{")
        w.depth += 1
        self.bind("out", "kiln_m", "kiln_n", None)
        w.line(f"float {v.acc.name} = {src};")
        w.block(v.epilogue, _Ctx())
        w.depth -= 1
        w.line("}")
        w.depth -= 1
        w.line("}")


def render_gemm(w, view: GemmView, kind: str) -> tuple[int, int]:
    """Write the gemm stage's body through writer `w`; returns (tiles, threads per block)."""
    if kind not in KINDS:
        raise ValueError(f"gemm kind {kind!r}: expected one of {', '.join(KINDS)}")
    g = _Gemm(w, view, kind)
    return g.write(), g.threads


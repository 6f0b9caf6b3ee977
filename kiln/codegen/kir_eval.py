"""A numpy evaluator of the kernel IR: the second oracle for decompositions and renderers.

`eval_expr(e, env)` evaluates one expression with its variables bound to numpy arrays
(or scalars), vectorized over all elements at once. `run_kernel(k, buffers)` interprets
a whole kernel; loops whose iterations are independent run as one vectorized step.

Semantics, per dtype, as a native target computes them:

- float ops are computed in the op's own dtype (float16 arithmetic in float16), IEEE
  round-to-nearest-even; `rint` rounds half to even; min/max propagate nan.
- `fma`: float16/float32 are evaluated in float64 and rounded once more (the product is
  exact, so this is a correctly rounded fma except for rare double roundings); float64
  is evaluated as mul then add (two roundings), which is what a target without fused
  multiply-add computes. Decompositions therefore never rely on fma's single rounding.
- integers wrap; div/rem truncate toward zero (division by zero gives 0 here: undefined
  on targets, never relied upon); shifts take the amount modulo the bit width
  (out-of-range shifts are poison on targets, never relied upon in a chosen lane).
- `cast` float->int saturates and maps nan to 0 (LLVM's fptosi.sat); float->bool and
  int->bool test != 0; other casts are numpy's value conversions. `bitcast` reinterprets
  the bits (same width).
- composite ops (`exp`, `tanh`, `pow`, ...) are evaluated with numpy's functions, so a
  kernel can be run before and after `decompose` and the two compared.
- an `If` branch runs in the lanes whose condition selects it only (as native code
  branches): its loads, stores and fails are not evaluated in the other lanes, so a load
  guarded by a bounds condition is never read out of range.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from .kir import (COMPOSITE_OPS, Assign, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op, Stmt,
                  Store, TileMMA, TransposeCopy, Var, stmt_exprs, walk_stmts, walk_exprs)

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SAME_WIDTH_INT = {2: np.int16, 4: np.int32, 8: np.int64}


class KernelFailure(RuntimeError):
    """A `Fail` statement ran: `code` and the int64 `payload` values of the first failing lane."""

    def __init__(self, kernel: str, code: int, payload: tuple[int, ...]):
        super().__init__(f"kernel {kernel}: fail {code}{payload}")
        self.code = code
        self.payload = payload


def _np(d: DType) -> np.dtype:
    return d.np_dtype


def _cast(x: np.ndarray, src: DType, out: DType) -> np.ndarray:
    x = np.asarray(x)
    if out.is_bool:
        return x != 0
    if out.is_integer and src.is_floating_point:
        info = np.iinfo(_np(out))
        xf = np.trunc(x.astype(np.float64))
        hi = float(info.max) + 1.0  # 2**31 or 2**63, exact in float64
        safe = np.where(np.isnan(xf) | (xf >= hi) | (xf < float(info.min)), 0.0, xf)
        r = safe.astype(_np(out))
        r = np.where(xf >= hi, info.max, r)
        r = np.where(xf < float(info.min), info.min, r)
        return r.astype(_np(out))
    return x.astype(_np(out))


def _bitcast(x: np.ndarray, src: DType, out: DType) -> np.ndarray:
    if src.itemsize != out.itemsize:
        raise ValueError(f"kernel IR eval: bitcast {src.name} -> {out.name} changes the width")
    return np.array(x, dtype=_np(src)).view(_np(out))


def _int_divrem(a: np.ndarray, b: np.ndarray, d: DType, want_rem: bool) -> np.ndarray:
    """Truncating division of wrapping ints (b == 0 -> 0)."""
    a = np.asarray(a, dtype=_np(d))
    b = np.asarray(b, dtype=_np(d))
    zero = b == 0
    bs = np.where(zero, 1, b).astype(_np(d))
    q = np.trunc(a.astype(np.float64) / bs.astype(np.float64)) if d.itemsize < 8 else None
    if q is not None:  # int32: exact in float64
        q = q.astype(np.int64)
        q = q.astype(_np(d))
    else:
        aq, ar = np.divmod(a, bs)  # floor division; fix up to truncation
        fix = (ar != 0) & ((a < 0) != (bs < 0))
        q = (aq + fix.astype(_np(d))).astype(_np(d))
    if want_rem:
        r = (a - q * bs).astype(_np(d))
        return np.where(zero, 0, r).astype(_np(d))
    return np.where(zero, 0, q).astype(_np(d))


def _shift(name: str, a: np.ndarray, b: np.ndarray, d: DType) -> np.ndarray:
    bits = 8 * d.itemsize
    u = _UNSIGNED[d.itemsize]
    amt = np.asarray(np.asarray(b).astype(np.int64) % bits).astype(u)
    a = np.asarray(a, dtype=_np(d))
    if name == "ashr":
        return np.asarray(a >> amt.astype(_np(d))).astype(_np(d))
    ua = a.astype(u)
    r = (ua << amt) if name == "shl" else (ua >> amt)
    return np.asarray(r).astype(u).view(_np(d))


def _fma(a, b, c, d: DType) -> np.ndarray:
    if d.is_floating_point and d.itemsize < 8:
        w = np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)
        return w.astype(_np(d))
    return np.asarray(np.asarray(a) * np.asarray(b) + np.asarray(c)).astype(_np(d))


def _int_pow(base: np.ndarray, e: np.ndarray, d: DType) -> np.ndarray:
    """Wrapping integer power; negative exponents give 0 except for bases 1 and -1."""
    base = np.asarray(base, _np(d))
    e = np.asarray(e, _np(d))
    result = np.ones(np.broadcast(base, e).shape, _np(d))
    b = np.broadcast_to(base, result.shape).copy()
    k = np.broadcast_to(np.where(e < 0, 0, e), result.shape).copy()
    for _ in range(8 * d.itemsize - 1):
        result = np.where(k & 1, result * b, result).astype(_np(d))
        b = (b * b).astype(_np(d))
        k = k >> 1
    neg = np.broadcast_to(e < 0, result.shape)
    odd = np.broadcast_to((e & 1) == 1, result.shape)
    bb = np.broadcast_to(base, result.shape)
    negval = np.where(bb == 1, 1, np.where(bb == -1, np.where(odd, -1, 1), 0)).astype(_np(d))
    return np.where(neg, negval, result).astype(_np(d))


def _composite(name: str, args: list[np.ndarray], d: DType) -> np.ndarray:
    if d.is_integer and name == "pow":
        return _int_pow(args[0], args[1], d)
    if not d.is_floating_point:
        raise TypeError(f"kernel IR eval: {name} of {d.name} is not defined")
    work = np.float32 if d == dt.float16 else _np(d)
    xs = [np.asarray(a).astype(work) for a in args]
    x = xs[0]
    if name == "exp": r = np.exp(x)
    elif name == "expm1": r = np.expm1(x)
    elif name == "log": r = np.log(x)
    elif name == "log1p": r = np.log1p(x)
    elif name == "tanh": r = np.tanh(x)
    elif name == "logistic": r = _logistic(x)
    elif name == "erf": r = np.vectorize(math.erf, otypes=[np.float64])(x).astype(work)
    elif name == "sin": r = np.sin(x)
    elif name == "cos": r = np.cos(x)
    elif name == "pow": r = np.power(x, xs[1])
    elif name == "rsqrt": r = np.asarray(1.0, work) / np.sqrt(x)
    else:
        raise ValueError(f"kernel IR eval: unknown composite op {name!r}")
    return np.asarray(r).astype(_np(d))


def _logistic(x: np.ndarray) -> np.ndarray:
    t = np.exp(-np.abs(x))
    s = np.asarray(1, x.dtype) / (1 + t)
    return np.where(x >= 0, s, t * s)


def _op(e: Op, a: list, d: DType) -> np.ndarray:
    n = e.name
    src = e.args[0].dtype
    if n in COMPOSITE_OPS:
        return _composite(n, a, d)
    if n == "select":
        return np.asarray(np.where(a[0], a[1], a[2])).astype(_np(d))
    if n == "cast":
        return _cast(a[0], src, d)
    if n == "bitcast":
        return _bitcast(a[0], src, d)
    if n in ("lt", "le", "eq", "ne", "gt", "ge"):
        f = {"lt": np.less, "le": np.less_equal, "eq": np.equal, "ne": np.not_equal, "gt": np.greater,
             "ge": np.greater_equal}[n]
        return np.asarray(f(a[0], a[1]))
    if n == "isnan":
        return np.asarray(np.isnan(a[0])) if src.is_floating_point else np.zeros(np.shape(a[0]), bool)
    a = [np.asarray(v, _np(d)) for v in a]
    if src.is_integer and n in ("div", "rem"):
        return _int_divrem(a[0], a[1], d, n == "rem")
    if n in ("shl", "lshr", "ashr"):
        return _shift(n, a[0], a[1], d)
    if n == "fma":
        return _fma(a[0], a[1], a[2], d)
    if n == "rem":
        return np.asarray(np.fmod(a[0], a[1]))
    if n == "not":
        return np.asarray(np.logical_not(a[0]) if d.is_bool else np.invert(a[0]))
    f = {"neg": np.negative, "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "trunc": np.trunc,
         "rint": np.rint, "sqrt": np.sqrt, "add": np.add, "sub": np.subtract, "mul": np.multiply,
         "div": np.divide, "min": np.minimum, "max": np.maximum, "copysign": np.copysign,
         "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}.get(n)
    if f is None:
        raise ValueError(f"kernel IR eval: unknown op {n!r}")
    return np.asarray(f(*a)).astype(_np(d), copy=False)


def eval_expr(e: Expr, env: Mapping[str, np.ndarray], buffers: Mapping[str, np.ndarray] | None = None
              ) -> np.ndarray:
    """Evaluate `e` with its Vars bound by `env` (arrays broadcast together; shared
    subexpressions are evaluated once). Loads read flat `buffers`."""
    memo: dict[int, np.ndarray] = {}
    keep = []  # keeps memoised nodes alive so their ids stay unique
    with np.errstate(all="ignore"):
        # iterative post-order over the DAG (polynomials nest deeply)
        stack: list[tuple[Expr, bool]] = [(e, False)]
        while stack:
            x, ready = stack.pop()
            if id(x) in memo:
                continue
            if isinstance(x, Const):
                memo[id(x)] = np.asarray(x.value, _np(x.dtype))
            elif isinstance(x, Var):
                if x.name not in env:
                    raise KeyError(f"kernel IR eval: variable {x.name} is not bound")
                memo[id(x)] = np.asarray(env[x.name]).astype(_np(x.dtype), copy=False)
            elif not ready:
                stack.append((x, True))
                kids = x.args if isinstance(x, Op) else (x.index,)
                stack.extend((k, False) for k in kids if id(k) not in memo)
                continue
            elif isinstance(x, Load):
                memo[id(x)] = _load(x, memo[id(x.index)], buffers)
            else:
                memo[id(x)] = _op(x, [memo[id(k)] for k in x.args], x.dtype)
            keep.append(x)
    return memo[id(e)]


def _load(x: Load, index: np.ndarray, buffers) -> np.ndarray:
    if buffers is None or x.buf not in buffers:
        raise KeyError(f"kernel IR eval: load from unbound buffer {x.buf}")
    buf = buffers[x.buf]
    index = np.asarray(index, np.int64)
    if index.size and (index.min() < 0 or index.max() >= buf.size):
        raise IndexError(f"kernel IR eval: load {x.buf}[{int(index.min())}..{int(index.max())}] "
                         f"out of bounds (size {buf.size})")
    return buf[index]


# ---------------------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------------------

def run_kernel(k: KernelFunc, buffers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Interpret `k` over flat numpy buffers (written in place; write-only buffers that are
    not given are allocated as zeros). Returns every buffer by name."""
    bufs: dict[str, np.ndarray] = {}
    for p in k.params:
        if p.name not in buffers:
            if p.mode == "r":
                raise KeyError(f"kernel {k.name}: input buffer {p.name} not given")
            bufs[p.name] = np.zeros(p.numel, _np(p.dtype))
            continue
        a = buffers[p.name]
        if a.dtype != _np(p.dtype):
            raise TypeError(f"kernel {k.name}: buffer {p.name} is {a.dtype}, kernel expects {p.dtype.name}")
        if a.size < p.numel:
            raise ValueError(f"kernel {k.name}: buffer {p.name} holds {a.size} elements, needs {p.numel}")
        flat = a.reshape(-1)
        if p.mode != "r" and not np.shares_memory(flat, a):
            raise ValueError(f"kernel {k.name}: output buffer {p.name} must be contiguous")
        bufs[p.name] = flat
    _Interp(k, bufs).block(k.body, {}, 1)
    return bufs


class _Interp:
    def __init__(self, k: KernelFunc, bufs: dict[str, np.ndarray]):
        self.k, self.bufs = k, bufs

    def uniform(self, e: Expr, env, lanes: int, what: str) -> int:
        v = np.asarray(eval_expr(e, env, self.bufs))
        if v.ndim and v.size and not np.all(v == v.flat[0]):
            raise ValueError(f"kernel {self.k.name}: {what} differs between vectorized iterations")
        return int(v.flat[0]) if v.ndim else int(v)

    def block(self, body: list[Stmt], env: dict, lanes: int) -> None:
        """Run `body` in `env` over `lanes` lanes, all of them active (the caller passes a copy:
        a block's Lets stay inside it)."""
        for s in body:
            if isinstance(s, (Let, Assign)):
                env[s.var.name] = eval_expr(s.value, env, self.bufs)
            elif isinstance(s, Store):
                self.store(s, env, lanes)
            elif isinstance(s, If):
                c = np.broadcast_to(np.asarray(eval_expr(s.cond, env, self.bufs), bool), (lanes,))
                for branch, active in ((s.then, c), (s.orelse, ~c)):
                    if branch and active.any():
                        self.masked(branch, env, lanes, active)
            elif isinstance(s, Fail):
                self.fail(s, env, lanes)
            elif isinstance(s, Loop):
                self.loop(s, env, lanes)
            elif isinstance(s, TileMMA):
                self.tile_mma(s, env, lanes)
            elif isinstance(s, TransposeCopy):
                self.transpose_copy(s, env, lanes)
            else:
                raise TypeError(f"kernel {self.k.name}: not a statement: {s!r}")

    def masked(self, body: list[Stmt], env: dict, lanes: int, active: np.ndarray) -> None:
        """Run `body` for the `active` lanes only, as a native target does: the other lanes
        evaluate nothing (no load, no fail), so an index that is out of range where the
        condition is false is never read. Assignments to `env`'s locals flow back into those lanes."""
        if active.all():
            sub = dict(env)
            self.block(body, sub, lanes)
            for name in env:
                env[name] = sub[name]
            return
        sel = np.flatnonzero(active)
        before = {name: v[sel] if np.ndim(v) else v for name, v in env.items()}
        sub = dict(before)
        self.block(body, sub, sel.size)
        for name, v in env.items():
            if sub[name] is not before[name]:
                merged = np.array(np.broadcast_to(np.asarray(v), (lanes,)))
                merged[sel] = sub[name]
                env[name] = merged

    def store(self, s: Store, env, lanes: int) -> None:
        buf = self.bufs[s.buf]
        idx = np.broadcast_to(np.asarray(eval_expr(s.index, env, self.bufs), np.int64), (lanes,))
        val = np.broadcast_to(np.asarray(eval_expr(s.value, env, self.bufs), buf.dtype), (lanes,))
        if idx.size and (idx.min() < 0 or idx.max() >= buf.size):
            raise IndexError(f"kernel {self.k.name}: store {s.buf}[{int(idx.min())}..{int(idx.max())}] "
                             f"out of bounds (size {buf.size})")
        buf[idx] = val  # duplicate indices: the last lane (the last iteration) wins

    def tile_mma(self, s: TileMMA, env, lanes: int) -> None:
        """The tile product in float64, rounded once to the buffers' dtype (a native target
        rounds after every fused step: results agree to the accumulation's rounding error)."""
        ci, ai, bi, kc = (self.uniform(e, env, lanes, f"tile_mma {what}") for e, what in
                          ((s.c_index, "c index"), (s.a_index, "a index"), (s.b_index, "b index"), (s.kc, "kc")))
        acc = bool(self.uniform(s.accumulate, env, lanes, "tile_mma accumulate flag"))
        c, a, b = self.bufs[s.c], self.bufs[s.a], self.bufs[s.b]
        rows = ci + np.arange(s.mr)[:, None] * s.ldc + np.arange(s.nr)[None, :]
        (ars, aks), bks = s.a_step, s.b_step
        at = ai + np.arange(kc)[:, None] * aks + np.arange(s.mr)[None, :] * ars   # [k, i]
        bt = bi + np.arange(kc)[:, None] * bks + np.arange(s.nr)[None, :]         # [k, j]
        for buf, ix_, name in ((a, at, s.a), (b, bt, s.b), (c, rows, s.c)):
            if ix_.size and (int(ix_.min()) < 0 or int(ix_.max()) >= buf.size):
                raise IndexError(f"kernel {self.k.name}: tile_mma reads {name}[{int(ix_.min())}..{int(ix_.max())}] "
                                 f"out of bounds (size {buf.size})")
        pa = a[at].astype(np.float64).reshape(kc, s.mr)
        pb = b[bt].astype(np.float64).reshape(kc, s.nr)
        prod = pa.T @ pb
        if acc:
            prod = prod + c[rows].astype(np.float64)
        c[rows] = prod.astype(c.dtype)

    def transpose_copy(self, s: TransposeCopy, env, lanes: int) -> None:
        """Each (vectorized) iteration's block: dst[d + c*dst_ld + r] = src[s + r*src_ld + c]."""
        dst, src = self.bufs[s.dst], self.bufs[s.src]
        di = np.broadcast_to(np.asarray(eval_expr(s.dst_index, env, self.bufs), np.int64), (lanes,))
        si = np.broadcast_to(np.asarray(eval_expr(s.src_index, env, self.bufs), np.int64), (lanes,))
        r, c = np.arange(s.rows)[:, None], np.arange(s.cols)[None, :]
        at_src = si[:, None, None] + r * s.src_ld + c   # [iteration, r, c]
        at_dst = di[:, None, None] + c * s.dst_ld + r
        for buf, at, name, verb in ((src, at_src, s.src, "reads"), (dst, at_dst, s.dst, "writes")):
            if at.size and (int(at.min()) < 0 or int(at.max()) >= buf.size):
                raise IndexError(f"kernel {self.k.name}: transpose_copy {verb} {name}[{int(at.min())}.."
                                 f"{int(at.max())}] out of bounds (size {buf.size})")
        dst[at_dst.reshape(-1)] = src[at_src.reshape(-1)]  # iterations in order: the last one wins

    def fail(self, s: Fail, env, lanes: int) -> None:
        vals = [np.broadcast_to(np.asarray(eval_expr(p, env, self.bufs), np.int64), (lanes,)) for p in s.payload]
        raise KernelFailure(self.k.name, s.code, tuple(int(v[0]) for v in vals))

    def loop(self, s: Loop, env, lanes: int) -> None:
        n = self.uniform(s.extent, env, lanes, f"extent of loop {s.var.name}")
        if n <= 0:
            return
        if self.independent(s):
            # all iterations at once: every current lane splits into n lanes
            sub = {name: np.repeat(np.broadcast_to(np.asarray(v), (lanes,)), n) if lanes > 1 or np.ndim(v)
                   else v for name, v in env.items()}
            sub[s.var.name] = np.tile(np.arange(n, dtype=np.int64), lanes)
            self.block(s.body, sub, lanes * n)
            return
        for i in range(n):
            env[s.var.name] = np.int64(i) if lanes == 1 else np.full(lanes, i, np.int64)
            sub = dict(env)
            self.block(s.body, sub, lanes)
            for name in env:
                env[name] = sub[name]
        del env[s.var.name]

    def independent(self, s: Loop) -> bool:
        """No iteration can observe another: no assignment to a local defined outside the
        loop, no buffer both stored and loaded inside it, no Fail (the first failing
        iteration must be the one reported)."""
        defined: set[str] = set()
        stored: set[str] = set()
        loaded: set[str] = set()
        for st in walk_stmts([s]):
            if isinstance(st, (Let, Loop)):
                defined.add(st.var.name)
            if isinstance(st, Assign) and st.var.name not in defined:
                return False
            if isinstance(st, (Fail, TileMMA)):  # a tile reads what the previous iteration stored
                return False
            if isinstance(st, Store):
                stored.add(st.buf)
            if isinstance(st, TransposeCopy):
                stored.add(st.dst)
                loaded.add(st.src)
            loaded.update(_loaded_buffers(stmt_exprs(st)))
        return not (stored & loaded)


def _loaded_buffers(roots) -> set[str]:
    return {x.buf for x in walk_exprs(*roots) if isinstance(x, Load)}

"""Loop partitioning: split a loop where conditions on its variable change truth value.

Pad, concat and slice lower to index arithmetic guarded by conditions on the output index
(`index.pad_index`, the lowering of concat): `select(((i - 768) >= 0) & ((i - 768) < 256), i - 768, 0)`
in a load index, `select(cond, value, 0.0)` on the value, a chain of selects over every operand
of a concat. Evaluated per element they cost every branch's loads at every position, and the
selects in the indices make LLVM gather instead of vectorize.

`partition_kernel(k)` finds, for each loop `for i in 0..n` with a constant extent, the points
where a comparison that is affine in `i` alone (`k*i + c <cmp> 0` after moving everything to one
side; conjunctions are walked through) changes its value, and splits the loop into the ranges
between them — at most `MAX_PIECES` pieces. Each piece `[lo, hi)` becomes `for i in 0..hi-lo`
with `i` replaced by `i + lo` in its body, which is then simplified under the piece's range
(`index_simplify`): the conditions become constants, dead select arms, `If` branches and the
`Let`s only they used disappear, and the indices lose their selects. A concat of 32 operands
becomes 32 copy loops. Conditions on two loop variables are not split on.

The pieces run in the original order, so reductions accumulate exactly as before; every piece
keeps the loop variable's name, so the loop's schedule entry (vector width) covers every piece,
and a top-level loop split into pieces gives top-level loops that `schedule_parallel` marks
parallel one by one (their iterations are the original loop's, independent). `nested=False`
splits top-level loops only (the CUDA backend: each piece is a stage whose nest still collapses
into one grid). Kernels with a `tile_mma` or `transpose_copy` (the packed GEMM) are left alone.
A split whose pieces together would be more than twice the loop's size (plus `SIZE_SLACK`) is
not made. `KILN_LOOP_PARTITION=0` turns the pass off (kernels are lowered as before it existed).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable

from .. import config
from ..ir import dtypes as dt
from .index_simplify import Simplifier, value_range
from .kir import (Assign, Const, Expr, Fail, If, KernelFunc, Let, Loop, Op, Stmt, Store, BLOCK_STMTS,
                  Var, idx, op, stmt_exprs, var_names, walk_exprs, walk_stmts)

MAX_PIECES = 64    # a loop is split into at most this many pieces
SIZE_SLACK = 256   # statements + expression nodes a split may add beyond twice the loop's size
MAX_ROUNDS = 4     # a piece whose simplified body has new affine conditions is split again, this often

_CMP = ("lt", "le", "gt", "ge", "eq", "ne")


def partition_kernel(k: KernelFunc, nested: bool = True, max_pieces: int = MAX_PIECES,
                     size_slack: int = SIZE_SLACK) -> KernelFunc:
    """`k` with its loops partitioned on affine conditions and its index arithmetic simplified
    (in place: the body is replaced; the kernel is returned). `nested=False`: split top-level
    loops only; `max_pieces`, `size_slack`: the limits of one split (see the module docstring).
    `KILN_LOOP_PARTITION=0` (`kiln.config`'s `loop_partition`) returns `k` unchanged."""
    if not config.get().loop_partition or any(isinstance(s, BLOCK_STMTS) for s in walk_stmts(k.body)):
        return k
    defined = [s.var.name for s in walk_stmts(k.body) if isinstance(s, (Let, Loop))]
    if len(set(defined)) != len(defined):  # a name defined twice: lets are looked up by name
        return k
    assigned = {s.var.name for s in walk_stmts(k.body) if isinstance(s, Assign)}
    p = _Partitioner(assigned, nested, max_pieces, size_slack)
    k.body = p.block(k.body, None, top=True)
    return k


def affine_in(e: Expr, name: str) -> tuple[int, int] | None:
    """(k, c) when int64 expression `e` is `k*name + c` built from add/sub/neg/mul by constants."""
    if isinstance(e, Const):
        return (0, int(e.value)) if e.dtype == dt.int64 else None
    if isinstance(e, Var):
        return (1, 0) if e.name == name else None
    if not isinstance(e, Op) or e.dtype != dt.int64:
        return None
    if e.name == "neg":
        a = affine_in(e.args[0], name)
        return (-a[0], -a[1]) if a else None
    if e.name in ("add", "sub"):
        a, b = affine_in(e.args[0], name), affine_in(e.args[1], name)
        if a is None or b is None:
            return None
        s = 1 if e.name == "add" else -1
        return (a[0] + s * b[0], a[1] + s * b[1])
    if e.name == "mul":
        a, b = affine_in(e.args[0], name), affine_in(e.args[1], name)
        if a is None or b is None or (a[0] and b[0]):
            return None
        return (a[0] * b[1] + b[0] * a[1], a[1] * b[1])
    return None


def breakpoints(var: str, stmts: Iterable[Stmt], extent: int) -> list[int]:
    """The points t in (0, extent) where some comparison affine in `var` alone, evaluated in
    `stmts`, may change value between t-1 and t (sorted)."""
    points: set[int] = set()
    roots = [e for s in walk_stmts(list(stmts)) for e in stmt_exprs(s)]
    for x in walk_exprs(*roots):
        if not (isinstance(x, Op) and x.name in _CMP and x.args[0].dtype == dt.int64):
            continue
        a, b = affine_in(x.args[0], var), affine_in(x.args[1], var)
        if a is None or b is None:
            continue
        kk, c = a[0] - b[0], a[1] - b[1]
        if kk == 0:
            continue
        for t in _thresholds(x.name, kk, c):
            if 0 < t < extent:
                points.add(t)
    return sorted(points)


def _thresholds(cmp: str, k: int, c: int) -> tuple[int, ...]:
    """The t where `(k*t + c) <cmp> 0` differs from its value at t - 1 (k != 0)."""
    root = Fraction(-c, k)
    at_zero = math.ceil(root) if k > 0 else math.floor(root) + 1   # where d >= 0 flips
    past_zero = math.floor(root) + 1 if k > 0 else math.ceil(root)  # where d > 0 flips
    if cmp in ("ge", "lt"):
        return (at_zero,)
    if cmp in ("gt", "le"):
        return (past_zero,)
    return (at_zero, past_zero) if root.denominator == 1 else ()


def _size(stmts: list[Stmt]) -> int:
    roots = [e for s in walk_stmts(stmts) for e in stmt_exprs(s)]
    return sum(1 for _ in walk_stmts(stmts)) + sum(1 for _ in walk_exprs(*roots))


class _Scope:
    """One block's names while it is rewritten: its `Let`s are simplified on first use (a let no
    statement reads is never simplified, and dropped), then used in place (constants, copies)
    or kept, with the value range of an int64 value for the statements after it."""

    def __init__(self, parent: "_Scope | None", part: "_Partitioner", ranges: dict, subst: dict,
                 opaque: bool = False):
        self.parent = parent
        self.opaque = opaque    # over a body rewritten already: outer substitutions are applied
        self.part = part
        self.ranges = ranges    # own names: loop variable of the piece, int64 lets
        self.subst = subst      # own names: a piece's `i -> i + lo`, lets used in place
        self.pending: dict[str, Let] = {}
        self.kept: dict[int, Let] = {}
        self.simp = Simplifier(_Lookup(self, "ranges"), _Lookup(self, "subst"))

    def force(self, name: str) -> bool:
        """Simplify the let of `name` if this scope defines it; False when it is not ours."""
        let = self.pending.pop(name, None)
        if let is None:
            return False
        v = self.simp(let.value)
        if name not in self.part.assigned:
            if isinstance(v, Const) or (isinstance(v, Var) and v.name not in self.part.assigned):
                if v.dtype == let.var.dtype:
                    self.subst[name] = v
                    return True
            if v.dtype == dt.int64:
                r = value_range(v, self.simp.ranges)
                if r is not None:
                    self.ranges[name] = r
        self.kept[id(let)] = Let(let.var, v)
        return True


class _Lookup:
    """`ranges` or `subst` of a scope chain as the mapping `Simplifier` reads (forcing lets)."""

    def __init__(self, scope: _Scope, table: str):
        self.scope, self.table = scope, table

    def get(self, name: str, default=None):
        sc = self.scope
        while sc is not None:
            if name in sc.pending:
                sc.force(name)
            t = getattr(sc, self.table)
            if name in t:
                return t[name]
            if sc.opaque and self.table == "subst":
                return default
            sc = sc.parent
        return default


class _Partitioner:
    def __init__(self, assigned: set[str], nested: bool, max_pieces: int, size_slack: int):
        self.assigned = assigned
        self.size_slack = size_slack
        self.nested = nested
        self.max_pieces = max_pieces
        self._points: dict[int, tuple[Loop, list[int]]] = {}  # by loop: an inner loop is met once per piece
        self._sizes: dict[int, tuple[Loop, int]] = {}

    def block(self, stmts: list[Stmt], parent: _Scope | None, ranges: dict | None = None,
              subst: dict | None = None, top: bool = False) -> list[Stmt]:
        sc = _Scope(parent, self, dict(ranges or {}), dict(subst or {}))
        for s in stmts:
            if isinstance(s, Let):
                sc.pending[s.var.name] = s
        simp = sc.simp
        done: dict[int, list[Stmt]] = {}
        for k in range(len(stmts) - 1, -1, -1):  # back to front: a let is simplified when read
            s = stmts[k]
            if isinstance(s, Let):
                continue
            if isinstance(s, Assign):  # the local's let (here or in an enclosing block) is kept
                up = sc
                while up is not None and not up.force(s.var.name):
                    up = up.parent
                done[k] = [Assign(s.var, simp(s.value))]
            elif isinstance(s, Store):
                done[k] = [Store(s.buf, simp(s.index), simp(s.value))]
            elif isinstance(s, Fail):
                done[k] = [Fail(s.code, tuple(simp(p) for p in s.payload))]
            elif isinstance(s, If):
                c = simp(s.cond)
                if isinstance(c, Const):
                    done[k] = self.block(s.then if c.value else s.orelse, sc)
                else:
                    done[k] = [If(c, self.block(s.then, sc), self.block(s.orelse, sc))]
            elif isinstance(s, Loop):
                done[k] = self.loop(s, simp(s.extent), sc, top)
            else:
                raise TypeError(f"loop partition: not a kernel IR statement: {s!r}")
        out: list[Stmt] = []
        for k, s in enumerate(stmts):
            if isinstance(s, Let):
                if id(s) in sc.kept:
                    out.append(sc.kept[id(s)])
            else:
                out.extend(done[k])
        return _dce(out)

    def loop(self, s: Loop, extent: Expr, sc: _Scope, top: bool, rounds: int = MAX_ROUNDS) -> list[Stmt]:
        name = s.var.name
        r = value_range(extent, sc.simp.ranges)
        if r is not None and r[1] <= 0:
            return []  # never runs
        splittable = isinstance(extent, Const) and (top or self.nested) and rounds > 0
        if splittable:
            hit = self._points.get(id(s))
            if hit is None or hit[0] is not s:
                hit = self._points[id(s)] = (s, breakpoints(name, s.body, int(extent.value)))
            pieces = self.split(s, hit[1], sc, rounds)
            if pieces is not None:
                return pieces
        whole = {name: (0, r[1] - 1)} if r is not None else {}
        new = Loop(s.var, extent, self.block(s.body, sc, whole, {name: s.var}))
        if splittable:  # simplification may have made conditions affine (a select in a comparison)
            pieces = self.split(new, breakpoints(name, new.body, int(extent.value)), _Scope(sc, self, {}, {}, True),
                                rounds - 1)
            if pieces is not None:
                return pieces
        return [new]

    def split(self, s: Loop, points: list[int], sc: _Scope, rounds: int) -> list[Stmt] | None:
        """`s` as pieces between `points`, or None when there are none, too many or too big ones."""
        if not points or len(points) + 1 > self.max_pieces:
            return None
        name, n = s.var.name, int(s.extent.value)
        bounds = [0, *points, n]
        hit = self._sizes.get(id(s))
        if hit is None or hit[0] is not s:
            hit = self._sizes[id(s)] = (s, _size(s.body))
        budget = 2 * hit[1] + self.size_slack
        out: list[Stmt] = []
        used = 0
        for lo, hi in zip(bounds, bounds[1:]):
            sub = {name: op("add", s.var, idx(lo)) if lo else s.var}
            body = self.block(s.body, sc, {name: (0, hi - lo - 1)}, sub)
            if not body:
                continue
            piece = Loop(s.var, idx(hi - lo), body)
            again = [piece]
            if rounds > 1 and breakpoints(name, body, hi - lo):  # conditions the substitution made affine
                again = self.loop(piece, piece.extent, _Scope(sc, self, {}, {}, True), True, rounds - 1)
            out.extend(again)
            used += sum(_size(x.body) + 1 for x in again if isinstance(x, Loop))
            if used > budget or len(out) > self.max_pieces:
                return None
        return out


def _dce(stmts: list[Stmt]) -> list[Stmt]:
    """Drop `Let`s nothing after them reads (expressions have no side effects), back to front,
    and loops and branches left empty (nested blocks are clean already)."""
    live: set[str] = set()
    out: list[Stmt] = []
    for s in reversed(stmts):
        if isinstance(s, Let):
            if s.var.name not in live:
                continue
            live.discard(s.var.name)
        elif isinstance(s, Loop) and not s.body:
            continue
        elif isinstance(s, If) and not s.then and not s.orelse:
            continue
        live |= var_names([s])
        out.append(s)
    out.reverse()
    return out

"""Verifier of the kernel IR: names defined before use, dtypes consistent, buffers known."""
from __future__ import annotations

from ..ir import dtypes as dt
from .kir import (COMPOSITE_OPS, SCALAR_OPS, Assign, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op,
                  Store, TileMMA, TransposeCopy, Var)


class KernelIRError(ValueError):
    pass


def verify_kernel(k: KernelFunc, allow_composite: bool = True) -> None:
    """Raise KernelIRError naming the kernel and the fault unless `k` is well formed."""
    bufs = {p.name: p for p in k.params}
    if len(bufs) != len(k.params):
        raise KernelIRError(f"{k.name}: duplicate buffer names")

    def fail(msg: str):
        raise KernelIRError(f"kernel {k.name}: {msg}")

    def expr(e: Expr, scope: dict[str, Var]) -> None:
        if isinstance(e, Const):
            return
        if isinstance(e, Var):
            if scope.get(e.name) != e:
                fail(f"variable {e.name} used before definition (or with another dtype)")
            return
        if isinstance(e, Load):
            if e.buf not in bufs:
                fail(f"load from unknown buffer {e.buf}")
            if bufs[e.buf].dtype != e.dtype:
                fail(f"load {e.buf} as {e.dtype.name}, buffer holds {bufs[e.buf].dtype.name}")
            if e.index.dtype != dt.int64:
                fail(f"index into {e.buf} is {e.index.dtype.name}, not int64")
            expr(e.index, scope)
            return
        if isinstance(e, Op):
            if e.name in COMPOSITE_OPS and not allow_composite:
                fail(f"composite op {e.name} left after decomposition")
            if e.name not in SCALAR_OPS and e.name not in COMPOSITE_OPS:
                fail(f"unknown op {e.name}")
            if e.name == "select" and e.args[0].dtype != dt.bool_:
                fail("select condition is not bool")
            for a in e.args:
                expr(a, scope)
            return
        fail(f"not an expression: {e!r}")

    def block(body, scope: dict[str, Var]) -> None:
        scope = dict(scope)
        for s in body:
            if isinstance(s, Loop):
                if s.var.dtype != dt.int64:
                    fail(f"loop variable {s.var.name} is not int64")
                expr(s.extent, scope)
                if s.var.name in scope:
                    fail(f"loop variable {s.var.name} shadows a name in scope")
                block(s.body, {**scope, s.var.name: s.var})
            elif isinstance(s, Let):
                expr(s.value, scope)
                if s.value.dtype != s.var.dtype:
                    fail(f"{s.var.name}: {s.var.dtype.name} bound to a {s.value.dtype.name} value")
                scope[s.var.name] = s.var
            elif isinstance(s, Assign):
                expr(s.value, scope)
                if scope.get(s.var.name) != s.var:
                    fail(f"assignment to undefined local {s.var.name}")
                if s.value.dtype != s.var.dtype:
                    fail(f"{s.var.name}: {s.var.dtype.name} assigned a {s.value.dtype.name} value")
            elif isinstance(s, Store):
                if s.buf not in bufs:
                    fail(f"store to unknown buffer {s.buf}")
                if bufs[s.buf].mode == "r":
                    fail(f"store to read-only buffer {s.buf}")
                if bufs[s.buf].dtype != s.value.dtype:
                    fail(f"store of {s.value.dtype.name} into {s.buf} ({bufs[s.buf].dtype.name})")
                expr(s.index, scope)
                expr(s.value, scope)
            elif isinstance(s, If):
                expr(s.cond, scope)
                if s.cond.dtype != dt.bool_:
                    fail("if condition is not bool")
                block(s.then, scope)
                block(s.orelse, scope)
            elif isinstance(s, Fail):
                for p in s.payload:
                    expr(p, scope)
            elif isinstance(s, TileMMA):
                for name, mode in ((s.c, "rw"), (s.a, "r"), (s.b, "r")):
                    if name not in bufs:
                        fail(f"tile_mma on unknown buffer {name}")
                    if mode == "rw" and bufs[name].mode != "rw":
                        fail(f"tile_mma accumulates into {name}, which is not a read-write buffer")
                d = bufs[s.c].dtype
                if not d.is_floating_point or bufs[s.a].dtype != d or bufs[s.b].dtype != d:
                    fail(f"tile_mma needs one float dtype for {s.c}, {s.a}, {s.b}")
                if s.mr < 1 or s.nr < 1 or s.ldc < s.nr:
                    fail(f"tile_mma {s.mr}x{s.nr} with ldc={s.ldc}: tile sizes must be >= 1 and ldc >= nr")
                for e in (s.c_index, s.a_index, s.b_index, s.kc):
                    if e.dtype != dt.int64:
                        fail("tile_mma index or extent is not int64")
                    expr(e, scope)
                if s.accumulate.dtype != dt.bool_:
                    fail("tile_mma accumulate flag is not bool")
                expr(s.accumulate, scope)
            elif isinstance(s, TransposeCopy):
                for name in (s.dst, s.src):
                    if name not in bufs:
                        fail(f"transpose_copy on unknown buffer {name}")
                if bufs[s.dst].mode == "r":
                    fail(f"transpose_copy into read-only buffer {s.dst}")
                if bufs[s.dst].dtype != bufs[s.src].dtype:
                    fail(f"transpose_copy from {s.src} ({bufs[s.src].dtype.name}) into {s.dst} "
                         f"({bufs[s.dst].dtype.name}): the buffers need one dtype")
                if s.rows < 1 or s.cols < 1 or s.dst_ld < s.rows:
                    fail(f"transpose_copy {s.rows}x{s.cols} with dst ld={s.dst_ld}: block sizes must be >= 1 "
                         "and the destination's ld >= rows")
                for e in (s.dst_index, s.src_index):
                    if e.dtype != dt.int64:
                        fail("transpose_copy index is not int64")
                    expr(e, scope)
            else:
                fail(f"not a statement: {s!r}")

    block(k.body, {})



MAX_POINTS = 1 << 16  # loop iterations enumerated per nest by check_bounds


class _Points:
    """A set of iteration points, kept as a grid of `shape` while the loops are rectangular: each
    variable's values (int or bool; None: not known statically) broadcast to it, a loop variable
    varying along its own axis only, so an index that reads few of the variables is computed over
    those axes only; a loop whose extent varies, or an `If`, flattens the set to one axis. `memo`
    holds the values of the expressions evaluated there so far (shared index arithmetic is
    computed once for all the accesses that use it)."""

    __slots__ = ("env", "shape", "n", "memo")

    def __init__(self, env: dict, shape: tuple[int, ...]):
        import math
        self.env, self.shape, self.n, self.memo = env, shape, math.prod(shape), {}

    def values(self, e: Expr):
        """The values of `e` at the points (an array broadcastable to `shape`), or None when they
        depend on a load, an accumulator or a variable of a loop not enumerated."""
        import numpy as np

        from .kir_eval import _op
        memo = self.memo
        stack = [(e, False)]
        with np.errstate(all="ignore"):
            while stack:
                x, ready = stack.pop()
                if id(x) in memo:
                    continue
                if isinstance(x, Const):
                    memo[id(x)] = np.asarray(x.value, x.dtype.np_dtype)
                elif isinstance(x, Var):
                    memo[id(x)] = self.env.get(x.name)
                elif isinstance(x, Load):
                    memo[id(x)] = None
                elif not ready:
                    stack.append((x, True))
                    stack.extend((a, False) for a in x.args if id(a) not in memo)
                else:
                    args = [memo[id(a)] for a in x.args]
                    memo[id(x)] = None if any(a is None for a in args) else _op(x, args, x.dtype)
        return memo[id(e)]

    def flat(self, v):
        """Values `v` (broadcastable to the grid) at each point, in one axis."""
        import numpy as np
        return np.broadcast_to(v, self.shape).reshape(-1)

    def where(self, mask) -> "_Points":
        """The points where the bool values `mask` hold (this set itself where they all do)."""
        import numpy as np
        mask = np.broadcast_to(mask, self.shape)
        if mask.all():
            return self
        mask = mask.reshape(-1)
        return _Points({k: (None if v is None else self.flat(v)[mask]) for k, v in self.env.items()},
                       (int(mask.sum()),))

    def loop(self, name: str, ext, max_points: int) -> "_Points | None":
        """The points of a loop `name` over [0, ext) nested in these (ext: its extents, per point);
        None when there are none (it runs zero times); its variable unknown past `max_points`."""
        import numpy as np
        ext = np.maximum(np.asarray(ext, np.int64), 0)
        lo, hi = int(ext.min()), int(ext.max())
        if hi == 0:
            return None
        if lo == hi:  # rectangular: a new axis
            if self.n * hi > max_points:
                return _Points({**self.env, name: None}, self.shape)
            env = {k: (None if v is None else np.asarray(v)[..., None]) for k, v in self.env.items()}
            env[name] = np.arange(hi, dtype=np.int64).reshape((1,) * len(self.shape) + (hi,))
            return _Points(env, self.shape + (hi,))
        ext = self.flat(ext)
        total = int(ext.sum())
        if total > max_points:
            return _Points({**self.env, name: None}, self.shape)
        if total == 0:
            return None
        rep = np.repeat(np.arange(self.n), ext)
        env = {k: (None if v is None else self.flat(v)[rep]) for k, v in self.env.items()}
        env[name] = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ext) - ext, ext)
        return _Points(env, (total,))


def strided_spans(params, nodes, strides: dict) -> dict[str, tuple[int, int]]:
    """The element offsets each strided input buffer may be read at (`lower_kernel`'s params and
    their (role, node) pairs; `strides`: id(graph input) -> element strides, any sign): a view of
    the caller's memory is read in place from its first element, so its span is its strides
    times its shape, not its numel."""
    spans = {}
    for p, (role, n) in zip(params, nodes):
        st = strides.get(id(n)) if role == "in" else None
        if st is not None:
            ext = [s * (d - 1) for s, d in zip(st, n.shape) if d > 0]
            spans[p.name] = (sum(min(0, e) for e in ext), sum(max(0, e) for e in ext))
    return spans


def check_bounds(k: KernelFunc, max_points: int = MAX_POINTS, spans: dict[str, tuple[int, int]] | None = None
                 ) -> None:
    """Raise KernelIRError naming the kernel, buffer and index range of a load or store outside
    its buffer (elements 0 to numel - 1; for a buffer in `spans`, the offsets given there: a
    strided input, see `strided_spans`). The loop nest is enumerated: each access's index is evaluated at every iteration
    point that reaches it (a loop that runs zero times reaches nothing; an extent that depends on
    an outer loop is taken per point; an `If` body only where its condition holds), so the check is
    exact, with no false alarm. Both operands of a `select` are evaluated by the renderers, so a
    load in either is checked at every point: a pad's or concat's load is in range because its
    index is clamped (`select(inside, i, 0)`), not because the select discards it. A `tile_mma`'s
    tile and panels and a `transpose_copy`'s blocks are checked as ranges. Not checked: accesses
    whose index is data-dependent (a gather's or scatter's index; those have runtime checks),
    accesses under an `If` whose condition is, and loops whose points would exceed `max_points`
    (their variable is unknown, so only accesses not indexed by it are checked)."""
    import numpy as np

    from .kir import walk_stmts
    bounds = {p.name: (0, p.numel - 1) for p in k.params}
    bounds.update(spans or {})
    assigned = {s.var.name for s in walk_stmts(k.body) if isinstance(s, Assign)}  # accumulators: unknown

    def access(kind: str, buf: str, lo, hi, pts: _Points, writes: bool = False) -> None:
        # every element of values broadcastable to the grid is taken at some point (no axis is empty)
        lo, hi = np.asarray(lo), np.asarray(hi)
        first, last = bounds[buf]
        if pts.n and (lo.min() < first or hi.max() > last):
            verb = "writes" if kind == "store" or writes else "reads"
            where = (f"buffer size {last + 1}" if buf not in (spans or {}) else
                     f"strided buffer, offsets {first}..{last}")
            raise KernelIRError(f"kernel {k.name}: {kind} {buf}[{int(lo.min())}..{int(hi.max())}] "
                                f"{verb} out of bounds ({where})")

    def loads(pts: _Points, *roots: Expr) -> None:
        from .kir import walk_exprs
        for x in walk_exprs(*roots):
            if isinstance(x, Load):
                v = pts.values(x.index)
                if v is not None:
                    access("load", x.buf, v, v, pts)

    def walk(body, pts: _Points) -> None:
        for s in body:
            if pts.n == 0:
                return
            if isinstance(s, Loop):
                loads(pts, s.extent)
                ext = pts.values(s.extent)
                inner = (_Points({**pts.env, s.var.name: None}, pts.shape) if ext is None
                         else pts.loop(s.var.name, ext, max_points))
                if inner is not None:
                    walk(s.body, inner)
            elif isinstance(s, (Let, Assign)):
                loads(pts, s.value)
                if isinstance(s, Let):
                    known = s.var.name not in assigned and (s.var.dtype.is_integer or s.var.dtype.is_bool)
                    pts.env[s.var.name] = pts.values(s.value) if known else None
            elif isinstance(s, Store):
                loads(pts, s.index, s.value)
                v = pts.values(s.index)
                if v is not None:
                    access("store", s.buf, v, v, pts)
            elif isinstance(s, If):
                loads(pts, s.cond)
                c = pts.values(s.cond)
                if c is not None:
                    walk(s.then, pts.where(c))
                    walk(s.orelse, pts.where(np.logical_not(c)))
            elif isinstance(s, Fail):
                loads(pts, *s.payload)
            elif isinstance(s, TileMMA):
                loads(pts, s.c_index, s.a_index, s.b_index, s.kc, s.accumulate)
                c0 = pts.values(s.c_index)
                if c0 is not None:
                    access("tile_mma", s.c, c0, np.asarray(c0) + (s.mr - 1) * s.ldc + s.nr - 1, pts)
                kc = pts.values(s.kc)
                if kc is not None:  # the panels are read where kc > 0
                    for buf, start, width in ((s.a, s.a_index, s.mr), (s.b, s.b_index, s.nr)):
                        v = pts.values(start)
                        if v is not None:
                            v, reads = np.broadcast_arrays(v, kc)
                            v, reads = v[reads > 0], reads[reads > 0]
                            if v.size:
                                access("tile_mma", buf, v, v + reads * width - 1, pts)
            elif isinstance(s, TransposeCopy):
                loads(pts, s.dst_index, s.src_index)
                v = pts.values(s.src_index)
                if v is not None:  # the block's corners are its extreme offsets
                    last_row = (s.rows - 1) * s.src_ld
                    access("transpose_copy", s.src, np.asarray(v) + min(0, last_row),
                           np.asarray(v) + max(0, last_row) + s.cols - 1, pts)
                v = pts.values(s.dst_index)
                if v is not None:
                    access("transpose_copy", s.dst, v, np.asarray(v) + (s.cols - 1) * s.dst_ld + s.rows - 1, pts,
                           writes=True)

    walk(k.body, _Points({}, ()))


#: The name lowering (`kiln/codegen/lower.py`) calls under KILN_VERIFY: it checks loads too now.
check_store_bounds = check_bounds

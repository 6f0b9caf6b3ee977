"""Verifier of the kernel IR: names defined before use, dtypes consistent, buffers known."""
from __future__ import annotations

from ..ir import dtypes as dt
from .kir import (COMPOSITE_OPS, SCALAR_OPS, Assign, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op,
                  Store, TileMMA, Var)


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
            else:
                fail(f"not a statement: {s!r}")

    block(k.body, {})



MAX_STORE_POINTS = 1 << 16  # loop iterations enumerated per nest by check_store_bounds


def _values(e: Expr, env: dict, n: int):
    """The int64 values of `e` at each of the `n` iteration points of `env` (arrays of the loop
    and let variables), or None where it is not known statically (a load, an accumulator, a
    variable of a loop not enumerated)."""
    import numpy as np

    from .kir import walk_exprs
    from .kir_eval import eval_expr
    for x in walk_exprs(e):
        if isinstance(x, Load) or (isinstance(x, Var) and env.get(x.name) is None):
            return None
    return np.broadcast_to(np.asarray(eval_expr(e, env), np.int64), (n,))


def check_store_bounds(k: KernelFunc, max_points: int = MAX_STORE_POINTS) -> None:
    """Raise KernelIRError naming the kernel, buffer and index range of a store that writes
    outside its buffer. The loop nest is enumerated: each store's index is evaluated at every
    iteration point that reaches it (a loop that runs zero times reaches nothing; an extent that
    depends on an outer loop is taken per point), so the check is exact, with no false alarm.
    Not checked: stores under an `If` (masked tails, guarded updates), data-dependent indices (a
    scatter's; those have runtime checks), and loops whose points would exceed `max_points`
    (their variable is unknown, so only stores not indexed by it are checked)."""
    import numpy as np

    sizes = {p.name: p.numel for p in k.params}

    def walk(body, env: dict, n: int) -> None:
        for s in body:
            if isinstance(s, Loop):
                ext = _values(s.extent, env, n)
                if ext is not None:
                    ext = np.maximum(ext, 0)
                    total = int(ext.sum())
                    if total == 0:
                        continue  # runs zero times
                if ext is None or total > max_points:
                    walk(s.body, {**env, s.var.name: None}, n)
                    continue
                rep = np.repeat(np.arange(n), ext)
                inner = {name: (None if v is None else v[rep]) for name, v in env.items()}
                inner[s.var.name] = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ext) - ext, ext)
                walk(s.body, inner, total)
            elif isinstance(s, Let):
                env[s.var.name] = _values(s.value, env, n) if s.var.dtype.is_integer else None
            elif isinstance(s, Assign):
                env[s.var.name] = None
            elif isinstance(s, Store):
                v = _values(s.index, env, n)
                if v is not None and v.size and (v.min() < 0 or v.max() >= sizes[s.buf]):
                    raise KernelIRError(f"kernel {k.name}: store {s.buf}[{int(v.min())}..{int(v.max())}] "
                                        f"writes out of bounds (buffer size {sizes[s.buf]})")

    walk(k.body, {}, 1)

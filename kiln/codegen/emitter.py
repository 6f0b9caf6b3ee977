"""Builds kernel-IR loop nests with loop-invariant placement.

Each emitted statement lands at the deepest open loop whose variable it uses, so a value
that depends only on outer loop indices (a row's reduction, a broadcast operand, a
scalar) is computed once per iteration of the loop it belongs to, before the inner loops
that read it. A reduction opens its own loop at the level of its row index, beside the
loops already open below that level.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from .kir import Assign, Const, Expr, Let, Loop, Stmt, Var, walk_exprs


@dataclass
class _Frame:
    block: list[Stmt]
    pos: int | None = None  # insertion point (before the loop open below), None: append
    memo: dict = field(default_factory=dict)


class Emitter:
    def __init__(self, prefix: str = "v"):
        self.frames: list[_Frame] = [_Frame([])]
        self.var_level: dict[str, int] = {}
        self._n = 0
        self.prefix = prefix

    @property
    def body(self) -> list[Stmt]:
        return self.frames[0].block

    # -- names and levels ---------------------------------------------------------------------
    def fresh(self, dtype: DType, hint: str = "") -> Var:
        self._n += 1
        return Var(f"{hint or self.prefix}{self._n}", dtype)

    def level(self, *exprs: Expr) -> int:
        lv = 0
        for e in exprs:
            for x in walk_exprs(e):
                if isinstance(x, Var):
                    lv = max(lv, self.var_level.get(x.name, 0))
        return lv

    # -- emission -----------------------------------------------------------------------------
    def emit(self, stmt: Stmt, level: int) -> None:
        f = self.frames[level]
        if f.pos is None:
            f.block.append(stmt)
        else:
            f.block.insert(f.pos, stmt)
            f.pos += 1

    def bind(self, value: Expr, hint: str = "") -> Expr:
        """`value` as a local placed at the level of its operands (constants and variables as is)."""
        if isinstance(value, (Const, Var)):
            return value
        lv = self.level(value)
        v = self.fresh(value.dtype, hint)
        self.emit(Let(v, value), lv)
        self.var_level[v.name] = lv
        return v

    def local(self, init: Expr, level: int, hint: str = "acc") -> Var:
        """A mutable local (an accumulator) defined at `level`."""
        v = self.fresh(init.dtype, hint)
        self.emit(Let(v, init), level)
        self.var_level[v.name] = level
        return v

    def assign(self, var: Var, value: Expr) -> None:
        self.emit(Assign(var, value), len(self.frames) - 1)

    # -- memo of values by key, valid while the loop that computed them is open ---------------
    def lookup(self, key):
        for f in reversed(self.frames):
            if key in f.memo:
                return f.memo[key]
        return None

    def remember(self, key, value: Expr) -> Expr:
        self.frames[self.level(value)].memo[key] = value
        return value

    # -- loops ----------------------------------------------------------------------------------
    def open_loop(self, extent: int | Expr, level: int | None = None, hint: str = "i") -> tuple[Var, tuple]:
        """Open `for var in 0..extent` at `level` (default: innermost). Returns (var, token);
        close it with `close_loop(token)`. Loops open deeper than `level` are set aside meanwhile
        and resume after it (the new loop is placed before them)."""
        if level is None:
            level = len(self.frames) - 1
        ext = extent if isinstance(extent, Expr) else Const(int(extent), dt.int64)
        var = self.fresh(dt.int64, hint)
        loop = Loop(var, ext, [])
        saved = self.frames[level + 1:]
        del self.frames[level + 1:]
        f = self.frames[level]
        if f.pos is None:
            f.block.append(loop)
            f.pos = len(f.block) - 1
        else:
            f.block.insert(f.pos, loop)  # f.pos now points at the new loop
        self.frames.append(_Frame(loop.body))
        self.var_level[var.name] = level + 1
        return var, (level, saved)

    def close_loop(self, token: tuple) -> None:
        level, saved = token
        del self.frames[level + 1:]
        f = self.frames[level]
        if saved:
            f.pos += 1  # the set-aside loop sits right after the closed one
            self.frames.extend(saved)
        else:
            f.pos = None

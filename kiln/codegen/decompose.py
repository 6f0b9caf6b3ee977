"""Decomposition: rewrite composite math ops (exp, tanh, pow, ...) into basic scalar ops.

`decompose(kernel)` returns a new kernel in which every op of `COMPOSITE_OPS` is replaced
by its branch-free body from `kiln.codegen.vecmath`, so renderers only meet
`SCALAR_OPS`. Values are not duplicated: each (decomposed) argument of a composite op
is bound to a `Let` local first, and every node of an expansion that is used more than
once (after merging structurally equal nodes) gets its own `Let`. The new locals are
placed right before the statement that uses them, in the same block (so inside the
same loop and branch); nothing else of the kernel changes.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Iterator

from .kir import (COMPOSITE_OPS, Assign, Const, Expr, Fail, If, KernelFunc, Let, Load, Loop, Op, Stmt, Store,
                  BLOCK_STMTS, Var, var_names)
from .vecmath import VECMATH


def decompose(kernel: KernelFunc) -> KernelFunc:
    """A copy of `kernel` with every composite op expanded into SCALAR_OPS."""
    names = var_names(kernel.body, definitions=True)
    d = _Decomposer(names)
    body = d.block(kernel.body)
    return dataclasses.replace(kernel, params=list(kernel.params), body=body, schedule=copy.deepcopy(kernel.schedule))


def _dag(root: Expr) -> Iterator[Expr]:
    """Each distinct node (by identity) of an expression DAG once, children before parents."""
    seen: set[int] = set()
    stack: list[tuple[Expr, bool]] = [(root, False)]
    while stack:
        x, done = stack.pop()
        if done:
            yield x
            continue
        if id(x) in seen:
            continue
        seen.add(id(x))
        stack.append((x, True))
        kids = x.args if isinstance(x, Op) else (x.index,) if isinstance(x, Load) else ()
        stack.extend((c, False) for c in reversed(kids) if id(c) not in seen)


class _Decomposer:
    def __init__(self, names: set[str]):
        self.names = names
        self.counter = 0

    def fresh(self, prefix: str, like: Expr) -> Var:
        while True:
            name = f"_{prefix}{self.counter}"
            self.counter += 1
            if name not in self.names:
                self.names.add(name)
                return Var(name, like.dtype)

    # statements -------------------------------------------------------------------------

    def block(self, body: list[Stmt]) -> list[Stmt]:
        out: list[Stmt] = []
        for s in body:
            lets: list[Stmt] = []
            rw = _StmtRewriter(self, lets)
            if isinstance(s, Loop):
                new: Stmt = Loop(s.var, rw.expr(s.extent), self.block(s.body))
            elif isinstance(s, If):
                new = If(rw.expr(s.cond), self.block(s.then), self.block(s.orelse))
            elif isinstance(s, Let):
                new = Let(s.var, rw.expr(s.value))
            elif isinstance(s, Assign):
                new = Assign(s.var, rw.expr(s.value))
            elif isinstance(s, Store):
                new = Store(s.buf, rw.expr(s.index), rw.expr(s.value))
            elif isinstance(s, Fail):
                new = Fail(s.code, tuple(rw.expr(p) for p in s.payload))
            elif isinstance(s, BLOCK_STMTS):
                new = s  # integer index expressions and a flag: nothing composite to expand
            else:
                raise TypeError(f"decompose: not a kernel IR statement: {s!r}")
            out.extend(lets)
            out.append(new)
        return out

    # expansions -------------------------------------------------------------------------

    def letify(self, root: Expr, lets: list[Stmt]) -> Expr:
        """Merge equal nodes of an expansion and bind each node used twice or more to a Let."""
        canon: dict[int, Expr] = {}       # id(node) -> its canonical node
        interned: dict[tuple, Expr] = {}
        uses: dict[int, int] = {}         # id(canonical node) -> parent count
        order: list[Expr] = []            # canonical nodes, children first
        for x in _dag(root):
            if isinstance(x, Op):
                key = ("op", x.name, tuple(id(canon[id(a)]) for a in x.args), x.dtype)
            elif isinstance(x, Load):
                key = ("load", x.buf, id(canon[id(x.index)]), x.dtype)
            elif isinstance(x, Const):
                key = ("const", repr(x.value), x.dtype)
            else:
                key = ("var", x.name, x.dtype)
            c = interned.get(key)
            if c is None:
                c = interned[key] = x
                order.append(x)
                kids = x.args if isinstance(x, Op) else (x.index,) if isinstance(x, Load) else ()
                for k in kids:
                    uses[id(canon[id(k)])] = uses.get(id(canon[id(k)]), 0) + 1
            canon[id(x)] = c
        built: dict[int, Expr] = {}
        for x in order:
            if isinstance(x, Op):
                e: Expr = Op(x.name, tuple(built[id(canon[id(a)])] for a in x.args), x.dtype)
            elif isinstance(x, Load):
                e = Load(x.buf, built[id(canon[id(x.index)])], x.dtype)
            else:
                e = x
            if isinstance(x, (Op, Load)) and uses.get(id(x), 0) >= 2:
                v = self.fresh("t", e)
                lets.append(Let(v, e))
                e = v
            built[id(x)] = e
        return built[id(canon[id(root)])]


class _StmtRewriter:
    """Rewrites the expressions of one statement, collecting the Lets to put before it."""

    def __init__(self, d: _Decomposer, lets: list[Stmt]):
        self.d, self.lets = d, lets
        self.done: dict[Expr, Expr] = {}  # composite op (structurally) -> its value

    def expr(self, e: Expr) -> Expr:
        if isinstance(e, (Const, Var)):
            return e
        if isinstance(e, Load):
            index = self.expr(e.index)
            return e if index is e.index else Load(e.buf, index, e.dtype)
        if not isinstance(e, Op):
            raise TypeError(f"decompose: not a kernel IR expression: {e!r}")
        args = tuple(self.expr(a) for a in e.args)
        if e.name not in COMPOSITE_OPS:
            return e if all(a is b for a, b in zip(args, e.args)) else Op(e.name, args, e.dtype)
        if e in self.done:
            return self.done[e]
        bound = []
        for a in args:
            if isinstance(a, (Const, Var)):
                bound.append(a)
            else:
                v = self.d.fresh("a", a)
                self.lets.append(Let(v, a))
                bound.append(v)
        value = self.d.letify(VECMATH[e.name](*bound), self.lets)
        if value.dtype != e.dtype:
            raise TypeError(f"decompose: {e.name} of {e.dtype.name} expanded to {value.dtype.name}")
        if not isinstance(value, (Const, Var)):
            v = self.d.fresh(e.name, value)
            self.lets.append(Let(v, value))
            value = v
        self.done[e] = value
        return value

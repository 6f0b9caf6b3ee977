"""Index simplification with value ranges: int64 index arithmetic and the conditions on it.

`Ranges` maps variable names to inclusive int64 intervals (a loop variable of extent n:
`[0, n-1]`). `simplify(e, ranges, subst)` rewrites an expression bottom up, substituting
variables by `subst` first, and applies rules that hold for every value in those ranges:

- constant offsets combine: `(x + 3) - 5 -> x - 2`, `(x + 3) + (y - 1) -> (x + y) + 2` (exact: int64
  add/sub wrap, a ring); a lone offset stays where it is, and an expression no rule touches keeps
  its shape (renderers and tests match some index shapes);
- `(x / c) * c + x % c -> x` (true for truncating division of any x), and `(p + x / c) * c + x % c
  -> p*c + x`; `(y * k1) * k2 -> y * (k1*k2)`;
- `x / c` and `x % c` for a constant `c > 0` when `x = a*m + b` with `c | m`, `a >= 0` and
  `0 <= b < c` (then `x / c = a*(m/c)`, `x % c = b`), or when `x` lies in one block
  `[q*c, q*c + c - 1]` with `q >= 0` (then `x / c = q`); never for possibly negative `x`;
- comparisons whose two sides' ranges decide them become `true`/`false`; `and`/`or`/`not`
  of constants fold, and `select` with a constant condition (or equal arms) picks its arm;
- `min`/`max` whose ranges decide them pick an operand.

Float expressions are rebuilt around their simplified operands and never rewritten themselves,
so values round exactly as before. tinygrad's symbolic rules are the model; this is our own.
"""
from __future__ import annotations

from typing import Mapping

from ..ir import dtypes as dt
from .kir import Const, Expr, Load, Op, Var, idx, op

Range = tuple[int, int]
Ranges = Mapping[str, Range]

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_CMP = {"lt", "le", "gt", "ge", "eq", "ne"}


def _fits(lo: int, hi: int) -> Range | None:
    return (lo, hi) if _I64_MIN <= lo <= hi <= _I64_MAX else None


def value_range(e: Expr, ranges: Ranges) -> Range | None:
    """Inclusive bounds of int64 (or bool, as 0/1) expression `e`, or None when unknown
    (or when interval arithmetic could overflow int64)."""
    if isinstance(e, Const):
        if e.dtype == dt.int64 or e.dtype == dt.bool_:
            v = int(e.value)
            return (v, v)
        return None
    if isinstance(e, Var):
        if e.dtype == dt.bool_:
            return ranges.get(e.name, (0, 1))
        return ranges.get(e.name) if e.dtype == dt.int64 else None
    if not isinstance(e, Op):
        return (0, 1) if e.dtype == dt.bool_ else None
    if e.dtype == dt.bool_:
        return (0, 1)
    if e.dtype != dt.int64:
        return None
    n = e.name
    if n == "select":
        a, b = value_range(e.args[1], ranges), value_range(e.args[2], ranges)
        return (min(a[0], b[0]), max(a[1], b[1])) if a and b else None
    if n == "cast" and e.args[0].dtype == dt.bool_:
        return (0, 1)
    rs = [value_range(a, ranges) for a in e.args]
    if any(r is None for r in rs):
        return None
    if n == "neg":
        return _fits(-rs[0][1], -rs[0][0])
    if n not in ("add", "sub", "mul", "min", "max", "div", "rem"):
        return None
    (alo, ahi), (blo, bhi) = rs
    if n == "add":
        return _fits(alo + blo, ahi + bhi)
    if n == "sub":
        return _fits(alo - bhi, ahi - blo)
    if n == "mul":
        ps = [alo * blo, alo * bhi, ahi * blo, ahi * bhi]
        return _fits(min(ps), max(ps))
    if n == "min":
        return (min(alo, blo), min(ahi, bhi))
    if n == "max":
        return (max(alo, blo), max(ahi, bhi))
    if blo != bhi or blo <= 0:  # div/rem by a positive constant only
        return None
    c = blo
    if n == "div":
        return (_tdiv(alo, c), _tdiv(ahi, c))
    if alo >= 0:
        if _tdiv(alo, c) == _tdiv(ahi, c):
            return (alo % c, ahi % c)
        return (0, min(ahi, c - 1))
    return (max(alo, -(c - 1)), min(max(ahi, 0), c - 1))


def _tdiv(a: int, c: int) -> int:
    """Truncating division (c > 0), as the targets compute it."""
    q = abs(a) // c
    return q if a >= 0 else -q


def _offset(e: Expr) -> tuple[Expr | None, int]:
    """`e` as (base, constant offset): `x + 3 -> (x, 3)`, `x - 3 -> (x, -3)`, `7 -> (None, 7)`."""
    if isinstance(e, Const):
        return None, int(e.value)
    if isinstance(e, Op) and e.name in ("add", "sub") and isinstance(e.args[1], Const):
        c = int(e.args[1].value)
        return e.args[0], (c if e.name == "add" else -c)
    return e, 0


def _with_offset(base: Expr | None, c: int) -> Expr:
    if base is None:
        return idx(c)
    if c == 0:
        return base
    return op("add", base, idx(c)) if c > 0 else op("sub", base, idx(-c))


def _split_multiple(x: Expr, c: int, ranges: Ranges) -> tuple[Expr, Expr] | None:
    """(x / c, x % c) for x = a*m + b with c | m, a >= 0, 0 <= b < c (either operand order, or
    b absent); or for x in one block [q*c, q*c + c - 1], q >= 0."""
    r = value_range(x, ranges)
    if r is not None and r[0] >= 0 and r[0] // c == r[1] // c:
        q = r[0] // c
        return idx(q), (x if q == 0 else _simplify_int("sub", (x, idx(q * c)), ranges))
    terms = [x] if not (isinstance(x, Op) and x.name == "add") else list(x.args)
    for k, t in enumerate(terms):
        if not (isinstance(t, Op) and t.name == "mul" and isinstance(t.args[1], Const)):
            continue
        a, m = t.args[0], int(t.args[1].value)
        ra = value_range(a, ranges)
        if m <= 0 or m % c or ra is None or ra[0] < 0:
            continue
        rest = terms[1 - k] if len(terms) == 2 else idx(0)
        rb = value_range(rest, ranges)
        if rb is None or rb[0] < 0 or rb[1] >= c:
            continue
        return _simplify_int("mul", (a, idx(m // c)), ranges), rest
    return None


def _is_divmod_pair(a: Expr, b: Expr, ranges: Ranges) -> Expr | None:
    """x when a = (x / c) * c and b = x % c; p*c + x when a = (p + x / c) * c (a reshape's
    split index, linearized again)."""
    if not (isinstance(a, Op) and a.name == "mul" and isinstance(a.args[1], Const)
            and isinstance(b, Op) and b.name == "rem" and isinstance(b.args[1], Const)):
        return None
    x, c = b.args
    if int(c.value) == 0 or a.args[1] != c:
        return None
    s = a.args[0]
    if isinstance(s, Op) and s.name == "div" and s.args == (x, c):
        return x
    if isinstance(s, Op) and s.name == "add":
        for p, d in ((s.args[0], s.args[1]), (s.args[1], s.args[0])):
            if isinstance(d, Op) and d.name == "div" and d.args == (x, c):
                return op("add", _simplify_int("mul", (p, c), ranges), x)
    return None


def _simplify_int(name: str, args: tuple[Expr, ...], ranges: Ranges) -> Expr:
    """An int64 op of already simplified operands, simplified."""
    if name in ("add", "sub"):
        a, b = args
        if name == "add":
            x = _is_divmod_pair(a, b, ranges) or _is_divmod_pair(b, a, ranges)
            if x is not None:
                return x
        (ba, ca), (bb, cb) = _offset(a), _offset(b)
        c = ca + cb if name == "add" else ca - cb
        if ba is None and bb is None:
            return idx(c)
        if ba is None:  # constant first: c + (y + k) -> y + (c + k); c - (y + k) -> (c - k) - y
            if cb == 0:
                return op(name, a, b)
            return _with_offset(bb, c) if name == "add" else op("sub", idx(c), bb)
        if ca != 0 and cb != 0:  # two offsets become one: (x + k) + (y + c) -> (x + y) + (k + c)
            base = ba if bb is None else _simplify_int(name, (ba, bb), ranges)
            return _with_offset(base, c)
        return op(name, a, b)  # a lone offset stays where it is (renderers match index shapes)
    if name == "mul":
        a, b = args
        x, k = (b, a) if isinstance(a, Const) and not isinstance(b, Const) else (a, b)
        if isinstance(k, Const):
            if isinstance(x, Op) and x.name == "mul" and isinstance(x.args[1], Const):  # (y * k1) * k2
                return _simplify_int("mul", (x.args[0], idx(int(x.args[1].value) * int(k.value))), ranges)
        return op("mul", a, b)
    if name in ("div", "rem") and isinstance(args[1], Const) and int(args[1].value) > 0:
        x, c = args[0], int(args[1].value)
        if c == 1:
            return x if name == "div" else idx(0)
        split = _split_multiple(x, c, ranges)
        if split is not None:
            return split[0] if name == "div" else split[1]
        return op(name, x, args[1])
    if name in ("min", "max"):
        ra, rb = value_range(args[0], ranges), value_range(args[1], ranges)
        if ra and rb:
            if ra[1] <= rb[0]:
                return args[0] if name == "min" else args[1]
            if rb[1] <= ra[0]:
                return args[1] if name == "min" else args[0]
        return op(name, *args)
    return op(name, *args)


def _decide(name: str, a: Expr, b: Expr, ranges: Ranges) -> bool | None:
    """The value of comparison `a <name> b` of int64 operands, when their ranges decide it."""
    d = value_range(_simplify_int("sub", (a, b), ranges), ranges)
    if d is None:
        ra, rb = value_range(a, ranges), value_range(b, ranges)
        if ra is None or rb is None:
            return None
        d = (ra[0] - rb[1], ra[1] - rb[0])
    lo, hi = d
    if name == "lt": return True if hi < 0 else False if lo >= 0 else None
    if name == "le": return True if hi <= 0 else False if lo > 0 else None
    if name == "gt": return True if lo > 0 else False if hi <= 0 else None
    if name == "ge": return True if lo >= 0 else False if hi < 0 else None
    if name == "eq": return True if lo == hi == 0 else False if lo > 0 or hi < 0 else None
    if name == "ne": return False if lo == hi == 0 else True if lo > 0 or hi < 0 else None
    return None


_TRUE, _FALSE = Const(True, dt.bool_), Const(False, dt.bool_)


def _simplify_op(e: Op, args: tuple[Expr, ...], ranges: Ranges) -> Expr:
    n = e.name
    if e.dtype == dt.int64 and n in ("add", "sub", "mul", "div", "rem", "min", "max"):
        return _simplify_int(n, args, ranges)
    if n in _CMP and args[0].dtype == dt.int64:
        v = _decide(n, args[0], args[1], ranges)
        if v is not None:
            return _TRUE if v else _FALSE
    if e.dtype == dt.bool_ and n in ("and", "or"):
        a, b = args
        for x, y in ((a, b), (b, a)):
            if isinstance(x, Const):
                if n == "and":
                    return y if x.value else _FALSE
                return _TRUE if x.value else y
    if n == "not" and e.dtype == dt.bool_ and isinstance(args[0], Const):
        return _FALSE if args[0].value else _TRUE
    if n == "select" and args[1] == args[2]:
        return args[1]
    if n == "cast":
        return op("cast", args[0], dtype=e.dtype)
    if n == "bitcast":
        return op("bitcast", args[0], dtype=e.dtype)
    return op(n, *args)


class Simplifier:
    """Simplifies expressions under fixed variable ranges and substitutions, memoized by object
    (a shared subtree is rewritten once and stays shared)."""

    def __init__(self, ranges: Ranges, subst: Mapping[str, Expr] | None = None):
        self.ranges = ranges
        self.subst = subst if subst is not None else {}
        self._memo: dict[int, tuple[Expr, Expr]] = {}

    def __call__(self, e: Expr) -> Expr:
        hit = self._memo.get(id(e))
        if hit is not None and hit[0] is e:
            return hit[1]
        if isinstance(e, Const):
            out = e
        elif isinstance(e, Var):
            out = self.subst.get(e.name, e)
        elif isinstance(e, Load):
            index = self(e.index)
            out = e if index is e.index else Load(e.buf, index, e.dtype)
        elif isinstance(e, Op) and e.name == "select" and isinstance(c := self(e.args[0]), Const):
            out = self(e.args[1] if c.value else e.args[2])  # the other arm is never evaluated
        elif isinstance(e, Op):
            args = tuple(self(a) for a in e.args)
            out = _simplify_op(e, args, self.ranges)
            if (isinstance(out, Op) and out.name == e.name and out.dtype == e.dtype
                    and all(x is y for x, y in zip(out.args, e.args))):
                out = e  # unchanged: keep the original object (and its sharing)
        else:
            raise TypeError(f"index simplify: not a kernel IR expression: {e!r}")
        self._memo[id(e)] = (e, out)
        return out


def simplify(e: Expr, ranges: Ranges | None = None, subst: Mapping[str, Expr] | None = None) -> Expr:
    """`e` with `subst` applied and simplified under `ranges` (see the module docstring)."""
    return Simplifier(ranges or {}, subst)(e)

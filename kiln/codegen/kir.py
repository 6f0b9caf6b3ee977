"""The kernel IR: small, target-neutral loop nests over flat buffers.

A `KernelFunc` is a list of statements over named buffers. Expressions are immutable
trees of scalars: constants, variables (loop indices, locals), loads from a buffer at a
flat element index, and scalar ops from one closed set (`SCALAR_OPS`). Composite math
ops (`exp`, `tanh`, ...) may appear after lowering; `kiln.codegen.decompose` rewrites
them into the basic set before a renderer sees them. Index arithmetic is ordinary int64
expressions, so broadcast, permute, slice, pad and reshape are just expressions.

The schedule (which loop runs in parallel, vector width hints, unrolling) lives in
`Schedule`, apart from the semantics, so one kernel maps to CPU loops or GPU threads.
The IR knows nothing about LLVM or CUDA; renderers know nothing about primitives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

from ..ir import dtypes as dt
from ..ir.dtypes import DType

# op name -> (arity, result: "same" as operand 0 | "bool" | "cast")
SCALAR_OPS: dict[str, tuple[int, str]] = {
    # arithmetic (ints: wrapping; div/rem truncate toward zero)
    "neg": (1, "same"), "abs": (1, "same"), "add": (2, "same"), "sub": (2, "same"), "mul": (2, "same"),
    "div": (2, "same"), "rem": (2, "same"), "min": (2, "same"), "max": (2, "same"), "fma": (3, "same"),
    # float rounding and roots (lowered to target instructions)
    "floor": (1, "same"), "ceil": (1, "same"), "trunc": (1, "same"), "rint": (1, "same"),
    "sqrt": (1, "same"), "copysign": (2, "same"),
    # comparisons -> bool (floats: ordered except ne, which is true for nan like numpy)
    "lt": (2, "bool"), "le": (2, "bool"), "eq": (2, "bool"), "ne": (2, "bool"), "gt": (2, "bool"),
    "ge": (2, "bool"), "isnan": (1, "bool"),
    # bits (ints and bools); lshr is logical, ashr arithmetic
    "and": (2, "same"), "or": (2, "same"), "xor": (2, "same"), "not": (1, "same"),
    "shl": (2, "same"), "lshr": (2, "same"), "ashr": (2, "same"),
    # select(cond, a, b); cast (value conversion, saturating float->int); bitcast (same width)
    "select": (3, "arg1"), "cast": (1, "cast"), "bitcast": (1, "cast"),
}
# Math functions a target may lack: rewritten by kiln.codegen.decompose into SCALAR_OPS.
COMPOSITE_OPS: dict[str, int] = {
    "exp": 1, "log": 1, "log1p": 1, "tanh": 1, "logistic": 1, "erf": 1, "sin": 1, "cos": 1,
    "pow": 2, "rsqrt": 1, "expm1": 1,
}


class Expr:
    """A scalar expression; `dtype` is its kiln DType."""

    __slots__ = ()
    dtype: DType

    # small builder conveniences, so lowering and decompositions read like arithmetic
    def __add__(self, o): return op("add", self, _lift(o, self))
    def __radd__(self, o): return op("add", _lift(o, self), self)
    def __sub__(self, o): return op("sub", self, _lift(o, self))
    def __rsub__(self, o): return op("sub", _lift(o, self), self)
    def __mul__(self, o): return op("mul", self, _lift(o, self))
    def __rmul__(self, o): return op("mul", _lift(o, self), self)
    def __neg__(self): return op("neg", self)


@dataclass(frozen=True, eq=True, slots=True)
class Const(Expr):
    value: int | float | bool
    dtype: DType


@dataclass(frozen=True, eq=True, slots=True)
class Var(Expr):
    name: str
    dtype: DType


@dataclass(frozen=True, eq=True, slots=True)
class Load(Expr):
    buf: str
    index: Expr
    dtype: DType


@dataclass(frozen=True, eq=True, slots=True)
class Op(Expr):
    name: str
    args: tuple[Expr, ...]
    dtype: DType


def _lift(v, like: Expr) -> Expr:
    return v if isinstance(v, Expr) else Const(v, like.dtype)


def const(value, dtype: DType) -> Const:
    """A constant, normalised to the Python type of its dtype."""
    return Const(dtype.python_scalar(value), dtype)


def idx(v: int) -> Const:
    return Const(int(v), dt.int64)


def op(name: str, *args: Expr, dtype: DType | None = None) -> Expr:
    """Build a scalar op, checking arity and computing the result dtype; folds int64 index
    arithmetic on constants (`x*1`, `x+0`, ...) so index expressions stay readable."""
    if name in SCALAR_OPS:
        arity, res = SCALAR_OPS[name]
    elif name in COMPOSITE_OPS:
        arity, res = COMPOSITE_OPS[name], "same"
    else:
        raise ValueError(f"kernel IR: unknown scalar op {name!r}")
    if len(args) != arity:
        raise ValueError(f"kernel IR: {name} takes {arity} operands, got {len(args)}")
    if res == "cast":
        if dtype is None:
            raise ValueError(f"kernel IR: {name} needs a target dtype")
        out = dtype
    elif res == "bool":
        out = dt.bool_
    elif res == "arg1":
        out = args[1].dtype
    else:
        out = args[0].dtype
    folded = _fold(name, args, out)
    return folded if folded is not None else Op(name, tuple(args), out)


def _fold(name: str, args: Sequence[Expr], out: DType) -> Expr | None:
    if out != dt.int64 or name not in ("add", "sub", "mul", "div", "rem", "min", "max"):
        if name == "cast" and args[0].dtype == out:
            return args[0]
        if name == "select" and isinstance(args[0], Const):
            return args[1] if args[0].value else args[2]
        return None
    a, b = args
    ca = a.value if isinstance(a, Const) else None
    cb = b.value if isinstance(b, Const) else None
    if ca is not None and cb is not None:
        if name == "add": return idx(ca + cb)
        if name == "sub": return idx(ca - cb)
        if name == "mul": return idx(ca * cb)
        if name == "min": return idx(min(ca, cb))
        if name == "max": return idx(max(ca, cb))
        if cb != 0 and ca >= 0 and cb > 0:
            return idx(ca // cb if name == "div" else ca % cb)
        return None
    if name == "add" and ca == 0: return b
    if name in ("add", "sub") and cb == 0: return a
    if name == "mul" and (ca == 0 or cb == 0): return idx(0)
    if name == "mul" and ca == 1: return b
    if name in ("mul", "div") and cb == 1: return a
    if name == "rem" and cb == 1: return idx(0)
    if (name == "mul" and cb is not None and isinstance(a, Op) and a.name == "mul"
            and isinstance(a.args[1], Const)):
        return op("mul", a.args[0], idx(a.args[1].value * cb))
    if name == "add":
        return _fold_digits(a, b)
    return None


def _fold_digits(a: Expr, b: Expr) -> Expr | None:
    """Re-join the digits a delinearized index splits a position into (a reshape read back from
    a row-major buffer): `(x/(d*s))*s + (x/d)%s -> x/d` and `(x/s)*s + x%s -> x`, identities for
    any integer x and d, s > 0 (truncated or floored division alike); also with an outer digit
    `(q + x/(d*s))*s + (x/d)%s -> q*s + x/d` (a leading axis: `(k*64 + c/64)*8 + (c/8)%8`)."""
    if not (isinstance(a, Op) and a.name == "mul" and isinstance(a.args[1], Const)
            and isinstance(b, Op) and b.name == "rem" and isinstance(b.args[1], Const)):
        return None
    s = a.args[1].value
    hi, r = a.args[0], b.args[0]
    outer = None
    if isinstance(hi, Op) and hi.name == "add":
        outer, hi = hi.args
    if s <= 0 or b.args[1].value != s or not (isinstance(hi, Op) and hi.name == "div"
                                              and isinstance(hi.args[1], Const)):
        return None
    x, big = hi.args[0], hi.args[1].value
    if r == x and big == s:
        joined = x
    elif (isinstance(r, Op) and r.name == "div" and isinstance(r.args[1], Const) and r.args[0] == x
            and r.args[1].value > 0 and big == r.args[1].value * s):
        joined = r
    else:
        return None
    return joined if outer is None else op("add", op("mul", outer, a.args[1]), joined)


# ---------------------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class Loop:
    """for var in [0, extent): body.  `var` is an int64 Var."""
    var: Var
    extent: Expr
    body: list["Stmt"] = field(default_factory=list)


@dataclass(slots=True)
class Let:
    """Define a local scalar `var` = value (locals may be re-assigned with Assign)."""
    var: Var
    value: Expr


@dataclass(slots=True)
class Assign:
    var: Var
    value: Expr


@dataclass(slots=True)
class Store:
    buf: str
    index: Expr
    value: Expr


@dataclass(slots=True)
class If:
    cond: Expr
    then: list["Stmt"] = field(default_factory=list)
    orelse: list["Stmt"] = field(default_factory=list)


@dataclass(slots=True)
class Fail:
    """Stop the program: report error `code` with int64 payload values through the status
    buffer (the runtime turns it into a Python exception naming the op and values)."""
    code: int
    payload: tuple[Expr, ...]


@dataclass(slots=True)
class TileMMA:
    """A register-tile matrix multiply-accumulate over packed panels (the GEMM microkernel):

        for i < mr, j < nr:
            c[c_index + i*ldc + j] = (c[...] if accumulate else 0)
                                     + sum over k < kc of a[a_index + k*mr + i] * b[b_index + k*nr + j]

    `a` holds an mr-row panel stored k-major (mr values per k), `b` an nr-column panel stored
    k-major (nr values per k), `c` the tile's rows `ldc` apart. An operand read in place
    instead of packed gives its steps: `a_steps` = (row step, k step), the a value of row i at
    step k is a[a_index + i*row_step + k*k_step] (a row-major matrix: (its row stride, 1));
    `b_kstep`: row k of b at b[b_index + k*b_kstep + j]. The sum runs over k in order,
    each step a fused multiply-add. A renderer keeps the mr x nr tile in registers across the
    k loop (LLVM: mr vectors of nr lanes); one without a native form expands it into plain
    loops (`kiln.codegen.gemm_kir.expand_tile_mma`)."""
    c: str
    c_index: Expr
    ldc: int
    a: str
    a_index: Expr
    b: str
    b_index: Expr
    kc: Expr
    mr: int
    nr: int
    accumulate: Expr  # bool: add to the tile in `c` (True) or overwrite it (False)
    a_steps: tuple[int, int] | None = None  # (row, k) steps of `a` read in place; None: a packed panel
    b_kstep: int | None = None               # k step of `b` read in place; None: a packed panel

    @property
    def a_step(self) -> tuple[int, int]:
        """(row step, k step) of the a operand."""
        return self.a_steps if self.a_steps is not None else (1, self.mr)

    @property
    def b_step(self) -> int:
        """k step of the b operand."""
        return self.b_kstep if self.b_kstep is not None else self.nr


@dataclass(slots=True)
class TransposeCopy:
    """A transposing block copy:

        for r < rows, c < cols:
            dst[dst_index + c*dst_ld + r] = src[src_index + r*src_ld + c]

    The source block has `rows` rows `src_ld` apart (any step: negative, or 0 for a broadcast
    row), each `cols` contiguous elements; the destination holds its transpose, `cols` rows
    `dst_ld` apart (dst_ld >= rows: the writes never overlap), each `rows` contiguous elements.
    Both buffers have one dtype. A renderer loads source rows as vectors, transposes them in
    registers and stores destination rows as vectors (LLVM: a shufflevector network per block of
    the host's lanes); one without a native form expands it into plain loops
    (`kiln.codegen.gemm_kir.expand_transpose_copy`). The GEMM packs operands read along k with
    it (`kiln.codegen.gemm`)."""
    dst: str
    dst_index: Expr
    dst_ld: int
    src: str
    src_index: Expr
    src_ld: int
    rows: int
    cols: int


Stmt = Union[Loop, Let, Assign, Store, If, Fail, TileMMA, TransposeCopy]
# statements over whole blocks of buffer elements (no scalar value of their own): passes that
# rewrite expressions or loops leave them as they are, and renderers give each a native form
BLOCK_STMTS = (TileMMA, TransposeCopy)


@dataclass(frozen=True)
class BufferParam:
    """A flat buffer a kernel reads (`mode` "r"), writes ("w") or both ("rw")."""
    name: str
    dtype: DType
    numel: int
    mode: str = "r"


@dataclass
class LoopSchedule:
    parallel: bool = False
    vector_width: int = 0  # 0: the target's choice
    unroll: int = 0


@dataclass
class Schedule:
    """How to run the loops (by loop variable name), kept apart from what they compute."""
    loops: dict[str, LoopSchedule] = field(default_factory=dict)

    def of(self, var: Var) -> LoopSchedule:
        return self.loops.setdefault(var.name, LoopSchedule())


@dataclass
class KernelFunc:
    name: str
    params: list[BufferParam]
    body: list[Stmt]
    schedule: Schedule = field(default_factory=Schedule)
    source: str = ""  # what it was lowered from (for people reading dumps)
    cost: int = 0     # elements touched, for the parallel threshold
    independent_outer: bool = True  # iterations of its top-level output loops touch disjoint outputs

    def param(self, name: str) -> BufferParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __str__(self) -> str:
        from .kir_printer import format_kernel
        return format_kernel(self)


def walk_exprs(*roots: Expr) -> Iterator[Expr]:
    """The roots and all their sub-expressions, each distinct object once (pre-order), so a
    shared subtree of a DAG is visited once."""
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        if isinstance(x, Op):
            stack.extend(reversed(x.args))
        elif isinstance(x, Load):
            stack.append(x.index)


def walk_stmts(body: Sequence[Stmt]) -> Iterator[Stmt]:
    for s in body:
        yield s
        if isinstance(s, Loop):
            yield from walk_stmts(s.body)
        elif isinstance(s, If):
            yield from walk_stmts(s.then)
            yield from walk_stmts(s.orelse)


def stmt_exprs(s: Stmt) -> tuple[Expr, ...]:
    """The expressions a statement evaluates directly (not those of nested statements)."""
    if isinstance(s, Loop):
        return (s.extent,)
    if isinstance(s, (Let, Assign)):
        return (s.value,)
    if isinstance(s, Store):
        return (s.index, s.value)
    if isinstance(s, If):
        return (s.cond,)
    if isinstance(s, Fail):
        return s.payload
    if isinstance(s, TileMMA):
        return (s.c_index, s.a_index, s.b_index, s.kc, s.accumulate)
    if isinstance(s, TransposeCopy):
        return (s.dst_index, s.src_index)
    raise TypeError(s)


def var_names(body: Sequence[Stmt], definitions: bool = False) -> set[str]:
    """The names of the variables `body` (nested statements included) reads or assigns; with
    `definitions`, also those its `Let`s and `Loop`s define (every name in use, for fresh ones)."""
    names: set[str] = set()
    roots: list[Expr] = []
    for s in walk_stmts(body):
        if isinstance(s, Assign) or (definitions and isinstance(s, (Let, Loop))):
            names.add(s.var.name)
        roots.extend(stmt_exprs(s))
    names.update(x.name for x in walk_exprs(*roots) if isinstance(x, Var))
    return names

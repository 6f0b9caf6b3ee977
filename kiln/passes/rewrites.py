"""The algebraic rewrite engine and its table of rules.

Every rule is one `Rule(name, ops, match, replace)` entry in `RULES`:

- `ops`: the root ops the rule looks at (the engine indexes rules by op),
- `match(n)`: given a candidate node whose inputs are already rewritten, return a
  match (any value but None) or None,
- `replace(rw, n, m)`: return the node that stands for `n`: an existing node, or new
  nodes built with `rw.emit(op, inputs, **attrs)` / `rw.const(value, shape, dtype)`
  (themselves rewritten again, so rules compose: reshape∘reshape can end as a no-op).

The replacement must have `n`'s shape and dtype (the engine checks). A rewrite keeps
invalid inputs invalid: it may not turn a nan or inf result (or an error, such as an
out-of-range index) into a finite one, nor change a finite result beyond rounding (`x+0 ->
x` keeps the sign of -0.0, which IEEE addition would drop: the only difference allowed).
Each rule states its `domain`, the inputs on which its pattern equals its replacement;
a rule whose domain is not every input checks it: in `match` (`x*0 -> 0` only for
integers) or in the replacement (`exp(log(x)) -> select(x >= 0, |x|, nan)`).
tests/reliability/test_rewrite_domains.py runs every rule on nan, ±inf, negative, zero
and positive inputs against the unrewritten graph.

Adding a rule: append one `Rule` (with its `domain`) to `RULES` and add an IR-text test in
tests/passes/test_rewrites.py and a case in tests/reliability/test_rewrite_domains.py.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.primitives import get_primitive
from .builder import GraphBuilder, is_splat, splat_equals, splat_value


#: The domain of a rule that is exact on every input, nan and inf included.
ALL_INPUTS = "all inputs"


@dataclass(frozen=True)
class Rule:
    name: str
    ops: tuple[str, ...]
    match: Callable[[Node], Any]
    replace: Callable[["Rewriter", Node, Any], Node]
    doc: str = ""
    guard: Callable[["Rewriter", Node, Any], bool] | None = None  # extra condition needing the rewriter
    domain: str = ALL_INPUTS  # the inputs on which pattern and replacement agree (see the module doc)


# -- matcher helpers ---------------------------------------------------------------------

def const_operand(n: Node, value, commutative: bool = True):
    """For binary `n`: the other operand when one operand is a splat equal to `value`."""
    x, y = n.inputs
    if splat_equals(y, value):
        return x
    if commutative and splat_equals(x, value):
        return y
    return None


def producer(n: Node, op: str) -> Node | None:
    """`n`'s single input if it was produced by `op`."""
    return n.inputs[0] if n.inputs and n.inputs[0].op == op else None


def _is_float(n: Node) -> bool:
    return n.dtype.is_floating_point


def _exact_in(src, mid) -> bool:
    """True if every value of dtype `src` is exactly representable in dtype `mid`."""
    if src == mid or src.is_bool:
        return True
    if src.is_integer:
        if mid.is_integer:
            return mid.itemsize >= src.itemsize
        if mid.is_floating_point:  # 24/53-bit mantissas
            return (mid.itemsize == 8 and src.itemsize <= 4) or (mid.itemsize == 4 and src.itemsize <= 2)
        return False
    return mid.is_floating_point and mid.itemsize >= src.itemsize


def _compose_perm(inner: Sequence[int], outer: Sequence[int]) -> tuple[int, ...]:
    return tuple(inner[o] for o in outer)


def _reduce_axes(n: Node) -> tuple[int, ...]:
    return tuple(n.attrs["axes"])


# -- the table -----------------------------------------------------------------------------

RULES: list[Rule] = [
    Rule("mul-one", ("mul",), lambda n: const_operand(n, 1), lambda rw, n, x: x, "x*1 -> x"),
    Rule("mul-zero-int", ("mul",), lambda n: None if _is_float(n) else const_operand(n, 0),
         lambda rw, n, x: rw.const(0, n.shape, n.dtype), "x*0 -> 0 (integers and bools only: IEEE inf*0 is nan)",
         domain="integer and bool dtypes (checked by match)"),
    Rule("add-zero", ("add",), lambda n: const_operand(n, 0), lambda rw, n, x: x, "x+0 -> x"),
    Rule("sub-zero", ("sub",), lambda n: const_operand(n, 0, commutative=False), lambda rw, n, x: x, "x-0 -> x"),
    Rule("sub-self-int", ("sub",), lambda n: None if _is_float(n) or n.inputs[0] is not n.inputs[1] else True,
         lambda rw, n, m: rw.const(0, n.shape, n.dtype), "x-x -> 0 (integers only: inf-inf is nan)",
         domain="integer and bool dtypes (checked by match)"),
    Rule("div-one", ("div",), lambda n: const_operand(n, 1, commutative=False), lambda rw, n, x: x, "x/1 -> x"),
    Rule("neg-neg", ("neg",), lambda n: producer(n, "neg"), lambda rw, n, m: m.inputs[0], "--x -> x"),
    Rule("not-not", ("logical_not",), lambda n: producer(n, "logical_not"), lambda rw, n, m: m.inputs[0],
         "!!x -> x (logical_not takes bools only)"),
    Rule("exp-log", ("exp",), lambda n: producer(n, "log"), lambda rw, n, m: _exp_log(rw, m.inputs[0]),
         "exp(log(x)) -> select(x >= 0, |x|, nan)",
         domain="x >= 0 and nan (log's domain); checked by the replacement's select: x < 0 stays nan"),
    Rule("log-exp", ("log",), lambda n: producer(n, "exp") if _exp_limits(n.dtype) is not None else None, lambda rw, n, m: _log_exp(rw, m.inputs[0]),
         "log(exp(x)) -> x where exp(x) is finite and non-zero; +inf where it overflows, -inf where it underflows",
         domain="x where exp(x) neither overflows nor underflows to 0; checked by the replacement's selects"),
    Rule("select-same", ("select",), lambda n: n.inputs[1] if n.inputs[1] is n.inputs[2] else None,
         lambda rw, n, x: x, "select(c, x, x) -> x"),
    Rule("select-const", ("select",), lambda n: splat_value(n.inputs[0]),
         lambda rw, n, c: n.inputs[1] if c else n.inputs[2], "select(True, a, b) -> a; select(False, a, b) -> b"),
    Rule("select-not", ("select",), lambda n: producer(n, "logical_not"),
         lambda rw, n, m: rw.emit("select", [m.inputs[0], n.inputs[2], n.inputs[1]]),
         "select(!c, a, b) -> select(c, b, a)"),
    Rule("cast-noop", ("cast",), lambda n: n.inputs[0] if n.inputs[0].dtype == n.dtype else None,
         lambda rw, n, x: x, "cast to the operand's own dtype"),
    Rule("cast-cast", ("cast",),
         lambda n: n.inputs[0] if n.inputs[0].op == "cast" and _exact_in(n.inputs[0].inputs[0].dtype,
                                                                          n.inputs[0].dtype) else None,
         lambda rw, n, m: rw.emit("cast", [m.inputs[0]], dtype=n.dtype),
         "cast(cast(x, B), C) -> cast(x, C) when B holds every value of x's dtype exactly"),
    Rule("reshape-noop", ("reshape",), lambda n: n.inputs[0] if n.inputs[0].shape == n.shape else None,
         lambda rw, n, x: x, "reshape to the same shape"),
    Rule("reshape-reshape", ("reshape",), lambda n: producer(n, "reshape"),
         lambda rw, n, m: rw.emit("reshape", [m.inputs[0]], shape=n.shape), "reshape(reshape(x)) -> reshape(x)"),
    Rule("permute-identity", ("permute",),
         lambda n: n.inputs[0] if tuple(n.attrs["perm"]) == tuple(range(n.ndim)) else None,
         lambda rw, n, x: x, "permute by the identity"),
    Rule("permute-permute", ("permute",), lambda n: producer(n, "permute"),
         lambda rw, n, m: rw.emit("permute", [m.inputs[0]], perm=_compose_perm(m.attrs["perm"], n.attrs["perm"])),
         "permute(permute(x, p), q) -> permute(x, p∘q)"),
    Rule("broadcast-noop", ("broadcast_to",), lambda n: n.inputs[0] if n.inputs[0].shape == n.shape else None,
         lambda rw, n, x: x, "broadcast to the same shape"),
    Rule("broadcast-broadcast", ("broadcast_to",), lambda n: producer(n, "broadcast_to"),
         lambda rw, n, m: rw.emit("broadcast_to", [m.inputs[0]], shape=n.shape),
         "broadcast_to(broadcast_to(x)) -> broadcast_to(x)"),
    Rule("movement-of-splat", ("broadcast_to", "reshape", "permute", "slice"),
         lambda n: n.inputs[0] if is_splat(n.inputs[0]) else None,
         lambda rw, n, c: rw.const(c.attrs["value"], n.shape, n.dtype),
         "broadcast/reshape/permute/slice of a splat constant -> splat constant of the new shape"),
    Rule("slice-noop", ("slice",),
         lambda n: n.inputs[0] if n.shape == n.inputs[0].shape and not any(n.attrs["starts"]) else None,
         lambda rw, n, x: x, "slice that keeps every element"),
    Rule("pad-noop", ("pad",),
         lambda n: n.inputs[0] if not any(tuple(n.attrs["lo"]) + tuple(n.attrs["hi"]) + tuple(n.attrs["interior"]))
         else None, lambda rw, n, x: x, "pad by nothing"),
    Rule("concat-single", ("concat",), lambda n: n.inputs[0] if len(n.inputs) == 1 else None,
         lambda rw, n, x: x, "concat of one operand"),
    Rule("reduce-no-axes", ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"),
         lambda n: n.inputs[0] if not _reduce_axes(n) else None, lambda rw, n, x: x, "reduction over no axes"),
    Rule("reduce-unit-axes", ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"),
         lambda n: n.inputs[0] if _reduce_axes(n) and all(n.inputs[0].shape[a] == 1 for a in _reduce_axes(n))
         else None, lambda rw, n, x: rw.emit("reshape", [x], shape=n.shape),
         "reduction over axes of size 1 -> reshape"),
    Rule("transpose-matmul", ("permute",),
         lambda n: n.inputs[0] if n.inputs[0].op == "matmul" and _swaps_last2(n) else None,
         lambda rw, n, m: rw.emit("matmul", [rw.emit("permute", [m.inputs[1]], perm=n.attrs["perm"]),
                                             rw.emit("permute", [m.inputs[0]], perm=n.attrs["perm"])]),
         "(a @ b)^T -> b^T @ a^T when the matmul has no other use: the transposes usually cancel, "
         "and the result can take an elementwise epilogue", guard=lambda rw, n, m: rw.single_use(m)),
    Rule("pad-into-conv", ("conv",), lambda n: _zero_spatial_pad(n.inputs[0]),
         lambda rw, n, p: rw.emit("conv", [p.inputs[0], n.inputs[1]], strides=n.attrs["strides"],
                                  dilation=n.attrs["dilation"], groups=n.attrs["groups"],
                                  padding=tuple((a + lo, b + hi) for (a, b), lo, hi in zip(
                                      n.attrs["padding"], p.attrs["lo"][2:], p.attrs["hi"][2:]))),
         "conv(pad(x, zeros on spatial dims), w) -> conv(x, w) with the padding in conv's own padding"),
    Rule("scatter-one-hot", ("scatter", "scatter_add"), lambda n: _one_index_per_row(n),
         lambda rw, n, m: _scatter_as_select(rw, n),
         "scatter with one index per row -> select(iota == index, update, x): elementwise, so it fuses "
         "(the index is still bounds-checked: it is read through a gather of the iota)",
         domain="indices in range; an out-of-range index still fails (checked by the gather)"),
]


def _exp_log(rw: "Rewriter", x: Node) -> Node:
    """exp(log(x)) without the transcendentals: |x| where x >= 0 (so -0.0 gives +0.0, as exp(-inf) does),
    nan where log(x) is nan (x < 0, nan)."""
    zero = rw.const(0.0, x.shape, x.dtype)
    nan = rw.const(math.nan, x.shape, x.dtype)
    return rw.emit("select", [rw.emit("ge", [x, zero]), rw.emit("abs", [x]), nan])


@functools.lru_cache(maxsize=None)
def _exp_limits(dtype) -> tuple[float, float] | None:
    """(lo, hi) for a float dtype: the least and greatest x of that dtype whose exp(x) (numpy's, the
    reference) is neither 0 nor inf; None where numpy has no such dtype."""
    try:
        t = np.dtype(dtype.np_dtype).type
        info = np.finfo(t)
    except (TypeError, ValueError):
        return None
    with np.errstate(over="ignore", under="ignore"):
        def edge(start, finite, outward):
            x = t(start)
            while not finite(np.exp(x)):
                x = np.nextafter(x, -outward, dtype=t)
            while finite(np.exp(np.nextafter(x, outward, dtype=t))):
                x = np.nextafter(x, outward, dtype=t)
            return float(x)
        hi = edge(np.log(np.float64(info.max)), np.isfinite, t(np.inf))
        lo = edge(np.log(np.float64(info.smallest_subnormal)) - np.log(2.0), lambda v: v != 0, t(-np.inf))
    return lo, hi


def _log_exp(rw: "Rewriter", x: Node) -> Node:
    """log(exp(x)) without the transcendentals: x, but +inf where exp(x) overflows and -inf where it
    underflows to 0 in x's dtype (nan and ±inf pass through)."""
    lo, hi = _exp_limits(x.dtype)
    big = rw.emit("gt", [x, rw.const(hi, x.shape, x.dtype)])
    small = rw.emit("lt", [x, rw.const(lo, x.shape, x.dtype)])
    inner = rw.emit("select", [small, rw.const(-math.inf, x.shape, x.dtype), x])
    return rw.emit("select", [big, rw.const(math.inf, x.shape, x.dtype), inner])


def _swaps_last2(n: Node) -> bool:
    nd = n.ndim
    return nd >= 2 and tuple(n.attrs["perm"]) == tuple(range(nd - 2)) + (nd - 1, nd - 2)


def _zero_spatial_pad(x: Node) -> Node | None:
    """`x` if it is a zero pad (no interior padding) of only the spatial dims of a conv input."""
    if x.op != "pad" or any(x.attrs["interior"]) or any(x.attrs["lo"][:2]) or any(x.attrs["hi"][:2]):
        return None
    v = x.attrs["value"]
    return x if v == 0 and not (isinstance(v, float) and math.copysign(1.0, v) < 0) else None


def _one_index_per_row(n: Node):
    """Match a scatter whose index has size 1 along `axis` and covers `x` in every other dim."""
    x, idx = n.inputs[0], n.inputs[1]
    ax = n.attrs["axis"]
    ok = idx.shape[ax] == 1 and all(idx.shape[d] == x.shape[d] for d in range(x.ndim) if d != ax)
    return True if ok else None


def _scatter_as_select(rw: "Rewriter", n: Node) -> Node:
    x, idx, src = n.inputs
    pos = rw.emit("iota", [], shape=x.shape, axis=n.attrs["axis"], dtype=idx.dtype)
    checked = rw.emit("gather", [pos, idx], axis=n.attrs["axis"])  # = idx, and fails where scatter would
    hit = rw.emit("eq", [pos, rw.emit("broadcast_to", [checked], shape=x.shape)])
    upd = rw.emit("broadcast_to", [src], shape=x.shape)
    if n.op == "scatter_add":
        upd = rw.emit("add", [x, upd])
    return rw.emit("select", [hit, upd, x])


class Rewriter:
    """Applies `rules` while rebuilding a graph; `fired` counts rewrites by rule name."""

    MAX_DEPTH = 32

    def __init__(self, graph: Graph, rules: Sequence[Rule] = RULES):
        self.builder = GraphBuilder(graph)
        self.by_op: dict[str, list[Rule]] = {}
        for r in rules:
            for op in r.ops:
                self.by_op.setdefault(op, []).append(r)
        self.fired: dict[str, int] = {}
        self._depth = 0
        self._users = graph.users()
        self._outputs = {id(o) for o in graph.outputs}
        self._origin: dict[int, Node] = {}  # new node -> the source node it copies

    def single_use(self, node: Node) -> bool:
        """True if `node` copies a source node with exactly one user and that is not a graph output."""
        old = self._origin.get(id(node))
        return old is not None and len(self._users.get(old, [])) == 1 and id(old) not in self._outputs

    def const(self, value, shape, dtype) -> Node:
        return self.emit("constant", [], value=value, shape=tuple(shape), dtype=dtype)

    def emit(self, op: str, inputs: Sequence[Node], _name: str | None = None, _loc: str | None = None,
             **attrs) -> Node:
        """Build `op(*inputs, **attrs)` in the new graph, rewriting it first."""
        shape, dtype = get_primitive(op).abstract_eval(list(inputs), attrs)
        cand = Node(_name or "?", op, inputs, attrs, shape, dtype, _loc)
        if self._depth < self.MAX_DEPTH:
            for rule in self.by_op.get(op, ()):
                m = rule.match(cand)
                if m is None or (rule.guard is not None and not rule.guard(self, cand, m)):
                    continue
                self._depth += 1
                try:
                    rep = rule.replace(self, cand, m)
                finally:
                    self._depth -= 1
                if rep.shape != cand.shape or rep.dtype != cand.dtype:
                    raise AssertionError(f"rewrite rule {rule.name} replaced {op} {cand.dtype.short}{list(shape)} "
                                         f"by {rep.op} {rep.dtype.short}{list(rep.shape)}")
                self.fired[rule.name] = self.fired.get(rule.name, 0) + 1
                return rep
        return self.builder.emit(op, inputs, attrs, name=_name, loc=_loc)

    def run(self) -> Graph:
        b = self.builder
        for n in b.src.nodes:
            count = len(b.graph.nodes)
            new = self.emit(n.op, b.mapped_inputs(n), _name=n.name, _loc=n.loc, **n.attrs)
            if len(b.graph.nodes) == count + 1 and b.graph.nodes[-1] is new and new.op == n.op:
                self._origin[id(new)] = n
            b.env[id(n)] = new
        return b.finish()


def rewrite(graph: Graph, rules: Sequence[Rule] = RULES) -> Graph:
    """Apply the rewrite table once over the graph (replaced nodes are left for `dce`)."""
    rw = Rewriter(graph, rules)
    new = rw.run()
    return new if rw.fired else graph

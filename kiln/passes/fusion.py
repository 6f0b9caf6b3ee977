"""The fusion plan: partition a graph into kernels for the native backends.

`plan_fusion(graph)` walks the nodes from last to first; each node joins the kernel of
its consumers when that is legal, else starts a new kernel. Kernel kinds and what they
may contain:

- `elementwise` / `gather`: elementwise, movement (as index arithmetic), creation,
  random and gather nodes, evaluated per element of the kernel's domain.
- `reduction`: reductions over one shape S and axes R, their producers, and their
  consumers that are either full-shaped (numel S) or row-shaped (one value per row),
  e.g. softmax or layer norm in one kernel. A value computed from an in-kernel
  reduction may only move by unit-dim reshapes and the broadcast back over R.
- `matmul` / `conv`: the anchor op, views (reshape/permute/broadcast/slice), zero pads
  and constants as operand prologue (a conv reads a pad from memory: its blocked lowering
  needs affine loads; a permuted operand, the weight gradient's transposed output gradient,
  it reads in place, so no transposed copy is written), and an epilogue of elementwise ops (and
  reshapes or permutes: a bijective re-indexing) over the anchor's result.
- `scatter`: a scatter/scatter_add with the producers of its updates; its output is
  complete only after every update, so its consumers start a new kernel.

A node used by several kernels is computed once, in the earliest kernel that may hold
it, and written to memory ("materialised"); constants, iota, views and scalars are
instead recomputed in every kernel that uses them (bounded recomputation: index
arithmetic, or one evaluation outside the loops). An expensive elementwise op (exp,
log, div, ...) never joins a kernel where a broadcast would recompute it more than once
per element it produces. After the walk, independent kernels over the same loop that
read a common input are merged, and output-only elementwise kernels fold into their
producer; a reduction kernel's reduce_sum over a matmul operand's contraction axis (a bias
gradient beside its weight gradient) moves, with the row values computed from it, into the
matmul's kernel, where the GEMM sums the operand while packing it (docs/gemm.md). Every boundary records why it was placed. `kiln.runtime.plan_runner.run_plan`
evaluates a plan kernel by kernel, to check that fusion preserves semantics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Sequence

import networkx as nx

from ..ir.graph import Graph, Node
from ..ir.primitives import CONV, CREATION, ELEMENTWISE, INDEX, MATMUL, MOVEMENT, REDUCTION, get_primitive
from ..ir.printer import format_node, format_type
from ..ir.primitives import Prop, prims_with

# op facts come from the primitive table (kiln.ir.primitives.Prop), not name lists kept here
VIEW_OPS = prims_with(Prop.VIEW)
EXPENSIVE = prims_with(Prop.EXPENSIVE)
# A value read at more positions per element than this (through shifted copies of itself)
# is written to memory instead: recomputing it inline would grow the kernel exponentially.
RECOMPUTE_LIMIT = 16
RECOMPUTE_REASON = "inline recomputation would evaluate it at"
SCATTERS = prims_with(Prop.SCATTER)
PROLOGUE_OPS = prims_with(Prop.INDEX_MAP)  # operand loads of a matmul/conv: strided, zero outside a pad
EPILOGUE_VIEWS = prims_with(Prop.VIEW | Prop.BIJECTIVE)  # bijective re-indexing of a matmul/conv result


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _kind(n: Node) -> str:
    return get_primitive(n.op).kind


def reduce_domain(n: Node) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape S, reduced axes R) of a reduction node."""
    axes = n.attrs["axes"] if "axes" in n.attrs else (n.attrs["axis"],)
    return tuple(n.inputs[0].shape), tuple(sorted(axes))


def _row_broadcast_axes(src: Sequence[int], dst: Sequence[int]) -> tuple[int, ...] | None:
    """Axes R if broadcasting `src` to `dst` only expands axes R of a keepdims-style value."""
    lead = len(dst) - len(src)
    if lead < 0:
        return None
    axes = list(range(lead))
    for k, s in enumerate(src):
        d = dst[lead + k]
        if s == d:
            continue
        if s != 1:
            return None
        axes.append(lead + k)
    return tuple(axes)


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def is_free(n: Node) -> bool:
    """May `n` be recomputed in every kernel that uses it? Constants and iota; views
    (reshape/permute/broadcast/slice: index arithmetic on a value each kernel reads); and scalar
    (one-element) elementwise or movement ops, which a kernel computes once, outside its loops."""
    if n.op in ("constant", "iota"):
        return True
    if n.numel == 1 and _kind(n) in (ELEMENTWISE, MOVEMENT):
        return True
    return n.op in VIEW_OPS


# A transposed right operand (`h @ W.T`: B read along its depth) read by this many products or
# more is written once, transposed, instead of being repacked by a transposing copy in each: a
# recurrent network's `h_t @ W_hh.T`, once per time step (docs/gemm.md).
SHARED_TRANSPOSE_USERS = 2
SHARED_TRANSPOSE_MIN_ELEMENTS = 1 << 14


def shared_transposed_operands(graph: Graph, users: dict | None = None) -> set[int]:
    """Ids of the views that are the right operand of several matmuls with its last two axes
    swapped (each product would pack it by a transposing copy): they are materialized, once."""
    users = graph.users() if users is None else users
    found = set()
    for n in graph.nodes:
        if n.op != "permute" or len(n.shape) < 2 or n.numel < SHARED_TRANSPOSE_MIN_ELEMENTS:
            continue
        perm = n.attrs["perm"]
        if (perm[-1], perm[-2]) != (len(perm) - 2, len(perm) - 1):
            continue
        products = [u for u in users.get(n, []) if u.op == "matmul" and u.inputs[1] is n and u.inputs[0] is not n]
        if len(products) >= SHARED_TRANSPOSE_USERS:
            found.add(id(n))
    return found


class KernelKind(str, Enum):
    """The loop structure of a kernel, which the code generator lowers one module per kind.
    A `str` Enum: `KernelKind.MATMUL == "matmul"`, and it prints as its value."""

    ELEMENTWISE = "elementwise"  # one loop nest over the domain
    GATHER = "gather"  # elementwise, with some operand read at computed indices
    REDUCTION = "reduction"  # a loop over rows of S and, inside it, over the reduced axes R
    MATMUL = "matmul"  # the matmul anchor's tiles, with operand prologue and epilogue
    CONV = "conv"  # the same around a convolution
    SCATTER = "scatter"  # a loop over the updates of one scatter/scatter_add

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


_ANCHOR_KIND = {MATMUL: KernelKind.MATMUL, CONV: KernelKind.CONV}  # primitive kind -> kernel kind


@dataclass
class Kernel:
    """One kernel: `nodes` in topological order (including `recomputed` copies)."""

    id: int
    kind: KernelKind
    nodes: list[Node]
    inputs: list[Node]
    outputs: list[Node]
    domain: tuple[int, ...]
    reduce_axes: tuple[int, ...] | None = None
    anchor: Node | None = None
    recomputed: list[Node] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Kernel {self.id} {self.kind} {len(self.nodes)} nodes>"

    def as_graph(self, name: str | None = None) -> Graph:
        """This kernel as a standalone Graph: its inputs become graph inputs (same names and
        types), its nodes are copied in order and its outputs are returned, e.g. for codegen."""
        g = Graph(name or f"kernel{self.id}")
        env: dict[int, Node] = {}
        for i in self.inputs:
            env[id(i)] = g.add_input(i.shape, i.dtype, name=i.name)
        for n in self.nodes:
            env[id(n)] = g.node_copy(n, lambda i: env[id(i)])
        g.set_outputs([env[id(o)] for o in self.outputs])
        return g


@dataclass
class Boundary:
    """`value`, computed in kernel `src` (None: a graph input), is read from memory by kernel `dst`."""

    value: Node
    src: int | None
    dst: int
    reason: str


@dataclass
class FusionPlan:
    graph: Graph
    kernels: list[Kernel]
    boundaries: list[Boundary]
    _index: dict | None = field(default=None, init=False, repr=False, compare=False)

    def kernel_of(self, node: Node) -> Kernel | None:
        """The kernel that computes `node` (a recomputed free node: the first that does); None for inputs."""
        if self._index is None:
            self._index = {}
            for k in self.kernels:
                rec = {id(n) for n in k.recomputed}
                self._index.update({id(n): k for n in k.nodes if id(n) not in rec})
            for k in self.kernels:
                for n in k.recomputed:
                    self._index.setdefault(id(n), k)
        return self._index.get(id(node))

    def __len__(self) -> int:
        return len(self.kernels)

    def __str__(self) -> str:
        g = self.graph
        lines = [f"fusion plan for graph {g.name}: {len(g.nodes)} nodes -> {len(self.kernels)} kernels"]
        outs = {id(o) for o in g.outputs}
        for k in self.kernels:
            dom = ",".join(map(str, k.domain))
            extra = f" reduce_axes={k.reduce_axes}" if k.reduce_axes is not None else ""
            extra += f" anchor=%{k.anchor.name}" if k.anchor is not None else ""
            lines.append(f"kernel {k.id} [{k.kind}] domain=[{dom}]{extra}")
            lines.append("  inputs:  " + (", ".join(f"%{n.name}: {format_type(n)}" for n in k.inputs) or "-"))
            rec = {id(n) for n in k.recomputed}
            for n in k.nodes:
                tag = "   # recomputed here" if id(n) in rec else ""
                lines.append(f"    {format_node(n)}{tag}")
            lines.append("  outputs: " + (", ".join(
                f"%{n.name}" + (" (graph output)" if id(n) in outs else "") for n in k.outputs) or "-"))
        lines.append("boundaries (values read from memory, and why they were not fused):")
        for b in self.boundaries:
            src = "graph input" if b.src is None else f"kernel {b.src}"
            lines.append(f"  %{b.value.name} ({src}) -> kernel {b.dst}: {b.reason}")
        return "\n".join(lines) + "\n"

    def check(self) -> None:
        """Raise AssertionError unless the plan's invariants hold (see module docstring)."""
        where: dict[int, int] = {}
        for k in self.kernels:
            rec = {id(n) for n in k.recomputed}
            for n in k.recomputed:
                assert is_free(n), f"%{n.name} ({n.op}) recomputed in kernel {k.id} but it is not free"
            for n in k.nodes:
                if id(n) not in rec:
                    assert id(n) not in where, f"%{n.name} in kernels {where[id(n)]} and {k.id}"
                    where[id(n)] = k.id
        for n in self.graph.nodes:
            if id(n) not in where:
                assert any(any(m is n for m in k.recomputed) for k in self.kernels), f"%{n.name} is in no kernel"
        avail = {id(n) for n in self.graph.inputs}
        for k in self.kernels:
            for i in k.inputs:
                assert id(i) in avail, f"kernel {k.id} reads %{i.name} before any kernel writes it"
            local = {id(i) for i in k.inputs}
            for n in k.nodes:
                for i in n.inputs:
                    assert id(i) in local, f"kernel {k.id}: %{n.name} reads %{i.name}, not a kernel input"
                local.add(id(n))
            for o in k.outputs:
                assert id(o) in local
                avail.add(id(o))
        for o in self.graph.outputs:
            assert id(o) in avail, f"graph output %{o.name} is never written"


# ======================================================================================
# Planning
# ======================================================================================

class _Draft:
    """A kernel under construction: the nodes placed in it so far and what they imply."""

    def __init__(self, uid: int, kind: KernelKind, domain: tuple[int, ...]):
        self.uid = uid  # creation order (the walk runs backwards: uid 0 is the graph's last kernel)
        self.kind = kind  # never GATHER: that is decided when the plan is built
        self.domain = domain  # the loop: the output shape; for a reduction the reduced input shape S
        self.reduce_axes: tuple[int, ...] | None = None  # a reduction's axes R
        self.anchor: Node | None = None  # the matmul / conv / scatter node
        self.members: dict[int, Node] = {}  # node id -> node: everything this kernel computes
        self.recomputed: set[int] = set()  # members that are free and also computed by other kernels
        self.prologue: set[int] = set()  # members that only feed the anchor's operands (strided loads)
        self.evaluations: dict[int, float] = {}  # member id -> evaluations per element it produces
        self.index_maps: dict[int, float] = {}  # member id -> distinct positions it is evaluated at, per element
        self.first_position = 1 << 60  # smallest graph position of a member: orders independent kernels

    @property
    def row_numel(self) -> int:
        """Values per row set: the domain's size, or for a reduction one value per row of S."""
        full = _numel(self.domain)
        if self.kind != KernelKind.REDUCTION:
            return full
        red = _numel([self.domain[a] for a in self.reduce_axes])
        return full // red if red else 0


class _Planner:
    """The walk's state. `kernels_of` maps a node to the drafts holding it (several for a
    recomputed free node); `dependencies` has an edge a -> b when kernel b reads a value
    kernel a writes (b runs after a); `rejections` keeps why a node did not join a kernel,
    which becomes the reason of the boundary between them."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.position = {id(n): k for k, n in enumerate(graph.nodes)}
        self.users = graph.users()
        self.output_ids = {id(o) for o in graph.outputs}
        self.input_ids = {id(n) for n in graph.inputs}
        self.free_ids = {id(n) for n in graph.nodes if is_free(n)} - shared_transposed_operands(graph, self.users)
        self.reduction_domains = {reduce_domain(n) for n in graph.nodes if _kind(n) == REDUCTION}
        self.kernels: list[_Draft] = []
        self.kernels_of: dict[int, list[_Draft]] = {}
        self.dependencies = nx.DiGraph()
        self.rejections: dict[tuple[int, int], str] = {}  # (node id, draft uid) -> reason

    # -- helpers ------------------------------------------------------------------------------
    def _start_kernel(self, n: Node) -> _Draft:
        """A new draft whose kind and loop are those `n` needs."""
        kind = _kind(n)
        if kind == REDUCTION:
            S, R = reduce_domain(n)
            k = _Draft(len(self.kernels), KernelKind.REDUCTION, S)
            k.reduce_axes = R
        elif kind in (MATMUL, CONV):
            k = _Draft(len(self.kernels), _ANCHOR_KIND[kind], n.shape)
            k.anchor = n
        elif n.op in SCATTERS:
            k = _Draft(len(self.kernels), KernelKind.SCATTER, n.inputs[2].shape)
            k.anchor = n
        else:
            k = _Draft(len(self.kernels), KernelKind.ELEMENTWISE, n.shape)
        self.kernels.append(k)
        self.dependencies.add_node(k)
        return k

    def _place(self, n: Node, k: _Draft, recomputed: bool = False) -> None:
        k.members[id(n)] = n
        k.first_position = min(k.first_position, self.position[id(n)])
        if recomputed:
            k.recomputed.add(id(n))
        self.kernels_of.setdefault(id(n), []).append(k)
        k.evaluations[id(n)] = self._count_evaluations(n, k)
        k.index_maps[id(n)] = self._count_index_maps(n, k)
        if k.anchor is not None and n is not k.anchor and any(
                u is k.anchor or id(u) in k.prologue for u in self._users_in(n, k)):
            k.prologue.add(id(n))

    def _users_in(self, n: Node, k: _Draft) -> list[Node]:
        return [u for u in self.users.get(n, []) if id(u) in k.members]

    def _reaches(self, a: _Draft, b: _Draft) -> bool:
        """Does kernel `b` depend on kernel `a`, directly or through other kernels?"""
        return nx.has_path(self.dependencies, a, b)

    def _ratio(self, n: Node, u: Node, k: _Draft) -> float:
        """How many times `u` evaluates `n` per element of `n`, for each evaluation of `u`."""
        if u.op == "broadcast_to":
            axes = _row_broadcast_axes(n.shape, u.shape)
            if axes is not None:
                if k.kind == KernelKind.REDUCTION and tuple(u.shape) == k.domain and axes == k.reduce_axes:
                    return 1.0  # a row value, held once per row
                if k.kind == KernelKind.ELEMENTWISE and (tuple(u.shape), axes) in self.reduction_domains \
                        and tuple(u.shape) == k.domain:
                    return 1.0  # will be a row value once the reduction joins
            return _numel(u.shape) / max(_numel(n.shape), 1)
        if u.op in ("slice", "gather") and u.inputs[0] is n:
            return _numel(u.shape) / max(_numel(n.shape), 1)
        if u.op == "concat":  # every element selects among all operands: each is evaluated everywhere
            return _numel(u.shape) / max(_numel(n.shape), 1)
        return 1.0

    def _count_evaluations(self, n: Node, k: _Draft) -> float:
        """How many times `k` would evaluate `n` per element of `n`, through its users in `k`."""
        us = self._users_in(n, k)
        if not us:
            return 1.0
        return max(k.evaluations.get(id(u), 1.0) * self._ratio(n, u, k) for u in us)

    def _count_index_maps(self, n: Node, k: _Draft) -> float:
        """At how many distinct positions `k` evaluates `n` per element it produces: users that
        read `n` at their own index (elementwise, same shape) share one evaluation, every other
        user (a movement or a reduction reads it through another index) adds its own. A chain of
        shifted copies (a log-step scan: x + shift(x), repeated) doubles it at each step."""
        us = self._users_in(n, k)
        if not us:
            return 1.0
        same, other = 0.0, 0.0
        for u in us:
            c = k.index_maps.get(id(u), 1.0) * self._ratio(n, u, k)
            if _kind(u) == ELEMENTWISE and tuple(u.shape) == tuple(n.shape):
                same = max(same, c)
            else:
                other += c
        return same + other

    def _row_numels(self, domain: tuple[int, ...]) -> set[int]:
        """Output sizes an elementwise kernel over `domain` may write: the domain, or one value per row
        of a reduction over `domain` (such a kernel becomes a row kernel once that reduction joins)."""
        out = {_numel(domain)}
        for S, R in self.reduction_domains:
            if tuple(S) == tuple(domain):
                red = _numel([S[a] for a in R])
                out.add(_numel(S) // red if red else 0)
        return out

    def _downstream(self, n: Node, k: _Draft) -> list[Node]:
        """Members of `k` that depend on `n` through a chain of members."""
        out, seen, stack = [], set(), list(self._users_in(n, k))
        while stack:
            u = stack.pop()
            if id(u) in seen:
                continue
            seen.add(id(u))
            out.append(u)
            stack.extend(self._users_in(u, k))
        return out

    # -- legality -----------------------------------------------------------------------------
    def _row_check(self, q: Node, k: _Draft, S, R) -> str | None:
        """Can everything in `k` downstream of reduction `q` run in a row kernel over (S, R)?"""
        full = _numel(S)
        red = _numel([S[a] for a in R])
        row = full // red if red else 0
        dep = {id(q)}
        for v in sorted(self._downstream(q, k), key=lambda m: self.position[id(m)]):
            dep.add(id(v))
            via = [i for i in v.inputs if id(i) in dep]
            if _kind(v) == REDUCTION:
                if reduce_domain(v) != (tuple(S), tuple(R)):
                    return f"{v.op} %{v.name} reduces a value computed from this reduction"
                continue
            if v.op == "gather" and all(i is v.inputs[1] for i in via):
                if _numel(v.shape) not in (full, row):  # an index computed per position: elementwise-like
                    return f"%{v.name} has {_numel(v.shape)} elements, neither full ({full}) nor one per row ({row})"
                continue
            if v.op == "gather" and via and via[0] is v.inputs[0]:
                ax = v.attrs["axis"]
                idx = v.inputs[1]
                if not (tuple(R) == (ax,) and tuple(v.inputs[0].shape) == tuple(S) and idx.shape[ax] == 1
                        and all(idx.shape[d] == S[d] for d in range(len(S)) if d != ax)):
                    return f"gather %{v.name} would read other rows of a value computed from a reduction"
                continue
            if v.op == "broadcast_to":
                ok = tuple(v.shape) == tuple(S) and _row_broadcast_axes(via[0].shape, v.shape) is not None and set(
                    _row_broadcast_axes(via[0].shape, v.shape)) <= set(R)
                if not ok:
                    return f"broadcast_to %{v.name} of a reduction result is not the broadcast back over its rows"
                continue
            if v.op == "reshape":
                if _squeezed(v.shape) != _squeezed(via[0].shape) or _numel(v.shape) not in (full, row):
                    return f"reshape %{v.name} of a value computed from a reduction would move it across rows"
                continue
            if _kind(v) in (MOVEMENT, INDEX, MATMUL, CONV):
                return f"{v.op} %{v.name} of a value computed from a reduction would read other rows"
            if _numel(v.shape) not in (full, row):
                return f"%{v.name} has {_numel(v.shape)} elements, neither a full row set ({full}) nor one per row ({row})"
        return None

    def why_not(self, n: Node, k: _Draft, materialized: bool) -> str | None:
        """None if `n` may join kernel `k`, else the reason for the boundary."""
        kind = _kind(n)
        if n.op in SCATTERS:
            return f"{n.op} output is complete only after every update: its consumers start a new kernel"
        if kind in (MATMUL, CONV):
            if k.kind != KernelKind.ELEMENTWISE:
                return f"{n.op} output used by a {k.kind} kernel"
            if _numel(k.domain) != n.numel:
                return f"{n.op} output {list(n.shape)} differs from the consumer kernel's domain {list(k.domain)}"
            for v in self._downstream(n, k):
                if v.op not in EPILOGUE_VIEWS and not (_kind(v) == ELEMENTWISE and v.numel == n.numel):
                    return (f"{v.op} %{v.name} cannot be part of a {n.op} epilogue (elementwise ops and "
                            "reshape/permute of its result only)")
            return None
        if kind == REDUCTION:
            S, R = reduce_domain(n)
            if k.kind == KernelKind.REDUCTION:
                if (k.domain, k.reduce_axes) != (S, R):
                    return (f"reduction over axes {R} of {list(S)} cannot share a loop with a reduction over axes "
                            f"{k.reduce_axes} of {list(k.domain)}")
            elif k.kind == KernelKind.ELEMENTWISE:
                full = _numel(S)
                red = _numel([S[a] for a in R])
                if _numel(k.domain) not in (full, full // red if red else 0):
                    return f"reduction output used by a kernel over {list(k.domain)}"
            else:
                return f"reduction output used by a {k.kind}"
            return self._row_check(n, k, S, R)
        # elementwise, movement, creation, random, gather
        us = self._users_in(n, k)
        if n.numel == 1 and kind in (ELEMENTWISE, MOVEMENT, CREATION):
            materialized = False  # a scalar is computed once outside the kernel's loops and written once
        if k.kind in (KernelKind.MATMUL, KernelKind.CONV, KernelKind.SCATTER):
            anchor = k.anchor
            pro = any(u is anchor or id(u) in k.prologue for u in us)
            if k.kind == KernelKind.SCATTER:
                if any(u is anchor and anchor.inputs[0] is n for u in us) and kind != CREATION:
                    return "the scatter's base operand is read from memory"
                if materialized:
                    return "multiple consumers: values inside a scatter kernel are not written"
                pro = False
            if pro:
                if any(not (u is anchor or id(u) in k.prologue) for u in us):
                    return f"%{n.name} is both a {k.kind} operand and used by its epilogue"
                if n.op not in PROLOGUE_OPS and kind != CREATION:
                    return f"{k.kind} operands are read from memory: {n.op} output used by a {k.kind}"
                if n.op == "pad" and k.kind == KernelKind.CONV:
                    return "a conv reads its padded operand from memory (affine loads, no per-tap border select)"
                if materialized:
                    return f"multiple consumers: a {k.kind} operand view is not written"
                return None
            if materialized and n.numel != k.anchor.numel:
                return f"output {list(n.shape)} cannot be written by a {k.kind} epilogue over {list(k.anchor.shape)}"
        f = self._count_evaluations(n, k)
        if f > 1.0 + 1e-9 and n.op in EXPENSIVE and n.numel > 1:  # a scalar is computed once, hoisted
            return f"{n.op} would be recomputed {f:g}x through a broadcast"
        if n.numel > 1 and not is_free(n):
            positions = self._count_index_maps(n, k)
            if positions > RECOMPUTE_LIMIT:
                return f"{RECOMPUTE_REASON} {positions:g} positions per element (limit {RECOMPUTE_LIMIT})"
        if materialized:
            if k.kind == KernelKind.ELEMENTWISE and _numel(n.shape) not in self._row_numels(k.domain):
                return f"output {list(n.shape)} cannot be written from the kernel's loop over {list(k.domain)}"
            if k.kind == KernelKind.REDUCTION and _numel(n.shape) not in (_numel(k.domain), k.row_numel):
                return (f"output {list(n.shape)} is neither full-shaped nor one value per row of the reduction "
                        f"over {list(k.domain)}")
        return None

    def _convert(self, n: Node, k: _Draft) -> None:
        kind = _kind(n)
        if kind in (MATMUL, CONV) and k.kind == KernelKind.ELEMENTWISE:
            k.kind = _ANCHOR_KIND[kind]
            k.anchor = n
            k.domain = tuple(n.shape)
        elif kind == REDUCTION and k.kind == KernelKind.ELEMENTWISE:
            k.kind = KernelKind.REDUCTION
            k.domain, k.reduce_axes = reduce_domain(n)

    # -- the walk ----------------------------------------------------------------------------
    def run(self) -> None:
        for n in reversed(self.graph.nodes):
            ukernels: list[_Draft] = []
            for u in self.users.get(n, []):
                for k in self.kernels_of.get(id(u), []):
                    if k not in ukernels:
                        ukernels.append(k)
            is_out = id(n) in self.output_ids
            if id(n) in self.free_ids and not is_out and len(ukernels) > 1:
                for k in ukernels:
                    self._place(n, k, recomputed=True)
                continue
            materialized = is_out or len(ukernels) > 1
            placed = None
            for k in sorted(ukernels, key=lambda k: k.first_position):
                reason = self.why_not(n, k, materialized)
                if reason is None and any(self._reaches(o, k) for o in ukernels if o is not k):
                    reason = "fusing here would create a cycle between kernels"
                if reason is not None:
                    self.rejections[(id(n), k.uid)] = reason
                    continue
                self._convert(n, k)
                placed = k
                break
            if placed is None:
                placed = self._start_kernel(n)
            self._place(n, placed)
            self.dependencies.add_edges_from((placed, o) for o in ukernels if o is not placed)

    # -- sibling merging ------------------------------------------------------------------------
    def _external_inputs(self, k: _Draft) -> set[int]:
        return {id(i) for m in k.members.values() for i in m.inputs if id(i) not in k.members}

    def _merge(self, a: _Draft, b: _Draft) -> None:
        """Fold kernel `b` into `a`. The caller checked that this makes no cycle: neither depends
        on the other, or (merge_sinks) `b` reads only from `a` and nothing reads `b`."""
        computed_here = {nid for k in (a, b) for nid in k.members if nid not in k.recomputed}
        a.members.update(b.members)
        a.recomputed = (a.recomputed | b.recomputed) - computed_here
        a.prologue |= b.prologue
        a.evaluations.update(b.evaluations)
        a.index_maps.update(b.index_maps)
        a.first_position = min(a.first_position, b.first_position)
        nx.contracted_nodes(self.dependencies, a, b, self_loops=False, copy=False)
        for nid in b.members:
            ks = self.kernels_of[nid]
            self.kernels_of[nid] = [a if k is b else k for k in ks if k is not b or a not in ks]
        self.kernels.remove(b)

    def merge_siblings(self) -> None:
        """Merge independent kernels of the same kind and loop (elementwise over one domain, or
        reductions over one (S, R)) that read a common input: one pass over it instead of two."""
        groups: dict[tuple, list[_Draft]] = {}
        for k in self.kernels:
            if k.kind in (KernelKind.ELEMENTWISE, KernelKind.REDUCTION):
                groups.setdefault((k.kind, tuple(k.domain), k.reduce_axes), []).append(k)
        for ks in groups.values():
            clusters: list[tuple[_Draft, set[int]]] = []  # (merged kernel, the ids of what it reads)
            for b in ks:
                reads_b = self._external_inputs(b)
                for i, (a, reads_a) in enumerate(clusters):
                    if not reads_a & reads_b or self._reaches(a, b) or self._reaches(b, a):
                        continue
                    self._merge(a, b)
                    clusters[i] = (a, reads_a | reads_b)
                    break
                else:
                    clusters.append((b, reads_b))

    def _sink_fits(self, b: _Draft, a: _Draft) -> bool:
        """May elementwise kernel `b`, which only writes graph outputs, run at the end of `a`?"""
        if a.kind == KernelKind.SCATTER:
            return False  # a scatter kernel writes nothing but its scatter
        n_b = _numel(b.domain)
        if n_b == 1 and all(m.numel == 1 for m in b.members.values()):
            return True  # scalars: computed once after a's loops
        if any(self.rejections.get((nid, b.uid), "").startswith(RECOMPUTE_REASON) for nid in self._external_inputs(b)):
            return False  # b reads a value written to memory to bound recomputation: it stays apart
        union = _Draft(-1, a.kind, a.domain)
        union.reduce_axes, union.anchor = a.reduce_axes, a.anchor
        union.members = {**a.members, **b.members}
        if a.kind == KernelKind.ELEMENTWISE:
            return n_b == _numel(a.domain)
        if a.kind == KernelKind.REDUCTION:
            if n_b not in (_numel(a.domain), a.row_numel):
                return False
            reds = [m for m in a.members.values() if _kind(m) == REDUCTION]
            return all(self._row_check(q, union, a.domain, a.reduce_axes) is None for q in reds)
        if a.kind in (KernelKind.MATMUL, KernelKind.CONV):
            return n_b == a.anchor.numel and all(
                v.op in EPILOGUE_VIEWS or (_kind(v) == ELEMENTWISE and v.numel == a.anchor.numel)
                for v in self._downstream(a.anchor, union))
        return False

    def merge_sinks(self) -> None:
        """Fold each elementwise kernel that only writes graph outputs (an optimizer's running
        statistics, a step counter) into the one kernel it reads from, when that kernel's loop
        can compute it."""
        for b in list(self.kernels):
            if b.kind != KernelKind.ELEMENTWISE or self.dependencies.out_degree(b) or any(
                    id(u) not in b.members for nid, m in b.members.items() if nid not in b.recomputed
                    for u in self.users.get(m, [])):
                continue
            srcs = {k.uid: k for nid in self._external_inputs(b) for k in self.kernels_of.get(nid, [])
                    if nid not in self.input_ids and nid not in k.recomputed}
            srcs.pop(b.uid, None)
            if not srcs and len(self.kernels) > 1 and all(m.numel == 1 for m in b.members.values()):
                # scalars of graph inputs only (a step counter): any loop kernel computes them (a scatter
                # kernel writes nothing but its scatter)
                hosts = [k for k in self.kernels if k is not b
                         and k.kind in (KernelKind.ELEMENTWISE, KernelKind.REDUCTION)]
                if hosts:
                    self._merge(min(hosts, key=lambda k: k.first_position), b)
            elif len(srcs) == 1:
                a = next(iter(srcs.values()))
                if self._sink_fits(b, a):
                    self._merge(a, b)

    # -- bias-gradient sums into the GEMM ----------------------------------------------------------
    def _gemm_reading(self, s: Node) -> _Draft | None:
        """The matmul kernel with an operand that shows `s`'s input x (x itself or its transpose,
        read from memory) and contracts exactly the axis `s` sums: there the GEMM can sum x while
        packing it."""
        x = s.inputs[0]
        if len(x.shape) != 2 or s.op != "reduce_sum" or s.dtype != x.dtype:
            return None
        axes = tuple(sorted({a % 2 for a in reduce_domain(s)[1]}))
        if len(axes) != 1:
            return None
        for u in self.users.get(x, []):
            for g in self.kernels_of.get(id(u), []):
                mm = g.anchor
                if g.kind != KernelKind.MATMUL or len(mm.shape) != 2 or id(x) in g.members or mm.dtype != s.dtype:
                    continue
                for operand, contraction in ((0, 1), (1, 0)):
                    v = mm.inputs[operand]
                    if v is x and axes == (contraction,):
                        return g
                    if v is u and u.op == "permute" and id(u) in g.members and axes == (u.attrs["perm"][contraction],):
                        return g
        return None

    def _refresh_edges(self, k: _Draft) -> None:
        """Recompute kernel `k`'s dependency edges from its members."""
        self.dependencies.remove_edges_from(list(self.dependencies.in_edges(k)) + list(self.dependencies.out_edges(k)))
        for m in k.members.values():
            for i in m.inputs:
                if id(i) not in k.members:
                    self.dependencies.add_edges_from((kk, k) for kk in self.kernels_of.get(id(i), [])
                                                     if id(i) not in kk.recomputed and kk is not k)
            if id(m) not in k.recomputed:
                for u in self.users.get(m, []):
                    self.dependencies.add_edges_from((k, kk) for kk in self.kernels_of.get(id(u), [])
                                                     if kk is not k and id(m) not in kk.members)

    def merge_gemm_sums(self) -> None:
        """Move a reduction kernel's one reduce_sum over a matmul operand's contraction axis (the
        bias gradient Σ_batch dy beside the weight gradient dyᵀ @ x), with the row values computed
        from it (its optimizer update), into the matmul's kernel, where the GEMM sums the operand
        while packing it. What stays (the dy it writes) becomes an elementwise kernel."""
        for r in list(self.kernels):
            if r.kind != KernelKind.REDUCTION or r not in self.kernels:
                continue
            reds = [m for m in r.members.values() if _kind(m) == REDUCTION]
            if len(reds) != 1 or id(reds[0]) in r.recomputed:
                continue
            s = reds[0]
            g = self._gemm_reading(s)
            if g is None:
                continue
            full = _numel(r.domain)
            moved = {id(s): s}
            for m in sorted(r.members.values(), key=lambda m: self.position[id(m)]):
                if id(m) not in moved and id(m) not in r.recomputed and any(id(i) in moved for i in m.inputs):
                    moved[id(m)] = m
            if any(m.numel >= full and full > 1 for m in moved.values()) or any(
                    id(u) in g.members for m in moved.values() for u in self.users.get(m, [])):
                continue  # a value computed from the sum at every element, or read by the GEMM's epilogue
            grown = True
            while grown:  # row values only the moved nodes use (a momentum term): they move too
                grown = False
                for m in r.members.values():
                    if (id(m) not in moved and id(m) not in r.recomputed and m.numel < full
                            and id(m) not in self.output_ids and self.users.get(m)
                            and all(id(u) in moved for u in self.users[m])):
                        moved[id(m)] = m
                        grown = True
            rest = [m for nid, m in r.members.items() if nid not in moved]
            if any(m.numel != full and id(m) not in r.recomputed and not is_free(m) for m in rest):
                continue
            needed = {id(i): i for m in moved.values() for i in m.inputs
                      if id(i) in r.members and id(i) not in moved and i is not s.inputs[0]}  # x: read from memory
            if any(id(i) not in r.recomputed and not is_free(i) for i in needed.values()):
                continue  # a full-size value the sum's update reads (never the case for a bias gradient)
            saved = (dict(r.members), set(r.recomputed), dict(g.members), set(g.recomputed), r.kind, r.domain,
                     r.reduce_axes, {nid: list(self.kernels_of[nid]) for nid in list(r.members) + list(needed)},
                     self.dependencies.copy(), list(self.kernels))
            for nid, m in moved.items():
                del r.members[nid]
                g.members[nid] = m
                g.evaluations[nid], g.index_maps[nid] = r.evaluations.get(nid, 1.0), r.index_maps.get(nid, 1.0)
                self.kernels_of[nid] = [g if k is r else k for k in self.kernels_of[nid]]
            for nid, i in needed.items():  # free values the update reads: recomputed in the GEMM's kernel too
                if nid not in g.members:
                    g.members[nid] = i
                    g.recomputed.add(nid)
                    self.kernels_of[nid].append(g)
            g.first_position = min(g.first_position, min(self.position[nid] for nid in moved))
            r.kind, r.reduce_axes = KernelKind.ELEMENTWISE, None
            if all(nid in r.recomputed for nid in r.members):  # nothing left to compute: the kernel goes
                for nid in r.members:
                    self.kernels_of[nid] = [k for k in self.kernels_of[nid] if k is not r]
                self.kernels.remove(r)
                self.dependencies.remove_node(r)
            else:
                self._refresh_edges(r)
            self._refresh_edges(g)
            if not nx.is_directed_acyclic_graph(self.dependencies):  # undo
                (r.members, r.recomputed, g.members, g.recomputed, r.kind, r.domain, r.reduce_axes, kof,
                 self.dependencies, self.kernels) = saved
                for nid in moved:
                    g.evaluations.pop(nid, None)
                    g.index_maps.pop(nid, None)
                self.kernels_of.update(kof)

    def execution_order(self) -> list[_Draft]:
        """The kernels in dependency order: next runs, of the kernels whose inputs are all
        written, the one whose first node comes first in the graph; on a tie (both start with
        the same recomputed node) the one the walk started first."""
        return list(nx.lexicographical_topological_sort(self.dependencies,
                                                        key=lambda k: (k.first_position, k.uid)))

    def plan(self) -> FusionPlan:
        self.run()
        self.merge_siblings()
        self.merge_sinks()
        self.merge_gemm_sums()
        order = self.execution_order()
        new_id = {k.uid: i for i, k in enumerate(order)}
        primary: dict[int, int] = {}
        for k in order:
            for nid in k.members:
                if nid not in k.recomputed:
                    primary[nid] = new_id[k.uid]
        kernels, boundaries = [], []
        for k in order:
            kid = new_id[k.uid]
            nodes = sorted(k.members.values(), key=lambda m: self.position[id(m)])
            ins: list[Node] = []
            for m in nodes:
                for i in m.inputs:
                    if id(i) not in k.members and all(i is not x for x in ins):
                        ins.append(i)
            outs = [m for m in nodes if id(m) not in k.recomputed and (id(m) in self.output_ids or any(
                kk is not k for u in self.users.get(m, []) for kk in self.kernels_of.get(id(u), [])))]
            for i in ins:
                src = primary.get(id(i))
                if src is None:
                    reason = "graph input"
                else:
                    reason = self.rejections.get((id(i), k.uid))
                    if reason is None:
                        n_k = len({kk.uid for u in self.users.get(i, []) for kk in self.kernels_of.get(id(u), [])})
                        reason = f"multiple consumers ({n_k} kernels): computed once in kernel {src}"
                boundaries.append(Boundary(i, src, kid, reason))
            kind = k.kind
            if kind == KernelKind.ELEMENTWISE and any(m.op == "gather" for m in nodes):
                kind = KernelKind.GATHER
            kernels.append(Kernel(kid, kind, nodes, ins, outs, tuple(k.domain), k.reduce_axes, k.anchor,
                                  [m for m in nodes if id(m) in k.recomputed]))
        return FusionPlan(self.graph, kernels, boundaries)


def plan_fusion(graph: Graph) -> FusionPlan:
    """Partition `graph` into kernels (the graph is not changed)."""
    return _Planner(graph).plan()


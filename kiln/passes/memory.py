"""The memory plan: liveness-based buffer assignment for the values a program writes.

Steps are the kernels of a FusionPlan (each writes its outputs and reads its inputs),
or, without a plan, the graph's nodes one by one. A value lives from the step that
writes it to the last step that reads it; graph outputs live to the end. At each step
the outputs get, in order of preference:

1. in place: the buffer of an input of this step that dies here, has the same byte
   size, and from which the output is computed purely elementwise (element j of the
   output reads only element j of the input) - never a graph output, and never a graph
   input unless it is listed in `donate`;
2. a free buffer: the smallest buffer at least as big whose value is dead;
3. a new buffer.

`peak_bytes` is the largest total size of the allocated buffers that hold live values
during one step; `total_bytes` is the size of all buffers the plan allocates;
`naive_bytes` is one buffer per value. Graph inputs are the caller's memory and are
not counted (a donated input's buffer is reused for free).

`verify_memory_plan` checks a plan against the graph before native code trusts it:
buffer sizes, liveness recomputed from the steps, and in-place reuse only where each
element is read before it is written (`plan_memory(..., verify=True)` runs it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..ir.graph import Graph, Node
from ..ir.primitives import ELEMENTWISE, get_primitive
from ..ir.printer import format_type
from .fusion import FusionPlan


def nbytes(n: Node) -> int:
    return n.numel * n.dtype.itemsize


@dataclass
class Buffer:
    id: int
    size: int
    origin: str = "alloc"  # or "input %name" for a donated graph input


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    assignment: dict[str, int]  # value name -> buffer id
    lifetimes: dict[str, tuple[int, int]]  # value name -> (first step, last step)
    inplace: list[tuple[str, str]]  # (output, the dead input whose buffer it took)
    step_bytes: list[int]  # allocated bytes holding live values, per step
    naive_bytes: int
    steps: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return max(self.step_bytes, default=0)

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.buffers if b.origin == "alloc")

    @property
    def num_buffers(self) -> int:
        return sum(1 for b in self.buffers if b.origin == "alloc")

    def __str__(self) -> str:
        lines = [f"memory plan: {len(self.assignment)} values in {self.num_buffers} buffers; "
                 f"peak {self.peak_bytes} bytes, allocated {self.total_bytes} bytes, naive {self.naive_bytes} bytes"]
        by_buffer: dict[int, list[str]] = {}
        for v, bid in self.assignment.items():
            by_buffer.setdefault(bid, []).append(v)
        for b in self.buffers:
            vals = by_buffer.get(b.id, [])
            lines.append(f"  buffer {b.id} ({b.size} bytes, {b.origin}): "
                         + ", ".join(f"%{v}@{self.lifetimes[v][0]}..{self.lifetimes[v][1]}" for v in vals))
        for out, inp in self.inplace:
            lines.append(f"  in place: %{out} overwrites %{inp}")
        for s, (name, nb) in enumerate(zip(self.steps, self.step_bytes)):
            lines.append(f"  step {s} {name}: {nb} bytes live")
        return "\n".join(lines) + "\n"


def _elementwise_from(src: Node, dst: Node, members: dict[int, Node], users: dict[Node, list[Node]]) -> bool:
    """True if every member depending on `src` is elementwise of `src`'s shape (so `dst` may overwrite it)."""
    seen, stack, found = set(), [src], False
    while stack:
        n = stack.pop()
        for u in users.get(n, []):
            if id(u) not in members or id(u) in seen:
                continue
            seen.add(id(u))
            if get_primitive(u.op).kind != ELEMENTWISE or u.shape != src.shape:
                return False
            found = found or u is dst
            stack.append(u)
    return found


Step = tuple[str, list[Node], list[Node], dict[int, Node]]  # name, values written, values read, members


def _steps(graph: Graph, plan: FusionPlan | None) -> list[Step]:
    """The steps of the program in order: the kernels of `plan`, or else the nodes of `graph`."""
    if plan is not None:
        return [(f"kernel {k.id} [{k.kind}]", list(k.outputs), list(k.inputs), {id(n): n for n in k.nodes})
                for k in plan.kernels]
    return [(f"%{n.name} = {n.op}", [n], list(n.inputs), {id(n): n}) for n in graph.nodes]


def plan_memory(graph: Graph, plan: FusionPlan | None = None, donate: Iterable[str] = (),
                inplace: bool = True, verify: bool = False) -> MemoryPlan:
    """Assign buffers to the kernel outputs of `plan` (or to every node of `graph`).

    With `verify=True` the result is checked by `verify_memory_plan` before it is returned."""
    users = graph.users()
    steps = _steps(graph, plan)
    donate = set(donate)
    outputs = {id(o) for o in graph.outputs}
    inputs = {id(n): n for n in graph.inputs}
    end = len(steps)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    val: dict[int, Node] = {}
    for s, (_, writes, reads, _) in enumerate(steps):
        for o in writes:
            first.setdefault(id(o), s)
            last[id(o)] = end if id(o) in outputs else max(last.get(id(o), s), s)
            val[id(o)] = o
        for i in reads:
            if id(i) in inputs and i.name in donate and id(i) not in outputs:
                first.setdefault(id(i), -1)
                val[id(i)] = i
            if id(i) in first and id(i) not in outputs:
                last[id(i)] = max(last.get(id(i), s), s)
    buffers: list[Buffer] = []
    holder: dict[int, int] = {}  # value id -> buffer id
    free: list[int] = []
    refs: dict[int, int] = {}  # buffer id -> number of live values in it
    cur = [0]  # allocated bytes held by live values

    def hold(bid: int) -> None:
        refs[bid] = refs.get(bid, 0) + 1
        if refs[bid] == 1 and buffers[bid].origin == "alloc":
            cur[0] += buffers[bid].size

    def drop(bid: int) -> None:
        refs[bid] -= 1
        if refs[bid] == 0 and buffers[bid].origin == "alloc":
            cur[0] -= buffers[bid].size

    for nid, n in val.items():
        if first[nid] == -1:  # donated input: its buffer exists from the start
            buffers.append(Buffer(len(buffers), nbytes(n), f"input %{n.name}"))
            holder[nid] = buffers[-1].id
            hold(holder[nid])
    dying: dict[int, list[int]] = {}
    for nid in val:
        if last.get(nid, end) < end:
            dying.setdefault(last[nid], []).append(nid)
    inplace_pairs: list[tuple[str, str]] = []
    step_bytes: list[int] = []
    released: set[int] = set()  # values whose buffer went to an in-place output
    for s, (_, writes, reads, members) in enumerate(steps):
        taken: set[int] = set()
        for o in writes:
            need = nbytes(o)
            bid = None
            if inplace:
                for i in reads:
                    if (id(i) in holder and last.get(id(i)) == s and id(i) not in outputs and id(i) not in released
                            and holder[id(i)] not in taken and nbytes(i) == need
                            and buffers[holder[id(i)]].size == need and _elementwise_from(i, o, members, users)):
                        bid = holder[id(i)]
                        released.add(id(i))
                        inplace_pairs.append((o.name, i.name))
                        break
            if bid is None:
                fits = [b for b in free if buffers[b].size >= need]
                if fits:
                    bid = min(fits, key=lambda b: (buffers[b].size, b))
                    free.remove(bid)
                else:
                    buffers.append(Buffer(len(buffers), need))
                    bid = buffers[-1].id
            taken.add(bid)
            holder[id(o)] = bid
            hold(bid)
        step_bytes.append(cur[0])
        for nid in dying.get(s, ()):  # values read for the last time here: their buffers become free
            if nid in holder:
                drop(holder[nid])
                if nid not in released:
                    free.append(holder[nid])
    naive = sum(nbytes(n) for nid, n in val.items() if first[nid] >= 0)
    mem = MemoryPlan(buffers, {val[nid].name: bid for nid, bid in holder.items()},
                     {val[nid].name: (first[nid], last.get(nid, end)) for nid in holder},
                     inplace_pairs, step_bytes, naive, [name for name, *_ in steps])
    if verify:
        verify_memory_plan(graph, mem, plan)
    return mem


# ======================================================================================
# Verification
# ======================================================================================

class MemoryPlanError(ValueError):
    """A memory plan native code cannot trust; the message names the buffer and the values."""


def _describe(n: Node) -> str:
    return f"%{n.name} ({format_type(n)}, {nbytes(n)} bytes)"


def verify_memory_plan(graph: Graph, mem_plan: MemoryPlan, fusion_plan: FusionPlan | None = None) -> None:
    """Raise MemoryPlanError unless native code may run `graph` in the buffers of `mem_plan`.

    The steps are the kernels of `fusion_plan` (or, without one, the graph's nodes), and
    liveness is recomputed from them: a value lives from the step that writes it (a graph
    input in its own buffer: from the start) to the last step that reads it, a graph
    output to the end. Checked: every value a step writes has a buffer at least as big as
    the value, and the plan records the recomputed lifetime; a graph input sits only in
    its own `input %name` buffer of exactly its size; no two values live at the same step
    share a buffer, except that a step may write a value into the buffer of one of its
    inputs that dies there (in place) when every element is read before it is written:
    same byte size and element size, and the step computes the output from that input
    purely elementwise over the same index. The in-place pairs and `step_bytes` the plan
    reports must be exactly these handovers and the bytes of the buffers in use.
    """
    if fusion_plan is not None and fusion_plan.graph is not graph:
        raise MemoryPlanError("verify_memory_plan: fusion_plan was planned for a different graph")
    steps = _steps(graph, fusion_plan)
    end = len(steps)
    if len(mem_plan.step_bytes) != end:
        raise MemoryPlanError(f"memory plan has {len(mem_plan.step_bytes)} steps but the "
                              f"{'fusion plan' if fusion_plan is not None else 'graph'} has {end}: "
                              "was it planned for a different fusion plan?")
    by_name = {n.name: n for n in [*graph.inputs, *graph.nodes]}
    inputs = {id(n) for n in graph.inputs}
    outputs = {id(n) for n in graph.outputs}
    written: dict[int, int] = {}
    last_read: dict[int, int] = {}
    for s, (_, writes, reads, _) in enumerate(steps):
        for o in writes:
            written.setdefault(id(o), s)
        for i in reads:
            last_read[id(i)] = s
    for s, (name, writes, _, _) in enumerate(steps):
        for o in writes:
            if o.name not in mem_plan.assignment:
                raise MemoryPlanError(f"{_describe(o)} is written by step {s} ({name}) but has no buffer")
    buffers = mem_plan.buffers
    for i, b in enumerate(buffers):
        if b.id != i:
            raise MemoryPlanError(f"buffer {b.id} is listed at position {i}: buffer ids must be their positions")
        if b.origin != "alloc" and not b.origin.startswith("input %"):
            raise MemoryPlanError(f"buffer {b.id} has origin {b.origin!r}, expected 'alloc' or 'input %name'")
    lives: dict[int, list[tuple[int, int, Node]]] = {}
    for v, bid in mem_plan.assignment.items():
        n = by_name.get(v)
        if n is None:
            raise MemoryPlanError(f"buffer {bid} holds %{v}, which is not a value of graph {graph.name}")
        if not isinstance(bid, int) or not 0 <= bid < len(buffers):
            raise MemoryPlanError(f"{_describe(n)} is placed in buffer {bid!r}, which the plan does not have")
        b = buffers[bid]
        if b.size < nbytes(n):
            raise MemoryPlanError(f"buffer {bid} ({b.size} bytes) is too small for {_describe(n)}")
        if id(n) in inputs:
            if b.origin != f"input %{n.name}":
                raise MemoryPlanError(f"graph input {_describe(n)} is placed in buffer {bid} ({b.origin}), "
                                      f"not in its own memory (origin 'input %{n.name}')")
            start = -1
        elif id(n) in written:
            start = written[id(n)]
        else:
            raise MemoryPlanError(f"buffer {bid} holds {_describe(n)}, which no step writes")
        stop = end if id(n) in outputs else max(start, last_read.get(id(n), start))
        recorded = mem_plan.lifetimes.get(v)
        if recorded is None or tuple(recorded) != (start, stop):
            raise MemoryPlanError(f"{_describe(n)} lives at steps {start}..{stop}, "
                                  f"but the plan records {recorded}")
        lives.setdefault(bid, []).append((start, stop, n))
    for b in buffers:
        if b.origin.startswith("input %"):
            n = by_name.get(b.origin[len("input %"):])
            if n is None or id(n) not in inputs or mem_plan.assignment.get(n.name) != b.id or b.size != nbytes(n):
                raise MemoryPlanError(f"buffer {b.id} ({b.size} bytes, {b.origin}) is not the memory of "
                                      "a graph input placed in it")
    users = graph.users()
    handovers: set[tuple[str, str]] = set()
    for bid, vals in lives.items():
        vals = sorted((v for v in vals if nbytes(v[2]) > 0), key=lambda v: (v[0], v[1]))
        for a, (s1, e1, p) in enumerate(vals):
            for j in range(a + 1, len(vals)):
                s2, e2, q = vals[j]
                if s2 > e1:  # sorted by start: no later value overlaps p either
                    break
                if s1 < s2 == e1:
                    _check_inplace(p, q, s2, steps[s2], bid, users)
                    handovers.add((q.name, p.name))
                else:
                    raise MemoryPlanError(f"{_describe(p)} (live at steps {s1}..{e1}) and {_describe(q)} "
                                          f"(live at steps {s2}..{e2}) share buffer {bid} while both are live")
    empty = {v for v, _ in mem_plan.assignment.items() if v in by_name and nbytes(by_name[v]) == 0}
    listed = {tuple(pair) for pair in mem_plan.inplace if not empty.intersection(pair)}  # 0 bytes share nothing
    if listed != handovers:
        extra, missing = sorted(listed - handovers), sorted(handovers - listed)
        raise MemoryPlanError("the plan's in-place pairs (output, input) do not match its buffers: "
                              f"listed but not handed over {extra}, handed over but not listed {missing}")
    live_bytes = [0] * (end + 1)  # per step, as differences: a buffer counts while any value in it lives
    for bid, vals in lives.items():
        if buffers[bid].origin != "alloc":
            continue
        for a, b in _union(sorted((max(s1, 0), min(e1, end - 1)) for s1, e1, _ in vals)):
            live_bytes[a] += buffers[bid].size
            live_bytes[b + 1] -= buffers[bid].size
    want = 0
    for s in range(end):
        want += live_bytes[s]
        if mem_plan.step_bytes[s] != want:
            held = sorted(bid for bid, vals in lives.items() if buffers[bid].origin == "alloc"
                          and any(s1 <= s <= e1 for s1, e1, _ in vals))
            raise MemoryPlanError(f"step {s} ({steps[s][0]}): the plan reports {mem_plan.step_bytes[s]} bytes "
                                  f"live, its buffers {held} hold {want}")


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge sorted closed intervals that overlap or touch; empty ones (a > b) are dropped."""
    out: list[tuple[int, int]] = []
    for a, b in intervals:
        if a > b:
            continue
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _check_inplace(p: Node, q: Node, s: int, step: Step, bid: int, users: dict[Node, list[Node]]) -> None:
    """`q`, written at step `s`, takes buffer `bid` from `p`, whose last step is `s`: legal in place?"""
    name, _, _, members = step  # p dies at s, so s reads it; q starts at s, so s writes it
    where = f"{_describe(q)} overwrites {_describe(p)} in buffer {bid} at step {s} ({name})"
    if p.numel != q.numel or p.dtype.itemsize != q.dtype.itemsize:
        raise MemoryPlanError(f"{where}, but their elements differ in count or size, so writing element j "
                              f"of %{q.name} clobbers elements of %{p.name} not read yet")
    if not _elementwise_from(p, q, members, users):
        raise MemoryPlanError(f"{where}, but the step does not compute %{q.name} purely elementwise from "
                              f"%{p.name} (element j of %{q.name} may only read element j of %{p.name})")

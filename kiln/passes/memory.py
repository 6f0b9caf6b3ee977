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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..ir.graph import Graph, Node
from ..ir.primitives import ELEMENTWISE, get_primitive
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


def plan_memory(graph: Graph, plan: FusionPlan | None = None, donate: Iterable[str] = (),
                inplace: bool = True) -> MemoryPlan:
    """Assign buffers to the kernel outputs of `plan` (or to every node of `graph`)."""
    users = graph.users()
    steps: list[tuple[str, list[Node], list[Node], dict[int, Node]]] = []
    if plan is not None:
        for k in plan.kernels:
            steps.append((f"kernel {k.id} [{k.kind}]", list(k.outputs), list(k.inputs),
                          {id(n): n for n in k.nodes}))
    else:
        for n in graph.nodes:
            steps.append((f"%{n.name} = {n.op}", [n], list(n.inputs), {id(n): n}))
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
    return MemoryPlan(buffers, {val[nid].name: bid for nid, bid in holder.items()},
                      {val[nid].name: (first[nid], last.get(nid, end)) for nid in holder},
                      inplace_pairs, step_bytes, naive, [name for name, *_ in steps])


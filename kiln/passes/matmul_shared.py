"""Independent matmuls that share an operand become one matmul and slices of its result.

    X_1 @ W, ..., X_n @ W   ->   Y = concat(X_t, axis=-2) @ W;   X_t @ W = Y[rows of X_t]
    W @ X_1, ..., W @ X_n   ->   Y = W @ concat(X_t, axis=-1);   W @ X_t = Y[columns of X_t]

A recurrent network's input projection is one such group per layer (the same weight for
every time step, in the forward and, as `dgates_t @ W_ih`, in the backward): merged, one
GEMM with `steps x batch` rows replaces `steps` thin ones. Row (column) `i` of the merged
product is the same dot product as in its own matmul, so the results are unchanged.

Matmuls merge only when none of them depends, through any path, on another's result (a
recurrence `h_t = f(h_{t-1} @ W)` must stay a chain), and when the shared operand is worth
sharing: at least `min_shared` elements, and not a splat constant (never read from memory:
`zeros @ W_1` and `zeros @ W_2`, a recurrence's first step in two layers, would copy both
weights to save nothing). Every decision depends on the graph's structure and its weights'
sizes, not on the batch size. The merged matmul is placed after every operand it reads, so
the nodes are put in a new topological order (stable: the old order wherever the merge allows).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable

from ..ir.graph import Graph, Node
from .builder import GraphBuilder, is_splat
from .matmul_concat import MIN_SHARED_ELEMENTS, positions

Group = list[Node]  # matmuls sharing one operand, in graph order


def _groups(graph: Graph) -> list[tuple[int, Group]]:
    """(side of the shared operand: 1 right / 0 left, matmuls) for each operand used by two or more matmuls."""
    by_key: dict[tuple[int, int], Group] = {}
    for n in graph.nodes:
        if n.op == "matmul" and n.inputs[0] is not n.inputs[1]:
            for side in (1, 0):
                by_key.setdefault((side, id(n.inputs[side])), []).append(n)
    return [(side, g) for (side, _), g in by_key.items() if len(g) > 1]


def _ancestor_masks(graph: Graph, members: list[Node]) -> tuple[dict[int, int], dict[int, int]]:
    """(node id -> bit set of the `members` it is or depends on, member id -> its bit)."""
    bit = {id(m): 1 << k for k, m in enumerate(members)}
    masks: dict[int, int] = {}
    for n in graph.nodes:
        mask = bit.get(id(n), 0)
        for i in n.inputs:
            mask |= masks.get(id(i), 0)
        masks[id(n)] = mask
    return masks, bit


def _buckets(group: Group, side: int, masks: dict[int, int], bit: dict[int, int]) -> list[Group]:
    """Split `group` (graph order) into sets none of whose members depends on another's result:
    each matmul joins the first set whose members its other operand does not depend on."""
    buckets: list[tuple[int, Group]] = []  # (bit set of the members, members)
    for m in group:
        deps = masks.get(id(m.inputs[1 - side]), 0)
        for k, (bits, ms) in enumerate(buckets):
            if not deps & bits:
                ms.append(m)
                buckets[k] = (bits | bit[id(m)], ms)
                break
        else:
            buckets.append((bit[id(m)], [m]))
    return [ms for _, ms in buckets if len(ms) > 1]


def _order(graph: Graph, merges: list["SharedMerge"]) -> list[Node] | None:
    """The graph's nodes in a topological order in which every member of a merge comes after every
    operand of its merge (stable: by old position where free); None if there is none (a cycle)."""
    pos = positions(graph)
    extra: dict[int, list[Node]] = {}
    for g in merges:
        side, ms = g.side, g.members
        operands = [m.inputs[1 - side] for m in ms] + [ms[0].inputs[side]]
        for m in ms:
            extra[id(m)] = operands
    node_ids = {id(n) for n in graph.nodes}
    indegree: dict[int, int] = {}
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        deps = {id(i): i for i in list(n.inputs) + extra.get(id(n), []) if id(i) in node_ids}
        indegree[id(n)] = len(deps)
        for d in deps:
            users.setdefault(d, []).append(n)
    ready = [(pos[id(n)], id(n), n) for n in graph.nodes if indegree[id(n)] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        _, _, n = heapq.heappop(ready)
        order.append(n)
        for u in users.get(id(n), ()):
            indegree[id(u)] -= 1
            if indegree[id(u)] == 0:
                heapq.heappush(ready, (pos[id(u)], id(u), u))
    return order if len(order) == len(graph.nodes) else None


@dataclass
class SharedMerge:
    """Matmuls (`members`, in concatenation order) sharing operand `side` (1 right, 0 left)."""

    side: int
    members: list[Node]



def plan_shared_merges(graph: Graph, min_shared: int = MIN_SHARED_ELEMENTS,
                       keep: Callable[[Node, int], bool] | None = None, acyclic: bool = True) -> list[SharedMerge]:
    """Groups of independent matmuls sharing an operand of at least `min_shared` elements (not a splat).

    `keep(member, number of members)`, when given, decides whether a matmul joins its group's
    merge. With `acyclic`, only groups that merged together leave the graph acyclic are returned
    (each group alone always does; two groups can depend on each other); without, every group.
    """
    groups = [(side, group) for side, group in _groups(graph)
              if group[0].inputs[side].numel >= min_shared and not is_splat(group[0].inputs[side])]
    if not groups:
        return []
    members = list({id(m): m for _, group in groups for m in group}.values())
    masks, bit = _ancestor_masks(graph, members)  # one sweep for every group
    buckets: list[SharedMerge] = []
    for side, group in groups:
        buckets += [SharedMerge(side, ms) for ms in _buckets(group, side, masks, bit)]
    # a matmul can share its left operand with some matmuls and its right one with others: the
    # biggest sets go first (stable: graph order among equals), and each matmul joins one merge
    buckets.sort(key=lambda g: -len(g.members))
    taken: set[int] = set()
    candidates: list[SharedMerge] = []
    for g in buckets:
        ms = [m for m in g.members if id(m) not in taken]
        if keep is not None and len(ms) > 1:
            count = len(ms)
            ms = [m for m in ms if keep(m, count)]
        if len(ms) < 2:
            continue
        candidates.append(SharedMerge(g.side, ms))
        taken.update(id(m) for m in ms)
    if not acyclic or not candidates or _order(graph, candidates) is not None:
        return candidates
    accepted: list[SharedMerge] = []
    for merge in candidates:  # keep each merge that leaves the graph acyclic with those kept before
        if _order(graph, accepted + [merge]) is not None:
            accepted.append(merge)
    return accepted


def apply_shared_merges(graph: Graph, merges: list[SharedMerge]) -> Graph:
    """Rewrite each planned group as one matmul of the concatenated operands and slices of its result."""
    if not merges:
        return graph
    order = _order(graph, merges)
    if order is None:
        raise ValueError("apply_shared_merges: the merges make the graph cyclic")
    merge_of = {id(m): g for g in merges for m in g.members}
    b = GraphBuilder(graph)
    for n in order:
        if id(n) in b.env:  # a member already replaced by its slice
            continue
        g = merge_of.get(id(n))
        if g is None:
            b.copy(n)
            continue
        side, ms = g.side, g.members
        axis = n.ndim - 2 if side == 1 else n.ndim - 1
        parts = [b.lookup(m.inputs[1 - side]) for m in ms]
        shared = b.lookup(ms[0].inputs[side])
        cat = b.emit("concat", parts, {"axis": axis}, loc=n.loc)
        y = b.emit("matmul", [cat, shared] if side == 1 else [shared, cat], {}, loc=n.loc)
        start = 0
        for m, part in zip(ms, parts):
            stop = start + part.shape[axis]
            starts = tuple(start if d == axis else 0 for d in range(y.ndim))
            stops = tuple(stop if d == axis else s for d, s in enumerate(y.shape))
            b.env[id(m)] = b.emit("slice", [y], {"starts": starts, "stops": stops, "steps": (1,) * y.ndim},
                                  name=m.name, loc=m.loc)
            start = stop
    return b.finish()

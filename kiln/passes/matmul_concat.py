"""Helpers shared by the matmul-merging passes: add trees, graph positions, concatenating operands.

`sum_tree_leaves` finds the terms of a sum written as a tree of `add`s (any association,
e.g. the autodiff's accumulation chains); `concat_operands` concatenates matmul operands
along their row or column axis, keeping transposed operands transposed *views* of one
concatenated buffer (so the GEMM reads them in its packing, not through a strided copy).
"""
from __future__ import annotations

from typing import Sequence

from ..ir.graph import Graph, Node
from .builder import GraphBuilder, is_splat

#: matmuls sharing an operand merge only when that operand has at least this many elements:
#: merging saves re-reading (and re-packing) it once per matmul, which for a smaller operand
#: saves nothing worth the concatenation's copy. A weight's size, not a batch's: the decision
#: is the same at every batch size (an export with a dynamic batch traces several).
MIN_SHARED_ELEMENTS = 1024


def positions(graph: Graph) -> dict[int, int]:
    """Node id -> its place in the graph's order (inputs first, with negative places)."""
    pos = {id(n): k - len(graph.inputs) for k, n in enumerate(graph.inputs)}
    pos.update((id(n), k) for k, n in enumerate(graph.nodes))
    return pos


def use_counts(graph: Graph) -> dict[int, int]:
    """Node id -> number of operand slots reading it, plus one per graph output it is."""
    counts: dict[int, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            counts[id(i)] = counts.get(id(i), 0) + 1
    for o in graph.outputs:
        counts[id(o)] = counts.get(id(o), 0) + 1
    return counts


def is_internal_add(n: Node, uses: dict[int, int], sole_user: dict[int, Node]) -> bool:
    """An `add` used exactly once, by another `add`: a branch of that add's sum tree."""
    if n.op != "add" or uses.get(id(n), 0) != 1:
        return False
    user = sole_user.get(id(n))
    return user is not None and user.op == "add"


def sole_users(graph: Graph) -> dict[int, Node]:
    """Node id -> its user, for nodes with exactly one operand use (and not an output)."""
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
    outs = {id(o) for o in graph.outputs}
    return {k: v[0] for k, v in users.items() if len(v) == 1 and k not in outs}


def sum_tree_leaves(root: Node, uses: dict[int, int], sole_user: dict[int, Node]) -> tuple[list[Node], list[Node]]:
    """(leaves, internal adds) of the add tree under `root`, leaves left to right.

    A branch is expanded while it is an `add` with no use but its parent (so the tree's
    value is needed only at `root`); every other operand is a leaf (it may repeat).
    """
    leaves: list[Node] = []
    internal: list[Node] = []
    stack = [root]
    while stack:
        n = stack.pop()
        if n is root or is_internal_add(n, uses, sole_user):
            if n is not root:
                internal.append(n)
            stack.extend(reversed(n.inputs))
        else:
            leaves.append(n)
    return leaves, internal


def swap_last_two(rank: int) -> tuple[int, ...]:
    """The permutation exchanging the last two axes of a rank-`rank` array."""
    return tuple(range(rank - 2)) + (rank - 1, rank - 2)


def _is_transpose(n: Node) -> bool:
    return n.op == "permute" and n.ndim >= 2 and tuple(n.attrs["perm"]) == swap_last_two(n.ndim)


def concat_operands(b: GraphBuilder, nodes: Sequence[Node], axis: int, loc: str | None = None) -> Node:
    """`concat(nodes, axis)` for matmul operands (`axis` is -1 or -2; `nodes` already in `b`'s graph).

    When every operand is a transpose of the last two axes (splat constants aside, e.g. the
    zero initial state of a recurrence), the result is the transpose of the concatenation
    of the untransposed operands along the other axis: one contiguous buffer read as a
    transposed view.
    """
    rank = nodes[0].ndim
    ax = axis % rank
    transposes = [n for n in nodes if _is_transpose(n)]
    if transposes and all(_is_transpose(n) or is_splat(n) for n in nodes):
        perm = swap_last_two(rank)
        inner = []
        for n in nodes:
            if _is_transpose(n):
                inner.append(n.inputs[0])
            else:
                shape = tuple(n.shape[p] for p in perm)
                inner.append(b.emit("constant", [], {"value": n.attrs["value"], "shape": shape, "dtype": n.dtype},
                                    loc=loc))
        other = (2 * rank - 3) - ax  # the other of the last two axes
        cat = inner[0] if len(inner) == 1 else b.emit("concat", inner, {"axis": other}, loc=loc)
        return b.emit("permute", [cat], {"perm": perm}, loc=loc)
    return nodes[0] if len(nodes) == 1 else b.emit("concat", list(nodes), {"axis": ax}, loc=loc)

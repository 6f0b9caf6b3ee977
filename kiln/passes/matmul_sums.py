"""Sums of matmuls become one matmul over the concatenated contraction.

    A_1 @ B_1 + A_2 @ B_2 + ... + A_n @ B_n  ->  concat(A_t, axis=-1) @ concat(B_t, axis=-2)

(any association and order of the adds, other terms of the sum kept beside the merged
product). Training a recurrent network sums one weight-gradient product per time step
(`Σ_t h_tᵀ · dgates_t`); merged, that is one GEMM with a long contraction (K = steps x
batch) instead of `n` thin ones and `n - 1` adds. A transposed operand (`h_tᵀ`) is
concatenated untransposed and read as a transposed view (see `concat_operands`).

The merged product sums the same terms in another order, so results agree up to
rounding (like any GEMM blocking of the contraction).

`merge_reduced_sums` is the companion for bias gradients: `reduce_sum(X_1 + ... + X_n)` of
matrices over the axis along which the graph already concatenates exactly those `X_t` becomes
a matrix-vector product of that concatenation with ones (`concat(X_t, 0)ᵀ @ ones(R, 1)`): the
sum over all steps and the batch at once (`x * 1` is exact, so this too only reorders the sum).
Its left operand is the weight-gradient GEMM's (`dgatesᵀ @ h`), so `merge_shared_operand_matmuls`
then makes it one more column of that GEMM (`dgatesᵀ @ [h | 1]`). A matrix-vector product rather than a
`reduce_sum` of the concatenation: the reduction kernel would evaluate the concatenation's
select among its `n` operands for every element, along the strided axis.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from ..ir.graph import Graph, Node
from .builder import GraphBuilder
from .matmul_concat import concat_operands, is_internal_add, positions, sole_users, sum_tree_leaves, use_counts


@dataclass
class SumMerge:
    """One sum whose matmul `terms` (in concatenation order) become one matmul; `others` stay terms."""

    root: Node
    terms: list[Node]
    others: list[Node]
    internal: list[Node]  # the tree's adds below the root



def plan_sum_merges(graph: Graph, keep: Callable[[Node, int], bool] | None = None) -> list[SumMerge]:
    """The sums of `graph` with two or more single-use matmul terms.

    `keep(term, number of terms)`, when given, decides whether a term joins its sum's merge.
    """
    uses, sole = use_counts(graph), sole_users(graph)
    pos = positions(graph)
    plans = []
    for n in graph.nodes:
        if n.op != "add" or is_internal_add(n, uses, sole):
            continue  # not a root: a branch of a bigger tree
        leaves, internal = sum_tree_leaves(n, uses, sole)
        terms = [x for x in leaves if x.op == "matmul" and uses.get(id(x), 0) == 1]
        if len(terms) > 1 and keep is not None:
            count = len(terms)
            terms = [t for t in terms if keep(t, count)]
        if len(terms) < 2:
            continue
        # a canonical order (by the second operand, then the first) so that sums over the same
        # operands build the same concatenations, which cse then shares
        terms.sort(key=lambda t: (pos[id(t.inputs[1])], pos[id(t.inputs[0])]))
        merged = {id(t) for t in terms}
        plans.append(SumMerge(n, terms, [x for x in leaves if id(x) not in merged], internal))
    return plans


def apply_sum_merges(graph: Graph, plans: list[SumMerge]) -> Graph:
    """Rewrite each planned sum as the merged matmul plus its other terms."""
    if not plans:
        return graph
    by_root = {id(p.root): p for p in plans}
    dropped = {id(x) for p in plans for x in p.terms + p.internal}
    b = GraphBuilder(graph)
    for n in graph.nodes:
        if id(n) in dropped:
            continue
        plan = by_root.get(id(n))
        if plan is None:
            b.copy(n)
            continue
        a = concat_operands(b, [b.lookup(t.inputs[0]) for t in plan.terms], -1, loc=n.loc)
        m = concat_operands(b, [b.lookup(t.inputs[1]) for t in plan.terms], -2, loc=n.loc)
        acc = b.emit("matmul", [a, m], {}, name=None if plan.others else n.name, loc=n.loc)
        for k, x in enumerate(plan.others):
            last = k == len(plan.others) - 1
            acc = b.emit("add", [acc, b.lookup(x)], {}, name=n.name if last else None, loc=n.loc)
        b.env[id(n)] = acc
    return b.finish()


def _concat_index(graph: Graph) -> dict[tuple, Node]:
    """(axis, multiset of operand ids) -> the first concat of exactly those operands."""
    index: dict[tuple, Node] = {}
    for n in graph.nodes:
        if n.op == "concat" and len(n.inputs) > 1:
            key = (n.attrs["axis"], frozenset(Counter(id(i) for i in n.inputs).items()))
            index.setdefault(key, n)
    return index


def merge_reduced_sums(graph: Graph) -> Graph:
    """`reduce_sum(X_1 + ... + X_n, axis d)` of matrices -> a matrix-vector product of `concat(X_t, d)`
    with ones, when the graph already concatenates exactly the `X_t` along `d`."""
    concats = _concat_index(graph)
    if not concats:
        return graph
    uses, sole = use_counts(graph), sole_users(graph)
    plans: dict[int, Node] = {}
    for n in graph.nodes:
        src = n.inputs[0] if n.op == "reduce_sum" else None
        if src is None or src.op != "add" or src.ndim != 2 or not src.dtype.is_floating_point \
                or len(n.attrs["axes"]) != 1:
            continue
        leaves, _ = sum_tree_leaves(src, uses, sole)
        cat = concats.get((n.attrs["axes"][0] % 2, frozenset(Counter(id(x) for x in leaves).items())))
        if cat is not None:
            plans[id(n)] = cat
    if not plans:
        return graph
    b = GraphBuilder(graph)
    for n in graph.nodes:
        cat = plans.get(id(n))
        if cat is None:
            b.copy(n)
            continue
        # a concat like the existing one, placed here (cse merges the two)
        new_cat = b.emit("concat", b.mapped_inputs(cat), dict(cat.attrs), loc=n.loc)
        rows, cols = new_cat.shape
        if cat.attrs["axis"] == 0:  # column sums: catᵀ @ ones(rows, 1), beside the weight gradient catᵀ @ h
            mat = b.emit("permute", [new_cat], {"perm": (1, 0)}, loc=n.loc)
            ones = b.emit("constant", [], {"value": 1.0, "shape": (rows, 1), "dtype": n.dtype}, loc=n.loc)
        else:  # row sums: cat @ ones(cols, 1)
            mat = new_cat
            ones = b.emit("constant", [], {"value": 1.0, "shape": (cols, 1), "dtype": n.dtype}, loc=n.loc)
        total = b.emit("matmul", [mat, ones], {}, loc=n.loc)
        b.env[id(n)] = b.emit("reshape", [total], {"shape": n.shape}, name=n.name, loc=n.loc)
    return b.finish()

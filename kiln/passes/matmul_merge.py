"""Matmul merging ("dot merger"): fewer, bigger matmuls for the packed GEMM.

Two passes, each `Graph -> Graph`:

- `merge_matmul_sums`: `Σ_t A_t @ B_t` -> `concat(A_t, -1) @ concat(B_t, -2)`, one matmul over
  the concatenated contraction (kiln/passes/matmul_sums.py);
- `merge_shared_operand_matmuls`: independent `X_t @ W` (or `W @ X_t`) -> one matmul of
  `concat(X_t)` with `W`, and slices of its result (kiln/passes/matmul_shared.py).

A matmul can be a term of a mergeable sum and a member of a mergeable group at once: the
forward gates of an LSTM step are `x_t @ W_ihᵀ + h_{t-1} @ W_hhᵀ`, and `x_t @ W_ihᵀ` also
shares `W_ihᵀ` with every other step. Each pass then leaves the matmul to the other when the
other merges more matmuls (a tie goes to the sum), so the input projection becomes one GEMM
over all steps rather than a per-step concatenation with the recurrent product. (Counts, not
sizes: the decisions are the same at every batch size.)
"""
from __future__ import annotations

from ..ir.graph import Graph
from .matmul_concat import MIN_SHARED_ELEMENTS
from .matmul_shared import apply_shared_merges, plan_shared_merges
from .matmul_sums import apply_sum_merges, plan_sum_merges


def merge_matmul_sums(graph: Graph, min_shared: int = MIN_SHARED_ELEMENTS) -> Graph:
    """Each sum of two or more single-use matmuls becomes one matmul over the concatenated
    contraction, beside the sum's other terms (unless `merge_shared_operand_matmuls` with this
    `min_shared` merges a term with more matmuls)."""
    rival = {id(m): len(g.members) for g in plan_shared_merges(graph, min_shared, acyclic=False) for m in g.members}
    plans = plan_sum_merges(graph, keep=lambda t, count: rival.get(id(t), 0) <= count)
    return apply_sum_merges(graph, plans)


def merge_shared_operand_matmuls(graph: Graph, min_shared: int = MIN_SHARED_ELEMENTS) -> Graph:
    """Matmuls sharing an operand (of at least `min_shared` elements), none depending on another's
    result, become one matmul and slices of its result."""
    rival = {id(t): len(p.terms) for p in plan_sum_merges(graph) for t in p.terms}
    merges = plan_shared_merges(graph, min_shared, keep=lambda m, count: rival.get(id(m), 0) < count)
    return apply_shared_merges(graph, merges)

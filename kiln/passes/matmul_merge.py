"""Matmul merging ("dot merger"): fewer, bigger matmuls for the packed GEMM.

Two passes, each `Graph -> Graph`:

- `merge_matmul_sums`: `Σ_t A_t @ B_t` -> `concat(A_t, -1) @ concat(B_t, -2)`, one matmul over
  the concatenated contraction (kiln/passes/matmul_sums.py);
- `merge_shared_operand_matmuls`: independent `X_t @ W` (or `W @ X_t`) -> one matmul of
  `concat(X_t)` with `W`, and slices of its result (kiln/passes/matmul_shared.py).

A matmul can be a term of a mergeable sum and a member of a mergeable group at once: the
forward gates of an LSTM step are `x_t @ W_ihᵀ + h_{t-1} @ W_hhᵀ`, and `x_t @ W_ihᵀ` also
shares `W_ihᵀ` with every other step. Each pass then leaves the matmul to the other when the
other's merged product is bigger (a tie goes to the sum), so the input projection becomes one
GEMM over all steps rather than a per-step concatenation with the recurrent product.
"""
from __future__ import annotations

from ..ir.graph import Graph
from .matmul_concat import MIN_MERGED_MACS
from .matmul_shared import apply_shared_merges, plan_shared_merges
from .matmul_sums import apply_sum_merges, plan_sum_merges


def merge_matmul_sums(graph: Graph, min_macs: int = MIN_MERGED_MACS) -> Graph:
    """Each sum of two or more single-use matmuls (at least `min_macs` multiply-adds merged) becomes
    one matmul over the concatenated contraction, beside the sum's other terms."""
    rival = {id(m): g.macs for g in plan_shared_merges(graph, min_macs, acyclic=False) for m in g.members}
    plans = plan_sum_merges(graph, min_macs, keep=lambda t, macs: rival.get(id(t), -1) <= macs)
    return apply_sum_merges(graph, plans)


def merge_shared_operand_matmuls(graph: Graph, min_macs: int = MIN_MERGED_MACS) -> Graph:
    """Matmuls sharing an operand, none depending on another's result (at least `min_macs`
    multiply-adds merged), become one matmul and slices of its result."""
    rival = {id(t): p.macs for p in plan_sum_merges(graph, min_macs) for t in p.terms}
    merges = plan_shared_merges(graph, min_macs, keep=lambda m, macs: rival.get(id(m), -1) < macs)
    return apply_shared_merges(graph, merges)

"""Dead-code elimination: drop nodes that no graph output depends on (all primitives are pure)."""
from __future__ import annotations

from ..ir.graph import Graph
from .builder import GraphBuilder


def live_nodes(graph: Graph) -> set[int]:
    """ids of the nodes (and inputs) that some output depends on."""
    live: set[int] = set()
    stack = list(graph.outputs)
    while stack:
        n = stack.pop()
        if id(n) in live:
            continue
        live.add(id(n))
        stack.extend(n.inputs)
    return live


def dce(graph: Graph) -> Graph:
    """Remove dead nodes; graph inputs always stay (they are the calling convention)."""
    live = live_nodes(graph)
    if all(id(n) in live for n in graph.nodes):
        return graph
    b = GraphBuilder(graph)
    for n in graph.nodes:
        if id(n) in live:
            b.copy(n)
    return b.finish()

"""Common-subexpression elimination: one node per distinct (op, inputs, attrs, type)."""
from __future__ import annotations

from typing import Any

from ..ir.graph import Graph, Node
from ..ir.printer import format_value
from .builder import GraphBuilder, python_scalar


def attrs_key(attrs: dict[str, Any]) -> str:
    """A hashable, exact key for attributes (the text form distinguishes 0, 0.0, -0.0, nan)."""
    return ",".join(f"{k}={format_value(attrs[k])}" for k in sorted(attrs))


def node_key(op: str, inputs, attrs: dict[str, Any], shape, dtype) -> tuple:
    if op == "constant":  # 0, 0.0 and False are the same f32 literal
        v = attrs["value"]
        v = [python_scalar(x, dtype) for x in v] if isinstance(v, (list, tuple)) else python_scalar(v, dtype)
        attrs = {**attrs, "value": v}
    return (op, tuple(id(i) for i in inputs), attrs_key(attrs), tuple(shape), dtype.name)


def cse(graph: Graph) -> Graph:
    """Replace every node that repeats an earlier node's key by that earlier node."""
    seen: dict[tuple, Node] = {}
    b = GraphBuilder(graph)
    changed = False
    for n in graph.nodes:
        ins = b.mapped_inputs(n)
        key = node_key(n.op, ins, n.attrs, n.shape, n.dtype)
        if key in seen:
            b.env[id(n)] = seen[key]
            changed = True
            continue
        seen[key] = b.copy(n, ins)
    return b.finish() if changed else graph

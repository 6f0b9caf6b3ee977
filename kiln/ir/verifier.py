"""Check a Graph's invariants: SSA order, known primitives, and every node's declared type."""
from __future__ import annotations

from .graph import Graph
from .primitives import ShapeError, get_primitive


class VerificationError(ValueError):
    """The graph breaks an IR invariant; the message names the node."""


def verify(graph: Graph) -> Graph:
    """Raise VerificationError unless `graph` is well formed; returns it unchanged."""
    seen: set[int] = set()
    names: set[str] = set()
    for n in graph.inputs:
        if n.op != "input":
            raise VerificationError(f"graph input %{n.name} has op {n.op!r}, expected 'input'")
        if n.name in names:
            raise VerificationError(f"duplicate value name %{n.name}")
        names.add(n.name)
        seen.add(id(n))
    for n in graph.nodes:
        if n.name in names:
            raise VerificationError(f"duplicate value name %{n.name}")
        names.add(n.name)
        for i in n.inputs:
            if id(i) not in seen:
                raise VerificationError(f"%{n.name} = {n.op}(...) uses %{i.name} before it is defined")
        try:
            prim = get_primitive(n.op)
            shape, dtype = prim.abstract_eval(n.inputs, n.attrs)
        except (KeyError, ShapeError) as e:
            raise VerificationError(f"%{n.name}: {e.args[0]}") from None
        if tuple(shape) != n.shape or dtype != n.dtype:
            raise VerificationError(f"%{n.name} = {n.op}: declared {n.dtype.short}{list(n.shape)}, "
                                    f"rule gives {dtype.short}{list(shape)}")
        seen.add(id(n))
    for o in graph.outputs:
        if id(o) not in seen:
            raise VerificationError(f"output %{o.name} is not defined in the graph")
    return graph

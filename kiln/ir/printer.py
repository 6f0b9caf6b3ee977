"""The IR's text form: one line per node, stable, and parsed back by `parse_graph`.

    graph main(%x: f32[3,4], %y: f32[4]) {
      %0: f32[3,4] = broadcast_to(%y) {shape=(3, 4)}
      %1: f32[3,4] = add(%x, %0)
      return (%1)
    }
"""
from __future__ import annotations

import math
from typing import Any

from .dtypes import DType
from .graph import Graph, Node


def format_type(node: Node) -> str:
    return f"{node.dtype.short}[{','.join(str(s) for s in node.shape)}]"


def format_value(v: Any) -> str:
    """Attribute values: Python literals, with dtypes as their short name and inf/nan spelled out."""
    if isinstance(v, DType):
        return v.short
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, tuple):
        inner = ", ".join(format_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, (int, str)) or v is None:
        return repr(v)
    raise TypeError(f"cannot print attribute value {v!r} of type {type(v).__name__}")


def format_node(node: Node) -> str:
    args = ", ".join(f"%{i.name}" for i in node.inputs)
    line = f"%{node.name}: {format_type(node)} = {node.op}({args})"
    if node.attrs:
        line += " {" + ", ".join(f"{k}={format_value(node.attrs[k])}" for k in sorted(node.attrs)) + "}"
    return line


def format_graph(graph: Graph) -> str:
    params = ", ".join(f"%{n.name}: {format_type(n)}" for n in graph.inputs)
    lines = [f"graph {graph.name}({params}) {{"]
    lines += ["  " + format_node(n) for n in graph.nodes]
    lines.append("  return (" + ", ".join(f"%{o.name}" for o in graph.outputs) + ")")
    lines.append("}")
    return "\n".join(lines) + "\n"

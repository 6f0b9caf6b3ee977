"""Shared helpers for passes: rebuilding a graph node by node, and reading constants.

Passes never mutate their input graph. `GraphBuilder` starts a new graph with the same
name and inputs, copies or replaces nodes in topological order (keeping each old
node's name), and gives new nodes fresh names that cannot clash with any old name.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..ir import dtypes as dt
from ..ir.graph import Graph, Node
from ..ir.primitives import get_primitive


class GraphBuilder:
    """Build a new graph from `src`: `env` maps each old node (by id) to its new node."""

    def __init__(self, src: Graph):
        self.src = src
        self.graph = Graph(src.name)
        self._reserved = {n.name for n in src.inputs} | {n.name for n in src.nodes}
        self._counter = 0
        self.env: dict[int, Node] = {}
        for n in src.inputs:
            self.env[id(n)] = self.graph.add_input(n.shape, n.dtype, name=n.name)

    def fresh_name(self) -> str:
        while True:
            name = str(self._counter)
            self._counter += 1
            if name not in self._reserved and not self.graph.has_name(name):
                return name

    def lookup(self, old: Node) -> Node:
        return self.env[id(old)]

    def mapped_inputs(self, old: Node) -> list[Node]:
        return [self.env[id(i)] for i in old.inputs]

    def emit(self, op: str, inputs: Sequence[Node], attrs: dict[str, Any], name: str | None = None,
             loc: str | None = None) -> Node:
        """Add `op(*inputs, **attrs)` with its type from the primitive's rule; `name` if still free."""
        shape, dtype = get_primitive(op).abstract_eval(list(inputs), attrs)
        if name is None or self.graph.has_name(name):
            name = self.fresh_name()
        return self.graph.add_node(op, inputs, attrs, shape, dtype, name=name, loc=loc)

    def copy(self, old: Node, inputs: Sequence[Node] | None = None) -> Node:
        """Re-emit `old` (same op, attrs, name) on mapped (or given) inputs and record the mapping:
        a `Graph.node_copy` while the inputs keep their types, else typed anew by the primitive's rule."""
        ins = self.mapped_inputs(old) if inputs is None else list(inputs)
        if all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(ins, old.inputs)) \
                and len(ins) == len(old.inputs):  # same operand types: the type rule gives old's type
            name = old.name if not self.graph.has_name(old.name) else self.fresh_name()
            in_order = iter(ins)
            new = self.graph.node_copy(old, lambda _: next(in_order), name=name)
        else:
            new = self.emit(old.op, ins, dict(old.attrs), name=old.name, loc=old.loc)
        self.env[id(old)] = new
        return new

    def finish(self) -> Graph:
        self.graph.set_outputs([self.env[id(o)] for o in self.src.outputs])
        return self.graph


# -- constants ------------------------------------------------------------------------------

def is_splat(n: Node) -> bool:
    """A constant whose every element is the same scalar `value`."""
    return n.op == "constant" and not isinstance(n.attrs["value"], (list, tuple))


def splat_value(n: Node):
    """The scalar of a splat constant, converted to the node's dtype (None if not a splat)."""
    if not is_splat(n):
        return None
    return np.asarray(n.attrs["value"]).astype(n.dtype.np_dtype).item()


def splat_equals(n: Node, value) -> bool:
    v = splat_value(n)
    return v is not None and v == value and not (isinstance(v, float) and np.isnan(v))


def constant_array(n: Node) -> np.ndarray:
    return get_primitive("constant").impl(**n.attrs)


def python_scalar(v, dtype: dt.DType):
    """A numpy scalar as the plain Python value the printer writes for `dtype`."""
    v = np.asarray(v).astype(dtype.np_dtype).item()
    if dtype.is_bool:
        return bool(v)
    if dtype.is_integer:
        return int(v)
    return float(v)


def constant_attrs(arr: np.ndarray, dtype: dt.DType, max_literal: int | None) -> dict[str, Any] | None:
    """Attributes of a `constant` node holding `arr`: splat if all equal, else a flat list.

    Returns None when a non-splat literal would have more than `max_literal` elements.
    """
    arr = np.asarray(arr)
    shape = tuple(int(s) for s in arr.shape)
    flat = arr.reshape(-1)
    if flat.size == 0:
        return {"value": python_scalar(np.zeros((), dtype.np_dtype), dtype), "shape": shape, "dtype": dtype}
    first = flat[0]
    same = np.array_equal(flat, np.full_like(flat, first), equal_nan=dtype.is_floating_point)
    if same and dtype.is_floating_point:  # -0.0 and 0.0 compare equal; keep them apart
        same = bool(np.all(np.signbit(flat) == np.signbit(first)))
    if same:
        return {"value": python_scalar(first, dtype), "shape": shape, "dtype": dtype}
    if max_literal is not None and flat.size > max_literal:
        return None
    return {"value": [python_scalar(v, dtype) for v in flat], "shape": shape, "dtype": dtype}

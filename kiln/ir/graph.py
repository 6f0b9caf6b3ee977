"""The SSA graph: a Graph owns an ordered list of Nodes; each Node is one value.

A Node is one primitive application (or a graph input / constant) producing exactly
one result with a known shape and dtype. Nodes are identified by object; names are for
people and the text form.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

from .dtypes import DType

Shape = tuple[int, ...]


class Node:
    """One SSA value: `op(*inputs, **attrs) -> shape, dtype`."""

    __slots__ = ("name", "op", "inputs", "attrs", "shape", "dtype", "loc", "__weakref__")

    def __init__(self, name: str, op: str, inputs: Sequence["Node"], attrs: dict[str, Any],
                 shape: Shape, dtype: DType, loc: str | None = None):
        self.name = name
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.loc = loc  # user source location "file:line", for error messages

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __repr__(self) -> str:
        dims = ",".join(str(s) for s in self.shape)
        return f"%{self.name}: {self.dtype.short}[{dims}] = {self.op}(...)"


class Graph:
    """A function: `inputs` (Nodes with op 'input'), `nodes` in topological order, `outputs`."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Node] = []
        self.nodes: list[Node] = []
        self.outputs: list[Node] = []
        self._counter = 0
        self._names: set[str] = set()

    # -- construction -------------------------------------------------------------
    def _fresh(self, hint: str | None) -> str:
        if hint is not None and hint not in self._names:
            self._names.add(hint)
            return hint
        while True:
            name = str(self._counter)
            self._counter += 1
            if name not in self._names:
                self._names.add(name)
                return name

    def add_input(self, shape: Shape, dtype: DType, name: str | None = None) -> Node:
        node = Node(self._fresh(name), "input", (), {}, shape, dtype)
        self.inputs.append(node)
        return node

    def add_node(self, op: str, inputs: Sequence[Node], attrs: dict[str, Any], shape: Shape,
                 dtype: DType, name: str | None = None, loc: str | None = None) -> Node:
        node = Node(self._fresh(name), op, inputs, attrs, shape, dtype, loc)
        self.nodes.append(node)
        return node

    def node_copy(self, node: Node, arg_transform: Callable[[Node], Node], name: str | None = None) -> Node:
        """Append a copy of `node` (from any graph): same op, attributes, shape, dtype and loc, with each
        input mapped through `arg_transform` (called once per input, in order). The copy is named
        `name`, else `node.name` while that is free here, else a fresh name. The mapped inputs must
        have the original inputs' shapes and dtypes, since the copy keeps `node`'s type."""
        if node.op == "input":
            raise ValueError(f"node_copy(%{node.name}): a graph input is not copied as a node; use add_input")
        inputs = [arg_transform(i) for i in node.inputs]
        for k, (old, new) in enumerate(zip(node.inputs, inputs)):
            if not isinstance(new, Node) or new.shape != old.shape or new.dtype != old.dtype:
                got = f"%{new.name}: {new.dtype.name}{list(new.shape)}" if isinstance(new, Node) else repr(new)
                raise ValueError(f"node_copy(%{node.name}): input {k} (%{old.name}: {old.dtype.name}"
                                 f"{list(old.shape)}) maps to {got}")
        return self.add_node(node.op, inputs, node.attrs, node.shape, node.dtype,
                             name=node.name if name is None else name, loc=node.loc)

    def has_name(self, name: str) -> bool:
        """Is `name` already taken by an input or node of this graph?"""
        return name in self._names

    def set_outputs(self, outputs: Iterable[Node]) -> None:
        self.outputs = list(outputs)

    # -- queries ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def users(self) -> dict[Node, list[Node]]:
        """Map each node to the nodes that consume it."""
        out: dict[Node, list[Node]] = {n: [] for n in self.inputs}
        for n in self.nodes:
            out.setdefault(n, [])
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    # -- text form -------------------------------------------------------------------
    def __str__(self) -> str:
        from .printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<kiln Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, {len(self.outputs)} outputs>"

    def __eq__(self, other: object) -> bool:
        """Structural equality: same text form (names, ops, attrs, shapes, dtypes)."""
        if not isinstance(other, Graph):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]

    # -- views -----------------------------------------------------------------------
    def to_networkx(self):
        """A networkx.DiGraph with one vertex per node name and an edge per data dependency."""
        import networkx as nx
        g = nx.DiGraph()
        for n in list(self.inputs) + list(self.nodes):
            g.add_node(n.name, op=n.op, shape=n.shape, dtype=n.dtype.name, attrs=dict(n.attrs))
        for n in self.nodes:
            for pos, i in enumerate(n.inputs):
                g.add_edge(i.name, n.name, index=pos)
        for k, o in enumerate(self.outputs):
            g.nodes[o.name]["output"] = g.nodes[o.name].get("output", ()) + (k,)
        return g

    def to_dot(self) -> str:
        """Graphviz dot source for this graph (render with `dot -Tsvg`)."""
        lines = [f'digraph "{self.name}" {{', "  node [shape=box, fontname=monospace];"]
        outs = {id(o) for o in self.outputs}
        for n in list(self.inputs) + list(self.nodes):
            dims = ",".join(str(s) for s in n.shape)
            label = f"%{n.name} = {n.op}\\n{n.dtype.short}[{dims}]"
            style = ', style=filled, fillcolor="#ddeeff"' if n.op == "input" else ""
            if id(n) in outs:
                style = ', style=filled, fillcolor="#ffe4b5"'
            lines.append(f'  "{n.name}" [label="{label}"{style}];')
        for n in self.nodes:
            for i in n.inputs:
                lines.append(f'  "{i.name}" -> "{n.name}";')
        lines.append("}")
        return "\n".join(lines) + "\n"

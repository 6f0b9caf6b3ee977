"""Reverse-mode autodiff as a graph transform, from the primitives' VJP rules.

`vjp_graph(g, wrt, ...)` returns a joint graph computing the original outputs and
the gradients of the selected inputs. `split_joint(...)` cuts such a joint graph into a
forward graph (which also returns the intermediates the backward needs) and a backward
graph (which takes those plus the cotangents), as AOTAutograd does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..ir.graph import Graph, Node
from ..ir.primitives import MOVEMENT, get_primitive
from ..ir.ruleops import RuleOps
from .builder import GraphBuilder
from .dce import dce


def _active(graph: Graph, wrt: Sequence[Node], outs: Sequence[Node]) -> set[Node]:
    """Nodes on a path from a `wrt` input to an output: the only ones that carry cotangents."""
    fwd = set(wrt)
    for n in graph.nodes:
        if any(i in fwd for i in n.inputs) and get_primitive(n.op).vjp is not None and n.dtype.is_floating_point:
            fwd.add(n)
    back = set(outs)
    for n in reversed(graph.nodes):
        if n in back:
            back.update(n.inputs)
    return fwd & back


def vjp_graph(graph: Graph, wrt: Sequence[int], outputs: Sequence[int] | None = None,
              seed_ones: bool = False) -> Graph:
    """Joint forward+backward graph.

    Inputs: the original inputs, then (unless `seed_ones`) one cotangent per differentiated
    output, named `ct<k>`. Outputs: the original outputs, then d(outputs)/d(input) for each
    input index in `wrt` (zeros where an input does not reach the outputs).
    With `seed_ones`, the differentiated outputs must be scalars and are seeded with 1.
    """
    outputs = list(range(len(graph.outputs))) if outputs is None else list(outputs)
    b = GraphBuilder(graph)
    b.graph.name = graph.name + "_vjp"
    for n in graph.nodes:
        b.copy(n)
    g = b.finish()

    def bind(name: str, *args: Node, **attrs) -> Node:
        return b.emit(name, args, attrs)
    ops = RuleOps(bind)
    wrt_nodes = [g.inputs[k] for k in wrt]
    for k in wrt:
        if not graph.inputs[k].dtype.is_floating_point:
            raise TypeError(f"cannot differentiate with respect to input {k} (%{graph.inputs[k].name}) of dtype "
                            f"{graph.inputs[k].dtype.name}: only floating-point inputs have gradients")
    out_nodes = [g.outputs[k] for k in outputs]
    for o in out_nodes:
        if not o.dtype.is_floating_point:
            raise TypeError(f"cannot differentiate output %{o.name} of dtype {o.dtype.name}")
    active = _active(g, wrt_nodes, out_nodes)
    cts: dict[Node, Node] = {}

    def accumulate(n: Node, ct: Node) -> None:
        cts[n] = ct if n not in cts else bind("add", cts[n], ct)

    for k, o in zip(outputs, out_nodes):
        if seed_ones:
            if o.shape != ():
                raise ValueError(f"output {k} has shape {o.shape}; grad needs scalar outputs (or use vjp)")
            seed = ops.full(1.0, (), o.dtype)
        else:
            seed = g.add_input(o.shape, o.dtype, name=f"ct{k}")
        if o in active:
            accumulate(o, seed)
    for n in reversed(list(g.nodes)):
        if n not in active or n not in cts or n.op == "input":
            continue
        prim = get_primitive(n.op)
        results = prim.vjp(ops, cts[n], list(n.inputs), n, **n.attrs)
        for i, ct in zip(n.inputs, results):
            if ct is not None and i in active:
                accumulate(i, ct)
    grads = [cts[w] if w in cts else ops.zeros_like(w) for w in wrt_nodes]
    g.set_outputs(list(g.outputs) + grads)
    return dce(g)


@dataclass
class SplitGraphs:
    """A joint graph cut in two. forward: (inputs) -> (outputs..., saved...);
    backward: (saved..., cotangents...) -> (grads...)."""

    forward: Graph
    backward: Graph
    n_outputs: int
    n_saved: int


def split_joint(joint: Graph, n_inputs: int, n_outputs: int) -> SplitGraphs:
    """Cut `joint` (from `vjp_graph`, not seeded) into forward and backward graphs.

    Nodes that depend on a cotangent input belong to the backward; forward nodes the
    backward reads are saved (returned by the forward, passed to the backward).
    """
    cts = set(joint.inputs[n_inputs:])
    bwd_set: set[Node] = set()
    for n in joint.nodes:
        if any(i in cts or i in bwd_set for i in n.inputs):
            bwd_set.add(n)
    grads = joint.outputs[n_outputs:]
    # backward nodes that do not depend on cotangents (e.g. constants, zeros) are recomputed there
    needed_bwd: set[Node] = set()
    stack = [o for o in grads]
    saved: list[Node] = []
    saved_set: set[Node] = set()
    while stack:
        n = stack.pop()
        if n in needed_bwd or n in saved_set or n in cts:
            continue
        if n.op == "input":
            saved_set.add(n)
            saved.append(n)
            continue
        recompute = n.op in ("constant", "iota") or get_primitive(n.op).kind == MOVEMENT
        if n not in bwd_set and not recompute:
            saved_set.add(n)
            saved.append(n)
            continue
        needed_bwd.add(n)
        stack.extend(n.inputs)
    order = {n: k for k, n in enumerate(joint.nodes)}
    saved.sort(key=lambda n: (0, joint.inputs.index(n)) if n.op == "input" else (1, order[n]))
    fwd = Graph(joint.name.replace("_vjp", "") + "_fwd")
    env: dict[Node, Node] = {}
    for n in joint.inputs[:n_inputs]:
        env[n] = fwd.add_input(n.shape, n.dtype, name=n.name)
    for n in joint.nodes:
        if n not in bwd_set:
            env[n] = fwd.node_copy(n, env.__getitem__)
    fwd_saved = [env[n] for n in saved]
    fwd.set_outputs([env[o] for o in joint.outputs[:n_outputs]] + fwd_saved)
    fwd = dce(fwd)
    bwd = Graph(joint.name.replace("_vjp", "") + "_bwd")
    benv: dict[Node, Node] = {}
    for n in saved:
        benv[n] = bwd.add_input(n.shape, n.dtype, name=f"saved_{n.name}")
    for n in joint.inputs[n_inputs:]:
        benv[n] = bwd.add_input(n.shape, n.dtype, name=n.name)
    for n in joint.nodes:
        if n in needed_bwd:
            benv[n] = bwd.node_copy(n, benv.__getitem__)
    bwd.set_outputs([benv[o] for o in grads])
    return SplitGraphs(fwd, bwd, n_outputs, len(saved))

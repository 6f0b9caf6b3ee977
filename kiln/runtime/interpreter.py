"""The reference interpreter: runs a Graph node by node with each primitive's numpy impl.

A graph is prepared once into a flat program (impl, argument slots, attributes, and the
slots whose last use it is), cached on the graph, so a call does no name or table lookups
and frees intermediates as soon as they are dead.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir.graph import Graph
from ..ir.primitives import get_primitive


class _Program:
    __slots__ = ("key", "n_slots", "steps", "outputs")

    def __init__(self, graph: Graph, key):
        self.key = key
        slot = {id(n): k for k, n in enumerate(graph.inputs)}
        for k, n in enumerate(graph.nodes):
            slot[id(n)] = len(graph.inputs) + k
        self.n_slots = len(slot)
        last_use: dict[int, int] = {}
        for k, n in enumerate(graph.nodes):
            for i in n.inputs:
                last_use[slot[id(i)]] = k
        keep = {slot[id(o)] for o in graph.outputs} | set(range(len(graph.inputs)))
        dead_after: list[list[int]] = [[] for _ in graph.nodes]
        for s, k in last_use.items():
            if s not in keep:
                dead_after[k].append(s)
        self.steps = [(get_primitive(n.op).impl, tuple(slot[id(i)] for i in n.inputs), n.attrs,
                       slot[id(n)], tuple(dead_after[k])) for k, n in enumerate(graph.nodes)]
        self.outputs = [slot[id(o)] for o in graph.outputs]


def _program(graph: Graph) -> _Program:
    key = (id(graph.nodes), len(graph.nodes), tuple(id(o) for o in graph.outputs))
    prog = graph.__dict__.get("_program")
    if prog is None or prog.key != key:
        prog = _Program(graph, key)
        graph.__dict__["_program"] = prog
    return prog


def run_graph(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `graph` on numpy arrays (one per graph input); returns one array per output."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    prog = _program(graph)
    env: list = [None] * prog.n_slots
    for k, (node, arr) in enumerate(zip(graph.inputs, inputs)):
        arr = np.asarray(arr)
        if arr.shape != node.shape or arr.dtype != node.dtype.np_dtype:
            raise ValueError(f"input %{node.name} expects {node.dtype.name}{list(node.shape)}, "
                             f"got {arr.dtype}{list(arr.shape)}")
        env[k] = arr
    for impl, args, attrs, out, dead in prog.steps:
        env[out] = impl(*[env[a] for a in args], **attrs)
        for d in dead:
            env[d] = None
    return [env[o] for o in prog.outputs]

"""The reference interpreter: runs a Graph node by node with each primitive's numpy impl."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir.graph import Graph
from ..ir.primitives import get_primitive


def run_graph(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `graph` on numpy arrays (one per graph input); returns one array per output."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env: dict[int, np.ndarray] = {}
    for node, arr in zip(graph.inputs, inputs):
        arr = np.asarray(arr)
        if tuple(arr.shape) != node.shape or arr.dtype != node.dtype.np_dtype:
            raise ValueError(f"input %{node.name} expects {node.dtype.name}{list(node.shape)}, "
                             f"got {arr.dtype}{list(arr.shape)}")
        env[id(node)] = arr
    for node in graph.nodes:
        prim = get_primitive(node.op)
        env[id(node)] = prim.impl(*(env[id(i)] for i in node.inputs), **node.attrs)
    return [env[id(o)] for o in graph.outputs]

"""Run a fusion plan kernel by kernel on the reference interpreter.

Each kernel runs as the standalone graph `Kernel.as_graph()` gives, seeing only the values
it reads from memory (graph inputs and earlier kernels' outputs), so comparing the result
with the whole graph's checks that fusion preserves semantics.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..passes.fusion import FusionPlan
from .interpreter import run_graph


def run_plan(plan: FusionPlan, inputs: Sequence[np.ndarray], times: list[int] | None = None,
             clock: Callable[[], int] | None = None) -> list[np.ndarray]:
    """Evaluate `plan` on numpy arrays (one per graph input), kernel by kernel in plan order;
    returns one array per graph output. With `times` (and `clock`, e.g. `time.perf_counter_ns`),
    each kernel's duration in clock units is appended to it (the profiler's reference backend)."""
    g = plan.graph
    if len(inputs) != len(g.inputs):
        raise ValueError(f"graph {g.name} takes {len(g.inputs)} inputs, got {len(inputs)}")
    memory: dict[int, np.ndarray] = {id(n): np.asarray(a) for n, a in zip(g.inputs, inputs)}
    for k in plan.kernels:
        for i in k.inputs:
            if id(i) not in memory:
                raise ValueError(f"kernel {k.id} reads %{i.name} before any kernel writes it")
        args = [memory[id(i)] for i in k.inputs]
        if times is None:
            results = run_graph(k.as_graph(), args)
        else:
            kg = k.as_graph()
            t0 = clock()
            results = run_graph(kg, args)
            times.append(clock() - t0)
        memory.update((id(o), r) for o, r in zip(k.outputs, results))
    for o in g.outputs:
        if id(o) not in memory:
            raise ValueError(f"graph output %{o.name} is written by no kernel")
    return [memory[id(o)] for o in g.outputs]

"""The backend seam: every compiled graph runs through `get_backend(name).compile(graph)`.

A backend turns a Graph into an executable with `run(list of numpy arrays) -> list of
arrays`. `reference` is the numpy interpreter (the oracle); `llvm` compiles the graph's
fusion plan to native code for the host CPU; `cuda` renders the same kernel IR to CUDA C
(kiln/runtime/cuda_backend.py). Executables are cached on the graph object,
so a graph compiles once per backend.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .. import config
from ..ir.graph import Graph


class Executable(Protocol):
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...


class ReferenceExecutable:
    """The numpy interpreter as an executable."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if config.get().profile:  # kiln.profiler: the fusion plan's kernels one by one, each timed
            from .profiler import run_reference
            return run_reference(self, inputs)
        from .interpreter import run_graph as interpret
        return interpret(self.graph, inputs)


class ReferenceBackend:
    name = "reference"

    def compile(self, graph: Graph) -> ReferenceExecutable:
        return ReferenceExecutable(graph)


class LLVMBackend:
    name = "llvm"

    def __init__(self, strict_fp: bool = False):
        self.strict_fp = strict_fp

    def compile(self, graph: Graph):
        from .llvm_backend import compile_graph
        return compile_graph(graph, strict_fp=self.strict_fp)


class CudaBackend:
    """CUDA C from the same kernel IR, compiled with NVRTC; lowering needs no GPU, running does."""
    name = "cuda"

    @staticmethod
    def is_available() -> bool:
        """Can programs run here (a device and its driver, or the simulator)? Lowering and NVRTC need neither."""
        from .cuda_device import current
        return current().is_available()

    def compile(self, graph: Graph):
        from .cuda_backend import CudaBackend as Impl
        return Impl().compile(graph)


BACKENDS = {"reference": ReferenceBackend, "llvm": LLVMBackend, "cuda": CudaBackend}


def default_backend_name() -> str:
    return check_backend_name(config.get().backend, "KILN_BACKEND")


def check_backend_name(name: str, what: str = "backend") -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown {what} {name!r}; known backends: {', '.join(sorted(BACKENDS))}")
    return name


def get_backend(name: str | None = None):
    """The backend called `name` (default: KILN_BACKEND, else llvm)."""
    name = check_backend_name(name) if name is not None else default_backend_name()
    if name == "llvm":
        return LLVMBackend(strict_fp=config.get().strict_fp)
    return BACKENDS[name]()


def executable(graph: Graph, backend: str | None = None):
    """The cached executable of `graph` on `backend`."""
    name = backend or default_backend_name()
    cache = graph.__dict__.setdefault("_executables", {})
    key = (name, id(graph.nodes), len(graph.nodes), tuple(id(o) for o in graph.outputs))
    ex = cache.get(key)
    if ex is None:
        ex = get_backend(name).compile(graph)
        cache[key] = ex
        _dump_stages(graph, ex)
    return ex


def _dump_stages(graph: Graph, ex) -> None:
    """With KILN_DUMP set, write the compiled program's stages after the graph's passes."""
    from ..passes.manager import dump_writer
    writer = dump_writer()
    stages = getattr(ex, "stages", None)
    if writer is None or stages is None:
        return
    for stage in getattr(ex, "stage_names", ("plan", "kernels", "llvm", "llvm-opt", "asm")):
        writer.write(f"{graph.name}-{stage}", stages(stage))


def run_graph(graph: Graph, inputs: Sequence[np.ndarray], backend: str | None = None) -> list[np.ndarray]:
    """Run `graph` on `backend` (compiling it the first time)."""
    return executable(graph, backend).run(inputs)

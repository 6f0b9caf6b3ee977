"""The CUDA backend: a graph's fusion plan lowered to kernel IR (the same as the CPU's),
rendered to CUDA C (`kiln.codegen.cuda_render`), compiled with NVRTC and launched through the
CUDA driver (`kiln.runtime.cuda_driver`) on one stream.

Lowering, rendering and compiling need no GPU: `kiln.compile(f, backend="cuda").lower(...)`
gives the `cuda` and `ptx` stages anywhere NVRTC (or nvcc) is installed. Running needs a
device; without one `run` raises a RuntimeError saying why.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..codegen.cuda_render import CudaKernel, render_program
from ..codegen.lower import LoweredProgram, lower_plan
from ..ir.graph import Graph
from ..passes.fusion import FusionPlan, plan_fusion
from .nvrtc_compiler import DEFAULT_ARCH


@dataclass(frozen=True)
class Launch:
    """One kernel launch of a program: the `__global__` function, its buffer arguments (program
    buffer indices, in parameter order) and its grid."""
    func: str
    args: tuple[int, ...]
    grid: int
    block: int
    mode: str


@dataclass
class CudaProgram:
    """A lowered program as one CUDA C translation unit and the launches that run it."""
    name: str
    program: LoweredProgram
    source: str
    kernels: list[CudaKernel]
    launches: list[Launch]


def build_cuda_program(program: LoweredProgram) -> CudaProgram:
    """Render `program` to CUDA C. Kernels with the same body (an LSTM's time steps) are rendered
    once and launched on each one's buffers."""
    from ..codegen.kir_printer import format_kernel
    distinct: dict[str, object] = {}
    alias: dict[str, str] = {}
    for k in program.kernels:
        body = format_kernel(k).replace(k.name, "@kernel", 1)
        distinct.setdefault(body, k)
        alias[k.name] = distinct[body].name
    source, rendered = render_program(list(distinct.values()))
    by_name = {r.name: r for r in rendered}
    index = {b.name: k for k, b in enumerate(program.buffers)}
    launches = []
    for kname, args in program.calls:
        ck = by_name[alias[kname]]
        for st in ck.stages:
            launches.append(Launch(st.func, tuple(index[a] for a in args), st.grid(), st.block, st.mode))
    return CudaProgram(program.name, program, source, rendered, launches)


def _sanitize(s: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in s)[:40]


class CudaExecutable:
    """A compiled CUDA program: `stages()` anywhere, `run()` on a device."""
    stage_names = ("plan", "kernels", "cuda", "ptx")

    def __init__(self, graph: Graph | None, plan: FusionPlan | None, cuda: CudaProgram, arch: str | None = None):
        self.graph = graph
        self.plan = plan
        self.cuda = cuda
        self.program = cuda.program
        self._arch = arch
        self._compiled = None
        self._module = None
        self._lock = threading.Lock()

    @property
    def arch(self) -> str:
        """The architecture compiled for: the device's where one is present, else sm_90."""
        if self._arch is None:
            from . import cuda_driver
            self._arch = cuda_driver.device_arch() if cuda_driver.is_available() else DEFAULT_ARCH
        return self._arch

    def compiled(self):
        """NVRTC's output (PTX and cubin) for `arch`, through the disk cache."""
        if self._compiled is None:
            from . import cuda_driver
            self._compiled = cuda_driver.compile_cached(self.cuda.source, f"{self.cuda.name}.cu", self.arch)
        return self._compiled

    def stages(self, stage: str) -> str:
        """This program's text at `stage`: plan | kernels | cuda | ptx."""
        if stage == "plan":
            return str(self.plan)
        if stage == "kernels":
            return self.program.as_text()
        if stage == "cuda":
            return self.cuda.source
        if stage == "ptx":
            return self.compiled().ptx
        if stage in ("llvm", "llvm-opt", "asm"):
            raise ValueError(f"stage {stage!r} belongs to the llvm backend; the cuda backend has plan, kernels, "
                             "cuda, ptx")
        raise ValueError(f"unknown stage {stage!r}")

    def run(self, inputs: Sequence, device_outputs: bool | None = None) -> list:
        """Run on the current CUDA device (`cuda_device.current()`: the GPU, or the simulator when
        KILN_CUDA_SIM is on): inputs are numpy arrays (copied in) or DeviceArrays (used in place);
        outputs are DeviceArrays when any input was one (or `device_outputs`), else numpy arrays."""
        from .cuda_device import current, run_program
        dev = current()
        dev.require("running a program compiled for the cuda backend")
        return run_program(dev, self, inputs, device_outputs)


class CudaBackend:
    name = "cuda"

    def compile(self, graph: Graph, plan: FusionPlan | None = None) -> CudaExecutable:
        plan = plan if plan is not None else plan_fusion(graph)
        program = lower_plan(plan, f"kiln_{_sanitize(graph.name)}", cpu_blocking=False)
        return CudaExecutable(graph, plan, build_cuda_program(program))


def outputs_from_status(program: LoweredProgram, status: np.ndarray) -> None:
    """Raise the IndexError a failed device-side check recorded in `status` (code, value)."""
    code = int(status[0])
    if code:
        check = program.checks[code - 1]
        raise IndexError(check.message(int(status[1])))

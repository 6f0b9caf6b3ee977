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
    allow_tf32: bool = False   # rendered with float32 GEMM tiles on the tensor cores in TF32


def allow_tf32() -> bool:
    """The user's TF32 switch for float32 matmul/conv (`kiln.backends.cuda.matmul.allow_tf32`)."""
    from ..backends import cuda as settings
    return settings.matmul.allow_tf32


def build_cuda_program(program: LoweredProgram, allow_tf32: bool = False) -> CudaProgram:
    """Render `program` to CUDA C. Kernels with the same body (an LSTM's time steps) are rendered
    once and launched on each one's buffers. `allow_tf32`: float32 GEMM tiles use TF32 tensor cores."""
    from ..codegen.kir_printer import format_kernel
    distinct: dict[str, object] = {}
    alias: dict[str, str] = {}
    for k in program.kernels:
        body = format_kernel(k).replace(k.name, "@kernel", 1)
        distinct.setdefault(body, k)
        alias[k.name] = distinct[body].name
    source, rendered = render_program(list(distinct.values()), allow_tf32)
    by_name = {r.name: r for r in rendered}
    index = {b.name: k for k, b in enumerate(program.buffers)}
    launches = []
    for kname, args in program.calls:
        ck = by_name[alias[kname]]
        for st in ck.stages:
            launches.append(Launch(st.func, tuple(index[a] for a in args), st.grid(), st.block, st.mode))
    return CudaProgram(program.name, program, source, rendered, launches, allow_tf32)


def _sanitize(s: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in s)[:40]


class CudaExecutable:
    """A compiled CUDA program: `stages()` anywhere, `run()` on a device."""
    stage_names = ("plan", "kernels", "cuda", "ptx")

    def __init__(self, graph: Graph | None, plan: FusionPlan | None, cuda: CudaProgram, arch: str | None = None):
        self.graph = graph
        self.plan = plan
        self._variants = {cuda.allow_tf32: cuda}
        self._current = cuda
        self.program = cuda.program
        self._arch = arch
        self._compiled = None
        self._module = None
        self._captured = None   # the CUDA graph of mode="reduce-overhead" (kiln/runtime/cuda_graph.py)
        self._lock = threading.Lock()

    @property
    def cuda(self) -> CudaProgram:
        """The program as rendered for the current TF32 setting: a change of
        `kiln.backends.cuda.matmul.allow_tf32` re-renders it (once per setting) where it has float32 GEMMs."""
        flag = allow_tf32()
        if flag != self._current.allow_tf32:
            v = self._variants.get(flag)
            if v is None:
                v = self._variants[flag] = build_cuda_program(self.program, flag)
            if v.source != self._current.source:
                self._compiled = self._module = None
            self._current = v
        return self._current

    @property
    def arch(self) -> str:
        """The architecture compiled for: the device's where one is present, else sm_90."""
        if self._arch is None:
            from . import cuda_driver
            self._arch = cuda_driver.device_arch() if cuda_driver.is_available() else DEFAULT_ARCH
        return self._arch

    def compiled(self):
        """NVRTC's output (PTX and cubin) for `arch`, through the disk cache."""
        cuda = self.cuda
        if self._compiled is None:
            from . import cuda_driver
            self._compiled = cuda_driver.compile_cached(cuda.source, f"{cuda.name}.cu", self.arch)
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
        self.cuda  # noqa: B018  (the TF32 setting picks the rendering before the module is loaded)
        dev = current()
        dev.require("running a program compiled for the cuda backend")
        return run_program(dev, self, inputs, device_outputs)

    def run_captured(self, inputs: Sequence) -> list:
        """Run as one CUDA graph (`mode="reduce-overhead"`): captured on the first call (and again when
        the TF32 switch changes the rendering), then replayed with the inputs copied into static buffers."""
        from . import cuda_driver
        from .cuda_graph import CapturedProgram
        cuda_driver.require_device("running a program compiled for the cuda backend")
        cuda = self.cuda
        with self._lock:
            if self._module is None:
                self._module = cuda_driver.load_module(self.compiled(), [ln.func for ln in cuda.launches])
            if self._captured is None or self._captured.source != cuda.source:
                self._captured = CapturedProgram(self)
            captured = self._captured
        return captured.replay(inputs)


class CudaBackend:
    name = "cuda"

    def compile(self, graph: Graph, plan: FusionPlan | None = None) -> CudaExecutable:
        plan = plan if plan is not None else plan_fusion(graph)
        program = lower_plan(plan, f"kiln_{_sanitize(graph.name)}", cpu_blocking=False)
        return CudaExecutable(graph, plan, build_cuda_program(program, allow_tf32()))


def outputs_from_status(program: LoweredProgram, status: np.ndarray) -> None:
    """Raise the IndexError a failed device-side check recorded in `status` (code, value)."""
    code = int(status[0])
    if code:
        check = program.checks[code - 1]
        raise IndexError(check.message(int(status[1])))

"""kiln's profiler: per compiled program, the time of each of its kernels.

    with kiln.profiler() as prof:
        for _ in range(10):
            step(x, y)
    print(prof.table())

or `KILN_PROFILE=1 python train.py`: the table of every program that ran is printed to
stderr at exit (and written as the `profile` stage of the `KILN_DUMP` directory, if set).

While the `profile` setting is on (`KILN_PROFILE=1`, `kiln.config.set(profile=True)`, or
inside `kiln.profiler()`), each call of a compiled program is timed kernel by kernel:

- llvm backend: the program's timed build (compiled on its first profiled call; the same
  kernels, plus a `clock_gettime` timestamp on thread 0 after each kernel call and its
  barrier) runs instead of the plain one, over the same buffers;
- reference backend: the graph's fusion plan runs kernel by kernel on the interpreter
  (`run_plan`), each kernel timed around its call.

With the setting off, a call costs one test of the setting. Kernels are named as the
fusion plan dump names them: `k<id> <kind>[<domain>]` and the ops fused into it (the
anchor first). GFLOP/s counts the kernel's arithmetic (2·M·N·K for a matmul, 2·out·C·K for
a convolution, one per element per elementwise op or reduced element); GB/s the bytes of
the buffers the kernel reads and writes, each counted once.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from .. import config

__all__ = ["CLOCK", "KernelStats", "ProgramProfile", "Profile", "profiler", "process_profile", "now_ns", "kernel_label",
           "kernel_flops", "node_flops"]

CLOCK = getattr(time, "CLOCK_MONOTONIC", 1)  # the clock_gettime clock profiled native builds read


def now_ns() -> int:
    """The clock the native timestamps use (CLOCK_MONOTONIC), in nanoseconds."""
    return time.clock_gettime_ns(CLOCK) if hasattr(time, "clock_gettime_ns") else time.perf_counter_ns()


# -- what a kernel is and how much work it does ------------------------------------------------
_FREE_KINDS = ("movement", "creation")  # views and literals: no arithmetic, not named unless alone


def kernel_label(k, max_ops: int = 6) -> str:
    """`k3 reduction[64,10]: add, reduce_max, exp, reduce_sum` for a fusion-plan `Kernel`: its id,
    kind and domain as the plan dump prints them, then its ops (the anchor's first; views and
    literals only when the kernel has nothing else)."""
    from ..ir.primitives import get_primitive
    ops: list[str] = [k.anchor.op] if k.anchor is not None else []
    for n in k.nodes:
        if n.op not in ops and get_primitive(n.op).kind not in _FREE_KINDS:
            ops.append(n.op)
    if not ops:
        ops = list(dict.fromkeys(n.op for n in k.nodes))
    shown = ", ".join(ops[:max_ops]) + (f" +{len(ops) - max_ops}" if len(ops) > max_ops else "")
    return f"k{k.id} {k.kind}[{','.join(map(str, k.domain))}]: {shown}"


def node_flops(n) -> int:
    """Arithmetic operations of one graph node: 2·M·N·K for matmul, 2·out·(C/groups)·K for conv,
    one per output element of an elementwise op, one per input element of a reduction, else 0."""
    from ..ir.primitives import get_primitive
    kind = get_primitive(n.op).kind
    if kind == "matmul":
        return 2 * n.numel * int(n.inputs[0].shape[-1])
    if kind == "conv":
        return 2 * n.numel * math.prod(n.inputs[1].shape[1:])
    if kind == "elementwise":
        return n.numel
    if kind == "reduction":
        return n.inputs[0].numel
    return 0


def kernel_flops(k) -> int:
    """Arithmetic operations of one fusion-plan kernel (its nodes' `node_flops`)."""
    return sum(node_flops(n) for n in k.nodes)


def _nbytes(nodes) -> int:
    return sum(n.numel * n.dtype.np_dtype.itemsize for n in nodes)


# -- records ------------------------------------------------------------------------------------
@dataclass
class KernelStats:
    """One kernel call site of a program: `calls` timed calls taking `ns` nanoseconds in all."""

    position: int  # its place in the program's call order
    label: str
    flops: int | None  # per call (None: unknown)
    bytes: int  # per call: buffers read and written, each once
    calls: int = 0
    ns: int = 0

    @property
    def mean_ns(self) -> float:
        return self.ns / self.calls if self.calls else 0.0

    @property
    def gflops(self) -> float | None:
        return self.flops * self.calls / self.ns if self.flops and self.ns else None

    @property
    def gbytes(self) -> float | None:
        return self.bytes * self.calls / self.ns if self.bytes and self.ns else None


@dataclass
class ProgramProfile:
    """The timed calls of one compiled program."""

    name: str  # the native program's name (the graph's, on the reference backend)
    graph: str
    backend: str
    threads: int
    kernels: list[KernelStats]
    calls: int = 0
    wall_ns: int = 0  # whole calls, as measured around the native call (or the plan run)

    @property
    def kernel_ns(self) -> int:
        return sum(k.ns for k in self.kernels)

    def table(self) -> str:
        """This program's header line and one row per kernel, slowest first."""
        per_call = self.wall_ns / self.calls / 1e6 if self.calls else 0.0
        kern = self.kernel_ns
        head = (f"program {self.name}  graph {self.graph}  backend {self.backend}  threads {self.threads}  "
                f"calls {self.calls}  {per_call:.4f} ms/call  kernels {kern / max(self.calls, 1) / 1e6:.4f} ms/call "
                f"({100 * kern / self.wall_ns if self.wall_ns else 0.0:.1f}% of the call)")
        width = max([len("kernel")] + [len(k.label) for k in self.kernels])
        lines = [head, f"  {'#':>3}  {'kernel':<{width}}  {'calls':>6}  {'total ms':>10}  {'mean ms':>9}  "
                       f"{'GFLOP/s':>8}  {'GB/s':>8}  {'share':>6}"]
        for k in sorted(self.kernels, key=lambda k: (-k.ns, k.position)):
            gf = f"{k.gflops:8.2f}" if k.gflops is not None else f"{'-':>8}"
            gb = f"{k.gbytes:8.2f}" if k.gbytes is not None else f"{'-':>8}"
            share = 100 * k.ns / self.wall_ns if self.wall_ns else 0.0
            lines.append(f"  {k.position:>3}  {k.label:<{width}}  {k.calls:>6}  {k.ns / 1e6:>10.4f}  "
                         f"{k.mean_ns / 1e6:>9.4f}  {gf}  {gb}  {share:>5.1f}%")
        return "\n".join(lines)


class Profile:
    """The programs timed while it was collecting (`kiln.profiler()` yields one)."""

    def __init__(self) -> None:
        self._programs: dict[int, ProgramProfile] = {}
        self._lock = threading.Lock()

    @property
    def programs(self) -> list[ProgramProfile]:
        """Every program timed, in the order each first ran."""
        return list(self._programs.values())

    def table(self) -> str:
        """The profiler table: per program, its kernels with calls, total and mean time, GFLOP/s,
        GB/s and share of the program's time."""
        if not self._programs:
            return "kiln profile: no compiled program ran while profiling\n"
        return "kiln profile\n" + "\n\n".join(p.table() for p in self.programs) + "\n"

    def _add(self, key: int, make, kernel_ns: Sequence[int], wall_ns: int) -> None:
        with self._lock:
            p = self._programs.get(key)
            if p is None:
                p = self._programs[key] = make()
            p.calls += 1
            p.wall_ns += wall_ns
            for k, ns in zip(p.kernels, kernel_ns):
                k.calls += 1
                k.ns += int(ns)


_process = Profile()  # everything timed in this process: printed at exit under KILN_PROFILE=1
_open: list[Profile] = []  # the profilers whose `with` block is running
_serial = itertools.count()


def process_profile() -> Profile:
    """What this process timed so far (every profiled call, in or out of `kiln.profiler()`)."""
    return _process


@contextlib.contextmanager
def profiler() -> Iterator[Profile]:
    """Time every compiled program run inside the block, kernel by kernel:

        with kiln.profiler() as prof:
            step(x, y)
        print(prof.table())
    """
    prof = Profile()
    _open.append(prof)
    try:
        with config.override(profile=True):
            yield prof
    finally:
        _open.remove(prof)


def _record(ex, make, kernel_ns: Sequence[int], wall_ns: int) -> None:
    key = ex.__dict__.get("_profile_key")
    if key is None:
        key = ex.__dict__.setdefault("_profile_key", next(_serial))
    for prof in [_process, *_open]:
        prof._add(key, make, kernel_ns, wall_ns)


# -- the backends' hooks ----------------------------------------------------------------------
def _native_kernels(ex) -> list[KernelStats]:
    """One row per kernel call of an LLVMExecutable, named after its fusion-plan kernel."""
    prog = ex.program
    funcs = {k.name: k for k in prog.kernels}
    plan_kernels = {k.id: k for k in ex.plan.kernels} if ex.plan is not None else {}
    rows = []
    for pos, (kname, args) in enumerate(prog.calls):
        kf = funcs[kname]
        nbytes = sum(p.numel * p.dtype.np_dtype.itemsize for p in kf.params)
        pk = plan_kernels.get(_plan_kernel_id(kf.source))
        if pk is not None:
            rows.append(KernelStats(pos, kernel_label(pk), kernel_flops(pk), nbytes))
        else:
            rows.append(KernelStats(pos, kname, None, nbytes))
    return rows


def _plan_kernel_id(source: str) -> int | None:
    """The plan kernel a kernel function was lowered from (its source reads `plan kernel N ...`)."""
    words = source.split()
    if len(words) >= 3 and words[:2] == ["plan", "kernel"] and words[2].isdigit():
        return int(words[2])
    return None


def record_native(ex, kernel_ns: Sequence[int], wall_ns: int, threads: int) -> None:
    """Record one timed call of an LLVMExecutable (called by it after its timed build ran)."""
    graph = ex.graph.name if ex.graph is not None else ex.program.name
    _record(ex, lambda: ProgramProfile(ex.program.name, graph, "llvm", threads, _native_kernels(ex)),
            kernel_ns, wall_ns)


def run_reference(ex, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a ReferenceExecutable's graph plan kernel by kernel on the interpreter, timing each."""
    from ..passes.fusion import plan_fusion
    from .plan_runner import run_plan
    plan = ex.__dict__.get("_plan")
    if plan is None:
        plan = ex.__dict__.setdefault("_plan", plan_fusion(ex.graph))
    times: list[int] = []
    t0 = now_ns()
    outs = run_plan(plan, inputs, times=times, clock=now_ns)
    wall = now_ns() - t0

    def make() -> ProgramProfile:
        rows = [KernelStats(pos, kernel_label(k), kernel_flops(k), _nbytes(k.inputs) + _nbytes(k.outputs))
                for pos, k in enumerate(plan.kernels)]
        return ProgramProfile(ex.graph.name, ex.graph.name, "reference", 1, rows)
    _record(ex, make, times, wall)
    return outs


# -- KILN_PROFILE=1: the table at exit -------------------------------------------------------
def report_at_exit(stream=None) -> None:
    """With the `profile` setting on, print the process's table to `stream` (stderr) and, with
    `KILN_DUMP` set, write it as the dump's `profile` stage."""
    if not config.get().profile or not _process.programs:
        return
    text = _process.table()
    print(text, file=stream if stream is not None else sys.stderr, end="")
    from ..passes.manager import dump_writer
    writer = dump_writer()
    if writer is not None:
        writer.write("profile", text)


atexit.register(report_at_exit)

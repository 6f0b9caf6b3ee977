"""The LLVM backend: a graph's fusion plan lowered to kernel IR, rendered to LLVM IR,
optimized for the host CPU and JIT-compiled (llvmlite's MCJIT). A compiled program is one
native entry point: one foreign call runs every kernel over buffers the executor owns.
"""
from __future__ import annotations

import ctypes
import functools
import math
import threading
from typing import Sequence

import numpy as np

from ..codegen.lower import LoweredProgram, lower_plan
from ..codegen.schedule import schedule_parallel
from ..ir.graph import Graph
from ..passes.fusion import FusionPlan, plan_fusion
from . import allocator
from .native_pool import PARALLEL_MIN_COST, native_threads, pool

_lock = threading.Lock()
_state: dict = {}


def _llvm():
    """Initialise LLVM once; returns (the llvmlite binding module, the host's target machine)."""
    with _lock:
        if not _state:
            import llvmlite.binding as llvm
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _state.update(llvm=llvm, tm=_target_machine())
        return _state["llvm"], _state["tm"]


def _target_machine():
    import llvmlite.binding as llvm
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3, jit=True)


def host_description() -> str:
    llvm, tm = _llvm()
    return f"{tm.triple} cpu={llvm.get_host_cpu_name()} features={llvm.get_host_cpu_features().flatten()}"


def optimize_ir(text: str):
    """Parse LLVM IR text, verify and optimize it at O3 for the host. Returns the module."""
    llvm, tm = _llvm()
    mod = llvm.parse_assembly(text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # full unrolling and interleaving made modules 8x larger and compiles 7x slower (0.22 s against
    # 0.03 s for a softmax) for little gain on memory-bound loops
    pto.loop_unrolling = False
    pto.loop_interleaving = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def _has_avx512() -> bool:
    llvm, _ = _llvm()
    return "+avx512f" in llvm.get_host_cpu_features().flatten()


class NativeError(RuntimeError):
    pass


_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_void_p)


class LLVMExecutable:
    """A compiled program: `run(inputs) -> outputs` over numpy arrays."""

    def __init__(self, graph: Graph, plan: FusionPlan, program: LoweredProgram, render, obj: bytes,
                 entry_name: str, strict_fp: bool, from_cache: bool = False):
        self.graph = graph
        self.plan = plan
        self.program = program
        self._render = render  # () -> the program's LLVM IR (rendered on demand after a cache hit)
        self.strict_fp = strict_fp
        self.from_cache = from_cache
        self._llvm_opt: str | None = None
        llvm, _ = _llvm()
        # one engine per program (it owns its target machine): its machine code is freed with the executable
        self._engine = engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine())
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        addr = engine.get_function_address(entry_name)
        if not addr:
            raise NativeError(f"LLVM backend: entry point {entry_name} was not found after JIT")
        self._fn = _ENTRY(addr)
        bufs = program.buffers
        self._index = {b.name: k for k, b in enumerate(bufs)}
        self._inputs = [self._index[n] for n in program.inputs]
        self._outputs = [self._index[n] for n in program.outputs]
        self._specs = [(b.shape, b.dtype.np_dtype) for b in bufs]
        self._roles = [b.role for b in bufs]
        self._consts = {k: np.ascontiguousarray(b.data) for k, b in enumerate(bufs) if b.role == "const"}
        self._ptrs = (ctypes.c_void_p * len(bufs))()
        self._status = np.zeros(4, np.int64)
        self._status_ptr = self._status.ctypes.data
        self._ptrs_addr = ctypes.addressof(self._ptrs)
        self._call_lock = threading.Lock()
        # threads only when most of the program's work is in parallel loops: every kernel of a
        # threaded run ends at a barrier, and a program of many small serial kernels (an LSTM step:
        # 311 kernels, 3 parallel) spent 1 s a call waiting at them for a worker that was not running
        par = sum(k.cost for k in program.kernels if any(ls.parallel for ls in k.schedule.loops.values()))
        self.parallel = par * 2 >= sum(k.cost for k in program.kernels) and par > 0
        self._input_specs = [self._specs[k] for k in self._inputs]
        self._input_strides = [b.strides for b in (self.program.buffers[k] for k in self._inputs)]
        self._root, self._variants = self, {}
        self._template = [self._consts.get(k) for k in range(len(bufs))]
        for k, arr in self._temps(graph, plan).items():
            self._template[k] = arr
        # per call: outputs (and any temp the memory plan did not place); large ones from the caching allocator
        self._fresh = [(k, shape, dtype, allocator.empty if math.prod(shape) * dtype.itemsize >= allocator.MIN_BYTES
                        else np.empty) for k, (shape, dtype) in enumerate(self._specs)
                       if self._roles[k] == "output" or (self._roles[k] == "temp" and self._template[k] is None)]
        # buffers kept across calls (literals, placed intermediates, scratch) have fixed addresses
        for k, arr in enumerate(self._template):
            if arr is not None:
                self._ptrs[k] = arr.__array_interface__["data"][0]
        self._per_call = [k for k, arr in enumerate(self._template) if arr is None]

    def _temps(self, graph: Graph | None, plan: FusionPlan | None) -> dict[int, np.ndarray]:
        """Intermediate buffers, allocated once and kept across calls, placed by the memory
        plan: values that are never alive at once share bytes. (No in-place reuse: a kernel's
        buffers are `noalias`.) The plan is verified under KILN_VERIFY."""
        if graph is None or plan is None:
            return {k: np.empty(b.shape, b.dtype.np_dtype) for k, b in enumerate(self.program.buffers)
                    if b.role == "scratch"}
        from .. import config
        from ..passes.memory import plan_memory
        mem = plan_memory(graph, plan, inplace=False, verify=config.get().verify)
        arenas: dict[int, np.ndarray] = {}
        sizes = {buf.id: buf.size for buf in mem.buffers}
        out = {}
        for k, b in enumerate(self.program.buffers):
            if b.role == "scratch":
                out[k] = np.empty(b.shape, b.dtype.np_dtype)
                continue
            if b.role != "temp" or b.value not in mem.assignment:
                continue
            bid = mem.assignment[b.value]
            if bid not in arenas:
                arenas[bid] = np.empty(max(sizes[bid], 1), np.uint8)
            nbytes = b.numel * b.dtype.itemsize
            out[k] = arenas[bid][:nbytes].view(b.dtype.np_dtype).reshape(b.shape)
        return out

    @property
    def llvm_ir(self) -> str:
        return self._render()

    def stages(self, stage: str) -> str:
        """This program's text at `stage`: plan | kernels | llvm | llvm-opt | asm."""
        if stage == "plan":
            return str(self.plan)
        if stage == "kernels":
            return self.program.as_text()
        if stage == "llvm":
            return self.llvm_ir
        if stage == "llvm-opt":
            if self._llvm_opt is None:
                self._llvm_opt = str(optimize_ir(self.llvm_ir))
            return self._llvm_opt
        if stage == "asm":
            _, tm = _llvm()
            return tm.emit_assembly(optimize_ir(self.llvm_ir))
        raise ValueError(f"unknown stage {stage!r}")

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self._inputs):
            raise ValueError(f"program {self.program.name} takes {len(self._inputs)} inputs, got {len(inputs)}")
        arrays = list(self._template)
        ptrs = self._ptrs
        for k, arr, (shape, dtype), strides in zip(self._inputs, inputs, self._input_specs, self._input_strides):
            if type(arr) is not np.ndarray or arr.shape != shape or arr.dtype != dtype:
                arr = self._checked_input(k, arr)
            if (not arr.flags.c_contiguous) if strides is None else (element_strides(arr) != strides):
                return self._strided_variant(inputs).run(inputs)
            arrays[k] = arr
        for k, shape, dtype, alloc in self._fresh:
            arrays[k] = alloc(shape, dtype)
        with self._call_lock:
            for k in self._per_call:
                ptrs[k] = arrays[k].__array_interface__["data"][0]
            n = native_threads() if self.parallel else 1
            if n > 1:
                rc = pool().run(self._fn, (self._ptrs_addr, self._status_ptr), n)
            else:
                rc = self._fn(self._ptrs_addr, self._status_ptr, 0, 1, 0)
            if rc:
                value = int(self._status[1])
                self._status[:] = 0
        if rc:
            check = self.program.checks[rc - 1]
            raise IndexError(check.message(value))
        return [arrays[k] for k in self._outputs]

    def _checked_input(self, k: int, arr) -> np.ndarray:
        arr = np.asarray(arr)
        shape, dtype = self._specs[k]
        if arr.shape != shape or arr.dtype != dtype:
            b = self.program.buffers[k]
            raise ValueError(f"input {b.name} expects {b.dtype.name}{list(b.shape)}, got {arr.dtype}{list(arr.shape)}")
        return arr if element_strides(arr) is not None else np.ascontiguousarray(arr)

    def _strided_variant(self, inputs) -> "LLVMExecutable":
        """The program compiled for these inputs' strides: non-contiguous views (a transpose, a
        strided slice, a broadcast) are read in place, through their strides, not copied."""
        root = self._root
        key = tuple(None if a.flags.c_contiguous else element_strides(a) for a in map(np.asarray, inputs))
        ex = root._variants.get(key)
        if ex is None:
            if root.graph is None or root.plan is None:
                raise ValueError(f"program {self.program.name} takes C-contiguous inputs only")
            ex = compile_graph(root.graph, root.strict_fp, root.plan, input_strides=key)
            ex._root = root
            root._variants[key] = ex
        return ex


def element_strides(arr: np.ndarray) -> tuple[int, ...] | None:
    """`arr`'s strides in elements (None when a stride is not a whole number of elements)."""
    size = arr.itemsize
    if any(s % size for s in arr.strides):
        return None
    return tuple(s // size for s in arr.strides)


def compile_graph(graph: Graph, strict_fp: bool = False, plan: FusionPlan | None = None,
                  input_strides=None) -> LLVMExecutable:
    """Compile `graph` for the host CPU (`input_strides`: per graph input, the element strides
    it is read through, or None for C-contiguous)."""
    plan = plan if plan is not None else plan_fusion(graph)
    _llvm()
    name = f"kiln_{_sanitize(graph.name)}"  # each program has its own engine: names need not be unique
    program = lower_plan(plan, name, input_strides)
    for k in program.kernels:
        schedule_parallel(k, PARALLEL_MIN_COST)
    return build_program(program, graph, plan, strict_fp)


def build_program(program: LoweredProgram, graph: Graph | None = None, plan: FusionPlan | None = None,
                  strict_fp: bool = False) -> "LLVMExecutable":
    """Decompose, render, optimize and JIT a lowered program (through the disk cache).

    Kernels with the same body (an LSTM's time steps, say) are compiled once and called on
    each one's buffers. The cache key is the kernel IR of the distinct kernels and the call
    sequence, so a cache hit skips rendering and LLVM altogether."""
    from ..codegen.decompose import decompose
    from ..codegen.kir_printer import format_kernel
    from ..codegen.llvm_render import render_program
    name = program.name
    distinct: dict[str, object] = {}
    alias: dict[str, str] = {}
    texts = []
    for k in program.kernels:
        body = format_kernel(k).replace(k.name, "@kernel", 1)
        if body not in distinct:
            distinct[body] = k
            texts.append(body)
        alias[k.name] = distinct[body].name
    index = {b.name: k for k, b in enumerate(program.buffers)}
    calls = [(alias[kname], [index[a] for a in args]) for kname, args in program.calls]
    pvw = 512 if _has_avx512() else None
    key = cache_key("\n".join(texts) + f"\ncalls {calls}\nstrict_fp={strict_fp} prefer_vector_width={pvw}\n"
                    + name)
    rendered: list[str] = []

    def render() -> str:
        if not rendered:
            kernels = [decompose(k) for k in distinct.values()]
            rendered.append(render_program(name, kernels, calls, strict_fp=strict_fp, prefer_vector_width=pvw))
        return rendered[0]

    cache = disk_cache()
    obj = cache.get(key) if cache is not None else None
    hit = obj is not None
    if obj is None:
        _, tm = _llvm()
        module = optimize_ir(render())
        with _lock:
            obj = tm.emit_object(module)
        if cache is not None:
            cache.put(key, obj)
    return LLVMExecutable(graph, plan, program, render, obj, name, strict_fp, from_cache=hit)


def run_kernel_native(kernel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Compile one kernel-IR function and run it: `inputs` for its "r" params in order; returns
    its "w" params (shaped flat). For tests of kernel IR and vector math on native code."""
    from ..codegen.lower import ProgramBuffer
    bufs = [ProgramBuffer(p.name, p.dtype, (p.numel,), "input" if p.mode == "r" else "output") for p in kernel.params]
    prog = LoweredProgram(kernel.name + "_main", [kernel], bufs, [(kernel.name, [b.name for b in bufs])],
                          [b.name for b in bufs if b.role == "input"], [b.name for b in bufs if b.role == "output"])
    return build_program(prog).run(inputs)


def cache_key(program_text: str) -> str:
    """What compiled object code depends on: the program, the target and the versions."""
    import llvmlite
    from .. import __version__
    llvm, _ = _llvm()
    return "\n".join([f"kiln {__version__}", f"llvmlite {llvmlite.__version__} llvm {llvm.llvm_version_info}",
                      f"codegen {codegen_fingerprint()}", host_description(), "O3 vectorize", program_text])


@functools.lru_cache(maxsize=None)
def codegen_fingerprint() -> str:
    """A hash of kiln/codegen's source: the kernel IR text does not change when the rendering
    of it does (a fixed cast), so cached object code of an older renderer must not be loaded."""
    import hashlib
    from pathlib import Path
    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.parent.joinpath("codegen").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


_caches: dict = {}


def disk_cache():
    """The object-code cache for the current settings (None when KILN_CACHE=0)."""
    from .. import config
    from .disk_cache import DiskCache
    cfg = config.get()
    if not cfg.cache:
        return None
    d = cfg.cache_dir
    if d not in _caches:
        _caches[d] = DiskCache(d)
    return _caches[d]


def _sanitize(s: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in s)[:40]

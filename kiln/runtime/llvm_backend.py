"""The LLVM backend: a graph's fusion plan lowered to kernel IR, rendered to LLVM IR,
optimized for the host CPU and JIT-compiled (llvmlite's MCJIT). A compiled program is one
native entry point: one foreign call runs every kernel over buffers the executor owns.
"""
from __future__ import annotations

import ctypes
import functools
import math
import struct
import sys
import threading
import warnings
from typing import Sequence

import numpy as np

from .. import config as _config
from ..codegen.lower import LoweredProgram, lower_plan
from ..codegen.schedule import schedule_parallel
from ..ir.graph import Graph
from ..passes.fusion import FusionPlan, plan_fusion
from . import allocator
from .native_pool import PARALLEL_MIN_COST, native_threads, pool
from .profiler import CLOCK  # the clock profiled builds stamp with

_lock = threading.Lock()
_state: dict = {}


def _llvm():
    """Initialise LLVM once; returns (the llvmlite binding module, the host's target machine)."""
    with _lock:
        if not _state:
            import llvmlite.binding as llvm
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()  # the barrier's futex calls are inline assembly
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


def _data_offset() -> int | None:
    """Where a numpy array object keeps its data pointer: `PyArrayObject_fields.data`, the first
    field after the object header (numpy's C ABI, what `PyArray_DATA` reads), checked here on a
    probe array; None if the check fails (then `__array_interface__` is read instead)."""
    at = object.__basicsize__  # sizeof(PyObject): the header, larger on free-threaded builds
    for probe in (np.empty(3, np.float32), np.empty((2, 5), np.int64)[:, 1:]):
        if ctypes.c_void_p.from_address(id(probe) + at).value != probe.__array_interface__["data"][0]:
            return None
    return at


_DATA_AT = _data_offset()
_void_p_at = ctypes.c_void_p.from_address


def data_pointer(arr: np.ndarray) -> int:
    """The address of `arr`'s first element (a numpy array: 0.2 us; `__array_interface__` builds a
    dict of every attribute, 1 us, which a call of a program with 40 buffers paid 40 times)."""
    if _DATA_AT is None:
        return arr.__array_interface__["data"][0]
    return ctypes.c_void_p.from_address(id(arr) + _DATA_AT).value or 0


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
        self._engine, self._fn = _jit(obj, entry_name)
        self._profiled = None  # (engine, entry) of the timed build, made on the first profiled call
        bufs = program.buffers
        self._index = {b.name: k for k, b in enumerate(bufs)}
        self._inputs = [self._index[n] for n in program.inputs]
        self._outputs = [self._index[n] for n in program.outputs]
        self._specs = [(b.shape, b.dtype.np_dtype) for b in bufs]
        self._roles = [b.role for b in bufs]
        self._consts = {k: np.ascontiguousarray(b.data) for k, b in enumerate(bufs) if b.role == "const"}
        # one slot past the buffers: the timestamps array the profiled entry fills (kiln.profiler)
        self._ptrs = (ctypes.c_void_p * (len(bufs) + 1))()
        self._timestamps = np.zeros(len(program.calls) + 1, np.int64)
        self._ptrs[len(bufs)] = self._timestamps.ctypes.data
        self._status = np.zeros(4, np.int64)
        self._status_ptr = self._status.ctypes.data
        self._ptrs_addr = ctypes.addressof(self._ptrs)
        self._call_lock = threading.Lock()
        # threads whenever a kernel has a parallel loop: only those kernels meet at barriers, the
        # serial ones run inline on thread 0 (`render_program`), so the small kernels around a big
        # product cost nothing extra. (When every kernel ended at a barrier, a program of many small
        # serial kernels, an LSTM step of 311 kernels and 3 parallel, spent 1 s a call at them.)
        self.parallel = any(ls.parallel for k in program.kernels for ls in k.schedule.loops.values())
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
        # per input: (buffer, shape, dtype, strides or None for C-contiguous), zipped once
        self._input_plan = list(zip(self._inputs, [s for s, _ in self._input_specs],
                                    [d for _, d in self._input_specs], self._input_strides))
        # graph outputs in memory of their own, allocated for each call (no input passed through,
        # no buffer returned twice): a caller may keep them without a copy
        self.owned_outputs = frozenset(j for j, k in enumerate(self._outputs)
                                       if self._roles[k] == "output" and self._outputs.count(k) == 1)

    def _temps(self, graph: Graph | None, plan: FusionPlan | None) -> dict[int, np.ndarray]:
        """Intermediate and scratch buffers, allocated once and kept across calls: views into one
        workspace laid out by `workspace_layout` (the rule the shared library's runtime uses too),
        so values that are never alive at once share bytes. (No in-place reuse: a kernel's buffers
        are `noalias`.) A temp the memory plan did not place is left out: it is allocated per call."""
        offsets, size = workspace_layout(graph, plan, self.program, unplaced_temps=False)
        raw = np.empty(size + WORKSPACE_ALIGN, np.uint8)
        start = -raw.ctypes.data % WORKSPACE_ALIGN
        workspace = raw[start:start + size]
        out = {}
        for k, at in offsets.items():
            b = self.program.buffers[k]
            nbytes = b.numel * b.dtype.itemsize
            out[k] = workspace[at:at + nbytes].view(b.dtype.np_dtype).reshape(b.shape)
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
        arrays = self._template.copy()
        ptrs = self._ptrs
        for (k, shape, dtype, strides), arr in zip(self._input_plan, inputs):
            if arr.__class__ is not np.ndarray or arr.shape != shape or arr.dtype != dtype:
                arr = self._checked_input(k, arr)
            if (not arr.flags.c_contiguous) if strides is None else (element_strides(arr) != strides):
                return self._strided_variant(inputs).run(inputs)
            arrays[k] = arr
        for k, shape, dtype, alloc in self._fresh:
            arrays[k] = alloc(shape, dtype)
        with self._call_lock:
            if _DATA_AT is not None:  # data_pointer(), inlined: this loop runs per buffer per call
                at, read = _DATA_AT, _void_p_at
                for k in self._per_call:
                    ptrs[k] = read(id(arrays[k]) + at).value
            else:
                for k in self._per_call:
                    ptrs[k] = data_pointer(arrays[k])
            n = native_threads() if self.parallel else 1
            if _config.get().profile:
                rc = self._run_profiled(n)
            elif n > 1:
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

    def _run_profiled(self, n: int) -> int:
        """One call of the timed build of this program (the same buffers, a timestamp after each
        kernel call), recorded in kiln's profiler."""
        from . import profiler
        if self._profiled is None:
            obj, _, _ = _object_code(self.program, self.strict_fp, profile=True)
            self._profiled = _jit(obj, self.program.name)
        fn = self._profiled[1]
        t0 = profiler.now_ns()  # the clock of the native stamps
        if n > 1:
            rc = pool().run(fn, (self._ptrs_addr, self._status_ptr), n)
        else:
            rc = fn(self._ptrs_addr, self._status_ptr, 0, 1, 0)
        wall = profiler.now_ns() - t0
        if not rc:
            profiler.record_native(self, np.diff(self._timestamps).tolist(), wall, n)
        return rc

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
    obj, hit, render = _object_code(program, strict_fp)
    return LLVMExecutable(graph, plan, program, render, obj, program.name, strict_fp, from_cache=hit)


def _object_code(program: LoweredProgram, strict_fp: bool, profile: bool = False):
    """(object code, whether it came from the disk cache, () -> its LLVM IR text) of a lowered
    program; `profile`: the timed build, whose entry fills the timestamps array that follows the
    program's buffers in the pointer array (see `render_program`)."""
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
    timestamps = len(program.buffers) if profile else None
    if profile:
        _resolve_clock()
    key = cache_key("\n".join(texts) + f"\ncalls {calls}\nstrict_fp={strict_fp} prefer_vector_width={pvw}\n"
                    + (f"profile timestamps={timestamps} clock={CLOCK}\n" if profile else "") + name)
    rendered: list[str] = []

    def render() -> str:
        if not rendered:
            kernels = [decompose(k) for k in distinct.values()]
            rendered.append(render_program(name, kernels, calls, strict_fp=strict_fp, prefer_vector_width=pvw,
                                           timestamps=timestamps, clock=CLOCK))
        return rendered[0]

    cache = disk_cache()
    obj = cache.get(key) if cache is not None else None
    if obj is not None:
        problem = elf_object_problem(obj)
        if problem is not None:  # the entry's checksum held, but LLVM would crash loading this
            from .disk_cache import KilnCacheWarning
            warnings.warn(f"kiln compile cache: entry {cache.path(key)} holds no loadable object code ({problem}); "
                          "recompiling it", KilnCacheWarning, stacklevel=2)
            obj = None
    hit = obj is not None
    if obj is None:
        _, tm = _llvm()
        module = optimize_ir(render())
        with _lock:
            obj = tm.emit_object(module)
        if cache is not None:
            cache.put(key, obj)
    return obj, hit, render


def _jit(obj: bytes, entry_name: str):
    """(engine, entry) for object code: one engine per program (it owns its target machine), so
    its machine code is freed with the executable."""
    llvm, _ = _llvm()
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine())
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    addr = engine.get_function_address(entry_name)
    if not addr:
        raise NativeError(f"LLVM backend: entry point {entry_name} was not found after JIT")
    return engine, _ENTRY(addr)


def _jit_functions(llvm_ir: str, entries):
    """(engine, [ctypes function per (name, CFUNCTYPE) of `entries`]) for a module of runtime
    helpers (the thread pool's native loop): optimized for the host and JIT-compiled; keep the
    engine alive as long as the functions are called."""
    _, tm = _llvm()
    module = optimize_ir(llvm_ir)
    with _lock:
        obj = tm.emit_object(module)
    engine, _ = _jit(obj, entries[0][0])
    fns = []
    for name, proto in entries:
        addr = engine.get_function_address(name)
        if not addr:
            raise NativeError(f"LLVM backend: {name} was not found after JIT")
        fns.append(proto(addr))
    return engine, fns


def _resolve_clock() -> None:
    """Make libc's `clock_gettime` (called by profiled builds) known to the JIT's linker."""
    _llvm()
    with _lock:
        if "clock" not in _state:
            import llvmlite.binding as llvm
            libc = ctypes.CDLL(None)
            llvm.add_symbol("clock_gettime", ctypes.cast(libc.clock_gettime, ctypes.c_void_p).value)
            _state["clock"] = True


def run_kernel_native(kernel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Compile one kernel-IR function and run it: `inputs` for its "r" params in order; returns
    its "w" params (shaped flat). For tests of kernel IR and vector math on native code."""
    from ..codegen.lower import ProgramBuffer
    bufs = [ProgramBuffer(p.name, p.dtype, (p.numel,), "input" if p.mode == "r" else "output") for p in kernel.params]
    prog = LoweredProgram(kernel.name + "_main", [kernel], bufs, [(kernel.name, [b.name for b in bufs])],
                          [b.name for b in bufs if b.role == "input"], [b.name for b in bufs if b.role == "output"])
    return build_program(prog).run(inputs)


def elf_object_problem(obj: bytes) -> str | None:
    """What makes `obj` unloadable as a 64-bit little-endian ELF relocatable object for this host
    (LLVM's loader trusts its input and may crash on a damaged one), or None if it looks whole:
    the header, and every section inside the file. Objects of other formats (not Linux) pass."""
    if sys.platform != "linux":
        return None
    if len(obj) < 64 or obj[:4] != b"\x7fELF":
        return "not an ELF object"
    if obj[4] != 2 or obj[5] != 1:
        return "not a 64-bit little-endian ELF object"
    e_type, e_machine = struct.unpack_from("<HH", obj, 16)
    shoff, = struct.unpack_from("<Q", obj, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 58)
    if e_type != 1:  # ET_REL
        return f"ELF type {e_type}, not a relocatable object"
    if e_machine != _host_elf_machine():
        return f"ELF machine {e_machine}, not this host's"
    if shentsize != 64 or shnum == 0 or shstrndx >= shnum or shoff + shnum * 64 > len(obj):
        return "truncated or bad section header table"
    for k in range(shnum):
        sh_type, = struct.unpack_from("<I", obj, shoff + 64 * k + 4)
        offset, size = struct.unpack_from("<QQ", obj, shoff + 64 * k + 24)
        if sh_type != 8 and offset + size > len(obj):  # SHT_NOBITS occupies no file space
            return f"section {k} lies outside the file"
    return None


@functools.lru_cache(maxsize=None)
def _host_elf_machine() -> int:
    """The e_machine of the objects LLVM emits for this host (from a tiny module)."""
    llvm, tm = _llvm()
    mod = llvm.parse_assembly(f'target triple = "{llvm.get_process_triple()}"\ndefine void @f() {{ ret void }}')
    with _lock:
        blob = tm.emit_object(mod)
    return struct.unpack_from("<H", blob, 18)[0]


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


# ---- ahead of time: the program as position-independent object code, for a shared library ----------------

class NativeObject:
    """A program compiled ahead of time: relocatable object code with the entry point `entry`
    (same signature and `tid/n` contract as the JIT's), and the memory layout a runtime needs:
    every temp and scratch buffer at a byte offset in one workspace, temps that are never alive
    at once sharing bytes as the memory plan places them."""

    def __init__(self, obj: bytes, entry: str, program: LoweredProgram, workspace: dict[int, int],
                 workspace_bytes: int, parallel: bool):
        self.obj = obj
        self.entry = entry
        self.program = program
        self.workspace = workspace  # program buffer index -> byte offset in the workspace
        self.workspace_bytes = workspace_bytes
        self.parallel = parallel  # whether threads pay off (the executor's rule)


WORKSPACE_ALIGN = 64


def workspace_layout(graph: Graph | None, plan: FusionPlan | None, program: LoweredProgram, *,
                     unplaced_temps: bool = True) -> tuple[dict[int, int], int]:
    """Byte offsets in one workspace (each `WORKSPACE_ALIGN`-aligned) for `program`'s temp and scratch
    buffers, and the workspace's size: each memory-plan arena once (the values it holds share it),
    scratch each on its own, and temps the plan did not place on their own (or, with
    `unplaced_temps=False`, left out: the JIT allocates those per call). The one placement rule of
    the JIT (`LLVMExecutable._temps`) and the shared library; without a graph and plan no temp is
    placed. The plan is verified under KILN_VERIFY."""
    assignment: dict = {}
    sizes: dict[int, int] = {}
    if graph is not None and plan is not None:
        from .. import config
        from ..passes.memory import plan_memory
        mem = plan_memory(graph, plan, inplace=False, verify=config.get().verify)
        assignment = mem.assignment
        sizes = {buf.id: buf.size for buf in mem.buffers}
    arena_at: dict[int, int] = {}
    offsets: dict[int, int] = {}
    end = 0

    def take(nbytes: int) -> int:
        nonlocal end
        at = end
        end += -(-max(nbytes, 1) // WORKSPACE_ALIGN) * WORKSPACE_ALIGN
        return at

    for k, b in enumerate(program.buffers):
        if b.role == "temp" and b.value in assignment:
            bid = assignment[b.value]
            if bid not in arena_at:
                arena_at[bid] = take(sizes[bid])
            offsets[k] = arena_at[bid]
        elif b.role == "scratch" or (b.role == "temp" and unplaced_temps):
            offsets[k] = take(b.numel * b.dtype.itemsize)
    return offsets, end


def _aot_target_machine():
    """The host's target machine for code linked into a shared library (position independent)."""
    import llvmlite.binding as llvm
    _llvm()
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3, reloc="pic",
        codemodel="default", jit=False)


def compile_object(graph: Graph, strict_fp: bool = False) -> NativeObject:
    """`graph` compiled for the host CPU as the JIT compiles it (same kernels, same entry point),
    emitted as position-independent object code with its workspace layout."""
    # The JIT build is reused on purpose, as the simplest sound way: compile_graph is the one path
    # from a graph to the fusion plan, the scheduled lowered program and its LLVM IR, so this object
    # code cannot drift from what the JIT runs. The cost is a JIT build whose machine code (from the
    # on-disk cache when present) and workspace go unused; `ex.llvm_ir` renders the IR on demand,
    # and it is emitted again here, position independent.
    ex = compile_graph(graph, strict_fp)
    module = optimize_ir(ex.llvm_ir)
    tm = _aot_target_machine()
    with _lock:
        obj = tm.emit_object(module)
    workspace, size = workspace_layout(graph, ex.plan, ex.program)
    return NativeObject(obj, ex.program.name, ex.program, workspace, size, ex.parallel)

"""Run kiln's emitted CUDA C on the CPU: g++ compiles it as C++17 (NVRTC's dialect) with
`cuda_host.h` (a block's threads as fibers that take turns between barriers, shuffles through
memory), and a program's launches run in
order over numpy buffers, exactly as the CUDA backend would issue them on a stream. The tests
use it directly; the CUDA simulator (`kiln.runtime.cuda_sim`) launches device kernels with it.

    progs = [build_cuda_program(lower_plan(plan, "kiln_f"))]
    lib = HarnessLibrary(progs)           # one g++ compile for all of them
    outs = lib.run(progs[0], [x, y])      # numpy in, numpy out; a failed check raises IndexError

Grids are shrunk (at most `max_grid` blocks of at most `max_block` threads) so that the
grid-stride loops, the multi-warp combination and the vector/tail split all run on small
shapes; kernels read their launch shape from gridDim/blockDim, so results do not change.
Compiled libraries are kept in kiln's disk cache (`KILN_CACHE_DIR`), keyed by the C++ text and
the compiler, so a second run of the same kernels does not call g++.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ...codegen.cuda_render import PRELUDE, storage_ctype
from ...runtime.cuda_backend import CudaProgram, outputs_from_status

HEADER = Path(__file__).with_name("cuda_host.h")
_LAUNCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                           ctypes.c_void_p)


@functools.cache
def compiler() -> str | None:
    """g++ on PATH, or None (looked up once per process: the simulator asks before every launch;
    `compiler.cache_clear()` looks again)."""
    return shutil.which("g++")


class _Worker:
    """The daemon thread that runs every harness launch of the process, one at a time (as one
    stream would), so that a launch that never finishes can be given up on after a timeout. A
    worker stuck in such a launch is abandoned and the next launch starts a fresh one."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True, name="kiln-cuda-harness").start()

    def _loop(self) -> None:
        while True:
            fn, args, done, result = self.jobs.get()
            try:
                result.append(fn(*args))
            except BaseException as e:  # pragma: no cover - ctypes raises nothing here
                result.append(e)
            finally:
                done.set()


_worker: _Worker | None = None
_worker_lock = threading.Lock()


def _run_on_worker(fn, args, timeout_s: float):
    """fn(*args) on the worker thread: (finished, its result or exception)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = _Worker()
        w = _worker
    done, result = threading.Event(), []
    w.jobs.put((fn, args, done, result))
    if not done.wait(timeout_s):
        with _worker_lock:
            if _worker is w:
                _worker = None
        return False, None
    return True, result[0]


def _wrappers(progs: Sequence[CudaProgram]) -> str:
    out = []
    done = set()
    for p in progs:
        for ck in p.kernels:
            for st in ck.stages:
                if st.func in done:
                    continue
                done.add(st.func)
                args = [f"({'const ' if q.mode == 'r' else ''}{storage_ctype(q.dtype)}*)bufs[{i}]"
                        for i, q in enumerate(ck.params)]
                call = f"{st.func}({', '.join(args + ['status'])})"
                out.append(f'extern "C" int launch_{st.func}(void** bufs, long long* status, int grid, int block, '
                           f"int* info) {{ return kiln_host_run(grid, block, [&] {{ {call}; }}, info); }}")
    return "\n".join(out)


class HarnessLibrary:
    """The CUDA C of several programs compiled (once) into one shared library. `defines` are
    macros set before `cuda_host.h` (KILN_HOST_UCONTEXT: ucontext fibers on x86-64 too)."""

    def __init__(self, progs: Sequence[CudaProgram], max_grid: int = 3, max_block: int = 64,
                 timeout_s: float = 120.0, defines: Sequence[str] = ()):
        # every program's source starts with the same prelude: keep it once
        body = "\n".join(p.source[len(PRELUDE):] if p.source.startswith(PRELUDE) else p.source for p in progs)
        macros = "".join(f"#define {d} 1\n" for d in defines)
        text = f'{macros}#include "{HEADER}"\n{PRELUDE}\n{body}\n{_wrappers(progs)}\n'
        self.source = text
        self.max_grid, self.max_block, self.timeout_s = max_grid, max_block, timeout_s
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        self._dir = Path(tempfile.mkdtemp(prefix="kiln-cuda-harness-"))
        atexit.register(shutil.rmtree, self._dir, True)
        lib = self._dir / f"h{digest}.so"
        _build(text, lib)
        self._lib = ctypes.CDLL(str(lib))
        self._fns: dict[str, object] = {}

    def _fn(self, func: str):
        f = self._fns.get(func)
        if f is None:
            f = self._fns[func] = _LAUNCH(("launch_" + func, self._lib))
        return f

    def launch_pointers(self, func: str, pointers: Sequence[int], status_ptr: int, grid: int, block: int,
                        mode: str = "threads") -> None:
        """One launch over raw host addresses (the simulator's device memory), grid shrunk as in `run`."""
        ptrs = (ctypes.c_void_p * max(len(pointers), 1))(*pointers)
        grid = min(grid, self.max_grid)
        # a gemm stage's threads split its tile by a fixed layout: it runs with the block it asks for
        block = 1 if mode == "serial" else block if mode == "gemm" else min(block, self.max_block)
        self._launch(func, ptrs, status_ptr, grid, block)

    def run(self, prog: CudaProgram, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        program = prog.program
        bufs = []
        for b in program.buffers:
            if b.role == "const":
                bufs.append(np.ascontiguousarray(b.data, b.dtype.np_dtype).reshape(b.shape))
            else:
                # garbage, not zeros, in outputs and intermediates: a kernel that skips an element shows
                bufs.append(_garbage(b.shape, b.dtype.np_dtype))
        for k, arr in zip((program.buffers.index(program.buffer(n)) for n in program.inputs), inputs):
            bufs[k] = np.ascontiguousarray(arr, program.buffers[k].dtype.np_dtype)
        status = np.zeros(4, np.int64)
        for ln in prog.launches:
            ptrs = (ctypes.c_void_p * len(ln.args))(*[bufs[a].ctypes.data for a in ln.args])
            grid = min(ln.grid, self.max_grid)
            # a gemm stage's threads split its tile by a fixed layout: it runs with the block it asks for
            block = 1 if ln.mode == "serial" else ln.block if ln.mode == "gemm" else min(ln.block, self.max_block)
            self._launch(ln.func, ptrs, status.ctypes.data, grid, block)
        outputs_from_status(program, status)
        names = {b.name: k for k, b in enumerate(program.buffers)}
        return [bufs[names[n]] for n in program.outputs]

    def _launch(self, func: str, ptrs, status_ptr: int, grid: int, block: int) -> None:
        """Run one launch on the harness's worker thread, so that a kernel that never finishes (a
        loop that does not end) fails the test, naming the kernel, instead of hanging the suite. A
        thread that skips a barrier the others wait at is caught by the fiber scheduler itself
        (`cuda_host.h`)."""
        info = (ctypes.c_int * 3)()
        finished, rc = _run_on_worker(self._fn(func), (ctypes.addressof(ptrs), status_ptr, grid, block, info),
                                      self.timeout_s)
        if not finished:
            raise RuntimeError(f"CUDA harness: {func} (grid {grid}, block {block}) did not finish in "
                               f"{self.timeout_s} s: a loop that does not end?")
        if isinstance(rc, BaseException):
            raise rc
        if rc == 1:
            raise RuntimeError(f"CUDA harness: {func} (grid {grid}, block {block}): in block {info[0]}, "
                               f"{info[2]} threads finished while {info[1]} wait at __syncthreads "
                               "(a barrier some thread skipped)")
        if rc == 2:
            raise MemoryError(f"CUDA harness: {func}: no memory for the stacks of {info[0]} fiber threads")

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _build(text: str, lib: Path) -> None:
    """Compile `text` into the shared library `lib`, through the disk cache (key: text, compiler)."""
    from ...runtime.llvm_backend import disk_cache
    cxx = compiler() or "g++"
    cache = disk_cache()
    key = f"cuda-host-harness\n{cxx}\n{HEADER.read_text()}\n{text}"
    blob = cache.get(key) if cache is not None else None
    if blob is not None:
        lib.write_bytes(blob)
        return
    src = lib.with_suffix(".cpp")
    src.write_text(text)
    cmd = [cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-fno-strict-aliasing", "-w", "-o", str(lib), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"g++ rejected the emitted CUDA C ({src}):\n{r.stderr[:4000]}")
    if cache is not None:
        cache.put(key, lib.read_bytes())


def _garbage(shape, dtype) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    raw = np.frombuffer(os.urandom(max(n, 1))[:n] if n else b"", np.uint8).copy()
    if np.dtype(dtype) == np.bool_:
        raw &= 1
    return raw.view(dtype).reshape(shape)

"""Worker threads for native programs: each thread runs the whole compiled program (one
foreign call, the GIL released by ctypes) on its share of every parallel loop, meeting
the others at a native barrier after each kernel. The workers wait for work in native code
(`NativePool`): starting a run costs ~8 us on the idle 2-core development box (the Python
`threading.Event` wake-up it replaced cost 32-53 us; under load, 117 us against 12 ms).

`kiln.set_num_threads(n)` / `KILN_NUM_THREADS` set how many threads native programs use
(default: the CPUs this process may run on); programs below the size threshold run on
the calling thread alone.
"""
from __future__ import annotations

import os
import threading

# Below this many elements touched per kernel (inputs + outputs), one thread. Measured on this
# 2-core machine with the earlier Python-woken workers, 1 / 2 threads, idle: x * 2 over 2^16 elements 0.010 / 0.043 ms, 2^18 0.036 /
# 0.058, 2^20 (2^21 touched) 0.104 / 0.106, 2^22 0.73 / 0.46; gelu 2^24 24.3 / 12.3 ms. With the
# other core busy, waking a worker cost 0.5-1 ms and threads lost up to 10x (docs/kernel-ir.md).
PARALLEL_MIN_COST = 1 << 21

_num_threads: int | None = None


def native_threads() -> int:
    """Threads native programs may use."""
    if _num_threads is not None:
        return _num_threads
    from .. import config
    n = config.get().num_threads
    if n:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_native_threads(n: int) -> None:
    global _num_threads
    _num_threads = n


MAX_THREADS = 1024  # native threads one pool can run (its control block has a line per worker)

# The pool's control block: i64 words, cache line (8 words) apart where threads write them
_FN, _ARG0, _ARG1, _N, _PENDING = 0, 1, 2, 3, 4
_BARRIER = 8          # the program's barrier (count, generation): `llvm_render._render_barrier`
_DONE = 16            # generation the last worker to finish advances (tid 0 waits on it)
_WORKER = 24          # + 8 * tid: worker tid's generation (the pool advances it to start a run)


def _render_pool_module() -> str:
    """LLVM IR of the pool's two entry points (see `NativePool`)."""
    from llvmlite import ir
    from ..codegen.llvm_sync import advance, render_wait
    i32, i64, ptr = ir.IntType(32), ir.IntType(64), ir.PointerType()
    m = ir.Module(name="kiln_pool")
    wait = render_wait(m, "kiln_pool_wait")
    entry_ty = ir.FunctionType(i32, [ptr, ptr, i64, i64, ptr])

    def word(b, ctrl, k):
        return b.gep(ctrl, [k if isinstance(k, ir.Value) else ir.Constant(i64, k)], source_etype=i64)

    # void worker(ptr ctrl, i64 tid): forever wait for this worker's generation to move, run the
    # posted entry point as thread `tid`, and count itself done
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [ptr, i64]), name="kiln_pool_worker")
    ctrl, tid = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    mine = word(b, ctrl, b.add(ir.Constant(i64, _WORKER), b.mul(tid, ir.Constant(i64, 8))))
    first = ir.Constant(i64, 0)  # the word is 0 when its thread starts: a run may advance it before this line
    loop = fn.append_basic_block("loop")
    b.branch(loop)
    b.position_at_end(loop)
    seen = b.phi(i64)
    seen.add_incoming(first, b.function.entry_basic_block)
    b.call(wait, [mine, seen])
    now = b.load_atomic(mine, "acquire", 8, typ=i64)
    target, a0, a1, n = (b.load(word(b, ctrl, k), typ=t)
                         for k, t in ((_FN, entry_ty.as_pointer()), (_ARG0, ptr), (_ARG1, ptr), (_N, i64)))
    b.call(target, [a0, a1, tid, n, word(b, ctrl, _BARRIER)])  # its status is read by tid 0
    left = b.atomic_rmw("sub", word(b, ctrl, _PENDING), ir.Constant(i64, 1), "acq_rel")
    with b.if_then(b.icmp_signed("==", left, ir.Constant(i64, 1))):
        advance(b, word(b, ctrl, _DONE))
    seen.add_incoming(now, b.block)
    b.branch(loop)

    # i32 run(ptr ctrl, i64 n): start workers 1..n-1 on the posted job (the caller stored the
    # entry point and its arguments), run it as thread 0, wait for the workers; its result
    fn = ir.Function(m, ir.FunctionType(i32, [ptr, i64]), name="kiln_pool_run")
    ctrl, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.store(ir.Constant(i64, 0), word(b, ctrl, _BARRIER))
    b.store(ir.Constant(i64, 0), word(b, ctrl, _BARRIER + 1))
    b.store(b.sub(n, ir.Constant(i64, 1)), word(b, ctrl, _PENDING))
    done_seen = b.load_atomic(word(b, ctrl, _DONE), "acquire", 8, typ=i64)
    head, body, after = (fn.append_basic_block(x) for x in ("post.head", "post.body", "post.done"))
    b.branch(head)
    b.position_at_end(head)
    t = b.phi(i64)
    t.add_incoming(ir.Constant(i64, 1), fn.entry_basic_block)
    b.cbranch(b.icmp_signed("<", t, n), body, after)
    b.position_at_end(body)
    advance(b, word(b, ctrl, b.add(ir.Constant(i64, _WORKER), b.mul(t, ir.Constant(i64, 8)))))
    t.add_incoming(b.add(t, ir.Constant(i64, 1)), b.block)
    b.branch(head)
    b.position_at_end(after)
    target, a0, a1 = (b.load(word(b, ctrl, k), typ=ty) for k, ty in ((_FN, entry_ty.as_pointer()), (_ARG0, ptr), (_ARG1, ptr)))
    rc = b.call(target, [a0, a1, ir.Constant(i64, 0), n, word(b, ctrl, _BARRIER)])
    with b.if_then(b.icmp_signed(">", n, ir.Constant(i64, 1))):
        b.call(wait, [word(b, ctrl, _DONE), done_seen])
    b.ret(rc)
    return str(m)


_native: dict = {}


def _pool_functions():
    """(engine, worker, run) of the pool's native code, JIT-compiled once per process."""
    if not _native:
        import ctypes
        from .llvm_backend import _jit_functions
        engine, (worker, run) = _jit_functions(_render_pool_module(), [
            ("kiln_pool_worker", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)),
            ("kiln_pool_run", ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64))])
        _native.update(engine=engine, worker=worker, run=run)
    return _native["worker"], _native["run"]


class NativePool:
    """Persistent workers that run one native entry point together.

    Each worker is a Python thread that calls the pool's native `worker` loop once (without the
    GIL) and stays in it: it waits on its own generation word (spinning ~50 us, then sleeping on a
    futex: `kiln.codegen.llvm_sync`), runs the posted entry point as its thread id, counts itself
    done and waits again. `run` posts the job and advances the words of workers 1..n-1 in one
    native call, runs thread 0 and waits for the last worker. Starting a run costs an atomic add
    per worker while they spin (a futex wake once they sleep), not a Python thread wake-up."""

    def __init__(self):
        import numpy as np
        words = _WORKER + 8 * MAX_THREADS
        raw = np.zeros(words + 8, np.int64)
        start = (-raw.ctypes.data % 64) // 8  # cache-line aligned: the words of each line are shared by design
        self._ctrl = raw[start:start + words]
        self._raw = raw
        self.ctrl_addr = self._ctrl.ctypes.data
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()  # one parallel program at a time
        self.pid = os.getpid()

    def run(self, fn, args: tuple, n: int) -> int:
        """Run `fn(*args, tid, n, barrier)` on n threads (this one is tid 0); returns tid 0's result.
        `fn` is a ctypes function pointer to a compiled program's entry, `args` its (buffers,
        status) addresses."""
        import ctypes
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"native thread pool: n={n} threads; it runs 1 to {MAX_THREADS}")
        worker, run = _pool_functions()
        with self._lock:
            while len(self._workers) < n - 1:
                tid = len(self._workers) + 1
                w = threading.Thread(target=worker, args=(self.ctrl_addr, tid), name=f"kiln-native-{tid}", daemon=True)
                w.start()
                self._workers.append(w)
            c = self._ctrl
            c[_FN] = ctypes.cast(fn, ctypes.c_void_p).value
            c[_ARG0], c[_ARG1] = args
            c[_N] = n
            return run(self.ctrl_addr, n)


_pool: NativePool | None = None
_pool_lock = threading.Lock()


def pool() -> NativePool:
    """The process's pool (a fresh one after fork: a child inherits no worker threads)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = NativePool()
        return _pool

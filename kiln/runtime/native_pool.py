"""Worker threads for native programs: each thread runs the whole compiled program (one
foreign call, the GIL released by ctypes) on its share of every parallel loop, meeting
the others at a native barrier after each kernel. Python only starts the call and waits.

`kiln.set_num_threads(n)` / `KILN_NUM_THREADS` set how many threads native programs use
(default: the CPUs this process may run on); programs below the size threshold run on
the calling thread alone.
"""
from __future__ import annotations

import os
import threading

# Below this many elements touched per kernel (inputs + outputs), one thread. Measured on this
# 2-core machine, 1 / 2 threads, idle: x * 2 over 2^16 elements 0.010 / 0.043 ms, 2^18 0.036 /
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


class _Worker(threading.Thread):
    def __init__(self, pool: "NativePool", tid: int):
        super().__init__(name=f"kiln-native-{tid}", daemon=True)
        self.pool, self.tid = pool, tid
        self.go = threading.Event()
        self.job = None

    def run(self) -> None:
        while True:
            self.go.wait()
            self.go.clear()
            fn, args, n = self.job
            try:
                fn(*args, self.tid, n, self.pool.barrier_addr)
            finally:
                self.pool._finished()


class NativePool:
    """Persistent workers that run one native entry point together."""

    def __init__(self):
        import ctypes
        import numpy as np
        self._barrier = np.zeros(2, np.int64)
        self.barrier_addr = self._barrier.ctypes.data
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one parallel program at a time
        self._done = threading.Condition()
        self._pending = 0
        self._ctypes = ctypes
        self.pid = os.getpid()

    def _finished(self) -> None:
        with self._done:
            self._pending -= 1
            if self._pending == 0:
                self._done.notify_all()

    def run(self, fn, args: tuple, n: int) -> int:
        """Run `fn(*args, tid, n, barrier)` on n threads (this one is tid 0); returns tid 0's result."""
        with self._lock:
            while len(self._workers) < n - 1:
                w = _Worker(self, len(self._workers) + 1)
                w.start()
                self._workers.append(w)
            self._barrier[:] = 0
            with self._done:
                self._pending = n - 1
            for w in self._workers[:n - 1]:
                w.job = (fn, args, n)
                w.go.set()
            rc = fn(*args, 0, n, self.barrier_addr)
            with self._done:
                while self._pending:
                    self._done.wait()
            return rc


_pool: NativePool | None = None
_pool_lock = threading.Lock()


def pool() -> NativePool:
    """The process's pool (a fresh one after fork: a child inherits no worker threads)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = NativePool()
        return _pool

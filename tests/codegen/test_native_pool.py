"""kiln's native thread pool and barrier: workers that wait in native code (spin, then futex)."""
import time

import numpy as np
import pytest

import kiln
from kiln.codegen import llvm_sync
from kiln.runtime import llvm_backend, native_pool
from kiln.runtime.llvm_backend import compile_graph


def _parallel_program(monkeypatch, fn, *args):
    monkeypatch.setattr(llvm_backend, "PARALLEL_MIN_COST", 0)  # every kernel threaded, however small
    ex = compile_graph(kiln.make_graph(fn)(*args))
    assert ex.parallel
    return ex


def test_pool_runs_programs_on_changing_thread_counts_and_after_workers_sleep(monkeypatch):
    def fn(x):
        return (x * 3.0 + 1.0).sum(dim=1) + x.amax(dim=1)  # two kernels: a barrier between them
    x = np.random.default_rng(1).standard_normal((96, 70)).astype(np.float32)
    ex = _parallel_program(monkeypatch, fn, kiln.from_numpy(x))
    want = kiln.compile(fn, backend="reference")(kiln.from_numpy(x)).numpy()
    for threads in (2, 3, 2, 1, 4, 2):
        monkeypatch.setattr(native_pool, "_num_threads", threads)
        for pause in (0.0, 0.0, 0.003):  # back to back (workers spinning), then asleep on the futex
            time.sleep(pause)
            np.testing.assert_allclose(ex.run([x])[0], want, rtol=1e-5, atol=1e-4)


def test_pool_returns_thread_zero_status_and_stays_usable(monkeypatch):
    monkeypatch.setattr(native_pool, "_num_threads", 2)
    ex = _parallel_program(monkeypatch, lambda x, i: x.gather(1, i), kiln.zeros(64, 5), kiln.zeros(64, 2, dtype=kiln.int64))
    x = np.arange(320, dtype=np.float32).reshape(64, 5)
    bad = np.zeros((64, 2), np.int64)
    bad[50, 1] = 7
    with pytest.raises(IndexError, match="index 7"):
        ex.run([x, bad])
    good = np.ones((64, 2), np.int64)
    np.testing.assert_array_equal(ex.run([x, good])[0], x[:, [1, 1]])


def test_pool_rejects_thread_counts_outside_its_control_block():
    pool = native_pool.pool()
    with pytest.raises(ValueError, match="n=0 threads"):
        pool.run(None, (0, 0), 0)
    with pytest.raises(ValueError, match=f"n={native_pool.MAX_THREADS + 1} threads"):
        pool.run(None, (0, 0), native_pool.MAX_THREADS + 1)


@pytest.mark.skipif(not llvm_sync.futex_supported(), reason="futex waits: Linux on x86-64 / AArch64")
def test_barrier_spins_then_sleeps_on_a_futex(monkeypatch):
    monkeypatch.setattr(llvm_backend, "PARALLEL_MIN_COST", 0)  # a split kernel: it ends at a barrier
    x = kiln.ShapeDtype((64, 64))
    asm = kiln.compile(lambda x: x * 2.0).lower(x).as_text("asm")
    insn = {"x86_64": "syscall", "aarch64": "svc"}[llvm_sync._machine()]
    assert insn in asm  # the futex wait and wake
    assert "pause" in asm or "yield" in asm  # the spin before it

"""Threading per kernel: in a threaded program only the kernels with a parallel loop (split
kernels: a big GEMM) meet the other threads at barriers; the small kernels around them run
inline on thread 0, and the workers skip them. Asserted on the schedule and the rendered entry
point, and by results and errors at 2 threads, never by time."""
from __future__ import annotations

import re

import numpy as np
import pytest

import kiln
from kiln.codegen import gemm
from kiln.codegen.schedule import barrier_plan
from kiln.runtime import native_pool
from kiln.runtime.llvm_backend import compile_graph


def _threads(monkeypatch, n):
    monkeypatch.setattr(native_pool, "_num_threads", n)
    monkeypatch.setattr(gemm, "host_threads", lambda: n)


def test_barrier_plan_puts_barriers_only_around_split_kernels():
    S, P = False, True
    assert barrier_plan([S, S, S]) == [(False, False)] * 3
    assert barrier_plan([P, S, S, P, P, S]) == [(False, True), (False, False), (False, False),
                                                (True, True), (False, True), (False, False)]
    assert barrier_plan([S, P]) == [(False, False), (True, True)]  # serial results in before the split
    assert barrier_plan([]) == []


def _split_after_serial(x, i, a, b):
    """Small serial kernels (a gather with an index check, a sum), then a 6.4M-MAC product that
    reads their result, then a small kernel after it."""
    s = x.gather(1, i).sum()
    z = (a * s) @ b
    return z.relu().sum(dim=0) + s, z


def _program(monkeypatch):
    _threads(monkeypatch, 2)
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((64, 5)).astype(np.float32), np.ones((64, 2), np.int64),
              rng.standard_normal((64, 784)).astype(np.float32), rng.standard_normal((784, 128)).astype(np.float32)]
    ex = compile_graph(kiln.make_graph(_split_after_serial)(*[kiln.from_numpy(v) for v in arrays]))
    return ex, arrays


def _split(k) -> bool:
    return any(ls.parallel for ls in k.schedule.loops.values())


def test_only_the_big_product_is_split_and_the_program_is_threaded(monkeypatch):
    ex, _ = _program(monkeypatch)
    kernels = {k.name: k for k in ex.program.kernels}
    split = [kernels[kname] for kname, _ in ex.program.calls if _split(kernels[kname])]
    assert len(split) == 1 and any(p.name.startswith("gemm_") for p in split[0].params)
    assert len(ex.program.calls) >= 3  # serial kernels before and after it
    assert ex.parallel


def test_entry_point_calls_the_barrier_only_as_planned(monkeypatch):
    ex, _ = _program(monkeypatch)
    kernels = {k.name: k for k in ex.program.kernels}
    flags = [_split(kernels[kname]) for kname, _ in ex.program.calls]
    plan = barrier_plan(flags)
    # the failure path of a serial kernel with a split kernel after it releases the waiting workers
    release = sum(1 for c, s in enumerate(flags) if not s and any(flags[c + 1:]))
    text = ex.stages("llvm")
    entry = text[text.index(f"define i32 @\"{ex.program.name}\"") if f"@\"{ex.program.name}\"" in text
                 else text.index(f"@{ex.program.name}("):]
    calls = re.findall(rf"call void @\"?{re.escape(ex.program.name)}_barrier\"?\(", entry)
    assert len(calls) == sum(a + b for a, b in plan) + release
    assert sum(a + b for a, b in plan) == 2  # one split kernel after serial ones: 2, not one per kernel
    for c, (kname, _) in enumerate(ex.program.calls):
        assert (f"skip.{kname}" in entry) == (not flags[c])  # the workers skip every serial kernel


def test_threaded_program_matches_reference_back_to_back_and_after_sleeping(monkeypatch):
    import time
    ex, arrays = _program(monkeypatch)
    want = [t.numpy() for t in kiln.compile(_split_after_serial, backend="reference")(
        *[kiln.from_numpy(v) for v in arrays])]
    for pause in (0.0, 0.0, 0.003, 0.0):  # workers spinning, then asleep on the futex
        time.sleep(pause)
        got = ex.run(arrays)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-2 * np.abs(w).max())


def test_failed_check_in_a_serial_kernel_releases_the_workers(monkeypatch):
    ex, arrays = _program(monkeypatch)
    bad = arrays[1].copy()
    bad[40, 1] = 9
    for _ in range(3):  # the workers are released each time: no hang, and the pool stays usable
        with pytest.raises(IndexError, match="index 9"):
            ex.run(arrays[:1] + [bad] + arrays[2:])
    z = ex.run(arrays)[1]
    s = np.take_along_axis(arrays[0], arrays[1], 1).sum()
    np.testing.assert_allclose(z, (arrays[2] * s) @ arrays[3], rtol=1e-4, atol=1e-2 * np.abs(z).max())

"""What a compiled call costs outside its kernels: `python -m benchmarks.call_overhead [dispatch] [mlp]`.

Runs the `dispatch` workload (a compiled `x + 1` on a one-element tensor) and the b64 MLP training
step (`mlp`) with their program's native entry point replaced by a no-op, so what is timed is
everything but the kernels: the cache lookup and guards, marshalling, the call itself (a ctypes
call into a no-op, its own cost subtracted and 0.55 us, the measured cost of a call into compiled
code, added back), write-backs and outputs. Then the stages one by one. CPU time of this process
(`time.process_time_ns`: steadier than wall time on a shared machine), one native thread; prints
min and median of several rounds. `KILN_PROFILE=1` / `benchmarks.profile` time the other part:
the native call, kernels and the gaps between them.
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
import warnings

_NATIVE_CALL_US = 0.55  # one ctypes call into a compiled entry point (measured on the benchmark machine)


def _timed(fn, calls: int, rounds: int = 7) -> tuple[float, float]:
    per = []
    for _ in range(rounds):
        t = time.process_time_ns()
        for _ in range(calls):
            fn()
        per.append((time.process_time_ns() - t) / calls / 1000)
    per.sort()
    return per[0], per[len(per) // 2]


def _step(workload: str):
    import numpy as np

    import kiln
    if workload == "dispatch":
        x = kiln.tensor(np.array([1.0], np.float32))
        f = kiln.compile(lambda x: x + 1, backend="llvm")
        return f, (x,), 20000
    if workload == "mlp":
        from .workloads import _classification_step, _sgd_momentum, make_mlp
        prepared = _classification_step("kiln.compile[llvm]", make_mlp, (64, 784), _sgd_momentum(0.01, 0.9))
        step = prepared.step
        cells = dict(zip(step.__code__.co_freevars, [c.cell_contents for c in step.__closure__]))
        return cells["compiled"], (cells["x"], cells["y"]), 300
    raise SystemExit(f"call_overhead: unknown workload {workload!r} (dispatch, mlp)")


def measure(workload: str) -> None:
    from kiln.frontend.compile import finish_call
    f, args, calls = _step(workload)
    for _ in range(5):
        f(*args)
    (entry,) = [e for entries in f._cache.values() for e in entries]
    run = entry.__dict__["_run_main"]
    ex = run.__self__
    noop_type = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                 ctypes.c_void_p)
    noop = noop_type(lambda *a: 0)
    callback, _ = _timed(lambda: noop(0, 0, 0, 1, 0), 20000, 3)
    ex._fn, ex.parallel = noop, False  # everything but the kernels (and the thread pool's start)
    adjust = _NATIVE_CALL_US - callback
    lo, med = _timed(lambda: f(*args), calls)
    print(f"{workload}: outside the kernels  min {lo + adjust:.1f} us  median {med + adjust:.1f} us")
    found = f._find(args, {})
    prepared = f._inputs(*found)
    tensors, captured, arrays = prepared
    results = run(arrays)
    owned = entry.__dict__.get("_owned_outputs", frozenset())
    stages = [("cache key + guards", lambda: f._find(args, {})),
              (f"  of which {len(entry.guards)} Python-value guards", lambda: [r() == v for r, v in entry.guards]),
              ("argument arrays", lambda: f._inputs(*found)),
              ("marshalling + native call", lambda: run(arrays)),
              ("write-backs + outputs", lambda: finish_call(entry, tensors, results, captured, owned))]
    for name, fn in stages:
        lo, med = _timed(fn, calls)
        if name.startswith("marshalling"):
            lo, med = lo + adjust, med + adjust
        print(f"  {name:34s} min {lo:7.2f} us  median {med:7.2f} us")


def main(argv: list[str]) -> None:
    os.environ.setdefault("KILN_NUM_THREADS", "1")
    warnings.simplefilter("ignore")
    gc.collect()
    for workload in argv or ["dispatch", "mlp"]:
        measure(workload)


if __name__ == "__main__":
    main(sys.argv[1:])

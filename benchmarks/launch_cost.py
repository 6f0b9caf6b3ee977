"""Per-launch cost of a split (threaded) kernel: `python -m benchmarks.launch_cost`.

A program of 20 small products (64x64 @ 64x64, ReLU), every kernel split across the threads
(`PARALLEL_MIN_COST` = 0), called 2000 times at 1 and at 2 threads, three rounds: the
difference per kernel is what a split kernel's start and barrier cost above its halved work,
with the workers spinning between the back-to-back kernels. Prints min and median per call.
"""
from __future__ import annotations

import time

import numpy as np


def main(calls: int = 2000, rounds: int = 3) -> None:
    import kiln
    from kiln.runtime import llvm_backend, native_pool
    from kiln.runtime.llvm_backend import compile_graph

    def fn(x, w):
        for _ in range(20):
            x = (x @ w).relu()  # one kernel per product
        return x
    old = llvm_backend.PARALLEL_MIN_COST
    llvm_backend.PARALLEL_MIN_COST = 0
    try:
        x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
        w = np.eye(64, dtype=np.float32)
        ex = compile_graph(kiln.make_graph(fn)(kiln.from_numpy(x), kiln.from_numpy(w)))
    finally:
        llvm_backend.PARALLEL_MIN_COST = old
    nk = len(ex.program.calls)
    saved = native_pool._num_threads
    res: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    try:
        for _ in range(rounds):
            for n in (1, 2):
                native_pool._num_threads = n
                for _ in range(50):
                    ex.run([x, w])
                ts = []
                for _ in range(calls):
                    t = time.perf_counter_ns()
                    ex.run([x, w])
                    ts.append(time.perf_counter_ns() - t)
                ts.sort()
                res[n].append((ts[0] / 1e3, ts[len(ts) // 2] / 1e3))
    finally:
        native_pool._num_threads = saved
    for n, v in res.items():
        print(f"threads {n}: {nk} split kernels; min / median us per call, {rounds} rounds: "
              + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in v))
    m1, m2 = min(a for a, _ in res[1]), min(a for a, _ in res[2])
    print(f"per split kernel: {m1 / nk:.2f} us serial, {m2 / nk:.2f} us on 2 threads (min)")


if __name__ == "__main__":
    main()

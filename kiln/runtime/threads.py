"""How many threads the numpy/BLAS kernels that kiln runs may use (like torch.set_num_threads).

kiln defaults to one BLAS thread: on small machines shared with other work, OpenBLAS's
spinning worker threads made matmuls 2-100x slower than one thread (measured here: a
64x784x128 float32 matmul took 0.25 ms on one thread, 0.57 ms on two, 38 ms on two under
load). `KILN_NUM_THREADS=n` or `kiln.set_num_threads(n)` changes it; if the user already set
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS, kiln leaves BLAS alone.
"""
from __future__ import annotations

import os

_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def set_num_threads(n: int) -> None:
    """Limit the BLAS thread pool used by kiln's numpy kernels to `n` threads (process-wide)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    from threadpoolctl import threadpool_limits
    threadpool_limits(n, user_api="blas")


def get_num_threads() -> int:
    """The BLAS thread count in effect (the largest over loaded BLAS libraries)."""
    from threadpoolctl import threadpool_info
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else 1


def init_from_env() -> None:
    """Apply KILN_NUM_THREADS (default 1) unless the user configured BLAS threads themselves."""
    n = os.environ.get("KILN_NUM_THREADS")
    if n is None and any(v in os.environ for v in _THREAD_ENV):
        return
    try:
        set_num_threads(int(n) if n else 1)
    except ImportError:  # threadpoolctl missing: keep numpy's default
        pass

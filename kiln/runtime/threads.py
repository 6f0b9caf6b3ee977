"""How many threads the numpy/BLAS kernels that kiln runs may use (like torch.set_num_threads).

kiln defaults to one BLAS thread: on small machines shared with other work, OpenBLAS's
spinning worker threads made matmuls 2-100x slower than one thread (measured here: a
64x784x128 float32 matmul took 0.25 ms on one thread, 0.57 ms on two, 38 ms on two under
load). `KILN_NUM_THREADS=n` (`kiln.config`, applied at import) or `kiln.set_num_threads(n)`
changes it; if the user already set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS,
kiln leaves BLAS alone.
"""
from __future__ import annotations

from .. import config


def set_num_threads(n: int) -> None:
    """Use `n` threads (process-wide) for kiln's native kernels and for the BLAS pool of the
    numpy kernels kiln runs (eager ops, the reference backend). The two never run at once."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    from .native_pool import set_native_threads
    set_native_threads(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(n, user_api="blas")


def get_num_threads() -> int:
    """The BLAS thread count in effect (the largest over loaded BLAS libraries)."""
    from threadpoolctl import threadpool_info
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else 1


def init_threads() -> None:
    """Apply the `num_threads` setting (KILN_NUM_THREADS; unset: 1, unless the user configured BLAS
    threads through its own variables)."""
    n = config.get().num_threads
    if n is None and config.blas_threads_from_env():
        return
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n or 1, user_api="blas")
    except ImportError:  # threadpoolctl missing: keep numpy's default
        pass

"""Suite-wide settings: every traced graph is verified and round-tripped through its text form, and
native kernels, BLAS and PyTorch run on one thread unless the environment says otherwise.

One thread because the suite's programs are small and a CI runner's cores are shared: a kernel split
over two threads waits at every barrier for a partner the scheduler may not run for milliseconds, so
on a busy 2-core machine a threaded test can take ten times as long, and how a kernel is split
(`gemm.host_threads`) would follow the machine's core count. The tests of threading set their thread
counts themselves (tests/codegen/test_threading_per_kernel.py, test_native_pool.py, the `threads`
parameters of the GEMM and parallel-kernel tests); `KILN_NUM_THREADS=2 python -m pytest tests` runs
everything else threaded too.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py

os.environ.setdefault("KILN_VERIFY", "1")
os.environ.setdefault("KILN_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # PyTorch's intra-op pool (the oracle), here and in subprocesses

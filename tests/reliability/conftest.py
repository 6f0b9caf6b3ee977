"""tests/reliability: make this directory's helpers importable (the suite runs with --import-mode=importlib).

Tolerances: until `kiln/testing/tolerances.py` (the project's single tolerance definition) lands,
the values these tests compare with live here, in one place.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

#: float64 central differences vs analytic gradients (eps 1e-6): relative and absolute tolerance.
GRADCHECK_RTOL, GRADCHECK_ATOL = 1e-5, 1e-6
#: compiled vs eager (float32): relative and absolute tolerance.
F32_RTOL, F32_ATOL = 1e-5, 1e-6
#: float16 results of transcendental round trips (exp(log x)) vs their exact rewrite: ~10 ulps.
F16_RTOL, F16_ATOL = 1e-2, 1e-3

"""tests/reliability: make this directory's helpers importable (the suite runs with --import-mode=importlib).

The tolerances these tests compare with come from `kiln/testing/tolerances.py`, the project's one
definition (`docs/reliability.md`).
"""
import os
import sys

from kiln.testing.tolerances import FLOAT16_ROUND_TRIP, GRADCHECK, tolerance

sys.path.insert(0, os.path.dirname(__file__))

GRADCHECK_RTOL, GRADCHECK_ATOL = GRADCHECK.rtol, GRADCHECK.atol
#: compiled vs eager (float32), any op family short of matmul/conv
F32_RTOL, F32_ATOL = tolerance("float32", ("reduction", "transcendental")).rtol, \
    tolerance("float32", ("reduction", "transcendental")).atol
F16_RTOL, F16_ATOL = FLOAT16_ROUND_TRIP.rtol, FLOAT16_ROUND_TRIP.atol

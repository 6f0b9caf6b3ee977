"""Written by kiln.testing.fuzz (shrunk from seed 3000098): [reference] output on the alias call: output 0: 189 of 231 elements differ (rtol=1e-05, atol=1e-06); first at [np.int64(1), np.int64(0), np.int64(0)]: got np.float32(0.44444445), want np.float32(0.16)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401

# found by `python -m kiln.testing.fuzz --n 100 --seed 3 --profile full` (program 89): the alias call
# (an offset argument leaf[1:] and its overlapping alias leaf[:-1]) replayed the program traced for
# the first call's independent arguments, which reads v2 before v0's update is written back


def program(v0, v1, v2):
    v0.add_(v1)
    v3 = v0
    v4 = (v2.abs() + 1) ** v3.clamp(-2, 2)
    return (v4,)


SPECS = [
    ((7, 11, 3), 'float32', 'contiguous', False, 'ones', None),
    ((), 'float32', 'contiguous', False, 'ones', None),
    ((7, 11, 3), 'float32', 'contiguous', False, 'ones', None),
]
SEED = 3000098
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact', 'transcendental')
CALLS = [
    ([((7, 11, 3), 'float32', 'contiguous', False, 'ones', None), ((), 'float32', 'contiguous', False, 'ones', None), ((7, 11, 3), 'float32', 'contiguous', False, 'ones', None)], 3000098, True, True),
    ([((7, 11, 3), 'float32', 'offset', False, 'ones', None), ((), 'float32', 'contiguous', False, 'ones', None), ((7, 11, 3), 'float32', 'overlap', False, 'ones', 0)], 3000100, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_2b553f458a():
    """[reference] output on the alias call: output 0: 189 of 231 elements differ (rtol=1e-05, atol=1e-06); first at [np.int64(1), np.int64(0), np.int64(0)]: got np.float32(0.44444445), want np.float32(0.16)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

"""Written by kiln.testing.fuzz (shrunk from seed 2000086): [reference] grad on the first call: grad 2: 6 of 6 elements differ (rtol=0.0001, atol=0.0001); first at [np.int64(0), np.int64(0)]: got np.float32(10.8125), want np.float32(2.5625)"""
import numpy as np

import kiln
from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0, v1, v2):
    v3 = kiln.stack([v0, v1], -3)
    v1[1:].mul_(3)
    v4 = v1
    v5 = v3 @ v2
    return (v5,)


SPECS = [
    ((7, 1, 2), 'float32', 'contiguous', False, 'ones', None),
    ((7, 1, 2), 'float32', 'contiguous', False, 'ones', None),
    ((2, 1), 'float32', 'contiguous', True, 'ones', None),
]
SEED = 2000086
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact', 'matmul')
CALLS = [
    ([((7, 1, 2), 'float32', 'contiguous', False, 'ones', None), ((7, 1, 2), 'float32', 'contiguous', False, 'ones', None), ((2, 1), 'float32', 'contiguous', True, 'ones', None)], 2000086, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_acabbf2394():
    """[reference] grad on the first call: grad 2: 6 of 6 elements differ (rtol=0.0001, atol=0.0001); first at [np.int64(0), np.int64(0)]: got np.float32(10.8125), want np.float32(2.5625)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

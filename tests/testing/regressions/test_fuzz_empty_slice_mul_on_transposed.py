"""Written by kiln.testing.fuzz (shrunk from seed 1000162): [reference] output on the same call: output 0: 1 of 2 elements differ (rtol=1e-05, atol=1e-05); first at [np.int64(0), np.int64(0)]: got np.float32(1.0), want np.float32(1.375)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v0[1:].mul_(3)
    v1 = v0
    return (v1,)


SPECS = [
    ((1, 1), 'float32', 'transposed', False, 'grid', None),
]
SEED = 1000162
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((1, 1), 'float32', 'transposed', False, 'grid', None)], 1000162, True, True),
    ([((1, 1), 'float32', 'transposed', False, 'grid', None)], 1000163, True, False),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_bb9de2959b():
    """[reference] output on the same call: output 0: 1 of 2 elements differ (rtol=1e-05, atol=1e-05); first at [np.int64(0), np.int64(0)]: got np.float32(1.0), want np.float32(1.375)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

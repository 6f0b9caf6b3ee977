"""Written by kiln.testing.fuzz (shrunk from seed 1000746): [reference] grad on the first call: grad 0: 1 of 1 elements differ (rtol=1e-05, atol=1e-05); first at []: got np.float32(0.5), want np.float32(0.75)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v1 = v0.clone()
    v1.zero_()
    v2 = v1
    return (v2,)


SPECS = [
    ((), 'float32', 'contiguous', True, 'ones', None),
]
SEED = 1000746
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((), 'float32', 'contiguous', True, 'ones', None)], 1000746, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_3e91a793eb():
    """[reference] grad on the first call: grad 0: 1 of 1 elements differ (rtol=1e-05, atol=1e-05); first at []: got np.float32(0.5), want np.float32(0.75)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

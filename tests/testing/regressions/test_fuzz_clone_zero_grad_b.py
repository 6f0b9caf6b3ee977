"""Written by kiln.testing.fuzz (shrunk from seed 1000560): [reference] grad on the first call: grad 0: 1 of 1 elements differ (rtol=0.0001, atol=1e-05); first at []: got np.float32(0.23820198), want np.float32(0.48820198)"""
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
SEED = 1000560
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((), 'float32', 'contiguous', True, 'ones', None)], 1000560, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_c74113037a():
    """[reference] grad on the first call: grad 0: 1 of 1 elements differ (rtol=0.0001, atol=1e-05); first at []: got np.float32(0.23820198), want np.float32(0.48820198)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

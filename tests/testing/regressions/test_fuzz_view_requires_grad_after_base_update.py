"""Written by kiln.testing.fuzz (shrunk from seed 271): [reference] grad on the first call: grad 1: 1 of 4 elements differ (rtol=0.0001, atol=0.0001); first at [np.int64(0), np.int64(0)]: got np.float32(0.5), want np.float32(0.25)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0, v1):
    v2 = v0.unbind(1)[0]
    v0.add_(v1)
    v3 = v0
    return (v2,)


SPECS = [
    ((1, 1), 'float32', 'contiguous', False, 'ones', None),
    ((), 'float32', 'contiguous', True, 'ones', None),
]
SEED = 271
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((1, 1), 'float32', 'contiguous', False, 'ones', None), ((), 'float32', 'contiguous', True, 'ones', None)], 271, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_1f21238d75():
    """[reference] grad on the first call: grad 1: 1 of 4 elements differ (rtol=0.0001, atol=0.0001); first at [np.int64(0), np.int64(0)]: got np.float32(0.5), want np.float32(0.25)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

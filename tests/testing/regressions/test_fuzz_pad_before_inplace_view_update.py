"""Written by kiln.testing.fuzz (shrunk from seed 1000363): [reference] output on the first call: output 2: 1 of 8 elements differ (rtol=0, atol=0); first at [np.int64(1)]: got np.int64(3), want np.int64(2)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v1 = v0.unsqueeze(0)
    v2 = F.pad(v1, (1, 2))
    v1[..., ::2].add_(1)
    v3 = v1
    return (v2,)


SPECS = [
    ((), 'int64', 'contiguous', False, 'ones', None),
]
SEED = 1000363
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((), 'int64', 'contiguous', False, 'ones', None)], 1000363, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_b2501d92cc():
    """[reference] output on the first call: output 2: 1 of 8 elements differ (rtol=0, atol=0); first at [np.int64(1)]: got np.int64(3), want np.int64(2)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

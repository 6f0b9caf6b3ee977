"""Written by kiln.testing.fuzz (shrunk from seed 11): [llvm] output on the dtype call: output 1: 6 of 12 elements differ (rtol=1e-12, atol=1e-12); first at [np.int64(0), np.int64(0), np.int64(0), np.int64(3)]: got np.float64(8.487983164e-314), want np.float64(1.5)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0, v1, v2):
    v3 = F.conv1d(v0.reshape(1, 1, -1), v2, stride=1, padding=1)
    v4 = v3.clamp(-1, 1)
    v5 = v4.reshape(v4.shape[0], -1)
    return (v0, v3, v1, v5,)


SPECS = [
    ((2,), 'float32', 'contiguous', False, 'ones', None),
    ((), 'float32', 'contiguous', False, 'ones', None),
    ((1, 1, 1), 'float32', 'contiguous', False, 'ones', None),
]
SEED = 11
TRAINING = True


BACKEND = 'llvm'
FAMILIES = ('conv', 'exact')
CALLS = [
    ([((2,), 'float32', 'contiguous', False, 'ones', None), ((), 'float32', 'contiguous', False, 'ones', None), ((1, 1, 1), 'float32', 'contiguous', False, 'ones', None)], 11, True, True),
    ([((2,), 'float64', 'contiguous', False, 'ones', None), ((), 'float64', 'contiguous', False, 'ones', None), ((1, 1, 1), 'float64', 'contiguous', False, 'ones', None)], 13, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_8fb90ff59f():
    """[llvm] output on the dtype call: output 1: 6 of 12 elements differ (rtol=1e-12, atol=1e-12); first at [np.int64(0), np.int64(0), np.int64(0), np.int64(3)]: got np.float64(8.487983164e-314), want np.fl"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

"""Written by kiln.testing.fuzz (shrunk from seed 9): [llvm] crash on the first call: LoweringError: scatter kernel 1 writes %1 besides its scatter"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0, v1):
    v2 = v0[kiln.tensor([0, 1])]
    v3 = v1 * v0
    return (v2,)


SPECS = [
    ((2,), 'float32', 'contiguous', True, 'ones', None),
    ((), 'float32', 'contiguous', True, 'ones', None),
]
SEED = 9
TRAINING = True


BACKEND = 'llvm'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((2,), 'float32', 'contiguous', True, 'ones', None), ((), 'float32', 'contiguous', True, 'ones', None)], 9, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_8ff4e59eb8():
    """[llvm] crash on the first call: LoweringError: scatter kernel 1 writes %1 besides its scatter"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

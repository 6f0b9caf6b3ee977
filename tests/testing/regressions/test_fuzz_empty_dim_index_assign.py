"""Written by kiln.testing.fuzz (shrunk from seed 1000273): [llvm] crash on the first call: IndexError: scatter: index 0 is out of bounds for dimension 0 with size 0 in compiled code (at <kiln fuzz program>:101)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v0[0] = v0[-1]
    v1 = v0
    return (v0,)


SPECS = [
    ((2, 0, 1), 'float32', 'contiguous', False, 'ones', None),
]
SEED = 1000273
TRAINING = True


BACKEND = 'llvm'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((2, 0, 1), 'float32', 'contiguous', False, 'ones', None)], 1000273, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_ff9ced6b01():
    """[llvm] crash on the first call: IndexError: scatter: index 0 is out of bounds for dimension 0 with size 0 in compiled code (at <kiln fuzz program>:101)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

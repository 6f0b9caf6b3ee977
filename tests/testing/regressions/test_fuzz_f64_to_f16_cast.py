"""Written by kiln.testing.fuzz (shrunk from seed 23): [llvm] crash on the dtype call: Segmentation fault: the float64 -> float16 cast called __truncdfhf2, which the JIT does not have"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v1 = v0.half()
    return (v1,)


SPECS = [
    ((), 'float32', 'contiguous', False, 'ones', None),
]
SEED = 23
TRAINING = True


BACKEND = 'llvm'
FAMILIES = ('exact',)
CALLS = [
    ([((), 'float32', 'contiguous', False, 'ones', None)], 23, True, True),
    ([((), 'float64', 'contiguous', False, 'ones', None)], 25, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_b5dabf813e():
    """[llvm] crash on the dtype call: Segmentation fault: the float64 -> float16 cast called __truncdfhf2, which the JIT does not have"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

"""Written by kiln.testing.fuzz (shrunk from seed 63): [reference] grad on the first call: grad 0: got a tensor, want None"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0, v1):
    v2 = v0 + v1
    v0.add_(v2)
    v3 = v0
    return (v0,)


SPECS = [
    ((), 'float32', 'contiguous', False, 'ones', None),
    ((), 'float32', 'contiguous', True, 'ones', None),
]
SEED = 63
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('elementwise', 'exact')
CALLS = [
    ([((), 'float32', 'contiguous', False, 'ones', None), ((), 'float32', 'contiguous', True, 'ones', None)], 63, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_8629a31806():
    """[reference] grad on the first call: grad 0: got a tensor, want None"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

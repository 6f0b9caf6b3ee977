"""Written by kiln.testing.fuzz (shrunk from seed 66): [reference] grad on the first call: grad 0: got a tensor, want None"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v1 = v0.long()
    v2 = (v1.abs() + 1) ** 0.5
    return (v2,)


SPECS = [
    ((), 'float64', 'contiguous', True, 'ones', None),
]
SEED = 66
TRAINING = True


BACKEND = 'reference'
FAMILIES = ('exact', 'transcendental')
CALLS = [
    ([((), 'float64', 'contiguous', True, 'ones', None)], 66, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_cb4916676f():
    """[reference] grad on the first call: grad 0: got a tensor, want None"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

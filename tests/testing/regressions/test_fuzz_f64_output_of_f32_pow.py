"""Written by kiln.testing.fuzz (shrunk from seed 1000791): [llvm] output on the requires_grad call: output 1: 1 of 1 elements differ (rtol=1e-12, atol=1e-13); first at []: got np.float64(1.2768938541412354), want np.float64(1.2768937349319458)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0):
    v1 = v0.cos()
    v2 = (v1.abs() + 1) ** v0.clamp(-2, 2)
    v3 = v2.double()
    return (v3,)


SPECS = [
    ((), 'float32', 'contiguous', False, 'grid', None),
]
SEED = 1000791
TRAINING = True


BACKEND = 'llvm'
FAMILIES = ('exact', 'transcendental')
CALLS = [
    ([((), 'float32', 'contiguous', False, 'grid', None)], 1000791, True, True),
    ([((), 'float32', 'contiguous', True, 'grid', None)], 1000793, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_2babb9cea3():
    """[llvm] output on the requires_grad call: output 1: 1 of 1 elements differ (rtol=1e-12, atol=1e-13); first at []: got np.float64(1.2768938541412354), want np.float64(1.2768937349319458)"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

"""Written by kiln.testing.fuzz (shrunk from seed 1000631): [llvm] output on the dtype call: output 1: 2 of 12 elements differ (rtol=1e-12, atol=1e-12); first at [np.int64(1), np.int64(0)]: got np.float64(0.17317913472652435), want np.float64(0.17317910492420197)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, check_calls, flag, loss_of, make_input, make_inputs, run  # noqa: F401


def program(v0, v1):
    v2 = v0.softmax(0)
    v3 = kiln.cat([v2, v1], 0)
    return (v3,)


SPECS = [
    ((3, 1), 'float64', 'contiguous', False, 'grid', None),
    ((1, 1), 'float32', 'contiguous', False, 'ones', None),
]
SEED = 1000631
TRAINING = True


BACKEND = 'llvm'
FAMILIES = ('exact', 'reduction')
CALLS = [
    ([((3, 1), 'float64', 'contiguous', False, 'grid', None), ((1, 1), 'float32', 'contiguous', False, 'ones', None)], 1000631, True, True),
    ([((3, 1), 'float32', 'contiguous', False, 'grid', None), ((1, 1), 'float64', 'contiguous', False, 'ones', None)], 1000633, True, True),
]  # (specs, data seed, Module.training, must retrace)


def test_fuzz_998bc75b59():
    """[llvm] output on the dtype call: output 1: 2 of 12 elements differ (rtol=1e-12, atol=1e-12); first at [np.int64(1), np.int64(0)]: got np.float64(0.17317913472652435), want np.float64(0.173179104924201"""
    check_calls(program, CALLS, FAMILIES, BACKEND)

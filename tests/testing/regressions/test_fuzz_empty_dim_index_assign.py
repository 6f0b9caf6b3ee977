"""Written by kiln.testing.fuzz (shrunk from seed 1000273): [llvm] crash on the first call: IndexError: scatter: index 0 is out of bounds for dimension 0 with size 0 in compiled code (at <kiln fuzz program>:101)"""
import numpy as np

import kiln

from kiln.testing.prelude import F, flag, loss_of, make_input, make_inputs, run  # noqa: F401


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
    from kiln.testing.tolerances import compare_runs

    compiled = kiln.compile(program, backend=BACKEND, recompile_limit=1000)
    for k, (specs, seed, training, retraces) in enumerate(CALLS):
        misses = compiled.cache_info().misses
        want = run(program, specs, seed, training)
        got = run(compiled, specs, seed, training)
        diff = compare_runs(got, want, FAMILIES)
        assert diff is None, f"call {k}: {diff[1]}"
        assert not retraces or compiled.cache_info().misses > misses, f"call {k} replayed a cached program"

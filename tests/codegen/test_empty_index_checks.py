"""A gather or scatter with an empty index tensor reads no index, so its native bounds check must
not run: the emitter hoists a loop-invariant check out of loops, including loops that run zero
times (found by the fuzzer: compiled `v0[0] = v0[-1]` on a (2, 0, 1) tensor raised IndexError)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_index_assign_on_a_zero_size_axis_does_nothing(backend):
    def program(x):
        x[0] = x[-1]
        return x * 2

    x = kiln.zeros(2, 0, 1)
    out = kiln.compile(program, backend=backend)(x)
    assert tuple(out.shape) == (2, 0, 1)


def test_empty_scatter_and_gather_run_without_a_check():
    sc = kiln.compile(lambda x, i, s: x.scatter_add(0, i, s))
    x = kiln.ones(4)
    np.testing.assert_array_equal(sc(x, kiln.tensor(np.zeros(0, np.int64)), kiln.ones(0)).numpy(), np.ones(4))
    ga = kiln.compile(lambda x, i: x.gather(1, i))
    got = ga(kiln.ones(3, 5), kiln.tensor(np.zeros((3, 0), np.int64)))
    assert tuple(got.shape) == (3, 0)


def test_a_nonempty_index_is_still_checked():
    sc = kiln.compile(lambda x, i, s: x.scatter_add(0, i, s))
    with pytest.raises(IndexError, match="index 7 is out of bounds for dimension 0 with size 4"):
        sc(kiln.zeros(4), kiln.tensor([7]), kiln.ones(1))

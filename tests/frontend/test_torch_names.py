"""Names PyTorch programs touch on their way (issue 9, item 3), and `Tensor.repeat` as a copy; PyTorch is the oracle."""
import math

import numpy as np
import pytest
import torch

import kiln

REPEAT_CASES = [((2, 2), (2, 1)), ((1, 2), (2, 1)), ((3,), (1,)), ((2, 3), (1, 1)), ((3, 1), (1, 4)), ((), (2,)),
                ((2,), (2, 1, 1))]


def _arange(lib, shape):
    return lib.arange(1, 1 + math.prod(shape)).reshape(shape).float()


@pytest.mark.parametrize("shape,reps", REPEAT_CASES)
def test_repeat_is_a_copy_eager(shape, reps):
    results = []
    for lib in (torch, kiln):
        x = _arange(lib, shape)
        r = x.repeat(*reps)
        x.mul_(5)  # must not show through r
        r.add_(1)  # must be allowed: r owns its memory
        results.append((r.tolist(), x.tolist()))
    assert results[1] == results[0]


@pytest.mark.parametrize("shape,reps", REPEAT_CASES)
def test_repeat_is_a_copy_traced(shape, reps):
    def f(x):
        r = x.repeat(*reps)
        r.add_(1)
        return r * 1, x * 1

    want = f(_arange(torch, shape))
    got = kiln.compile(f)(_arange(kiln, shape))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


def test_repeat_too_few_sizes_names_both_counts():
    with pytest.raises(RuntimeError, match=r"repeat got 1 sizes for a 2-d tensor"):
        kiln.ones(2, 2).repeat(2)

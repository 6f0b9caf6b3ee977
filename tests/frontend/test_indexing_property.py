"""Property tests: random basic keys (ints, slices with steps, None, Ellipsis) and random
integer-array keys mixed with slices index like numpy (and PyTorch), reading and writing."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kiln
from frontend_helpers import assert_same

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _no_negative_steps(key):
    key = key if isinstance(key, tuple) else (key,)
    return not any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key)


@st.composite
def basic_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    key = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True)
               .filter(_no_negative_steps))  # PyTorch (and kiln) reject negative steps
    return shape, key


@SETTINGS
@given(basic_cases())
def test_basic_keys_like_numpy(case):
    shape, key = case
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    assert_same(kiln.tensor(a)[key], np.array(a[key]))
    x = kiln.tensor(a)
    x[key] = -1.0
    b = a.copy()
    b[key] = -1.0
    assert_same(x, b)


@st.composite
def advanced_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    key = draw(hnp.integer_array_indices(
        shape, result_shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)))
    keep = draw(st.lists(st.booleans(), min_size=len(key), max_size=len(key)))
    # replace some index arrays (not the first) by full slices: adjacent and separated index dims
    key = tuple(k if (i == 0 or flag) else slice(None) for i, (k, flag) in enumerate(zip(key, keep)))
    return shape, key


@SETTINGS
@given(advanced_cases())
def test_integer_array_keys_like_numpy_and_torch(case):
    shape, key = case
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    kkey = tuple(kiln.tensor(k) if isinstance(k, np.ndarray) else k for k in key)
    expect = np.array(a[key])
    assert_same(kiln.tensor(a)[kkey], expect)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        tkey = tuple(torch.from_numpy(k) if isinstance(k, np.ndarray) else k for k in key)
        assert tuple(torch.from_numpy(a)[tkey].shape) == expect.shape
    x = kiln.tensor(a)
    x[kkey] = kiln.tensor(-np.ones(expect.shape[-1:], dtype=np.float32)) if expect.ndim else -1.0
    b = a.copy()
    b[key] = -1.0
    assert_same(x, b)

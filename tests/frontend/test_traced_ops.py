"""The frontend ops give the same results traced under kiln.compile as eagerly (same case tables
as the eager tests), and data-dependent ops fail with the tracing error."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
import test_gradients as grads_cases
import test_indexing as index_cases
import test_shape_ops as shape_cases
from frontend_helpers import assert_same

GET_KEYS = index_cases.BASIC_KEYS + index_cases.ADVANCED_KEYS + index_cases.TORCH_ONLY_KEYS[:6]


@pytest.mark.parametrize("key", GET_KEYS, ids=index_cases._ids(GET_KEYS))
def test_getitem_traced(key):
    k = index_cases._conv(index_cases._tuple(key), kiln)
    f = kiln.compile(lambda x: x[k])
    x = kiln.tensor(index_cases.A)
    assert_same(f(x), x[k])


@pytest.mark.parametrize("key", index_cases.SET_KEYS[:20], ids=index_cases._ids(index_cases.SET_KEYS[:20]))
def test_setitem_traced(key):
    k = index_cases._conv(index_cases._tuple(key), kiln)

    def g(x, v):
        y = x * 1
        y[k] = v
        return y

    x, v = kiln.tensor(index_cases.A), kiln.tensor(-2.5)
    assert_same(kiln.compile(g)(x, v), g(x, v))


@pytest.mark.parametrize("name", sorted(shape_cases.CASES))
def test_shape_ops_traced(name):
    fk, _ = shape_cases.CASES[name]
    x = kiln.tensor(shape_cases.A)
    assert_same(kiln.compile(lambda t: fk(kiln, t))(x), fk(kiln, x))


TRACEABLE = sorted(set(grads_cases.CASES) - {"getitem_mask"})


@pytest.mark.parametrize("name", TRACEABLE)
def test_differentiable_ops_traced(name):
    fn, specs = grads_cases.CASES[name]
    xs = [kiln.tensor(a) for a in grads_cases._inputs(specs, seed=3)]
    assert_same(kiln.compile(lambda *t: fn(kiln, *t))(*xs), fn(kiln, *xs), rtol=1e-12, atol=1e-12)


def test_promotion_and_int_ops_traced():
    def f(i, h, b):
        return (i // 2, i % 3, i / 2, h + 1.5, h * i, b & (i > 0), i ** kiln.tensor([2, -1, 0]), kiln.where(b, i, 0.5),
                kiln.clamp(i, min=0.5), kiln.sum(h), kiln.mean(h, 0, keepdim=True), kiln.amax(b), i.float().std())

    args = (kiln.tensor([-3, 4, 7]), kiln.tensor([0.5, 1.0, -2.0], dtype=kiln.float16),
            kiln.tensor([True, False, True]))
    for got, want in zip(kiln.compile(f)(*args), f(*args)):
        assert_same(got, want)


def test_data_dependent_ops_raise_tracing_error():
    x = kiln.tensor(np.arange(6.0).reshape(2, 3))
    with pytest.raises(kiln.TracingError, match="nonzero\\(\\).*kiln.where"):
        kiln.compile(lambda t: t[t > 2])(x)
    with pytest.raises(kiln.TracingError, match="item"):
        kiln.compile(lambda t: t.sum().item())(x)


import test_more_ops as more_cases  # noqa: E402

_EAGER_ONLY = {"sort", "topk", "masked_select", "median_dim"}  # data-dependent orders / shapes


@pytest.mark.parametrize("name", sorted(set(more_cases.GRAD_CASES) - _EAGER_ONLY))
def test_more_ops_traced(name):
    fn = more_cases.GRAD_CASES[name]
    x = kiln.tensor(more_cases.B)
    assert_same(kiln.compile(lambda t: fn(kiln, t))(x), fn(kiln, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(_EAGER_ONLY))
def test_data_dependent_more_ops_raise_tracing_error(name):
    fn = more_cases.GRAD_CASES[name]
    with pytest.raises(kiln.TracingError):
        kiln.compile(lambda t: fn(kiln, t))(kiln.tensor(more_cases.B))

"""Reductions with dim / keepdim (int, negative, tuple, None) vs numpy and PyTorch."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import kiln
from frontend_helpers import DTYPE_NAMES, assert_same, random_array


def _lse(a, axis, keepdims):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# name -> numpy reference f(a, axis, keepdims)
NP_REDUCE = {
    "sum": lambda a, ax, kd: np.sum(a, axis=ax, keepdims=kd),
    "mean": lambda a, ax, kd: np.mean(a, axis=ax, keepdims=kd),
    "var": lambda a, ax, kd: np.var(a, axis=ax, keepdims=kd, ddof=1),
    "std": lambda a, ax, kd: np.std(a, axis=ax, keepdims=kd, ddof=1),
    "prod": lambda a, ax, kd: np.prod(a, axis=ax, keepdims=kd),
    "amax": lambda a, ax, kd: np.max(a, axis=ax, keepdims=kd),
    "amin": lambda a, ax, kd: np.min(a, axis=ax, keepdims=kd),
    "logsumexp": _lse,
}
DIMS = [None, 0, 1, -1, -3, (0, 2), (-1, 0), (1,), [0, 1, 2]]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("name", sorted(NP_REDUCE))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reduce_vs_numpy(name, dim, keepdim, dtype):
    a = random_array((2, 3, 4), dtype, np.random.default_rng(0), low=0.5, high=1.5)
    axis = tuple(dim) if isinstance(dim, list) else dim
    if name == "logsumexp" and dim is None:
        got = kiln.logsumexp(kiln.tensor(a), tuple(range(3)), keepdim=keepdim)
        axis = (0, 1, 2)
    elif dim is None and not keepdim:
        got = getattr(kiln, name)(kiln.tensor(a)) if name != "logsumexp" else None
    else:
        got = getattr(kiln, name)(kiln.tensor(a), dim, keepdim=keepdim)
    expect = NP_REDUCE[name](a.astype(np.float64), axis, keepdim).astype(dtype)
    assert_same(got, np.asarray(expect), rtol=1e-5 if dtype == "float32" else 1e-10)
    # the method form gives the same
    if name != "logsumexp" and dim is not None:
        assert_same(getattr(kiln.tensor(a), name)(dim, keepdim=keepdim), got)


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "prod", "amax", "amin", "logsumexp", "all", "any"])
def test_reduce_all_dtypes_vs_torch(name, dtype):
    torch = pytest.importorskip("torch")
    a = random_array((3, 4), dtype, np.random.default_rng(1), low=-1.5, high=1.5)
    dims = [None, 0, -1, (0, 1), ()]
    if name == "logsumexp":
        dims = [0, -1, (0, 1)]
    if name == "prod":  # torch.prod takes one int dim (kiln also accepts tuples: tested against numpy)
        dims = [None, 0, -1]
    for dim in dims:
        for keepdim in (False, True):
            args = () if dim is None else (dim,)
            kw = {} if dim is None else dict(keepdim=keepdim)
            if dim is None and keepdim:
                continue
            try:
                expect = getattr(torch, name)(torch.from_numpy(a), *args, **kw)
            except (RuntimeError, NotImplementedError, TypeError):
                with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
                    getattr(kiln, name)(kiln.tensor(a), *args, **kw)
                continue
            got = getattr(kiln, name)(kiln.tensor(a), *args, **kw)
            assert_same(got, expect, **(dict(rtol=2e-3, atol=1e-2) if dtype == "float16" else {}))


def test_sum_and_prod_dtypes():
    i32 = kiln.tensor([1, 2, 3], dtype=kiln.int32)
    assert_same(i32.sum(), np.array(6))  # ints accumulate in int64, like torch
    assert_same(kiln.tensor([True, True, False]).sum(), np.array(2))
    assert_same(i32.prod(), np.array(6))
    assert_same(kiln.sum(i32, dtype=kiln.float64), np.array(6.0))
    assert_same(kiln.tensor([[1.0, 2.0]]).sum(dtype=kiln.float64), np.array(3.0))
    h = kiln.tensor(np.full(4096, 1.0, dtype=np.float16))
    assert_same(h.sum(), np.array(4096, dtype=np.float16))  # accumulates in float32: not stuck at 2048
    assert_same(h.mean(), np.array(1.0, dtype=np.float16))
    p = kiln.tensor(np.array([300.0, 300.0, 1 / 300], dtype=np.float16))
    assert_same(p.prod(), np.array(300.0, dtype=np.float16), rtol=2e-3)  # no float16 overflow of 300 * 300


def test_reductions_of_zero_dim_tensors():
    x = kiln.tensor(2.5)
    for name in ("sum", "mean", "amax", "amin", "prod"):
        out = getattr(kiln, name)(x)
        assert out.shape == () and out.item() == 2.5
        assert getattr(kiln, name)(x, 0).shape == ()
        assert getattr(kiln, name)(x, -1, keepdim=True).shape == ()
    y = kiln.tensor(2.5, requires_grad=True)
    s = y.sum()
    assert s is not y  # a new node, not the input itself
    s.backward()
    assert y.grad.item() == 1.0


def test_empty_dim_tuple_reduces_everything_like_torch():
    a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    x = kiln.tensor(a)
    assert_same(kiln.sum(x, ()), np.array(a.sum(), dtype=np.float32))
    assert_same(kiln.mean(x, (), keepdim=True), np.full((1, 1), a.mean(), dtype=np.float32))
    assert_same(kiln.amax(x), np.array(11.0, dtype=np.float32))
    # ... but all/any with dim=() reduce nothing, as in torch
    assert kiln.all(x > 0, ()).shape == (3, 4)


def test_mean_var_std_options():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 5))
    x = kiln.tensor(a)
    assert_same(kiln.var(x, 1, unbiased=False), np.var(a, axis=1))
    assert_same(kiln.std(x, 0, correction=0), np.std(a, axis=0))
    assert_same(kiln.var(x, correction=2), np.var(a, ddof=2))
    assert_same(kiln.mean(kiln.tensor([1, 2]), dtype=kiln.float32), np.array(1.5, dtype=np.float32))
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype.*int64"):
        kiln.mean(kiln.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="std and var only support floating point"):
        kiln.var(kiln.tensor([1, 2]))
    v, m = kiln.var_mean(x, 1)
    assert_same(v, np.var(a, axis=1, ddof=1))
    assert_same(m, a.mean(1))
    s, m = kiln.std_mean(x, 0, keepdim=True)
    assert_same(s, np.std(a, axis=0, ddof=1, keepdims=True))
    assert_same(m, a.mean(0, keepdims=True))
    assert kiln.is_floating_point(x) and not kiln.is_floating_point(kiln.tensor([1]))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_max_min_with_dim_return_values_and_indices(dtype):
    rng = np.random.default_rng(3)
    a = random_array((3, 5), dtype, rng)
    x = kiln.tensor(a)
    for fn, npf, arg in ((kiln.max, np.max, np.argmax), (kiln.min, np.min, np.argmin)):
        for dim in (0, 1, -1):
            for keepdim in (False, True):
                r = fn(x, dim, keepdim=keepdim)
                values, indices = r
                assert r.values is values and r.indices is indices
                assert_same(values, npf(a, axis=dim, keepdims=keepdim))
                assert_same(indices, np.asarray(arg(a, axis=dim) if not keepdim else
                                                np.expand_dims(arg(a, axis=dim), dim)).astype(np.int64))
                m = getattr(x, fn.__name__)(dim=dim, keepdim=keepdim)
                assert_same(m.values, values)
        assert_same(fn(x), np.asarray(npf(a)))  # full reduction: just the value
    # max(x, other) is maximum
    assert_same(kiln.max(x, kiln.tensor(a[::-1].copy())), np.maximum(a, a[::-1]))


def test_max_min_vs_torch_with_ties():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, -1.0], [5.0, 5.0, 5.0, 5.0]])
    for dim in (0, 1, -1):
        for keepdim in (False, True):
            for name in ("max", "min"):
                kv, ki = getattr(kiln, name)(kiln.tensor(a), dim, keepdim)
                tv, ti = getattr(torch, name)(torch.from_numpy(a), dim, keepdim)
                assert_same(kv, tv)
                assert_same(ki, ti)
            for name in ("argmax", "argmin"):
                assert_same(getattr(kiln, name)(kiln.tensor(a), dim, keepdim),
                            getattr(torch, name)(torch.from_numpy(a), dim, keepdim))
    b = kiln.tensor([True, False])
    assert_same(kiln.max(b), torch.max(torch.tensor([True, False])))
    assert_same(kiln.amax(b), torch.amax(torch.tensor([True, False])))


def test_argmax_argmin_numpy():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    x = kiln.tensor(a)
    assert_same(kiln.argmax(x), np.array(np.argmax(a)))
    assert_same(kiln.argmin(x), np.array(np.argmin(a)))
    assert_same(x.argmax(1), np.argmax(a, axis=1))
    assert_same(x.argmin(-1, keepdim=True), np.expand_dims(np.argmin(a, axis=-1), -1))
    assert_same(kiln.argmax(x, keepdim=True), np.array(np.argmax(a)).reshape(1, 1, 1))
    with pytest.raises(RuntimeError, match="argmax\\(\\): does not support bool input"):
        kiln.argmax(kiln.tensor([True, False]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_log_softmax_numpy(dtype):
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((2, 3, 4)) * 10).astype(dtype)
    for dim in (0, 1, -1):
        s = kiln.softmax(kiln.tensor(a), dim)
        assert_same(s, _softmax(a.astype(np.float64), dim).astype(dtype))
        ls = kiln.log_softmax(kiln.tensor(a), dim)
        assert_same(ls, np.log(_softmax(a.astype(np.float64), dim)).astype(dtype),
                    rtol=1e-5 if dtype == "float32" else 1e-10, atol=1e-5 if dtype == "float32" else 1e-10)
        assert_same(kiln.tensor(a).softmax(dim), s)
    # large inputs stay finite
    big = kiln.tensor([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(kiln.log_softmax(big, 1).numpy()[0, :2]).all()
    assert_same(kiln.softmax(big, 1), np.array([[1.0, 0.0, 0.0]], dtype=np.float32))
    assert_same(kiln.softmax(kiln.tensor([1.0, 2.0]), 0, dtype=kiln.float64), _softmax(np.array([1.0, 2.0]), 0))


def test_softmax_log_softmax_logsumexp_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    for dtype in ("float16", "float32", "float64"):
        a = (rng.standard_normal((3, 5)) * 4).astype(dtype)
        tol = dict(rtol=2e-3, atol=2e-3) if dtype == "float16" else {}
        for dim in (0, 1, -1):
            assert_same(kiln.softmax(kiln.tensor(a), dim), torch.softmax(torch.from_numpy(a), dim), **tol)
            assert_same(kiln.log_softmax(kiln.tensor(a), dim), torch.log_softmax(torch.from_numpy(a), dim), **tol)
            assert_same(kiln.logsumexp(kiln.tensor(a), dim), torch.logsumexp(torch.from_numpy(a), dim), **tol)
            assert_same(kiln.logsumexp(kiln.tensor(a), dim, keepdim=True),
                        torch.logsumexp(torch.from_numpy(a), dim, keepdim=True), **tol)
    inf = np.array([[-np.inf, -np.inf], [0.0, -np.inf]], dtype=np.float32)
    assert_same(kiln.logsumexp(kiln.tensor(inf), 1), torch.logsumexp(torch.from_numpy(inf), 1))


def test_all_any():
    a = np.array([[True, False, True], [True, True, True]])
    x = kiln.tensor(a)
    assert_same(kiln.all(x), np.array(False))
    assert_same(kiln.any(x), np.array(True))
    assert_same(x.all(1), a.all(1))
    assert_same(x.any(0, keepdim=True), a.any(0, keepdims=True))
    assert_same(kiln.all(kiln.tensor([1.0, 2.0])), np.array(True))  # non-bool input: nonzero test
    assert_same(kiln.any(kiln.tensor([0, 0])), np.array(False))
    assert_same(kiln.all(kiln.zeros(0)), np.array(True))
    assert_same(kiln.any(kiln.zeros(0)), np.array(False))
    assert_same(kiln.all(kiln.zeros(2, 0), 1), np.array([True, True]))


def test_reduction_dim_errors():
    x = kiln.zeros(2, 3)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        x.sum(2)
    with pytest.raises(IndexError, match="but got -3"):
        kiln.amax(x, (0, -3))
    with pytest.raises(RuntimeError, match="appears multiple times"):
        x.sum((0, 0))
    with pytest.raises(RuntimeError, match="appears multiple times"):
        x.mean((1, -1))
    with pytest.raises(IndexError, match="Dimension out of range"):
        kiln.max(x, 5)
    with pytest.raises(IndexError, match="Dimension out of range"):
        kiln.softmax(x, 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        kiln.softmax(x, 1.0)
    with pytest.raises(RuntimeError, match="Expected reduction dim to be specified for input.numel\\(\\) == 0"):
        kiln.max(kiln.zeros(0))
    with pytest.raises(IndexError, match="argmax\\(\\): Expected reduction dim 0 to have non-zero size"):
        kiln.argmax(kiln.zeros(0, 3), 0)
    with pytest.raises(IndexError, match="max\\(\\): Expected reduction dim 1 to have non-zero size"):
        kiln.max(kiln.zeros(2, 0), 1)
    with pytest.raises(IndexError, match="amin\\(\\): Expected reduction dim 0 to have non-zero size"):
        kiln.amin(kiln.zeros(0, 3), 0)
    with pytest.raises(RuntimeError, match="amax\\(\\): Expected reduction dim to be specified"):
        kiln.amax(kiln.zeros(0, 3))


def test_reductions_over_empty_dims_like_torch():
    e = kiln.zeros(0, 3)
    assert_same(e.sum(0), np.zeros(3, dtype=np.float32))
    assert_same(e.prod(0), np.ones(3, dtype=np.float32))
    assert_same(e.mean(0), np.full(3, np.nan, dtype=np.float32))
    assert_same(e.logsumexp(0), np.full(3, -np.inf, dtype=np.float32))
    assert e.softmax(0).shape == (0, 3) and kiln.zeros(3, 0).log_softmax(1).shape == (3, 0)
    assert_same(e.amax(1), np.zeros(0, dtype=np.float32))
    assert e.max(1).values.shape == (0,) and e.max(1).indices.dtype is kiln.int64


# ---------------------------------------------------------------------------------- property test
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@st.composite
def _reduction_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"])) if nd else "none"
    if kind == "none":
        dim = None
    elif kind == "int":
        dim = draw(st.integers(-nd, nd - 1))
    else:
        dims = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        dim = tuple(d - nd if draw(st.booleans()) else d for d in dims)
    op = draw(st.sampled_from(["sum", "mean", "var", "std", "amax", "amin", "logsumexp", "prod", "all", "any"]))
    return shape, dim, draw(st.booleans()), op, draw(st.sampled_from(DTYPE_NAMES))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_reduction_cases())
def test_reduction_property_vs_torch(case):
    torch = pytest.importorskip("torch")
    shape, dim, keepdim, op, dtype = case
    a = random_array(shape, dtype, np.random.default_rng(0))
    args, kw = ((), {}) if dim is None else ((dim,), {"keepdim": keepdim})
    if op == "logsumexp" and dim is None:
        args, kw = (tuple(range(len(shape))),), {"keepdim": keepdim}
    if op == "prod" and isinstance(dim, tuple):
        args = (dim[0],)  # torch.prod takes one dim
    if op == "prod" and dtype == "float16":
        return  # torch's float16 prod overflows in intermediate products (kiln accumulates in float32, like sum)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns for var/std with <= 1 degree of freedom (result nan)
            expect = getattr(torch, op)(torch.from_numpy(np.array(a)), *args, **kw)
    except (RuntimeError, TypeError, NotImplementedError):
        return  # an input torch rejects (e.g. mean of ints): covered by the error tests
    got = getattr(kiln, op)(kiln.tensor(a), *args, **kw)
    assert_same(got, expect, **(dict(rtol=1e-2, atol=1e-2) if dtype == "float16" else dict(rtol=1e-5, atol=1e-6)))

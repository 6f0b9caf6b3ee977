"""Property test: broadcasting + type promotion of `+ - * / maximum where ==`.

Random broadcastable shape pairs (0-d and size-1 dims included) and operand kinds (all six
dtypes, or a Python int / float / bool scalar as one operand) must give PyTorch's result
shape, dtype and values. The same examples are also checked against numpy computing in the
dtype given by PyTorch's promotion table as written down in `frontend_helpers`
(`expected_result_type`), so the property holds without torch installed.
"""
from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import kiln
from frontend_helpers import DTYPE_NAMES, assert_same, expected_result_type

OPS = ["add", "sub", "mul", "div", "maximum", "where", "eq"]
SCALAR_KINDS = ["py_int", "py_float", "py_bool"]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def examples(draw):
    op = draw(st.sampled_from(OPS))
    shapes = draw(mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3))
    kind_a = draw(st.sampled_from(DTYPE_NAMES + tuple(SCALAR_KINDS)))
    kinds = DTYPE_NAMES if kind_a in SCALAR_KINDS else DTYPE_NAMES + tuple(SCALAR_KINDS)
    kind_b = draw(st.sampled_from(kinds))  # at most one Python scalar
    swap = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return op, shapes.input_shapes, (kind_b, kind_a) if swap else (kind_a, kind_b), seed


def _operand(kind, shape, rng, nonzero=False):
    """A numpy array (tensor operand) or a Python scalar."""
    if kind == "py_int":
        v = int(rng.integers(-3, 4))
        return (v or 2) if nonzero else v
    if kind == "py_float":
        v = float(rng.choice([-2.5, -1.0, -0.5, 0.0, 0.25, 1.5, 3.0]))
        return (v or 0.75) if nonzero else v
    if kind == "py_bool":
        return True if nonzero else bool(rng.integers(0, 2))
    if kind == "bool":
        a = np.asarray(rng.random(shape) < 0.5)
        return np.ones(shape, dtype=bool) if nonzero else a
    if kind in ("int32", "int64"):
        a = np.array(rng.integers(-4, 5, size=shape), dtype=kind)
        if nonzero:
            a[a == 0] = 3
        return a
    a = np.array(rng.standard_normal(shape) * 2, dtype=kind)
    if nonzero:
        a[np.abs(a) < 0.1] = 0.5
    if not nonzero and a.size:
        a.flat[0] = 1.0  # some equal values so == is exercised
    return a


def _make(x, mod):
    return mod.tensor(x) if isinstance(x, np.ndarray) else x


def _apply(mod, op, a, b, cond):
    if op == "where":
        return mod.where(cond, a, b)
    if op == "eq":
        return a == b if isinstance(a, mod.Tensor) else b == a
    fn = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}.get(op)
    if fn is not None:
        return fn(a, b)
    return mod.maximum(a, b)


def _build(op, shapes, kinds, seed):
    rng = np.random.default_rng(seed)
    a = _operand(kinds[0], shapes[0], rng)
    b = _operand(kinds[1], shapes[1], rng, nonzero=op == "div")
    cond = np.asarray(rng.random(shapes[2]) < 0.5)
    return a, b, cond


def _desc(x):
    return ("tensor", x.dtype.name if x.dtype != np.bool_ else "bool", x.ndim) if isinstance(x, np.ndarray) else x


def _numpy_reference(op, a, b, cond):
    """numpy result computed in the dtype PyTorch's promotion table gives (None: PyTorch raises)."""
    ops = (a, b) if op != "where" else (a, b)
    want = expected_result_type(*(_desc(x) for x in ops))
    shape = np.broadcast_shapes(*(np.shape(x) for x in ops), *(() if op != "where" else (cond.shape,)))
    if op == "sub" and (want == "bool" or any(isinstance(x, (bool, np.bool_)) or
                                              (isinstance(x, np.ndarray) and x.dtype == np.bool_) for x in ops)):
        return None  # PyTorch: "Subtraction, the `-` operator, with a bool tensor is not supported"
    if op == "div" and want in ("bool", "int32", "int64"):
        want = "float32"  # true division of integers gives the default float dtype
    npw = np.dtype(np.bool_) if want == "bool" else np.dtype(want)
    x, y = (np.asarray(v).astype(npw) for v in ops)
    with np.errstate(all="ignore"):
        if op == "add":
            r = np.logical_or(x, y) if want == "bool" else x + y
        elif op == "sub":
            r = x - y
        elif op == "mul":
            r = np.logical_and(x, y) if want == "bool" else x * y
        elif op == "div":
            r = (x.astype(np.float64) / y.astype(np.float64)).astype(npw)
        elif op == "maximum":
            r = np.maximum(x, y)
        elif op == "where":
            r = np.where(cond, x, y)
        else:
            r = x == y
    return np.broadcast_to(np.asarray(r).astype(np.bool_ if op == "eq" else npw), shape)


@SETTINGS
@given(examples())
def test_promotion_and_broadcasting_vs_numpy_table(ex):
    op, shapes, kinds, seed = ex
    a, b, cond = _build(op, shapes, kinds, seed)
    expect = _numpy_reference(op, a, b, cond)
    if expect is None:
        with pytest.raises(RuntimeError, match="Subtraction"):
            _apply(kiln, op, _make(a, kiln), _make(b, kiln), kiln.tensor(cond))
        return
    got = _apply(kiln, op, _make(a, kiln), _make(b, kiln), kiln.tensor(cond))
    assert_same(got, expect, rtol=1e-3 if expect.dtype == np.float16 else 1e-6,
                atol=1e-3 if expect.dtype == np.float16 else 1e-6)


@SETTINGS
@given(examples())
def test_promotion_and_broadcasting_vs_torch(ex):
    torch = pytest.importorskip("torch")
    op, shapes, kinds, seed = ex
    a, b, cond = _build(op, shapes, kinds, seed)
    ta, tb = _make(a, torch), _make(b, torch)
    if op == "maximum" and not (isinstance(ta, torch.Tensor) and isinstance(tb, torch.Tensor)):
        # torch.maximum takes no Python scalars; clamp(min=) is the same weak-scalar op (but has no bool kernel)
        t, sc = (tb, ta) if isinstance(tb, torch.Tensor) else (ta, tb)
        if t.dtype != torch.bool:
            assert_same(kiln.maximum(_make(a, kiln), _make(b, kiln)), torch.clamp(t, min=sc))
            return
        assert_same(kiln.maximum(_make(a, kiln), _make(b, kiln)), _numpy_reference(op, a, b, cond))
        return
    try:
        expect = _apply(torch, op, ta, tb, torch.from_numpy(cond))
    except (RuntimeError, NotImplementedError):
        with pytest.raises((RuntimeError, NotImplementedError)):
            _apply(kiln, op, _make(a, kiln), _make(b, kiln), kiln.tensor(cond))
        return
    got = _apply(kiln, op, _make(a, kiln), _make(b, kiln), kiln.tensor(cond))
    f16 = expect.dtype == torch.float16
    assert_same(got, expect, rtol=1e-3 if f16 else 1e-6, atol=1e-3 if f16 else 1e-6)


def test_written_down_table_matches_torch_result_type():
    """The promotion table used by the numpy oracle agrees with torch.result_type on every pair."""
    torch = pytest.importorskip("torch")
    scalars = [2, 2.5, True]
    for da in DTYPE_NAMES:
        for nd_a in (0, 1):
            ta = torch.zeros((2,) * nd_a, dtype=getattr(torch, da))
            for db in DTYPE_NAMES:
                for nd_b in (0, 1):
                    tb = torch.zeros((2,) * nd_b, dtype=getattr(torch, db))
                    want = str(torch.result_type(ta, tb)).replace("torch.", "")
                    assert expected_result_type(("t", da, nd_a), ("t", db, nd_b)) == want, (da, nd_a, db, nd_b)
            for s in scalars:
                want = str(torch.result_type(ta, s)).replace("torch.", "")
                assert expected_result_type(("t", da, nd_a), s) == want, (da, nd_a, s)


def test_kiln_result_type_matches_written_down_table():
    """kiln's promotion (kiln.ir.dtypes.result_type) agrees with the table, independent of torch."""
    from kiln.ir import dtypes as kdt
    for da in DTYPE_NAMES:
        for nd_a in (0, 1):
            for db in DTYPE_NAMES:
                for nd_b in (0, 1):
                    got = kdt.result_type((getattr(kdt, da if da != "bool" else "bool_"), 2 - (nd_a == 0)),
                                          (getattr(kdt, db if db != "bool" else "bool_"), 2 - (nd_b == 0)))
                    assert got.name == expected_result_type(("t", da, nd_a), ("t", db, nd_b))
            for s in (2, 2.5, True):
                x = kiln.zeros((2,) * nd_a, dtype=getattr(kiln, da))
                assert (x + s if da != "bool" or isinstance(s, bool) else x + s).dtype.name == \
                    expected_result_type(("t", da, nd_a), s)

"""Elementwise ops and operators: values, result dtypes and broadcasting vs numpy and PyTorch."""
from __future__ import annotations

import math
import zlib
import operator

import numpy as np
import pytest

import kiln
from frontend_helpers import (DTYPE_NAMES, FLOAT_NAMES, assert_same, expected_result_type, random_array,
                              torch_dtype)

_erf = np.vectorize(math.erf, otypes=[np.float64])

# name -> (numpy reference on float64, domain)
UNARY_FLOAT = {
    "exp": (np.exp, "any"),
    "log": (np.log, "pos"),
    "log1p": (np.log1p, "pos"),
    "sqrt": (np.sqrt, "pos"),
    "rsqrt": (lambda x: 1 / np.sqrt(x), "pos"),
    "sin": (np.sin, "any"),
    "cos": (np.cos, "any"),
    "tanh": (np.tanh, "any"),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), "any"),
    "erf": (_erf, "any"),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), "any"),
}
# ops that keep the input dtype (ints too)
UNARY_SAME = {
    "abs": np.abs,
    "neg": np.negative,
    "sign": np.sign,
    "relu": lambda x: np.maximum(x, 0),
}


def _kfn(name):
    return getattr(kiln, name, None) or getattr(kiln.nn.functional, name)


def _tfn(torch, name):
    return getattr(torch, name, None) or getattr(torch.nn.functional, name)


# ---------------------------------------------------------------------------------- unary
@pytest.mark.parametrize("dtype", FLOAT_NAMES + ("float16",))
@pytest.mark.parametrize("name", sorted(UNARY_FLOAT))
def test_unary_float_vs_numpy(name, dtype):
    ref, domain = UNARY_FLOAT[name]
    rng = np.random.default_rng(1)
    a = random_array((3, 5), dtype, rng, positive=domain == "pos")
    out = getattr(kiln, name)(kiln.tensor(a)) if hasattr(kiln, name) else None
    if out is None:
        pytest.fail(f"kiln.{name} is missing")
    expect = ref(a.astype(np.float64)).astype(dtype)
    assert_same(out, expect)


@pytest.mark.parametrize("dtype", ("int32", "int64", "bool"))
@pytest.mark.parametrize("name", sorted(set(UNARY_FLOAT) - {"gelu"}))
def test_unary_float_ops_promote_ints_to_float32(name, dtype):
    """exp(int tensor) etc. compute in the default float dtype, like PyTorch."""
    ref, domain = UNARY_FLOAT[name]
    a = random_array((7,), dtype, np.random.default_rng(2), positive=True)
    out = getattr(kiln, name)(kiln.tensor(a))
    with np.errstate(all="ignore"):
        expect = ref(a.astype(np.float64)).astype(np.float32)
    assert_same(out, expect)


@pytest.mark.parametrize("dtype", ("float32", "float64", "int32", "int64"))
@pytest.mark.parametrize("name", sorted(UNARY_SAME))
def test_unary_same_dtype_vs_numpy(name, dtype):
    a = random_array((4, 3), dtype, np.random.default_rng(3))
    a.flat[0] = 0
    out = getattr(kiln, name)(kiln.tensor(a))
    assert_same(out, UNARY_SAME[name](a).astype(dtype))


@pytest.mark.parametrize("dtype", FLOAT_NAMES + ("int32", "int64", "bool"))
@pytest.mark.parametrize("name", sorted(UNARY_FLOAT) + sorted(UNARY_SAME))
def test_unary_vs_torch(name, dtype):
    torch = pytest.importorskip("torch")
    a = random_array((2, 3, 4), dtype, np.random.default_rng(4), positive=UNARY_FLOAT.get(name, (0, ""))[1] == "pos")
    try:
        expect = _tfn(torch, name)(torch.from_numpy(a))
    except (RuntimeError, NotImplementedError, TypeError):
        with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
            getattr(kiln, name)(kiln.tensor(a))
        return
    assert_same(getattr(kiln, name)(kiln.tensor(a)), expect)


def test_unary_methods_and_operators():
    a = np.array([[-1.5, 0.0, 2.0]], dtype=np.float32)
    x = kiln.tensor(a)
    assert_same(-x, -a)
    assert_same(abs(x), np.abs(a))
    assert_same(x.exp(), np.exp(a))
    assert_same(x.abs().sqrt(), np.sqrt(np.abs(a)))
    assert_same(x.sigmoid(), 1 / (1 + np.exp(-a)))
    assert_same(x.relu(), np.maximum(a, 0))
    assert_same(kiln.nn.functional.relu(x) if hasattr(kiln, "nn") else kiln.relu(x), np.maximum(a, 0))
    m = kiln.tensor([True, False])
    assert_same(~m, np.array([False, True]))
    assert_same(x.sign(), np.sign(a))


def test_gelu_tanh_approximation():
    a = np.linspace(-4, 4, 17)
    inner = math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)
    assert_same(kiln.gelu(kiln.tensor(a), approximate="tanh"), 0.5 * a * (1 + np.tanh(inner)))


def test_unary_extremes():
    x = kiln.tensor([-1000.0, -20.0, 0.0, 20.0, 1000.0], dtype=kiln.float64)
    with np.errstate(over="ignore"):
        assert_same(kiln.sigmoid(x), 1 / (1 + np.exp(-np.array([-1000.0, -20.0, 0.0, 20.0, 1000.0]))))
    assert not np.isnan(kiln.tanh(x).numpy()).any()
    assert_same(kiln.log(kiln.tensor([0.0, -1.0])), np.array([-np.inf, np.nan], dtype=np.float32))


# ---------------------------------------------------------------------------------- binary
BINARY = {
    "add": (operator.add, np.add),
    "sub": (operator.sub, np.subtract),
    "mul": (operator.mul, np.multiply),
    "div": (operator.truediv, np.true_divide),
    "floor_divide": (operator.floordiv, np.floor_divide),
    "remainder": (operator.mod, np.remainder),
    "pow": (operator.pow, np.power),
    "maximum": (None, np.maximum),
    "minimum": (None, np.minimum),
}
COMPARE = {
    "eq": (operator.eq, np.equal), "ne": (operator.ne, np.not_equal), "lt": (operator.lt, np.less),
    "le": (operator.le, np.less_equal), "gt": (operator.gt, np.greater), "ge": (operator.ge, np.greater_equal),
}
SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5,), ()), ((1,), (2, 2))]


def _binary_inputs(name, da, db, sa, sb, seed=0):
    rng = np.random.default_rng(seed)
    positive = name == "pow"
    a = random_array(sa, da, rng, positive=positive)
    b = random_array(sb, db, rng, nonzero=name in ("div", "floor_divide", "remainder"), positive=False)
    if name == "pow":
        b = random_array(sb, db, rng, low=0, high=3) if db not in ("int32", "int64") else \
            rng.integers(0, 4, size=sb).astype(db)
    return a, b


@pytest.mark.parametrize("sa,sb", SHAPE_PAIRS)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcast_vs_numpy(name, sa, sb):
    a, b = _binary_inputs(name, "float64", "float64", sa, sb)
    op, ref = BINARY[name]
    expect = ref(a, b)
    assert_same(getattr(kiln, name)(kiln.tensor(a), kiln.tensor(b)), expect)
    if op is not None:
        assert_same(op(kiln.tensor(a), kiln.tensor(b)), expect)


@pytest.mark.parametrize("db", DTYPE_NAMES)
@pytest.mark.parametrize("da", DTYPE_NAMES)
def test_binary_dtype_table_numpy(da, db):
    """Result dtypes follow PyTorch's promotion table (written down in frontend_helpers)."""
    a, b = _binary_inputs("add", da, db, (3, 2), (2,))
    want = expected_result_type(("t", da, 2), ("t", db, 1))
    if want == "bool":
        assert_same(kiln.tensor(a) + kiln.tensor(b), a | b)
        assert_same(kiln.tensor(a) * kiln.tensor(b), a & b)
        return
    ref = (a.astype(np.float64) + b.astype(np.float64)).astype(want)
    assert_same(kiln.tensor(a) + kiln.tensor(b), ref)
    assert_same(kiln.tensor(a) * kiln.tensor(b), (a.astype(np.float64) * b.astype(np.float64)).astype(want))
    div_want = want if want.startswith("float") else "float32"
    bb = np.where(b == 0, 1, b).astype(db)
    assert_same(kiln.tensor(a) / kiln.tensor(bb), (a.astype(np.float64) / bb.astype(np.float64)).astype(div_want),
                rtol=2e-3 if div_want == "float16" else 1e-6)


@pytest.mark.parametrize("db", DTYPE_NAMES)
@pytest.mark.parametrize("da", DTYPE_NAMES)
@pytest.mark.parametrize("name", sorted(BINARY) + sorted(COMPARE))
def test_binary_all_dtypes_vs_torch(name, da, db):
    torch = pytest.importorskip("torch")
    a, b = _binary_inputs(name, da, db, (2, 3), (3,), seed=zlib.crc32(f"{name}{da}{db}".encode()))
    tf = getattr(torch, name)
    try:
        expect = tf(torch.from_numpy(a), torch.from_numpy(b))
    except (RuntimeError, NotImplementedError, TypeError):
        with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
            getattr(kiln, name)(kiln.tensor(a), kiln.tensor(b))
        return
    got = getattr(kiln, name)(kiln.tensor(a), kiln.tensor(b))
    tol = {}
    if name in ("floor_divide", "remainder") and "float16" in (da, db):
        tol = dict(rtol=1e-2, atol=1e-2)
    assert_same(got, expect, **tol)


SCALARS = [2, -3, 2.5, True, False, 0.5]


@pytest.mark.parametrize("scalar", SCALARS, ids=repr)
@pytest.mark.parametrize("da", DTYPE_NAMES)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "floor_divide", "remainder", "pow", "eq", "lt"])
def test_tensor_scalar_vs_torch(name, da, scalar):
    """Python scalars are weak: they never widen a tensor of the same category (both operand orders)."""
    torch = pytest.importorskip("torch")
    a = random_array((2, 3), da, np.random.default_rng(5), positive=True)
    op = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
          "floor_divide": operator.floordiv, "remainder": operator.mod, "pow": operator.pow,
          "eq": operator.eq, "lt": operator.lt}[name]
    for left in (False, True):
        args_t = (scalar, torch.from_numpy(a)) if left else (torch.from_numpy(a), scalar)
        args_k = (scalar, kiln.tensor(a)) if left else (kiln.tensor(a), scalar)
        try:
            expect = op(*args_t)
        except (RuntimeError, NotImplementedError, TypeError, ZeroDivisionError):
            with pytest.raises((RuntimeError, NotImplementedError, TypeError, ZeroDivisionError)):
                op(*args_k)
            continue
        assert_same(op(*args_k), expect)


@pytest.mark.parametrize("zd", DTYPE_NAMES)
@pytest.mark.parametrize("da", DTYPE_NAMES)
def test_zero_dim_tensor_is_weak_numpy(da, zd):
    a = random_array((4,), da, np.random.default_rng(6), positive=True)
    z = np.array(2, dtype=zd) if zd != "bool" else np.array(True)
    want = expected_result_type(("t", da, 1), ("t", zd, 0))
    got = kiln.maximum(kiln.tensor(a), kiln.tensor(z))
    assert got.dtype.name == want
    assert_same(got, np.maximum(a.astype(np.float64), z.astype(np.float64)).astype(want))
    # two 0-d tensors: ordinary promotion between them
    assert (kiln.tensor(z) * kiln.tensor(np.array(1, dtype=da))).dtype.name == expected_result_type(
        ("t", zd, 0), ("t", da, 0)) or expected_result_type(("t", zd, 0), ("t", da, 0)) == "bool"


def test_zero_dim_tensor_values_vs_torch():
    torch = pytest.importorskip("torch")
    for da in DTYPE_NAMES:
        for zd in DTYPE_NAMES:
            a = random_array((3,), da, np.random.default_rng(7), positive=True)
            z = np.array(3, dtype=zd)
            for name in ("add", "mul", "maximum", "minimum", "eq"):
                try:
                    expect = getattr(torch, name)(torch.from_numpy(a), torch.from_numpy(z))
                except RuntimeError:
                    continue
                assert_same(getattr(kiln, name)(kiln.tensor(a), kiln.tensor(z)), expect)


def test_reflected_operators_numpy():
    a = np.array([[1.5, -2.0, 4.0]], dtype=np.float32)
    x = kiln.tensor(a)
    assert_same(2 + x, 2 + a)
    assert_same(2 - x, 2 - a)
    assert_same(2 * x, 2 * a)
    assert_same(2 / x, (2 / a).astype(np.float32))
    assert_same(7 // x, np.floor_divide(7, a).astype(np.float32))
    assert_same(7 % x, np.remainder(7, a).astype(np.float32))
    assert_same(2 ** x, np.power(2, a).astype(np.float32))
    assert_same(x ** 2, a ** 2)
    assert_same(abs(x) ** 0.5, np.sqrt(np.abs(a)))
    i = kiln.tensor([1, 2, 3])
    assert_same(2 ** i, np.array([2, 4, 8]))
    assert_same(1.5 * i, np.array([1.5, 3, 4.5], dtype=np.float32))
    assert_same(10 // i, np.array([10, 5, 3]))
    assert_same(-7 % i, np.array([0, 1, 2]))
    assert_same(i / 2, np.array([0.5, 1.0, 1.5], dtype=np.float32))


def test_integer_division_semantics_like_torch():
    a = np.array([-7, -6, 7, 6, 0])
    b = np.array([2, -4, -3, 4, 5])
    x, y = kiln.tensor(a), kiln.tensor(b)
    assert_same(x // y, np.floor_divide(a, b))
    assert_same(x % y, np.remainder(a, b))  # sign of the divisor, like Python and torch
    assert_same(kiln.div(x, y, rounding_mode="trunc"), np.trunc(a / b).astype(np.int64))
    assert_same(kiln.div(x, y, rounding_mode="floor"), np.floor_divide(a, b))
    assert_same(x / y, (a / b).astype(np.float32))
    f = kiln.tensor([-7.5, 7.5])
    assert_same(kiln.div(f, 2, rounding_mode="trunc"), np.array([-3.0, 3.0], dtype=np.float32))
    assert_same(f % 2, np.array([0.5, 1.5], dtype=np.float32))


def test_integer_pow():
    assert_same(kiln.tensor([2, 3]) ** 3, np.array([8, 27]))
    assert_same(kiln.pow(kiln.tensor([2, 1, -1, -1, -2]), kiln.tensor([-1, -5, -3, -2, 2])),
                np.array([0, 1, -1, 1, 4]))
    with pytest.raises(RuntimeError, match="Integers to negative integer powers are not allowed"):
        kiln.tensor([2, 3]) ** -1
    assert_same(kiln.tensor([2, 4]) ** -1.0, np.array([0.5, 0.25], dtype=np.float32))


def test_bool_arithmetic_like_torch():
    m = np.array([True, False, True])
    n = np.array([True, True, False])
    x, y = kiln.tensor(m), kiln.tensor(n)
    assert_same(x + y, m | n)
    assert_same(x * y, m & n)
    assert_same(x & y, m & n)
    assert_same(x | y, m | n)
    assert_same(x ^ y, m ^ n)
    assert_same(x & True, m)
    assert_same(True ^ x, ~m)
    assert_same(x + 1, m.astype(np.int64) + 1)
    assert_same(x * 1.5, (m * 1.5).astype(np.float32))
    with pytest.raises(RuntimeError, match="Subtraction.*bool"):
        x - y
    with pytest.raises(RuntimeError, match="Subtraction.*bool"):
        x - 1
    with pytest.raises(RuntimeError, match="Negation.*bool"):
        -x
    with pytest.raises(TypeError, match="bitwise.*int64"):
        kiln.tensor([1, 2]) & kiln.tensor([3, 1])


def test_comparisons_numpy():
    rng = np.random.default_rng(8)
    a = rng.integers(0, 3, (3, 4)).astype(np.float32)
    b = rng.integers(0, 3, (4,)).astype(np.int64)
    for name, (op, ref) in COMPARE.items():
        assert_same(op(kiln.tensor(a), kiln.tensor(b)), ref(a, b))
        assert_same(getattr(kiln, name)(kiln.tensor(a), 1), ref(a, 1))
        assert_same(op(kiln.tensor(a), 1.0), ref(a, 1.0))
    # reflected comparison with a scalar on the left
    assert_same(1 < kiln.tensor(a), 1 < a)
    assert_same(1 == kiln.tensor(b), b == 1)
    # float vs int compare in the promoted dtype (0.5 is not truncated)
    assert_same(kiln.tensor([0, 1]) < 0.5, np.array([True, False]))


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_maximum_minimum_numpy(dtype):
    rng = np.random.default_rng(9)
    a, b = random_array((3, 1), dtype, rng), random_array((4,), dtype, rng)
    assert_same(kiln.maximum(kiln.tensor(a), kiln.tensor(b)), np.maximum(a, b))
    assert_same(kiln.minimum(kiln.tensor(a), kiln.tensor(b)), np.minimum(a, b))


def test_maximum_propagates_nan():
    a = kiln.tensor([np.nan, 1.0, 2.0])
    b = kiln.tensor([0.0, np.nan, 1.0])
    assert_same(kiln.maximum(a, b), np.array([np.nan, np.nan, 2.0], dtype=np.float32))
    assert_same(kiln.minimum(a, b), np.array([np.nan, np.nan, 1.0], dtype=np.float32))


# ---------------------------------------------------------------------------------- clamp / where
@pytest.mark.parametrize("dtype", ("float32", "float64", "int32", "int64"))
def test_clamp_numpy(dtype):
    a = random_array((3, 4), dtype, np.random.default_rng(10))
    x = kiln.tensor(a)
    assert_same(kiln.clamp(x, -1, 2), np.clip(a, -1, 2))
    assert_same(x.clamp(min=0), np.maximum(a, 0))
    assert_same(x.clamp(max=1), np.minimum(a, 1))
    assert_same(kiln.clip(x, 0, 1), np.clip(a, 0, 1))
    lo = np.full((4,), -0.5, dtype=dtype)
    assert_same(kiln.clamp(x, min=kiln.tensor(lo)), np.maximum(a, lo))


def test_clamp_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    for dtype in ("float32", "float64", "int32", "int64"):
        a = random_array((3, 4), dtype, rng)
        for kw in (dict(min=-1), dict(max=2), dict(min=-1, max=2), dict(min=0.5), dict(min=3, max=2),
                   dict(min=-1.5, max=1.5)):
            assert_same(kiln.clamp(kiln.tensor(a), **kw), torch.clamp(torch.from_numpy(a), **kw))
        lo = random_array((4,), "float64", rng)
        assert_same(kiln.clamp(kiln.tensor(a), min=kiln.tensor(lo)), torch.clamp(torch.from_numpy(a),
                                                                                 min=torch.from_numpy(lo)))
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max'"):
        kiln.clamp(kiln.ones(2))


def test_where_numpy():
    rng = np.random.default_rng(12)
    c = rng.random((3, 1)) < 0.5
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float64)
    assert_same(kiln.where(kiln.tensor(c), kiln.tensor(a), kiln.tensor(b)), np.where(c, a, b))
    assert_same(kiln.where(kiln.tensor(c), kiln.tensor(a), 0.0), np.where(c, a, np.float32(0)))
    assert_same(kiln.where(kiln.tensor(c), 1, 2), np.where(c, 1, 2).astype(np.int64))
    assert_same(kiln.where(kiln.tensor(c), 1, 2.5), np.where(c, 1, 2.5).astype(np.float32))
    assert_same(kiln.where(kiln.tensor(a) > 0, kiln.tensor(a), kiln.zeros(())), np.where(a > 0, a, 0))


def test_where_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    c = rng.random((2, 3)) < 0.5
    for da in DTYPE_NAMES:
        for db in DTYPE_NAMES:
            a = random_array((2, 3), da, rng)
            b = random_array((3,), db, rng)
            assert_same(kiln.where(kiln.tensor(c), kiln.tensor(a), kiln.tensor(b)),
                        torch.where(torch.from_numpy(c), torch.from_numpy(a), torch.from_numpy(b)))
            assert_same(kiln.where(kiln.tensor(c), kiln.tensor(a), 2.5),
                        torch.where(torch.from_numpy(c), torch.from_numpy(a), 2.5))


def test_where_single_argument_is_nonzero():
    c = kiln.tensor([[True, False], [False, True]])
    r, k = kiln.where(c)
    assert_same(r, np.array([0, 1]))
    assert_same(k, np.array([0, 1]))


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-30, -1e30, 88.0, -88.0, 1000.0], dtype=np.float32)


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu",
                                  "abs", "neg", "sign", "erf", "floor", "ceil", "round", "trunc", "isnan", "isinf",
                                  "isfinite"])
def test_special_values_vs_torch(name):
    torch = pytest.importorskip("torch")
    with np.errstate(all="ignore"):
        expect = getattr(torch, name)(torch.from_numpy(SPECIAL.copy()))
    assert_same(getattr(kiln, name)(kiln.tensor(SPECIAL)), expect)


def test_nan_handling_numpy():
    x = kiln.tensor([np.nan, -1.0, 2.0])
    assert_same(kiln.relu(x), np.array([np.nan, 0.0, 2.0], dtype=np.float32))  # nan passes through relu
    assert_same(kiln.sign(x), np.array([0.0, -1.0, 1.0], dtype=np.float32))  # torch.sign(nan) == 0
    assert_same(kiln.clamp(x, 0, 1), np.array([np.nan, 0.0, 1.0], dtype=np.float32))
    assert_same(x == x, np.array([False, True, True]))
    assert_same(kiln.isnan(x), np.array([True, False, False]))

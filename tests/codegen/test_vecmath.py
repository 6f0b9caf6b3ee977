"""Vector math (kiln.codegen.vecmath), its decomposition pass and the kernel-IR evaluator.

Accuracy is measured in ulp of the target dtype against a float64 (for float32) or
long-double (for float64) numpy reference, over sweeps of bit patterns that cover the
whole range; the bounds are the ones stated in docs/vecmath.md. The sweep helpers
(`float_sweep`, `special_values`, `ulp_error`, `reference`) are plain functions so the
same data can be fed to compiled kernels once a native renderer exists.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kiln.codegen.decompose import decompose
from kiln.codegen.kir import (SCALAR_OPS, Const, Assign, BufferParam, If, KernelFunc, Let, Load, Loop, Op, Store,
                              Var, Fail, const, idx, op, walk_exprs, walk_stmts)
from kiln.codegen.kir_eval import KernelFailure, eval_expr, run_kernel
from kiln.codegen.kir_verify import verify_kernel
from kiln.codegen import vecmath
from kiln.ir import dtypes as dt

# the numpy references overflow and produce nan on purpose at special values
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

L = np.longdouble
UNARY = ["exp", "expm1", "log", "log1p", "tanh", "logistic", "erf", "sin", "cos", "rsqrt"]

# max ulp error, as stated in docs/vecmath.md (measured maximum, rounded up)
BOUND_F32 = {"exp": 1, "expm1": 1.5, "log": 1, "log1p": 1.5, "tanh": 2.5, "logistic": 2.5, "erf": 1,
             "sin": 1.5, "cos": 1.5, "rsqrt": 1.5, "pow": 1}
BOUND_F64 = {"exp": 1, "expm1": 2, "log": 1, "log1p": 1.5, "tanh": 2.5, "logistic": 2.5, "erf": 1.5,
             "sin": 2.5, "cos": 2.5, "rsqrt": 1.5, "pow": 1.5}
SIN_COS_RANGE = {np.float32: 1.0e5, np.float64: 1.0e5}  # accuracy is asserted over |x| <= this


# ---------------------------------------------------------------------------------------
# Reusable sweep helpers
# ---------------------------------------------------------------------------------------

_UINT = {np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}


def special_values(ftype) -> np.ndarray:
    """+-0, smallest and largest denormal, smallest normal, +-1, largest finite, +-inf, nan."""
    fi = np.finfo(ftype)
    v = [0.0, fi.smallest_subnormal, fi.smallest_normal - fi.smallest_subnormal, fi.smallest_normal, 1.0,
         fi.max, np.inf]
    a = np.array(v, ftype)
    return np.concatenate([a, -a, np.array([np.nan], ftype)])


def float_sweep(ftype, step_log2: int, n_random: int = 0, seed: int = 0) -> np.ndarray:
    """Every 2**step_log2-th bit pattern (both signs, all exponents), the special values and
    `n_random` random bit patterns; non-finite patterns other than +-inf and one nan dropped."""
    u = _UINT[ftype]
    width = 8 * np.dtype(ftype).itemsize
    pats = np.arange(0, 2 ** width, 2 ** step_log2 + 1, dtype=np.uint64 if width == 64 else np.int64)
    if width == 64:
        pats = np.arange(0, 2 ** 64 // (2 ** step_log2 + 1), dtype=np.uint64) * np.uint64(2 ** step_log2 + 1)
    rnd = np.random.default_rng(seed).integers(0, 2 ** width - 1, n_random, dtype=np.uint64, endpoint=True)
    x = np.concatenate([pats.astype(u), rnd.astype(u)]).view(ftype)
    x = x[np.isfinite(x)]
    return np.concatenate([x, special_values(ftype)])


def ulp_error(got: np.ndarray, ref: np.ndarray, ftype) -> np.ndarray:
    """|got - ref| in units of the last place of `ref` in `ftype` (denormal ulp below the
    normal range). `ref` must be finite and more precise than `ftype`."""
    fi = np.finfo(ftype)
    ref = np.asarray(ref, L)
    e = np.floor(np.log2(np.maximum(np.abs(ref), L(fi.smallest_normal))))
    return (np.abs(np.asarray(got, L) - ref) / np.exp2(e - fi.nmant)).astype(np.float64)


def reference(name: str, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """The exact-enough value of `name`: float64 for float32/16 inputs, long double for float64."""
    w = L if x.dtype == np.float64 else np.float64
    xw = x.astype(w)
    with np.errstate(all="ignore"):
        if name == "logistic":
            return 1 / (1 + np.exp(-xw))
        if name == "rsqrt":
            return 1 / np.sqrt(xw)
        if name == "erf":
            return np.array([math.erf(v) for v in x.astype(np.float64)], np.float64).astype(w)
        if name == "pow":
            return np.power(xw, y.astype(w))
        return getattr(np, name)(xw)


def evaluate(name: str, *args: np.ndarray, backend: str = "kir_eval") -> np.ndarray:
    """Run vecmath's body for `name` on numpy inputs: through kir_eval, or as native code
    (`backend="llvm"`: a kernel applying the composite op, decomposed, rendered and JIT-compiled)."""
    d = dt.from_numpy_dtype(args[0].dtype)
    if backend == "llvm":
        return native(name, *args)
    vs = [Var(f"x{i}", d) for i in range(len(args))]
    return eval_expr(vecmath.VECMATH[name](*vs), {v.name: a for v, a in zip(vs, args)})


def math_kernel(name: str, d, n: int) -> KernelFunc:
    """out[i] = name(in0[i], ...) over n elements, the composite op left for decompose."""
    arity = 2 if name == "pow" else 1
    i = Var("i", dt.int64)
    params = [BufferParam(f"in{k}", d, n) for k in range(arity)] + [BufferParam("out", d, n, "w")]
    value = op(name, *[Load(f"in{k}", i, d) for k in range(arity)])
    return KernelFunc(f"vm_{name}_{d.name}", params, [Loop(i, Const(n, dt.int64), [Store("out", i, value)])])


def native(name: str, *args: np.ndarray) -> np.ndarray:
    from kiln.runtime.llvm_backend import run_kernel_native
    d = dt.from_numpy_dtype(args[0].dtype)
    flat = [np.ascontiguousarray(a).reshape(-1) for a in args]
    (out,) = run_kernel_native(math_kernel(name, d, flat[0].size), flat)
    return out.reshape(args[0].shape)


BACKENDS = ["kir_eval", "llvm"]


def _finite_ref(ref: np.ndarray, ftype) -> np.ndarray:
    return np.isfinite(ref) & (np.abs(ref) <= L(np.finfo(ftype).max))


def _assert_within(name, x, got, ref, ftype, bound):
    ok = _finite_ref(ref, ftype)
    err = ulp_error(got[ok], ref[ok], ftype)
    worst = int(np.argmax(err))
    assert err[worst] <= bound, (f"{name} {np.dtype(ftype).name}: {err[worst]:.2f} ulp at x={x[ok][worst]!r} "
                                 f"(got {got[ok][worst]!r}, want {ref[ok][worst]!r}); bound {bound}")
    # where the true value overflows the format, the result is the infinity (or nan) numpy gives
    over = ~ok
    with np.errstate(over="ignore"):
        want = ref[over].astype(ftype)
    same = (got[over] == want) | (np.isnan(got[over]) & np.isnan(want))
    assert same.all(), f"{name}: {x[over][~same][:5]!r} gave {got[over][~same][:5]!r}, want {want[~same][:5]!r}"


# ---------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", UNARY)
def test_float32_accuracy_over_whole_range(name, backend):
    x = float_sweep(np.float32, 15, n_random=20000)
    if name in ("sin", "cos"):
        x = x[~(np.abs(x) > SIN_COS_RANGE[np.float32])]
    got = evaluate(name, x, backend=backend)
    assert got.dtype == np.float32
    _assert_within(name, x, got, reference(name, x), np.float32, BOUND_F32[name])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", UNARY)
def test_float64_accuracy(name, backend):
    rng = np.random.default_rng(1)
    x = np.concatenate([float_sweep(np.float64, 50, n_random=5000), rng.uniform(-40, 40, 20000),
                        rng.standard_normal(5000) * 1e-3, np.exp(rng.uniform(-700, 700, 5000))])
    if name in ("sin", "cos"):
        x = x[~(np.abs(x) > SIN_COS_RANGE[np.float64])]
    got = evaluate(name, x, backend=backend)
    assert got.dtype == np.float64
    _assert_within(name, x, got, reference(name, x), np.float64, BOUND_F64[name])


@pytest.mark.parametrize("name", ["sin", "cos"])
@pytest.mark.parametrize("ftype", [np.float32, np.float64])
def test_sin_cos_near_multiples_of_half_pi(name, ftype):
    # the hardest arguments for the reduction: the floats nearest j*pi/2 and their neighbours
    j = np.arange(1, 63662, 7)
    near = (j * (np.pi / 2)).astype(ftype)
    x = np.concatenate([near, np.nextafter(near, ftype(np.inf)), np.nextafter(near, ftype(0))])
    _assert_within(name, x, evaluate(name, x), reference(name, x), ftype,
                   BOUND_F32[name] if ftype == np.float32 else BOUND_F64[name])


@pytest.mark.parametrize("ftype", [np.float32, np.float64])
def test_sin_cos_beyond_accurate_range_stay_bounded(ftype):
    x = float_sweep(ftype, 22 if ftype == np.float32 else 54)
    x = x[np.isfinite(x) & (np.abs(x) > 1e5)]
    for name in ("sin", "cos"):
        got = evaluate(name, x)
        assert not np.isnan(got).any(), f"{name} gave nan for a finite input"
        assert (np.abs(got) <= 1).all()


@pytest.mark.parametrize("name", UNARY)
def test_float16_is_computed_in_float32(name):
    x = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = evaluate(name, x)
    assert got.dtype == np.float16
    ref = reference(name, x)
    ok = _finite_ref(ref, np.float16)
    err = ulp_error(got[ok], ref[ok], np.float16)
    assert err.max() <= 1.0, f"{name} float16: {err.max():.2f} ulp at {x[ok][np.argmax(err)]!r}"


# ---------------------------------------------------------------------------------------
# Special values (exact, sign of zero included)
# ---------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
SPECIAL = {
    "exp": [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), ("max", INF), ("-max", 0.0)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), ("max", INF), ("-max", -1.0),
              ("tiny", "tiny"), ("-tiny", "-tiny")],
    "log": [(0.0, -INF), (-0.0, -INF), (1.0, 0.0), (INF, INF), (-INF, NAN), (-1.0, NAN), (NAN, NAN),
            ("-tiny", NAN)],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -INF), (-2.0, NAN), (INF, INF), (-INF, NAN), (NAN, NAN),
              ("tiny", "tiny"), ("-tiny", "-tiny")],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), ("max", 1.0), ("-max", -1.0),
             ("tiny", "tiny"), ("-tiny", "-tiny")],
    "logistic": [(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), ("max", 1.0), ("-max", 0.0)],
    "erf": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), ("max", 1.0), ("-max", -1.0)],
    "sin": [(0.0, 0.0), (-0.0, -0.0), (INF, NAN), (-INF, NAN), (NAN, NAN), ("tiny", "tiny"),
            ("-tiny", "-tiny")],
    "cos": [(0.0, 1.0), (-0.0, 1.0), (INF, NAN), (-INF, NAN), (NAN, NAN), ("tiny", 1.0)],
    "rsqrt": [(0.0, INF), (-0.0, -INF), (INF, 0.0), (-1.0, NAN), (-INF, NAN), (NAN, NAN), (1.0, 1.0),
              (4.0, 0.5)],
}


def _special(v, ftype):
    fi = np.finfo(ftype)
    named = {"max": fi.max, "-max": -fi.max, "tiny": fi.smallest_subnormal, "-tiny": -fi.smallest_subnormal}
    return ftype(named[v]) if isinstance(v, str) else ftype(v)


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.isnan(a) & np.isnan(b)) | ((a == b) & (np.signbit(a) == np.signbit(b)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ftype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", UNARY)
def test_special_values(name, ftype, backend):
    cases = SPECIAL[name]
    x = np.array([_special(a, ftype) for a, _ in cases], ftype)
    want = np.array([_special(b, ftype) for _, b in cases], ftype)
    got = evaluate(name, x, backend=backend)
    bad = ~_same_bits(got, want)
    assert not bad.any(), f"{name}({x[bad]!r}) = {got[bad]!r}, want {want[bad]!r}"


@pytest.mark.parametrize("ftype", [np.float32, np.float64])
def test_exp_overflow_and_gradual_underflow(ftype):
    fi = np.finfo(ftype)
    big = np.log(L(fi.max))
    x = np.array([np.nextafter(ftype(big), ftype(0)), np.nextafter(ftype(big), ftype(np.inf))], ftype)
    got = evaluate("exp", x)
    assert np.isfinite(got[0]) and got[1] == np.inf
    # results in the denormal range keep their precision in ulp of the denormal grid
    lo = np.log(L(fi.smallest_normal))
    x = np.linspace(float(lo) - 30, float(lo), 2001).astype(ftype)
    assert ulp_error(evaluate("exp", x), np.exp(x.astype(L)), ftype).max() <= 1


# ---------------------------------------------------------------------------------------
# pow
# ---------------------------------------------------------------------------------------

POW_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, 7.0, INF, -INF, NAN, 1e-30,
                -1e30]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ftype", [np.float16, np.float32, np.float64])
def test_pow_special_case_table_matches_numpy(ftype, backend):
    pairs = list(itertools.product(POW_SPECIALS, repeat=2))
    x = np.array([p[0] for p in pairs], ftype)
    y = np.array([p[1] for p in pairs], ftype)
    got = evaluate("pow", x, y, backend=backend)
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(ftype)
    generic = np.isfinite(want) & (want != 0)
    special = ~generic
    bad = ~_same_bits(got[special], want[special])
    assert not bad.any(), list(zip(x[special][bad], y[special][bad], got[special][bad], want[special][bad]))
    ref = np.power(x[generic].astype(L), y[generic].astype(L))
    assert ulp_error(got[generic], ref, ftype).max() <= 1


def test_pow_ieee_cases_spelled_out():
    cases = [(1.0, NAN, 1.0), (NAN, 0.0, 1.0), (NAN, -0.0, 1.0), (-1.0, INF, 1.0), (-1.0, -INF, 1.0),
             (0.0, -1.0, INF), (-0.0, -1.0, -INF), (-0.0, -2.0, INF), (-0.0, 3.0, -0.0), (-0.0, 2.0, 0.0),
             (-8.0, 1 / 3, NAN), (-2.0, 3.0, -8.0), (-2.0, -2.0, 0.25), (-INF, 3.0, -INF), (-INF, -3.0, -0.0),
             (-INF, 0.5, INF), (0.5, INF, 0.0), (0.5, -INF, INF), (2.0, INF, INF), (2.0, -INF, 0.0),
             (INF, -0.5, 0.0), (2.0, 200.0, INF), (2.0, -200.0, 0.0), (2.0, -149.0, 2.0 ** -149)]
    for ftype in (np.float32, np.float64):
        x, y, want = (np.array(c, ftype) for c in zip(*cases))
        got = evaluate("pow", x, y)
        if ftype == np.float64:  # 2**200 is finite in float64
            want = np.power(x, y)
        bad = ~_same_bits(got, want)
        assert not bad.any(), list(zip(x[bad], y[bad], got[bad], want[bad]))


@pytest.mark.parametrize("ftype", [np.float32, np.float64])
def test_pow_accuracy(ftype):
    rng = np.random.default_rng(2)
    top = 88.0 if ftype == np.float32 else 709.0
    x = np.exp(rng.uniform(-top, top, 20000)).astype(ftype)
    x = x[(x > 0) & np.isfinite(x)]
    t = rng.uniform(-top, top, x.size)
    y = (t / np.log(x.astype(np.float64))).astype(ftype)  # results across the whole range
    x = np.concatenate([x, rng.uniform(-4, 4, 5000).astype(ftype)])
    y = np.concatenate([y, rng.integers(-60, 60, 5000).astype(ftype)])
    got = evaluate("pow", x, y)
    ref = np.power(x.astype(L), y.astype(L))
    ok = _finite_ref(ref, ftype)
    err = ulp_error(got[ok], ref[ok], ftype)
    bound = BOUND_F32["pow"] if ftype == np.float32 else BOUND_F64["pow"]
    assert err.max() <= bound, f"pow: {err.max():.2f} ulp at {x[ok][np.argmax(err)]!r}**{y[ok][np.argmax(err)]!r}"


@pytest.mark.parametrize("itype", [np.int32, np.int64])
def test_integer_pow_wraps_like_numpy(itype):
    rng = np.random.default_rng(3)
    x = rng.integers(-1000, 1000, 4000).astype(itype)
    y = rng.integers(0, 80, 4000).astype(itype)
    x = np.concatenate([x, np.array([0, 1, -1, 2, -2, 3, np.iinfo(itype).max, np.iinfo(itype).min], itype)])
    y = np.concatenate([y, np.array([0, 0, 7, 62, 63, 40, 2, 2], itype)])
    got = evaluate("pow", x, y)
    assert got.dtype == itype
    np.testing.assert_array_equal(got, np.power(x, y))


@pytest.mark.parametrize("itype", [np.int32, np.int64])
def test_integer_pow_negative_exponent(itype):
    x = np.array([1, -1, -1, 2, -3, 0, 7], itype)
    y = np.array([-5, -5, -4, -1, -2, -1, np.iinfo(itype).min], itype)
    np.testing.assert_array_equal(evaluate("pow", x, y), np.array([1, -1, 1, 0, 0, 0, 0], itype))


def test_operand_errors_name_the_function_and_dtype():
    with pytest.raises(TypeError, match=r"vecmath\.exp: .*int32"):
        vecmath.exp(Var("x", dt.int32))
    with pytest.raises(TypeError, match=r"pow: base is float32, exponent is float64"):
        vecmath.pow(Var("x", dt.float32), Var("y", dt.float64))


def test_split_constant_parts_are_exact_for_their_multipliers():
    from fractions import Fraction
    parts = vecmath.split_constant(vecmath._PI / 2, 33, 4)
    assert abs(sum(Fraction(p) for p in parts) - vecmath._PI / 2) < Fraction(1, 2 ** 150)
    for p in parts[:-1]:
        m, _ = math.frexp(p)
        assert (Fraction(m) * 2 ** 33).denominator == 1  # at most 33 significant bits


# ---------------------------------------------------------------------------------------
# Branch-free, basic ops only
# ---------------------------------------------------------------------------------------

def _ops_used(e) -> set[str]:
    return {x.name for x in walk_exprs(e) if isinstance(x, Op)}


@pytest.mark.parametrize("d", [dt.float16, dt.float32, dt.float64])
def test_bodies_use_basic_scalar_ops_only(d):
    for name, fn in vecmath.VECMATH.items():
        args = [Var("x", d), Var("y", d)][: 2 if name == "pow" else 1]
        used = _ops_used(fn(*args))
        assert used <= set(SCALAR_OPS), f"{name}({d.name}) uses {sorted(used - set(SCALAR_OPS))}"
    assert _ops_used(vecmath.pow(Var("x", dt.int64), Var("y", dt.int64))) <= set(SCALAR_OPS)


# ---------------------------------------------------------------------------------------
# decompose
# ---------------------------------------------------------------------------------------

F32 = dt.float32


def _kernel(value_of, n=64, dtype=F32, extra_params=()):
    i = Var("i", dt.int64)
    x = Load("a", i, dtype)
    body = [Loop(i, idx(n), [Store("o", i, value_of(x, i))])]
    params = [BufferParam("a", dtype, n), *extra_params, BufferParam("o", dtype, n, "w")]
    return KernelFunc("k", params, body)


def test_decompose_removes_every_composite_and_keeps_values():
    k = _kernel(lambda x, i: op("exp", op("tanh", x)) + op("pow", x, op("erf", x)) * op("log1p", op("abs", x)))
    verify_kernel(k)
    k2 = decompose(k)
    verify_kernel(k2, allow_composite=False)
    a = np.random.default_rng(4).uniform(0.01, 3, 64).astype(np.float32)
    before = run_kernel(k, {"a": a.copy()})["o"]
    after = run_kernel(k2, {"a": a.copy()})["o"]
    assert ulp_error(after, before.astype(np.float64), np.float32).max() <= 8  # five functions' errors add up


def test_decompose_binds_arguments_and_shared_nodes_to_lets_before_the_statement():
    k = _kernel(lambda x, i: op("sin", x + const(1.0, F32)))
    k2 = decompose(k)
    loop = k2.body[0]
    assert isinstance(loop, Loop) and isinstance(loop.body[-1], Store)
    assert all(isinstance(s, Let) for s in loop.body[:-1]) and len(loop.body) > 3
    text = str(k2)
    assert text.count("a[i]") == 1  # the argument is computed once, not copied into the polynomial
    first = loop.body[0]
    assert first.value == Op("add", (Load("a", Var("i", dt.int64), F32), const(1.0, F32)), F32)
    # every local is used after its definition, and no expression holds the same Op twice
    for s in loop.body:
        for e in ([s.value] if isinstance(s, Let) else [s.value, s.index]):
            objs = [x for x in _walk_all(e) if isinstance(x, Op)]
            assert len({id(o) for o in objs}) == len(objs)


def _walk_all(e):
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        if isinstance(x, Op):
            stack.extend(x.args)
        elif isinstance(x, Load):
            stack.append(x.index)


def test_decompose_places_lets_inside_the_branch_that_uses_them():
    i = Var("i", dt.int64)
    x = Load("a", i, F32)
    body = [Loop(i, idx(8), [If(op("lt", i, idx(4)), [Store("o", i, op("exp", x))], [Store("o", i, op("cos", x))])])]
    k = KernelFunc("k", [BufferParam("a", F32, 8), BufferParam("o", F32, 8, "w")], body)
    k2 = decompose(k)
    verify_kernel(k2, allow_composite=False)
    br = k2.body[0].body[0]
    assert isinstance(br, If) and isinstance(br.then[-1], Store) and isinstance(br.orelse[-1], Store)
    assert any(isinstance(s, Let) for s in br.then) and any(isinstance(s, Let) for s in br.orelse)
    a = np.linspace(-3, 3, 8).astype(np.float32)
    got = run_kernel(k2, {"a": a})["o"]
    want = np.where(np.arange(8) < 4, np.exp(a.astype(np.float64)), np.cos(a.astype(np.float64)))
    assert ulp_error(got, want, np.float32).max() <= 1.5


def test_decompose_reuses_equal_composites_in_one_statement_and_avoids_name_clashes():
    i = Var("i", dt.int64)
    taken = Var("_t0", F32)
    x = Load("a", i, F32)
    body = [Loop(i, idx(4), [Let(taken, x), Store("o", i, op("exp", taken) + op("exp", taken))])]
    k = KernelFunc("k", [BufferParam("a", F32, 4), BufferParam("o", F32, 4, "w")], body)
    k2 = decompose(k)
    verify_kernel(k2, allow_composite=False)
    store = k2.body[0].body[-1]
    assert isinstance(store.value, Op) and store.value.args[0] == store.value.args[1]  # one exp, used twice
    lets = [s.var.name for s in walk_stmts(k2.body) if isinstance(s, Let)]
    assert len(lets) == len(set(lets))
    got = run_kernel(k2, {"a": np.array([0, 1, -1, 2], np.float32)})["o"]
    np.testing.assert_allclose(got, 2 * np.exp(np.array([0, 1, -1, 2], np.float64)), rtol=2e-7)


def test_decompose_leaves_kernels_without_composites_alone():
    k = _kernel(lambda x, i: x * x + const(1.0, F32))
    assert str(decompose(k)) == str(k)
    k3 = _kernel(lambda x, i: op("exp", x))
    text = str(k3)
    decompose(k3)
    assert str(k3) == text  # the input kernel is not modified


def test_decompose_rejects_composites_without_a_float_body():
    k = _kernel(lambda x, i: op("exp", x), dtype=dt.int32)
    with pytest.raises(TypeError, match="exp.*int32"):
        decompose(k)


def test_decompose_integer_pow_kernel():
    k = _kernel(lambda x, i: op("pow", x, Load("b", i, dt.int64)), n=16, dtype=dt.int64,
                extra_params=[BufferParam("b", dt.int64, 16)])
    k2 = decompose(k)
    verify_kernel(k2, allow_composite=False)
    a = np.arange(-8, 8, dtype=np.int64)
    b = np.arange(16, dtype=np.int64) * 4
    np.testing.assert_array_equal(run_kernel(k2, {"a": a, "b": b})["o"], np.power(a, b))


# ---------------------------------------------------------------------------------------
# kir_eval semantics
# ---------------------------------------------------------------------------------------

def _ev(e, **env):
    return eval_expr(e, env)


def test_eval_float_to_int_cast_saturates_and_maps_nan_to_zero():
    x = Var("x", F32)
    got = _ev(op("cast", x, dtype=dt.int32), x=np.array([np.nan, 3e9, -3e9, 2.9, -2.9, np.inf], np.float32))
    np.testing.assert_array_equal(got, [0, 2 ** 31 - 1, -2 ** 31, 2, -2, 2 ** 31 - 1])
    y = Var("y", dt.float64)
    got = _ev(op("cast", y, dtype=dt.int64), y=np.array([1e300, -1e300, 2.0 ** 63, np.nan]))
    np.testing.assert_array_equal(got, [2 ** 63 - 1, -2 ** 63, 2 ** 63 - 1, 0])


def test_eval_integer_arithmetic_wraps_and_divides_toward_zero():
    a, b = Var("a", dt.int32), Var("b", dt.int32)
    big = np.array([2 ** 31 - 1], np.int32)
    assert _ev(a + const(1, dt.int32), a=big)[0] == -2 ** 31
    av = np.array([7, -7, 7, -7], np.int32)
    bv = np.array([2, 2, -2, -2], np.int32)
    np.testing.assert_array_equal(_ev(op("div", a, b), a=av, b=bv), [3, -3, -3, 3])
    np.testing.assert_array_equal(_ev(op("rem", a, b), a=av, b=bv), [1, -1, 1, -1])
    c, d = Var("c", dt.int64), Var("d", dt.int64)
    np.testing.assert_array_equal(_ev(op("div", c, d), c=av.astype(np.int64), d=bv.astype(np.int64)), [3, -3, -3, 3])
    np.testing.assert_array_equal(_ev(op("rem", c, d), c=av.astype(np.int64), d=bv.astype(np.int64)), [1, -1, 1, -1])


def test_eval_shifts_and_bitcast():
    a = Var("a", dt.int32)
    v = np.array([-8, 8], np.int32)
    np.testing.assert_array_equal(_ev(op("ashr", a, const(1, dt.int32)), a=v), [-4, 4])
    np.testing.assert_array_equal(_ev(op("lshr", a, const(1, dt.int32)), a=v), [2 ** 31 - 4, 4])
    np.testing.assert_array_equal(_ev(op("shl", a, const(2, dt.int32)), a=v), [-32, 32])
    x = Var("x", F32)
    assert _ev(op("bitcast", x, dtype=dt.int32), x=np.float32(-0.0)) == -2 ** 31
    assert _ev(op("bitcast", a, dtype=F32), a=np.int32(0x3F800000)) == 1.0


def test_eval_fma_rounding_per_dtype():
    # float32: one rounding (evaluated exactly in float64); float64: mul then add
    x = Var("x", F32)
    e = 1 + 2.0 ** -23
    got = _ev(op("fma", x, x, const(-1.0, F32)), x=np.float32(e))
    assert got == np.float32(e * e - 1)  # 2**-22 + 2**-46, the exact product kept
    y = Var("y", dt.float64)
    e64 = 1 + 2.0 ** -52
    got = _ev(op("fma", y, y, const(-1.0, dt.float64)), y=np.float64(e64))
    assert got == np.float64(e64) * np.float64(e64) - 1.0


def test_eval_float32_arithmetic_is_float32():
    x = Var("x", F32)
    got = _ev(x + const(1e-8, F32), x=np.float32(1.0))
    assert got.dtype == np.float32 and got == 1.0


def test_eval_composites_use_numpy():
    x = Var("x", dt.float64)
    v = np.array([-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(_ev(op("exp", x), x=v), np.exp(v))
    np.testing.assert_array_equal(_ev(op("pow", x, x), x=v), np.power(v, v))
    i = Var("i", dt.int32)
    np.testing.assert_array_equal(_ev(op("pow", i, i), i=np.array([-2, 3], np.int32)), [0, 27])


def test_run_kernel_sequential_accumulator_and_vectorized_loops_agree():
    i, j = Var("i", dt.int64), Var("j", dt.int64)
    acc = Var("acc", F32)
    # o[i] = sum_j a[i*4 + j]: the inner loop carries acc (sequential), the outer is independent
    body = [Loop(i, idx(3), [Let(acc, const(0.0, F32)),
                            Loop(j, idx(4), [Assign(acc, acc + Load("a", i * 4 + j, F32))]),
                            Store("o", i, acc)])]
    k = KernelFunc("sum", [BufferParam("a", F32, 12), BufferParam("o", F32, 3, "w")], body)
    verify_kernel(k)
    a = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(run_kernel(k, {"a": a})["o"], a.reshape(3, 4).sum(1))


def test_run_kernel_prefix_sum_runs_iterations_in_order():
    i = Var("i", dt.int64)
    body = [Loop(i, idx(5), [Store("o", i + 1, Load("o", i, F32) + const(1.0, F32))])]
    k = KernelFunc("scan", [BufferParam("o", F32, 6, "rw")], body)
    np.testing.assert_array_equal(run_kernel(k, {"o": np.zeros(6, np.float32)})["o"], [0, 1, 2, 3, 4, 5])


def test_run_kernel_fail_and_errors():
    i = Var("i", dt.int64)
    body = [Loop(i, idx(4), [If(op("eq", i, idx(2)), [Fail(7, (i,))])])]
    k = KernelFunc("f", [BufferParam("o", F32, 4, "w")], body)
    with pytest.raises(KernelFailure) as ei:
        run_kernel(k, {})
    assert ei.value.code == 7 and ei.value.payload == (2,)
    k2 = _kernel(lambda x, i: x)
    with pytest.raises(KeyError, match="input buffer a"):
        run_kernel(k2, {})
    with pytest.raises(TypeError, match="buffer a is float64"):
        run_kernel(k2, {"a": np.zeros(64)})
    k3 = _kernel(lambda x, i: Load("a", i + 1, F32))
    with pytest.raises(IndexError, match=r"load a\[1\.\.64\] out of bounds"):
        run_kernel(k3, {"a": np.zeros(64, np.float32)})


def test_eval_unbound_variable_is_named():
    with pytest.raises(KeyError, match="variable q"):
        eval_expr(Var("q", F32) + const(1.0, F32), {})


# ---------------------------------------------------------------------------------------
# Native code: vectorized, no libm calls in the loop
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", UNARY + ["pow"])
@pytest.mark.parametrize("d", [dt.float32, dt.float64])
def test_native_math_vectorizes_without_libm_calls(name, d):
    import re
    from kiln.codegen.llvm_render import render_program
    from kiln.runtime.llvm_backend import optimize_ir
    k = decompose(math_kernel(name, d, 4096))
    text = str(optimize_ir(render_program("vm", [k], [(k.name, list(range(len(k.params))))])))
    body = text  # the kernel is inlined into the entry point
    calls = set(re.findall(r"call [^@]*@\"?([\w.]+)", body))
    assert all(c.startswith("llvm.") for c in calls), f"{name}: scalar calls in the loop: {calls}"
    ftype = "float" if d == dt.float32 else "double"
    assert re.search(rf"<(4|8|16) x {ftype}>", body), f"{name} {d.name}: the loop did not vectorize"

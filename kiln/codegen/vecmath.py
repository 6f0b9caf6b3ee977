"""Vectorizable math functions, built from the kernel IR's basic scalar ops.

Each function takes kernel-IR expressions and returns one expression that computes the
function with `SCALAR_OPS` only, branch-free (special cases are `select`s), so the loop
around it stays vectorizable. float32 and float64 have their own constants and
polynomial lengths; float16 is computed in float32 (cast in, cast out). Method and
measured accuracy per function: docs/vecmath.md.

Conventions the code relies on (a renderer must keep them):
- no floating-point contraction or reassociation (no fast-math): error-free transforms
  (Cody-Waite splits, double-double products) need each op rounded as written. `fma`
  may be fused or not; no result relies on its single rounding.
- cast float->int saturates (nan -> 0); unselected lanes may hold inf/nan garbage.

The functions return trees that share subexpressions as Python objects (a DAG);
`kiln.codegen.decompose` binds shared nodes to locals before a renderer sees them.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import factorial
from typing import Callable, Sequence

from ..ir import dtypes as dt
from ..ir.dtypes import DType
from .kir import Expr, const, op

# ---------------------------------------------------------------------------------------
# Exact constants and their splits
# ---------------------------------------------------------------------------------------

_PI = Fraction(Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899"))
_LN2 = Fraction(Decimal("0.69314718055994530941723212145817656807550013436025525412068000949339362196969471"))


def split_constant(value: Fraction, bits: int, parts: int) -> list[float]:
    """Cody-Waite split: `parts` floats summing to `value`; all but the last hold at most
    `bits` significant bits (so k * part is exact for |k| < 2**(53 - bits) in float64, or
    2**(24 - bits) in float32); the last is the rounded remainder."""
    out: list[float] = []
    rest = value
    for _ in range(parts - 1):
        a = abs(rest)
        e = a.numerator.bit_length() - a.denominator.bit_length()
        if Fraction(2) ** e > a:
            e -= 1
        scale = Fraction(2) ** (bits - 1 - e)
        head = Fraction(int(rest * scale), 1) / scale  # truncate toward zero
        out.append(float(head))
        rest -= head
    out.append(float(rest))
    return out


@dataclass(frozen=True)
class _Format:
    """Bit layout of a float dtype and the integer type of its width."""
    f: DType
    i: DType
    mant: int   # stored mantissa bits
    bias: int
    tiny: float  # smallest normal

    def c(self, v) -> Expr:
        return const(v, self.f)

    def ci(self, v) -> Expr:
        return const(v, self.i)


_F32 = _Format(dt.float32, dt.int32, 23, 127, 2.0 ** -126)
_F64 = _Format(dt.float64, dt.int64, 52, 1023, 2.0 ** -1022)


def _fmt(d: DType, fn: str) -> _Format:
    if d == dt.float32:
        return _F32
    if d == dt.float64:
        return _F64
    raise TypeError(f"vecmath.{fn}: needs a float32 or float64 operand, got {d.name}")


# ---------------------------------------------------------------------------------------
# Small building blocks
# ---------------------------------------------------------------------------------------

def _sel(c: Expr, a: Expr, b: Expr) -> Expr:
    return op("select", c, a, b)


def _div(a: Expr, b: Expr) -> Expr:
    return op("div", a, b)


def _fma(a: Expr, b: Expr, c: Expr) -> Expr:
    return op("fma", a, b, c)


def _poly(x: Expr, coeffs: Sequence[float]) -> Expr:
    """c0 + c1*x + c2*x^2 + ... by Horner's rule (fma steps)."""
    acc = const(coeffs[-1], x.dtype)
    for c in reversed(coeffs[:-1]):
        acc = _fma(acc, x, const(c, x.dtype))
    return acc


def _clamp(x: Expr, lo: float, hi: float) -> Expr:
    """Clamp keeping nan (select, not min/max, whose nan rule differs between targets)."""
    x = _sel(op("lt", x, const(lo, x.dtype)), const(lo, x.dtype), x)
    return _sel(op("gt", x, const(hi, x.dtype)), const(hi, x.dtype), x)


def _signbit(F: _Format, x: Expr) -> Expr:
    return op("lt", op("bitcast", x, dtype=F.i), F.ci(0))


def _pow2i(F: _Format, k: Expr) -> Expr:
    """2**k for an integer k in the normal exponent range."""
    return op("bitcast", op("shl", k + F.ci(F.bias), F.ci(F.mant)), dtype=F.f)


def _scale(F: _Format, p: Expr, k: Expr) -> Expr:
    """p * 2**k for k from below the denormal range to just past overflow, rounded once
    (k is split in two halves so each power of two is a normal number)."""
    k1 = op("ashr", k, F.ci(1))
    return p * _pow2i(F, k1) * _pow2i(F, k - k1)


def _in_f32(fn: Callable[..., Expr]) -> Callable[..., Expr]:
    """Compute float16 operands in float32 (cast in, cast out)."""
    def wrapped(*args: Expr) -> Expr:
        if args[0].dtype == dt.float16:
            r = fn(*(op("cast", a, dtype=dt.float32) for a in args))
            return op("cast", r, dtype=dt.float16)
        return fn(*args)
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def _taylor(start: int, n: int, step: int = 1, alternate: bool = False) -> list[float]:
    """[1/start!, 1/(start+step)!, ...], n terms; with `alternate`: -1/start!, +1/(start+step)!, ..."""
    return [(-1.0) ** (i + 1) / factorial(start + step * i) if alternate else 1 / factorial(start + step * i)
            for i in range(n)]


# ---------------------------------------------------------------------------------------
# exp, expm1
# ---------------------------------------------------------------------------------------

_LN2_F32 = split_constant(_LN2, 16, 2)  # k*hi exact for |k| < 2**8
_LN2_F64 = split_constant(_LN2, 42, 2)  # k*hi exact for |k| < 2**11
_LOG2E = float(1 / _LN2)
# expm1(r) = r + r^2 * P(r) on |r| <= ln2/2 (Taylor; truncation < 2^-30 resp. 2^-57 relative)
_EXPM1_P = {dt.float32: _taylor(2, 7), dt.float64: _taylor(2, 13)}
_EXP_RANGE = {dt.float32: (-104.0, 89.0), dt.float64: (-746.0, 710.0)}   # beyond: 0 / inf
_EXPM1_RANGE = {dt.float32: (-30.0, 89.0), dt.float64: (-60.0, 710.0)}  # below: -1
_EXPM1_TINY = {dt.float32: 2.0 ** -25, dt.float64: 2.0 ** -54}           # below: x


def _exp_reduce(F: _Format, x: Expr, lo: Expr | None = None) -> tuple[Expr, Expr]:
    """x (+ lo) = k*ln2 + r, |r| <= ln2/2 (Cody-Waite); returns (int k, expm1(r))."""
    hi_c, lo_c = _LN2_F32 if F.f == dt.float32 else _LN2_F64
    kf = op("rint", x * F.c(_LOG2E))
    r = _fma(-kf, F.c(hi_c), x)   # exact: k*hi has trailing zeros, x - k*hi cancels
    r = _fma(-kf, F.c(lo_c), r)
    if lo is not None:
        r = r + lo
    q = _fma(r * r, _poly(r, _EXPM1_P[F.f]), r)
    return op("cast", kf, dtype=F.i), q


@_in_f32
def exp(x: Expr) -> Expr:
    """e**x: 2**k * (1 + expm1(r)); overflow to inf, underflow through denormals to 0."""
    F = _fmt(x.dtype, "exp")
    lo, hi = _EXP_RANGE[F.f]
    k, q = _exp_reduce(F, _clamp(x, lo, hi))
    return _scale(F, F.c(1.0) + q, k)


@_in_f32
def expm1(x: Expr) -> Expr:
    """e**x - 1, accurate near 0: 2 * (2**(k-1) * q + (2**(k-1) - 1/2))."""
    F = _fmt(x.dtype, "expm1")
    lo, hi = _EXPM1_RANGE[F.f]
    k, q = _exp_reduce(F, _clamp(x, lo, hi))
    u = _pow2i(F, k - F.ci(1))
    r = F.c(2.0) * _fma(u, q, u - F.c(0.5))
    return _sel(op("lt", op("abs", x), F.c(_EXPM1_TINY[F.f])), x, r)


# ---------------------------------------------------------------------------------------
# log, log1p
# ---------------------------------------------------------------------------------------

# log1p(f) = 2 atanh(s), s = f/(2+f): 2s + s^3 * (2/3 + 2/5 s^2 + ...) (|s| <= 0.1716)
_ATANH_T = {dt.float32: [2 / (2 * j + 3) for j in range(4)], dt.float64: [2 / (2 * j + 3) for j in range(10)]}
_ATANH_T_DD = [2 / (2 * j + 3) for j in range(1, 14)]  # the tail after 2/3, for log in double-double
_SQRT_HALF_BITS = {dt.float32: 0x3F3504F3, dt.float64: 0x3FE6A09E667F3BCD}
_ONE_BITS = {dt.float32: 0x3F800000, dt.float64: 0x3FF0000000000000}


def _log_split(F: _Format, x: Expr) -> tuple[Expr, Expr]:
    """x > 0 (denormals included) as (float e, f) with x = 2**e * (1 + f), 1+f in [sqrt(1/2), sqrt(2))."""
    denorm = op("lt", x, F.c(F.tiny))
    scale_bits = F.mant + 1
    xs = _sel(denorm, x * F.c(2.0 ** scale_bits), x)
    ix = op("bitcast", xs, dtype=F.i) + F.ci(_ONE_BITS[F.f] - _SQRT_HALF_BITS[F.f])
    e = op("ashr", ix, F.ci(F.mant)) - F.ci(F.bias)
    e = e - _sel(denorm, F.ci(scale_bits), F.ci(0))
    m = op("bitcast", op("and", ix, F.ci((1 << F.mant) - 1)) + F.ci(_SQRT_HALF_BITS[F.f]), dtype=F.f)
    return op("cast", e, dtype=F.f), m - F.c(1.0)


def _log_finite(F: _Format, x: Expr) -> Expr:
    """log(x) for finite x > 0 (fdlibm's arrangement of the atanh series)."""
    hi_c, lo_c = _LN2_F32 if F.f == dt.float32 else _LN2_F64
    e, f = _log_split(F, x)
    s = _div(f, F.c(2.0) + f)
    z = s * s
    R = z * _poly(z, _ATANH_T[F.f])
    hfsq = F.c(0.5) * f * f
    # log1p(f) = 2s + s*R = f - hfsq + s*(hfsq + R)   (as 2s = f - s*f)
    corr = _fma(s, hfsq + R, e * F.c(lo_c))
    return _fma(e, F.c(hi_c), f - (hfsq - corr))


def _log_specials(F: _Format, x: Expr, r: Expr) -> Expr:
    r = _sel(op("eq", x, F.c(0.0)), F.c(float("-inf")), r)
    r = _sel(op("eq", x, F.c(float("inf"))), x, r)
    r = _sel(op("lt", x, F.c(0.0)), F.c(float("nan")), r)
    return _sel(op("isnan", x), x, r)


@_in_f32
def log(x: Expr) -> Expr:
    """Natural log: x = 2**e * m, log m from the atanh series; log(0) = -inf, log(x<0) = nan."""
    F = _fmt(x.dtype, "log")
    return _log_specials(F, x, _log_finite(F, x))


@_in_f32
def log1p(x: Expr) -> Expr:
    """log(1 + x) = log(u) + (x - (u - 1)) / u with u = 1 + x rounded; x where u == 1."""
    F = _fmt(x.dtype, "log1p")
    u = F.c(1.0) + x
    c = _div(x - (u - F.c(1.0)), u)
    r = _log_finite(F, u) + c
    r = _sel(op("eq", u, F.c(1.0)), x, r)
    return _log_specials(F, u, r)


# ---------------------------------------------------------------------------------------
# tanh, logistic
# ---------------------------------------------------------------------------------------

_TANH_ONE = {dt.float32: 10.0, dt.float64: 20.0}        # beyond: tanh rounds to +-1
_TANH_TINY = {dt.float32: 2.0 ** -12, dt.float64: 2.0 ** -27}  # below: tanh(x) rounds to x


@_in_f32
def tanh(x: Expr) -> Expr:
    """tanh |x| = e/(e + 2) with e = expm1(2|x|); sign restored with copysign."""
    F = _fmt(x.dtype, "tanh")
    ax = op("abs", x)
    big = _TANH_ONE[F.f]
    e = expm1(F.c(2.0) * _sel(op("gt", ax, F.c(big)), F.c(big), ax))
    t = _sel(op("gt", ax, F.c(big)), F.c(1.0), _div(e, e + F.c(2.0)))
    return _sel(op("lt", ax, F.c(_TANH_TINY[F.f])), x, op("copysign", t, x))


@_in_f32
def logistic(x: Expr) -> Expr:
    """1 / (1 + e**-x) as (x >= 0 ? 1 : t) / (1 + t), t = e**-|x| (never overflows)."""
    F = _fmt(x.dtype, "logistic")
    t = exp(-op("abs", x))
    return _div(_sel(op("ge", x, F.c(0.0)), F.c(1.0), t), F.c(1.0) + t)


# ---------------------------------------------------------------------------------------
# erf
# ---------------------------------------------------------------------------------------

# Rational approximations from FreeBSD msun s_erf.c / s_erff.c (Sun Microsystems, 1993:
# "Permission to use, copy, modify, and distribute this software is freely granted,
# provided that this notice is preserved."). Lowest degree first.
_ERF = {
    dt.float64: dict(
        erx=8.45062911510467529297e-01,
        pp=[1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
            -5.77027029648944159157e-03, -2.37630166566501626084e-05],
        qq=[1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
            1.32494738004321644526e-04, -3.96022827877536812320e-06],
        pa=[-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
            3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
            -2.16637559486879084300e-03],
        qa=[1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
            1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02],
        ra=[-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
            -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
            -8.12874355063065934246e+01, -9.81432934416914548592e+00],
        sa=[1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
            6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
            6.57024977031928170135e+00, -6.04244152148580987438e-02],
        rb=[-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
            -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
            -4.83519191608651397019e+02],
        sb=[1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
            3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
            -2.24409524465858183362e+01],
        zmask=~((1 << 32) - 1)),
    dt.float32: dict(
        erx=8.4506291151e-01,
        pp=[1.2837916613e-01, -3.2504209876e-01, -2.8481749818e-02, -5.7702702470e-03, -2.3763017452e-05],
        qq=[1.0, 3.9791721106e-01, 6.5022252500e-02, 5.0813062117e-03, 1.3249473704e-04, -3.9602282413e-06],
        pa=[-2.3621185683e-03, 4.1485610604e-01, -3.7220788002e-01, 3.1834661961e-01, -1.1089469492e-01,
            3.5478305072e-02, -2.1663755178e-03],
        qa=[1.0, 1.0642088205e-01, 5.4039794207e-01, 7.1828655899e-02, 1.2617121637e-01, 1.3637083583e-02,
            1.1984500103e-02],
        ra=[-9.8649440333e-03, -6.9385856390e-01, -1.0558626175e+01, -6.2375331879e+01, -1.6239666748e+02,
            -1.8460508728e+02, -8.1287437439e+01, -9.8143291473e+00],
        sa=[1.0, 1.9651271820e+01, 1.3765776062e+02, 4.3456588745e+02, 6.4538726807e+02, 4.2900814819e+02,
            1.0863500214e+02, 6.5702495575e+00, -6.0424413532e-02],
        rb=[-9.8649431020e-03, -7.9928326607e-01, -1.7757955551e+01, -1.6063638306e+02, -6.3756646729e+02,
            -1.0250950928e+03, -4.8351919556e+02],
        sb=[1.0, 3.0338060379e+01, 3.2579251099e+02, 1.5367296143e+03, 3.1998581543e+03, 2.5530502930e+03,
            4.7452853394e+02, -2.2440952301e+01],
        zmask=~((1 << 12) - 1)),
}


def _poly_sel(x: Expr, cond: Expr, a: Sequence[float], b: Sequence[float]) -> Expr:
    """Horner over coefficients chosen per lane: a where cond, else b (zero-padded)."""
    n = max(len(a), len(b))
    a = list(a) + [0.0] * (n - len(a))
    b = list(b) + [0.0] * (n - len(b))
    pick = lambda i: _sel(cond, const(a[i], x.dtype), const(b[i], x.dtype))  # noqa: E731
    acc = pick(n - 1)
    for i in range(n - 2, -1, -1):
        acc = _fma(acc, x, pick(i))
    return acc


@_in_f32
def erf(x: Expr) -> Expr:
    """erf: x + x*P/Q (|x| < 0.84375), erx + P/Q around 1, 1 - exp(-x^2 + R/S)/x up to 6
    (computed as two exps of an exactly split argument), +-1 beyond. All branches are
    evaluated and chosen by select."""
    F = _fmt(x.dtype, "erf")
    C = _ERF[F.f]
    ax = op("abs", x)
    one = F.c(1.0)
    # |x| < 0.84375
    z = x * x
    small = x + x * _div(_poly(z, C["pp"]), _poly(z, C["qq"]))
    # 0.84375 <= |x| < 1.25
    s = ax - one
    mid = F.c(C["erx"]) + _div(_poly(s, C["pa"]), _poly(s, C["qa"]))
    # 1.25 <= |x| < 6: erfc(x) = exp(-x^2 - 0.5625 + R/S) / x
    w = _div(one, ax * ax)
    near = op("lt", ax, F.c(1 / 0.35))
    R = _poly_sel(w, near, C["ra"], C["rb"])
    S = _poly_sel(w, near, C["sa"], C["sb"])
    zt = op("bitcast", op("and", op("bitcast", ax, dtype=F.i), F.ci(C["zmask"])), dtype=F.f)
    r = exp(-zt * zt - F.c(0.5625)) * exp(_fma(zt - ax, zt + ax, _div(R, S)))
    tail = one - _div(r, ax)
    mag = _sel(op("lt", ax, F.c(1.25)), mid, _sel(op("lt", ax, F.c(6.0)), tail, one))
    res = _sel(op("lt", ax, F.c(0.84375)), small, op("copysign", mag, x))
    return _sel(op("isnan", x), x, res)


# ---------------------------------------------------------------------------------------
# sin, cos
# ---------------------------------------------------------------------------------------

# Cody-Waite splits of pi/2. float32 inputs are reduced in float64 with a 3-part split
# (j*part exact for |j| < 2**30); float64 with a 4-part split (|j| < 2**20).
_PIO2_F32 = split_constant(_PI / 2, 23, 3)
_PIO2_F64 = split_constant(_PI / 2, 33, 4)
_TWO_OVER_PI = float(2 / _PI)
_TRIG_ACCURATE = {dt.float32: 2.0 ** 30 * 1.5707963267948966, dt.float64: 2.0 ** 20 * 1.5707963267948966}
# sin r = r + r^3 * S(r^2), cos r = 1 + r^2 * C(r^2) on |r| <= pi/4 (Taylor)
_SIN_S = {dt.float32: _taylor(3, 4, 2, alternate=True), dt.float64: _taylor(3, 8, 2, alternate=True)}
_COS_C = {dt.float32: _taylor(2, 5, 2, alternate=True), dt.float64: _taylor(2, 9, 2, alternate=True)}
_SIN_TINY = {dt.float32: 2.0 ** -12, dt.float64: 2.0 ** -27}  # below: sin x rounds to x


def _reduce_pio2(x: Expr) -> tuple[Expr, Expr]:
    """x = j*pi/2 + r; returns (r in x's dtype, |r| <= 0.8 always, and j as int64)."""
    w = op("cast", x, dtype=dt.float64)
    parts = _PIO2_F32 if x.dtype == dt.float32 else _PIO2_F64
    j = op("rint", w * const(_TWO_OVER_PI, dt.float64))
    r = w
    for p in parts:
        r = _fma(-j, const(p, dt.float64), r)
    r = _clamp(op("cast", r, dtype=x.dtype), -0.8, 0.8)  # bounded beyond the accurate range
    return r, op("cast", j, dtype=dt.int64)


def _sincos_quadrant(x: Expr, shift: int) -> Expr:
    F = _fmt(x.dtype, "sin" if shift == 0 else "cos")
    r, j = _reduce_pio2(x)
    z = r * r
    s = _fma(r * z, _poly(z, _SIN_S[F.f]), r)
    c = _fma(z, _poly(z, _COS_C[F.f]), F.c(1.0))
    q = op("and", j + const(shift, dt.int64), const(3, dt.int64))
    v = _sel(op("eq", op("and", q, const(1, dt.int64)), const(1, dt.int64)), c, s)
    v = _sel(op("ge", q, const(2, dt.int64)), -v, v)
    return _sel(op("eq", op("abs", x), F.c(float("inf"))), F.c(float("nan")), v)


@_in_f32
def sin(x: Expr) -> Expr:
    """sin: Cody-Waite reduction by pi/2, sin/cos polynomial per quadrant."""
    F = _fmt(x.dtype, "sin")
    return _sel(op("lt", op("abs", x), F.c(_SIN_TINY[F.f])), x, _sincos_quadrant(x, 0))


@_in_f32
def cos(x: Expr) -> Expr:
    """cos x = sin(x + pi/2): the same reduction, quadrant shifted by one."""
    return _sincos_quadrant(x, 1)


# ---------------------------------------------------------------------------------------
# pow
# ---------------------------------------------------------------------------------------

_SPLITTER = 134217729.0  # 2**27 + 1 (Veltkamp)
_TWO_THIRDS = (float(Fraction(2, 3)), float(Fraction(2, 3) - Fraction(float(Fraction(2, 3)))))


def _two_sum_fast(a: Expr, b: Expr) -> tuple[Expr, Expr]:
    """s + e == a + b exactly, given |a| >= |b|."""
    s = a + b
    return s, b - (s - a)


def _two_sum(a: Expr, b: Expr) -> tuple[Expr, Expr]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: Expr) -> tuple[Expr, Expr]:
    c = a * const(_SPLITTER, a.dtype)
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: Expr, b: Expr) -> tuple[Expr, Expr]:
    """p + e == a * b exactly (Dekker, no fma needed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_add(a: tuple[Expr, Expr], b: tuple[Expr, Expr]) -> tuple[Expr, Expr]:
    s, e = _two_sum(a[0], b[0])
    return _two_sum_fast(s, e + (a[1] + b[1]))


def _dd_mul(a: tuple[Expr, Expr], b: tuple[Expr, Expr]) -> tuple[Expr, Expr]:
    p, e = _two_prod(a[0], b[0])
    return _two_sum_fast(p, e + (a[0] * b[1] + a[1] * b[0]))


def _log_dd(x: Expr) -> tuple[Expr, Expr]:
    """log(x) as a float64 double-double (about 2**-100 relative) for finite x > 0."""
    F = _F64
    e, f = _log_split(F, x)
    dh, dl = _two_sum_fast(F.c(2.0), f)            # 2 + f
    uh = _div(f, dh)                                     # u = f / (2 + f) as a double-double
    ph, pl = _two_prod(uh, dh)
    ul = _div(((f - ph) - pl) - uh * dl, dh)
    z = uh * uh
    t_tail = z * _poly(z, _ATANH_T_DD)
    t = _two_sum_fast(F.c(_TWO_THIRDS[0]), t_tail)
    t = (t[0], t[1] + F.c(_TWO_THIRDS[1]))
    u2 = _dd_mul((uh, ul), (uh, ul))
    u3 = _dd_mul(u2, (uh, ul))
    lg = _dd_add((F.c(2.0) * uh, F.c(2.0) * ul), _dd_mul(u3, t))
    hi_c, lo_c = _LN2_F64
    return _dd_add((e * F.c(hi_c), e * F.c(lo_c)), lg)


def _pow_magnitude_f64(ax: Expr, y: Expr) -> Expr:
    """|x|**y for finite ax > 0 and finite y: exp of y*log(ax) carried in double-double."""
    F = _F64
    lh, ll = _log_dd(ax)
    ph, pl = _two_prod(y, lh)
    pl = pl + y * ll
    ph, pl = _two_sum_fast(ph, pl)
    lo, hi = _EXP_RANGE[dt.float64]
    phc = _clamp(ph, lo, hi)
    k, q = _exp_reduce(F, phc, _sel(op("eq", phc, ph), pl, F.c(0.0)))
    return _scale(F, F.c(1.0) + q, k)


def _pow_magnitude_f32(ax: Expr, y: Expr) -> Expr:
    """|x|**y for float32: exp(y * log |x|) in plain float64 (error << float32's ulp)."""
    w = op("cast", ax, dtype=dt.float64)
    v = op("cast", y, dtype=dt.float64)
    F = _F64
    return op("cast", exp(v * _log_finite(F, w)), dtype=dt.float32)


def _pow_float(x: Expr, y: Expr) -> Expr:
    F = _fmt(x.dtype, "pow")
    if y.dtype != x.dtype:
        raise TypeError(f"vecmath.pow: base is {x.dtype.name}, exponent is {y.dtype.name}")
    inf, zero, one = F.c(float("inf")), F.c(0.0), F.c(1.0)
    ax, ay = op("abs", x), op("abs", y)
    mag = (_pow_magnitude_f32 if F.f == dt.float32 else _pow_magnitude_f64)(ax, y)
    # y*log|x| is +-inf exactly: |x| in {0, inf} or |y| == inf (and |x| != 1, y != 0)
    limit = op("or", op("or", op("eq", ax, zero), op("eq", ax, inf)), op("eq", ay, inf))
    grows = op("eq", op("gt", y, zero), op("gt", ax, one))
    mag = _sel(limit, _sel(grows, inf, zero), mag)
    mag = _sel(op("eq", ax, one), one, mag)
    y_int = op("eq", op("floor", y), y)
    half = y * F.c(0.5)
    y_odd = op("and", y_int, op("ne", op("floor", half), half))
    r = _sel(op("and", _signbit(F, x), y_odd), -mag, mag)
    # negative finite base, non-integer exponent
    bad = op("and", op("and", op("lt", x, zero), op("gt", x, -inf)), op("not", y_int))
    nan = F.c(float("nan"))
    r = _sel(op("or", bad, op("or", op("isnan", x), op("isnan", y))), nan, r)
    r = _sel(op("and", op("eq", ax, one), op("eq", ay, inf)), one, r)  # (-1)**+-inf
    return _sel(op("or", op("eq", y, zero), op("eq", x, one)), one, r)  # x**0, 1**y (nan too)


def _pow_int(x: Expr, y: Expr) -> Expr:
    """Wrapping integer power by binary exponentiation with a fixed number of steps (the
    exponent's bit width - 1); a negative exponent gives 0, except 1 for base 1 and
    +-1 for base -1."""
    d = x.dtype
    if y.dtype != d:
        raise TypeError(f"vecmath.pow: base is {d.name}, exponent is {y.dtype.name}")
    c = lambda v: const(v, d)  # noqa: E731
    e = _sel(op("lt", y, c(0)), c(0), y)
    result, base = c(1), x
    for i in range(8 * d.itemsize - 1):
        bit = op("ne", op("and", op("lshr", e, c(i)), c(1)), c(0))
        result = _sel(bit, result * base, result)
        base = base * base
    odd = op("ne", op("and", y, c(1)), c(0))
    negative = _sel(op("eq", x, c(1)), c(1), _sel(op("eq", x, c(-1)), _sel(odd, c(-1), c(1)), c(0)))
    return _sel(op("lt", y, c(0)), negative, result)


def pow(x: Expr, y: Expr) -> Expr:  # noqa: A001 - the op's name
    """x**y with IEEE/numpy special cases for floats; wrapping binary power for int32/int64."""
    if x.dtype in (dt.int32, dt.int64):
        return _pow_int(x, y)
    if x.dtype == dt.float16:
        r = _pow_float(op("cast", x, dtype=dt.float32), op("cast", y, dtype=dt.float32))
        return op("cast", r, dtype=dt.float16)
    return _pow_float(x, y)


# ---------------------------------------------------------------------------------------
# rsqrt
# ---------------------------------------------------------------------------------------

@_in_f32
def rsqrt(x: Expr) -> Expr:
    """1 / sqrt(x) (two correctly rounded ops); rsqrt(+-0) = +-inf, rsqrt(x<0) = nan."""
    F = _fmt(x.dtype, "rsqrt")
    return _div(F.c(1.0), op("sqrt", x))


# composite op name -> its decomposition
VECMATH: dict[str, Callable[..., Expr]] = {
    "exp": exp, "expm1": expm1, "log": log, "log1p": log1p, "tanh": tanh, "logistic": logistic,
    "erf": erf, "sin": sin, "cos": cos, "pow": pow, "rsqrt": rsqrt,
}

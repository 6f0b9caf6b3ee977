"""The numerics policy: how closely a compiled result must match eager, per dtype and op family.

This is the one definition; the fuzzer (`kiln.testing.fuzz`), its CI batch and the regression
tests it writes import it, and `docs/reliability.md` states the same table.

A value `got` matches `want` when, elementwise, `|got - want| <= atol + rtol * |want|`
(numpy's `allclose`), NaNs matching NaNs and infinities matching equal infinities. Integer
and bool results, and every value computed only by exact ops (movement, comparisons, casts
between integers), must match bit for bit: their tolerance is zero.

Op families (what makes a compiled value differ from eager, and why the bound is what it is):

- ``exact``: movement (reshape, permute, slice, pad, concat, gather/scatter), comparisons,
  select, casts, integer arithmetic, min/max, abs/neg, random numbers (counter-based, the same
  bits): no rounding difference at all;
- ``elementwise``: float add/sub/mul/div/pow/sqrt: each rounds as written, and the only
  difference is a fused chain reusing a value where eager recomputes it (none), so a few ulp;
- ``transcendental``: exp/log/tanh/sin/erf... are branch-free polynomials in native code
  (`docs/vecmath.md`: at most 2 ulp in float32 and float64) against numpy's libm;
- ``reduction``: sums, means, norms, softmax: native code re-associates accumulations
  (vector lanes, threads) unless KILN_STRICT_FP, so the error grows with the reduced length;
- ``matmul`` / ``conv``: reductions with a multiply, blocked differently from numpy's BLAS.

Gradients go through the same ops twice (forward and VJP), and a loss sums them, so they get
`GRAD_FACTOR` times the forward bound.

A float value is held to the tolerance of the least precise float dtype on its path, not only
its own: a float64 output computed by float32 ops (a float32 softmax, then a cast or a
promotion) differs from eager in float32's last place. The path is what the eager run computed
(`kiln.testing.prelude.run` records the dtypes of every value of the program, `path_dtypes`):
views and in-place updates make a static per-value path unreliable, so a program's values share it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

FAMILIES = ("exact", "elementwise", "transcendental", "reduction", "matmul", "conv")
FLOAT_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def __or__(self, other: "Tolerance") -> "Tolerance":
        """The looser of two tolerances (a program mixing families gets the widest)."""
        return Tolerance(max(self.rtol, other.rtol), max(self.atol, other.atol))

    def scaled(self, factor: float) -> "Tolerance":
        return Tolerance(self.rtol * factor, self.atol * factor)


EXACT = Tolerance(0.0, 0.0)

# (family, float dtype) -> tolerance. Integer and bool values are always EXACT.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("exact", "float16"): EXACT, ("exact", "float32"): EXACT, ("exact", "float64"): EXACT,
    # float16 is computed in float32 and rounded once: at most 1 ulp of float16 (2**-10 relative)
    ("elementwise", "float16"): Tolerance(2e-3, 1e-3),
    ("elementwise", "float32"): Tolerance(1e-6, 1e-6),
    ("elementwise", "float64"): Tolerance(1e-14, 1e-14),
    ("transcendental", "float16"): Tolerance(2e-3, 1e-3),
    ("transcendental", "float32"): Tolerance(1e-5, 1e-6),
    ("transcendental", "float64"): Tolerance(1e-12, 1e-13),
    ("reduction", "float16"): Tolerance(5e-3, 5e-3),
    ("reduction", "float32"): Tolerance(1e-5, 1e-5),
    ("reduction", "float64"): Tolerance(1e-12, 1e-12),
    ("matmul", "float16"): Tolerance(5e-3, 5e-3),
    ("matmul", "float32"): Tolerance(1e-5, 1e-5),
    ("matmul", "float64"): Tolerance(1e-12, 1e-12),
    ("conv", "float16"): Tolerance(5e-3, 5e-3),
    ("conv", "float32"): Tolerance(1e-5, 1e-5),
    ("conv", "float64"): Tolerance(1e-12, 1e-12),
}

GRAD_FACTOR = 10.0

#: float64 central differences (step 1e-6) against analytic gradients: the gradient-check table
GRADCHECK = Tolerance(1e-5, 1e-6)
#: a float16 transcendental round trip (exp(log x)) against its exact rewrite: ~10 float16 ulps
FLOAT16_ROUND_TRIP = Tolerance(1e-2, 1e-3)


def tolerance(dtype, families: Iterable[str] = ("elementwise",), grad: bool = False,
              path: Iterable = ()) -> Tolerance:
    """The tolerance for a value of `dtype` (a kiln/numpy dtype or its name) computed by ops of
    `families`, through values of the dtypes `path` (the least precise float dtype among `dtype`
    and `path` sets the bound); `grad=True` for a gradient. Integer and bool dtypes are always exact."""
    name = _dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        return EXACT
    names = {name} | {n for n in map(_dtype_name, path) if n in FLOAT_DTYPES}
    tol = EXACT
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown op family {fam!r}; known families: {', '.join(FAMILIES)}")
        for n in names:
            tol = tol | TOLERANCES[(fam, n)]
    return tol.scaled(GRAD_FACTOR) if grad else tol


def _dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None)
    if isinstance(name, str) and not isinstance(dtype, np.dtype):
        return name
    return np.dtype(dtype).name


def mismatch(got: np.ndarray, want: np.ndarray, tol: Tolerance) -> str | None:
    """None if `got` matches `want` within `tol`; else a one-line description of the worst element."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != {want.dtype}"
    if got.size == 0:
        return None
    if got.dtype.kind not in "fc":
        bad = got != want
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        both_nan = np.isnan(g) & np.isnan(w)
        same = (g == w) | both_nan
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.abs(g - w) <= tol.atol + tol.rtol * np.abs(w)
        bad = ~(same | (close & np.isfinite(g) & np.isfinite(w)))
    if not bad.any():
        return None
    k = np.unravel_index(int(np.argmax(bad)), got.shape) if got.ndim else ()
    return (f"{int(bad.sum())} of {got.size} elements differ (rtol={tol.rtol:g}, atol={tol.atol:g}); "
            f"first at {list(k)}: got {got[k]!r}, want {want[k]!r}")


def assert_close(got, want, tol: Tolerance, what: str = "value") -> None:
    """Raise AssertionError naming `what` when `got` does not match `want` within `tol`."""
    msg = mismatch(got, want, tol)
    if msg is not None:
        raise AssertionError(f"{what}: {msg}")


def compare_runs(got: dict, want: dict, families: Iterable[str]) -> tuple[str, str] | None:
    """Compare two results of `kiln.testing.prelude.run` (outputs, gradients, arguments after
    the call): None if they match under this policy, else (what differs, how) for the first
    difference, e.g. ("grad", "grad 1: 3 of 6 elements differ ..."). `want`'s "dtypes" (the
    dtypes of the values its eager run computed, if recorded) are every value's path."""
    families = tuple(families)
    path = tuple(want.get("dtypes") or ())
    for key in ("output", "grad", "argument"):
        for k, (g, w) in enumerate(zip(got[key], want[key])):
            if (g is None) != (w is None):
                return key, f"{key} {k}: got {'None' if g is None else 'a tensor'}, want {'None' if w is None else 'a tensor'}"
            if w is None:
                continue
            msg = mismatch(g, w, tolerance(w.dtype, families, grad=key == "grad", path=path))
            if msg is not None:
                return key, f"{key} {k}: {msg}"
        if len(got[key]) != len(want[key]):
            return key, f"{len(got[key])} {key}s, want {len(want[key])}"
    return None

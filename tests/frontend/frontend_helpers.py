"""Shared helpers for the frontend tests: comparing kiln tensors with numpy / PyTorch results.

Kept free of pytest fixtures so test modules can import plain functions
(`from frontend_helpers import ...`; pytest puts this directory on sys.path).
"""
from __future__ import annotations

import numpy as np

import kiln

try:  # torch is only an oracle; tests that need it use pytest.importorskip
    import torch
except ImportError:  # pragma: no cover - exercised when torch is absent
    torch = None

DTYPE_NAMES = ("float32", "float64", "float16", "int32", "int64", "bool")
FLOAT_NAMES = ("float32", "float64")

# Tolerances by result dtype for value comparisons.
TOL = {
    "float16": dict(rtol=2e-3, atol=2e-3),
    "float32": dict(rtol=2e-5, atol=1e-6),
    "float64": dict(rtol=1e-11, atol=1e-12),
}


def dtype_name(x) -> str:
    """'float32' etc. for a kiln tensor/dtype, a torch tensor/dtype or a numpy array/dtype."""
    if isinstance(x, kiln.Tensor):
        return x.dtype.name
    if isinstance(x, kiln.dtype):
        return x.name
    if torch is not None:
        if isinstance(x, torch.Tensor):
            x = x.dtype
        if isinstance(x, torch.dtype):
            return str(x).replace("torch.", "")
    if isinstance(x, np.ndarray):
        x = x.dtype
    return np.dtype(x).name


def to_numpy(x) -> np.ndarray:
    if isinstance(x, kiln.Tensor):
        return np.asarray(x.detach().numpy())
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def assert_same(k, ref, *, rtol=None, atol=None, check_dtype=True, equal_nan=True):
    """kiln tensor `k` equals `ref` (numpy array or torch tensor): shape, dtype name and values."""
    assert isinstance(k, kiln.Tensor), f"expected a kiln.Tensor, got {type(k).__name__}"
    r = to_numpy(ref)
    assert tuple(k.shape) == tuple(r.shape), f"shape {tuple(k.shape)} != reference {tuple(r.shape)}"
    if check_dtype:
        assert dtype_name(k) == dtype_name(ref), f"dtype {dtype_name(k)} != reference {dtype_name(ref)}"
    a = to_numpy(k)
    if a.dtype.kind == "f" or r.dtype.kind == "f":
        tol = dict(TOL.get(dtype_name(ref), TOL["float32"]))
        if rtol is not None:
            tol["rtol"] = rtol
        if atol is not None:
            tol["atol"] = atol
        np.testing.assert_allclose(a.astype(np.float64), r.astype(np.float64), equal_nan=equal_nan, **tol)
    else:
        np.testing.assert_array_equal(a, r)


def torch_dtype(name: str):
    return getattr(torch, name)


def random_array(shape, dtype: str, rng: np.random.Generator, *, low=-3.0, high=3.0, positive=False,
                 nonzero=False) -> np.ndarray:
    """Random values of numpy dtype `dtype` (ints in a small range, bools ~50/50)."""
    shape = tuple(shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("int32", "int64"):
        lo = 1 if positive else int(low) - 2
        a = rng.integers(lo, int(high) + 3, size=shape).astype(dtype)
        if nonzero:
            a[a == 0] = 1
        return a
    a = rng.uniform(0.1 if positive else low, high, size=shape)
    if nonzero:
        a = np.where(np.abs(a) < 0.1, 0.5, a)
    return a.astype(dtype)


# PyTorch's type promotion, written down independently of kiln (used by the numpy-only
# checks and by the property test when torch is absent).
_CATEGORY = {"bool": 0, "int32": 1, "int64": 1, "float16": 2, "float32": 2, "float64": 2}
_SIZE = {"bool": 1, "int32": 4, "int64": 8, "float16": 2, "float32": 4, "float64": 8}
# Python scalars: bool -> bool, int -> int64, float -> default float (float32).
_SCALAR_DTYPE = {bool: "bool", int: "int64", float: "float32"}


def _wider(a: str, b: str) -> str:
    if _CATEGORY[a] != _CATEGORY[b]:
        return a if _CATEGORY[a] > _CATEGORY[b] else b
    return a if _SIZE[a] >= _SIZE[b] else b


def expected_result_type(*operands) -> str:
    """PyTorch's result dtype of `operands`: each ('tensor', name, ndim) or a Python scalar.

    Dimensioned tensors outrank 0-d tensors, which outrank Python scalars; a lower-ranked
    group only matters when its category (bool < int < float) is higher than everything
    ranked above it, and then contributes its own (widest) dtype.
    """
    groups = {2: None, 1: None, 0: None}
    for op in operands:
        if isinstance(op, tuple):
            _, name, ndim = op
            prio = 2 if ndim > 0 else 1
        else:
            name, prio = _SCALAR_DTYPE[type(op)], 0
        groups[prio] = name if groups[prio] is None else _wider(groups[prio], name)
    result = None
    for prio in (2, 1, 0):
        cand = groups[prio]
        if cand is None:
            continue
        if result is None or _CATEGORY[cand] > _CATEGORY[result]:
            result = cand
    return result

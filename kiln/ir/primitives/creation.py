"""Creation and random numbers: `constant`, `iota`, and `random_uniform` with its counter-based generator."""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from .registry import CREATION, RANDOM, Prop, ShapeError, fmt_shape, register

def _constant_rule(avals, value, shape, dtype):
    shape = tuple(shape)
    d = dt.get_dtype(dtype)
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.size != math.prod(shape):
            raise ShapeError(f"constant: value has {arr.size} elements, shape {fmt_shape(shape)} needs "
                             f"{math.prod(shape)}")
    return shape, d


def _constant_impl(value, shape, dtype):
    d = dt.get_dtype(dtype)
    if isinstance(value, (list, tuple)):
        return np.asarray(value, dtype=d.np_dtype).reshape(shape)
    return np.full(tuple(shape), value, dtype=d.np_dtype)


register("constant", CREATION, _constant_rule, _constant_impl, None, 0, ("value", "shape", "dtype"),
         doc="a literal: a scalar (filled) or a flat list of values")


def _iota_rule(avals, shape, axis, dtype):
    shape = tuple(shape)
    if not 0 <= axis < max(len(shape), 1):
        raise ShapeError(f"iota: axis {axis} out of range for shape {fmt_shape(shape)}")
    return shape, dt.get_dtype(dtype)


def _iota_impl(shape, axis, dtype):
    d = dt.get_dtype(dtype)
    shape = tuple(shape)
    if not shape:
        return np.zeros((), d.np_dtype)
    r = np.arange(shape[axis], dtype=d.np_dtype).reshape([-1 if k == axis else 1 for k in range(len(shape))])
    return np.broadcast_to(r, shape).copy()


register("iota", CREATION, _iota_rule, _iota_impl, None, 0, ("shape", "axis", "dtype"),
         doc="0, 1, 2, ... along `axis`")

_M64 = (1 << 64) - 1


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_bits(seed: int, offset: int, n: int) -> np.ndarray:
    """The counter-based generator: 64 random bits for counters offset..offset+n-1."""
    with np.errstate(over="ignore"):
        # offset the seed before mixing: the finaliser maps 0 to 0, which made seed 0's first draw 0.0
        key = _mix64(np.asarray([(seed + 0x632BE59BD9B4E019) & _M64], dtype=np.uint64))[0]
        ctr = np.arange(n, dtype=np.uint64) + np.uint64(offset & _M64)
        return _mix64(key + ctr * np.uint64(0x9E3779B97F4A7C15))


def _random_rule(avals, shape, dtype):
    for a in avals:
        if a.dtype != dt.int64 or tuple(a.shape) != ():
            raise ShapeError("random_uniform: seed and offset must be int64 scalars")
    d = dt.get_dtype(dtype)
    if not d.is_floating_point:
        raise ShapeError(f"random_uniform: dtype must be floating point, got {d.name}")
    return tuple(shape), d


def _random_impl(seed, offset, shape, dtype):
    d = dt.get_dtype(dtype)
    n = math.prod(shape)
    bits = random_bits(int(seed), int(offset), n)
    if d == dt.float64:
        u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    else:
        u = (bits >> np.uint64(40)).astype(np.float64) * (1.0 / (1 << 24))
    return u.astype(d.np_dtype).reshape(shape)


# seed and offset are integers: no cotangents, so the rule reads nothing
register("random_uniform", RANDOM, _random_rule, _random_impl, lambda ops, g, i, o, shape, dtype: (None, None), 2,
         ("shape", "dtype"), saves="", props=Prop.EXPENSIVE,
         doc="uniform [0, 1) from a counter-based hash of (seed, offset + element index)")


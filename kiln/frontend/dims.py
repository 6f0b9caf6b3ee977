"""Dimension arguments: normalising `dim`s, inferring `-1` in shapes, broadcast errors, the `axis=` alias.

Plain Python on shapes and ints (no tensors), so every frontend module can import it.
"""
from __future__ import annotations

import functools
import math

import numpy as np


def _broadcast_error(shapes) -> RuntimeError:
    """PyTorch's message for shapes that do not broadcast, naming the first mismatching dim."""
    nd = max(len(s) for s in shapes)
    names = "abcdefgh"
    for i in range(nd - 1, -1, -1):
        sizes = [(k, s[i - (nd - len(s))]) for k, s in enumerate(shapes) if i - (nd - len(s)) >= 0]
        big = [(k, n) for k, n in sizes if n != 1]
        for (k0, n0), (k1, n1) in zip(big, big[1:]):
            if n0 != n1:
                return RuntimeError(
                    f"The size of tensor {names[k0]} ({n0}) must match the size of tensor {names[k1]} ({n1}) at "
                    f"non-singleton dimension {i}; shapes {' and '.join(str(tuple(s)) for s in shapes)} "
                    "cannot be broadcast")
    return RuntimeError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast")


def _dims(dim, ndim: int, empty_means_all: bool = True) -> tuple[int, ...]:
    """Normalised reduction dims. Like PyTorch, `None` and (for reductions) an empty tuple mean every dim."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (list, tuple)):
        if not dim and empty_means_all:
            return tuple(range(ndim))
        ds = tuple(_norm_dim(d, ndim) for d in dim)
        if len(set(ds)) != len(ds):
            raise RuntimeError(f"dim {tuple(dim)} appears multiple times in the list of dims")
        return ds if ndim > 0 else ()
    d = _norm_dim(dim, ndim)  # checks the range even for 0-d tensors (where only -1 and 0 are valid)
    return (d,) if ndim > 0 else ()


def _reduced_shape(x, axes, keepdim):
    return tuple(1 if i in axes else s for i, s in enumerate(x.shape) if keepdim or i not in axes)


def _infer_shape(shape, numel) -> tuple:
    shape = list(shape)
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if any(s < -1 for s in shape):
        raise RuntimeError(f"invalid shape dimension {min(shape)}")
    if neg:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 or numel % rest:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape[neg[0]] = numel // rest
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return tuple(shape)


def _norm_dim(dim: int, ndim: int) -> int:
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not lo <= dim <= hi:
        raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
    return int(dim) % max(ndim, 1)


def accept_axis(fn):
    """Let `fn` take numpy's `axis=` as an alias of its `dim=` argument (as PyTorch does)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "axis" in kwargs:
            if "dim" in kwargs:
                raise TypeError(f"{fn.__name__}() got both 'dim' and its alias 'axis'")
            kwargs["dim"] = kwargs.pop("axis")
        return fn(*args, **kwargs)
    return wrapper

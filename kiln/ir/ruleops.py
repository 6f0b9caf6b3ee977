"""The op API that vector-Jacobian rules are written against.

A VJP rule receives a `RuleOps` whose `bind(name, *values, **attrs)` applies one
primitive to values that expose `.shape` and `.dtype`. Eager autograd binds to eager
Tensors; the graph autodiff transform binds to graph Nodes. So one rule serves both.
"""
from __future__ import annotations

from typing import Any, Callable


class RuleOps:
    """Helpers over a primitive-binding callable; `ops.add(a, b)` binds primitive 'add'."""

    def __init__(self, bind: Callable[..., Any]):
        self.bind = bind

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **attrs: self.bind(name, *args, **attrs)

    # -- helpers used by many rules ---------------------------------------------------
    def full(self, value, shape, dtype):
        value = bool(value) if dtype.is_bool else int(value) if dtype.is_integer else float(value)
        return self.bind("constant", value=value, shape=tuple(shape), dtype=dtype)

    def full_like(self, value, like):
        return self.full(value, like.shape, like.dtype)

    def zeros_like(self, like):
        return self.full_like(0, like)

    def scale(self, x, value):
        return self.bind("mul", x, self.full_like(value, x))

    def cast(self, x, dtype):
        return x if x.dtype == dtype else self.bind("cast", x, dtype=dtype)

    def transpose_last(self, x):
        perm = tuple(range(len(x.shape) - 2)) + (len(x.shape) - 1, len(x.shape) - 2)
        return self.bind("permute", x, perm=perm)

    def sum_to(self, g, shape):
        """Reduce `g` (broadcast from `shape` by numpy rules) back to `shape`."""
        shape = tuple(shape)
        if tuple(g.shape) == shape:
            return g
        lead = len(g.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
        if axes:
            g = self.bind("reduce_sum", g, axes=axes, keepdims=False)
        if tuple(g.shape) != shape:
            g = self.bind("reshape", g, shape=shape)
        return g

    def expand_reduced(self, g, in_shape, axes, keepdims):
        """Broadcast a reduction's result `g` back to the reduced input's shape."""
        in_shape = tuple(in_shape)
        if not keepdims:
            kept = tuple(1 if i in axes else s for i, s in enumerate(in_shape))
            g = self.bind("reshape", g, shape=kept)
        if tuple(g.shape) != in_shape:
            g = self.bind("broadcast_to", g, shape=in_shape)
        return g

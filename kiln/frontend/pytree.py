"""Flatten nested tuples / lists / dicts of leaves, and rebuild them."""
from __future__ import annotations

from typing import Any


def tree_flatten(tree: Any) -> tuple[list[Any], Any]:
    """Return (leaves, spec); `tree_unflatten(spec, leaves)` rebuilds the structure."""
    leaves: list[Any] = []

    def go(x):
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return ("namedtuple", type(x), [go(v) for v in x])
        if isinstance(x, (tuple, list)):
            return (type(x).__name__, None, [go(v) for v in x])
        if isinstance(x, dict):
            return ("dict", list(x.keys()), [go(v) for v in x.values()])
        leaves.append(x)
        return ("leaf", None, None)

    spec = go(tree)
    go = None  # break the closure's cycle (go -> its cell -> go), which would keep the leaves alive until gc
    return leaves, spec


def tree_unflatten(spec: Any, leaves: list[Any]) -> Any:
    kind, _, children = spec
    if kind == "leaf":  # the common cases first: one leaf, a flat tuple of leaves
        return leaves[0]
    if kind == "tuple" and len(children) == len(leaves) and all(c[0] == "leaf" for c in children):
        return tuple(leaves)
    it = iter(leaves)

    def go(s):
        kind, meta, children = s
        if kind == "leaf":
            return next(it)
        vals = [go(c) for c in children]
        if kind == "namedtuple":
            return meta(*vals)
        if kind == "tuple":
            return tuple(vals)
        if kind == "list":
            return vals
        return dict(zip(meta, vals))

    out = go(spec)
    go = None  # break the closure's cycle, which would keep the leaves (large outputs) alive until gc
    return out


def spec_key(spec: Any) -> Any:
    """A hashable form of a spec, for cache keys."""
    kind, meta, children = spec
    if kind == "leaf":
        return "*"
    m = tuple(meta) if isinstance(meta, list) else meta
    return (kind, m, tuple(spec_key(c) for c in children))

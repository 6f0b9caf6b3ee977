"""Constant folding: a node whose inputs are all `constant` nodes becomes a `constant`.

It is evaluated with the primitive's own numpy `impl` (so folding cannot disagree with
the reference interpreter). A result whose elements are all equal stays a splat
(`value` a scalar, plus `shape`) at any size; other results are folded only up to
`MAX_LITERAL` elements, so graphs never fill up with huge literal lists. Splat inputs of
elementwise and movement ops are evaluated on one element, never materialised.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.primitives import ELEMENTWISE, get_primitive
from .builder import GraphBuilder, constant_array, constant_attrs, is_splat, splat_value

MAX_LITERAL = 64  # largest non-splat literal folding may create (elements)
MAX_EVAL = 1 << 16  # largest input (elements) folding evaluates element by element
_SPLAT_PRESERVING = {"reshape", "permute", "broadcast_to", "slice"}


def _fold_value(n: Node, ins: list[Node]) -> dict | None:
    """Attributes of the constant equal to `n` applied to constant `ins`, or None to keep `n`."""
    prim = get_primitive(n.op)
    if all(is_splat(i) for i in ins):
        if prim.kind == ELEMENTWISE:
            scalars = [np.asarray(splat_value(i), dtype=i.dtype.np_dtype) for i in ins]
            try:
                r = prim.impl(*scalars, **n.attrs)
            except Exception:
                return None
            return constant_attrs(np.broadcast_to(r, n.shape), n.dtype, MAX_LITERAL)
        if n.op in _SPLAT_PRESERVING or (n.op == "pad" and _same(n.attrs["value"], splat_value(ins[0]), n)):
            v = np.asarray(splat_value(ins[0]), dtype=n.dtype.np_dtype)
            return constant_attrs(np.broadcast_to(v, n.shape), n.dtype, MAX_LITERAL)
    if sum(math.prod(i.shape) for i in ins) > MAX_EVAL or math.prod(n.shape) > MAX_EVAL:
        return None
    try:
        r = prim.impl(*(constant_array(i) for i in ins), **n.attrs)
    except Exception:  # e.g. an out-of-range gather index: the error belongs to run time, not to folding
        return None
    return constant_attrs(np.asarray(r).reshape(n.shape), n.dtype, MAX_LITERAL)


def _same(pad_value, v, n: Node) -> bool:
    a = np.asarray(pad_value).astype(n.dtype.np_dtype)
    return bool(np.array_equal(a, np.asarray(v, dtype=n.dtype.np_dtype)))


def fold(graph: Graph) -> Graph:
    """Fold every node (with at least one input) whose inputs are all constants."""
    b = GraphBuilder(graph)
    changed = False
    for n in graph.nodes:
        ins = b.mapped_inputs(n)
        if ins and all(i.op == "constant" for i in ins):
            attrs = _fold_value(n, ins)
            if attrs is not None:
                b.env[id(n)] = b.emit("constant", [], attrs, name=n.name, loc=n.loc)
                changed = True
                continue
        b.copy(n, ins)
    return b.finish() if changed else graph

"""Which integer attributes of an exported graph depend on its dynamic dimensions, and how.

An exported program's graph is specialised to its example sizes. `instantiate(**dims)` gives the
same program at other sizes; comparing the graphs node by node shows which attribute values move
with a dynamic dim. Each such value is fitted as a multilinear function of the dims (`c + a * batch`,
`batch * time`, ...; checked at one more size), so exporters can write it as a computation on the
run-time sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

from ..ir.graph import Graph


class DynamicDimError(ValueError):
    """The graph does not depend on a dynamic dimension in a way an exporter can express."""


@dataclass(frozen=True)
class DimExpr:
    """An integer that depends on dynamic dims: a sum of `coeff * product of dims` terms
    (multilinear: each dim at most once per term; the term with no dims is the constant)."""

    terms: tuple[tuple[tuple[str, ...], int], ...]  # (dims of the monomial, coefficient), coefficients non-zero

    @property
    def const(self) -> int:
        return dict(self.terms).get((), 0)

    def at(self, dims: dict[str, int]) -> int:
        return sum(a * math.prod(dims[d] for d in mono) for mono, a in self.terms)

    def __str__(self) -> str:
        parts = [("*".join(mono) if a == 1 else "*".join((str(a),) + mono)) if mono else str(a)
                 for mono, a in self.terms]
        return " + ".join(parts) or "0"


MAX_DYNAMIC_DIMS = 4  # a program is instantiated 2**dims times to fit the expressions


def example_dims(exported) -> dict[str, int]:
    """Each dynamic dim's name and its size in `exported.graph` (read from the input specs)."""
    dims: dict[str, int] = {}
    for spec, node in zip(exported.input_specs, exported.graph.inputs):
        for axis, (s, n) in enumerate(zip(spec.shape, node.shape)):
            if isinstance(s, str):
                if s in dims and dims[s] != n:
                    raise DynamicDimError(f"dynamic dim {s!r} has size {dims[s]} in one input and {n} in input "
                                          f"{spec.name!r} (axis {axis}) of the example graph")
                dims.setdefault(s, int(n))
    return dims


def dim_sources(exported) -> dict[str, tuple[int, int]]:
    """For each dynamic dim, the first (user input index, axis) that carries it."""
    out: dict[str, tuple[int, int]] = {}
    for k, spec in enumerate(exported.input_specs):
        for axis, s in enumerate(spec.shape):
            if isinstance(s, str):
                out.setdefault(s, (k, axis))
    return out


def symbolic_attrs(exported) -> list[dict[str, Any]]:
    """Per node of `exported.graph`, its attributes with each dim-dependent integer replaced by a
    `DimExpr`. The program is instantiated with every subset of the dims one larger (a multilinear
    fit: `batch * time` is found, not only `a * batch + c`) and checked with all of them two larger.
    Raises DynamicDimError when the graph's structure changes with a dim, or a value does not fit."""
    base = exported.graph
    dims = example_dims(exported)
    attrs = [dict(n.attrs) for n in base.nodes]
    if not dims:
        return attrs
    names = sorted(dims)
    if len(names) > MAX_DYNAMIC_DIMS:
        raise DynamicDimError(f"the program has {len(names)} dynamic dims ({', '.join(names)}); ONNX export "
                              f"supports at most {MAX_DYNAMIC_DIMS}")
    graphs = [base]
    for mask in range(1, 1 << len(names)):
        graphs.append(exported.instantiate(**{d: v + ((mask >> j) & 1) for j, (d, v) in
                                              enumerate((d, dims[d]) for d in names)}))
    check = exported.instantiate(**{d: dims[d] + 2 for d in names})
    for g in graphs[1:] + [check]:
        _check_structure(base, g, ", ".join(names))
    for k, node in enumerate(base.nodes):
        for path, values in _int_leaves([g.nodes[k] for g in graphs + [check]], names):
            corner, seen = values[:-1], values[-1]
            if len(set(corner)) == 1 and seen == corner[0]:
                continue
            expr = _fit(names, dims, corner)
            at_check = expr.at({d: dims[d] + 2 for d in names})
            if at_check != seen:
                raise DynamicDimError(f"attribute {path[0]!r} of node %{node.name} ({node.op}) is not a multilinear "
                                      f"function of dims {names} (fitted {expr}, which gives {at_check} where the "
                                      f"graph has {seen})")
            attrs[k] = _set(attrs[k], path, expr)
    return attrs


def _fit(names: list[str], dims: dict[str, int], corner: list[int]) -> DimExpr:
    """The multilinear expression through the values at the corners (dims + 0/1, bit j for names[j])."""
    n = len(names)
    coeff: dict[tuple[str, ...], int] = {}
    for t in range(1 << n):
        # Moebius inversion: the coefficient of prod over T of (d - v_d)
        c_t = sum((-1) ** bin(t & ~s).count("1") * corner[s] for s in range(1 << n) if s & ~t == 0)
        if not c_t:
            continue
        members = [j for j in range(n) if t >> j & 1]
        for r in range(1 << len(members)):  # expand prod (d - v_d) into monomials of the dims
            mono = tuple(names[members[i]] for i in range(len(members)) if r >> i & 1)
            rest = math.prod(-dims[names[members[i]]] for i in range(len(members)) if not r >> i & 1)
            coeff[mono] = coeff.get(mono, 0) + c_t * rest
    return DimExpr(tuple(sorted(((m, a) for m, a in coeff.items() if a), key=lambda ma: (len(ma[0]), ma[0]))))


def _check_structure(base: Graph, other: Graph, dim: str) -> None:
    def sig(g: Graph):
        index = {id(n): k for k, n in enumerate(list(g.inputs) + list(g.nodes))}
        return [(n.op, tuple(index[id(i)] for i in n.inputs)) for n in g.nodes], \
            [index[id(o)] for o in g.outputs]
    s0, s1 = sig(base), sig(other)
    if s0 != s1:
        where = next((k for k, (a, b) in enumerate(zip(s0[0], s1[0])) if a != b), min(len(s0[0]), len(s1[0])))
        node = base.nodes[where] if where < len(base.nodes) else None
        at = f" at node %{node.name} ({node.op})" if node is not None else ""
        raise DynamicDimError(f"the optimized graph's structure changes with dynamic dim {dim!r}{at}: it cannot be "
                              "exported with that dim symbolic (make the dim static, or the code's structure independent of it)")


def _int_leaves(nodes: list, dims: list[str]):
    """(path, values) for every integer leaf of the nodes' attributes (one node per graph); other leaves must agree."""
    n0 = nodes[0]

    def walk(path, vals):
        a = vals[0]
        if isinstance(a, bool) or not isinstance(a, (int, tuple, list)):
            if any(v != a for v in vals):
                raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} ({n0.op}) changes with dynamic "
                                      f"dims {dims} ({vals[0]!r}, {vals[1]!r}) and is not an integer")
            return
        if isinstance(a, int):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} changes type with dims {dims}")
            yield path, list(vals)
            return
        if not all(isinstance(v, (tuple, list)) and len(v) == len(a) for v in vals):
            raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} ({n0.op}) changes length with dynamic "
                                  f"dims {dims}: {vals[0]!r}, {vals[1]!r}")
        for j in range(len(a)):
            yield from walk(path + (j,), [v[j] for v in vals])

    for key in n0.attrs:
        yield from walk((key,), [n.attrs.get(key) for n in nodes])


def _get(attrs: dict, path: tuple):
    v = attrs[path[0]]
    for j in path[1:]:
        v = v[j]
    return v


def _set(attrs: dict, path: tuple, value) -> dict:
    def put(v, rest):
        if not rest:
            return value
        items = list(v)
        items[rest[0]] = put(items[rest[0]], rest[1:])
        return tuple(items)
    out = dict(attrs)
    out[path[0]] = put(attrs[path[0]], path[1:])
    return out


def is_dynamic(value) -> bool:
    """Whether an attribute value (possibly nested) holds a `DimExpr`."""
    if isinstance(value, DimExpr):
        return True
    if isinstance(value, (tuple, list)):
        return any(is_dynamic(v) for v in value)
    return False

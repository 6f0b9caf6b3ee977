"""Which integer attributes of an exported graph depend on its dynamic dimensions, and how.

An exported program's graph is specialised to its example sizes. `instantiate(**dims)` gives the
same program at other sizes; comparing the graphs node by node shows which attribute values move
with a dynamic dim. Each such value is fitted as an affine function `c + sum(a_d * d)` of the dims
(checked at a third size), so exporters can write it as a computation on the run-time sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir.graph import Graph


class DynamicDimError(ValueError):
    """The graph does not depend on a dynamic dimension in a way an exporter can express."""


@dataclass(frozen=True)
class Affine:
    """An integer that depends on dynamic dims: `const + sum(coeff * dim)`."""

    const: int
    coeffs: tuple[tuple[str, int], ...]  # (dim name, coefficient), coefficients non-zero

    def at(self, dims: dict[str, int]) -> int:
        return self.const + sum(a * dims[d] for d, a in self.coeffs)

    def __str__(self) -> str:
        terms = [(f"{a}*{d}" if a != 1 else d) for d, a in self.coeffs]
        if self.const:
            terms.append(str(self.const))
        return " + ".join(terms)


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
    """Per node of `exported.graph`, its attributes with each dim-dependent integer replaced by an
    `Affine`. Raises DynamicDimError when the graph's structure changes with a dim, or a value does
    not depend affinely on it."""
    base = exported.graph
    dims = example_dims(exported)
    attrs = [dict(n.attrs) for n in base.nodes]
    if not dims:
        return attrs
    # per node, per integer leaf path: {dim: coefficient}
    coeffs: list[dict[tuple, dict[str, int]]] = [{} for _ in base.nodes]
    for d, v in dims.items():
        g1 = exported.instantiate(**{**dims, d: v + 1})
        g2 = exported.instantiate(**{**dims, d: v + 2})
        for g in (g1, g2):
            _check_structure(base, g, d)
        for k, (n0, n1, n2) in enumerate(zip(base.nodes, g1.nodes, g2.nodes)):
            for path, (a0, a1, a2) in _int_leaves(n0, n1, n2, d):
                step = a1 - a0
                if a2 - a0 != 2 * step:
                    raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} ({n0.op}) is {a0}, {a1}, {a2} "
                                          f"at {d} = {v}, {v + 1}, {v + 2}: not an affine function of {d!r}")
                if step:
                    coeffs[k].setdefault(path, {})[d] = step
    for k, node_coeffs in enumerate(coeffs):
        for path, by_dim in node_coeffs.items():
            a0 = _get(attrs[k], path)
            const = a0 - sum(a * dims[d] for d, a in by_dim.items())
            attrs[k] = _set(attrs[k], path, Affine(const, tuple(sorted(by_dim.items()))))
    return attrs


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
                              "exported with that dim symbolic (try an example size of at least 2, or a static dim)")


def _int_leaves(n0, n1, n2, dim: str):
    """(path, (v0, v1, v2)) for every integer leaf of the three nodes' attributes; other leaves must agree."""
    def walk(path, a, b, c):
        if isinstance(a, bool) or not isinstance(a, (int, tuple, list)) or isinstance(a, str):
            if not (a == b == c):
                raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} ({n0.op}) changes with dynamic "
                                      f"dim {dim!r} ({a!r}, {b!r}, {c!r}) and is not an integer")
            return
        if isinstance(a, int):
            if not (isinstance(b, int) and isinstance(c, int)):
                raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} changes type with dim {dim!r}")
            yield path, (a, b, c)
            return
        if not (isinstance(b, (tuple, list)) and isinstance(c, (tuple, list)) and len(a) == len(b) == len(c)):
            raise DynamicDimError(f"attribute {path[0]!r} of node %{n0.name} ({n0.op}) changes length with dynamic "
                                  f"dim {dim!r}: {a!r}, {b!r}")
        for j, (x, y, z) in enumerate(zip(a, b, c)):
            yield from walk(path + (j,), x, y, z)

    for key in n0.attrs:
        yield from walk((key,), n0.attrs[key], n1.attrs.get(key), n2.attrs.get(key))


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
    """Whether an attribute value (possibly nested) holds an `Affine`."""
    if isinstance(value, Affine):
        return True
    if isinstance(value, (tuple, list)):
        return any(is_dynamic(v) for v in value)
    return False

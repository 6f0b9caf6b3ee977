"""The primitive table itself: the `Primitive` record, its registration and its queries.

Every family module (elementwise, reduction, ...) imports only this module and calls
`register` once per primitive with all of its rules and facts; nothing is patched in later.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..dtypes import DType

ELEMENTWISE, REDUCTION, MOVEMENT, INDEX, MATMUL, CONV, CREATION, RANDOM = (
    "elementwise", "reduction", "movement", "index", "matmul", "conv", "creation", "random")
KINDS = (ELEMENTWISE, REDUCTION, MOVEMENT, INDEX, MATMUL, CONV, CREATION, RANDOM)


class Prop(enum.Flag):
    """Facts about a primitive that passes and codegen query (`prims_with`, `Primitive.has`)."""

    NONE = 0
    #: each output element is an element of the single input at a position computed from the
    #: output index, or a constant fill (reshape, permute, broadcast_to, slice, pad)
    INDEX_MAP = enum.auto()
    #: an INDEX_MAP without fill: every output element is an input element, so the result is a
    #: strided re-indexing of its input's buffer
    VIEW = enum.auto()
    #: a VIEW that reads every input element exactly once (a bijective re-indexing)
    BIJECTIVE = enum.auto()
    #: costly per element (transcendental, division, power, random hash): recomputing it
    #: for every element of a broadcast is not free
    EXPENSIVE = enum.auto()
    #: writes updates into a copy of its input; the result is complete only after every update
    SCATTER = enum.auto()


# a property that implies another must be declared with it
_IMPLIES = {Prop.VIEW: Prop.INDEX_MAP, Prop.BIJECTIVE: Prop.VIEW}


class ShapeError(ValueError, RuntimeError):
    """An operand's shape, dtype or attribute does not fit the primitive."""


@dataclass(frozen=True)
class Primitive:
    """One primitive and all of its rules; see the package docstring."""

    name: str
    kind: str
    shape_rule: Callable[..., tuple[tuple[int, ...], DType]]
    impl: Callable[..., np.ndarray]
    vjp: Callable[..., tuple] | None
    arity: int | None  # number of inputs; None = variadic (at least one)
    attrs: tuple[str, ...] = ()
    doc: str = ""
    saves: str = ""  # what the VJP reads: "i" all inputs, digits: those inputs, "o" output
    save_deps: dict[int, str] | None = None  # finer: input k's cotangent reads only save_deps[k]
    props: Prop = Prop.NONE

    def has(self, prop: Prop) -> bool:
        """Whether this primitive has every property in `prop`."""
        return prop in self.props

    def saved_for(self, needed: list[int]) -> str:
        """What the VJP reads when only the cotangents of inputs `needed` are wanted."""
        if self.save_deps is None:
            return self.saves
        return "".join(self.save_deps.get(k, self.saves) for k in needed)

    def abstract_eval(self, avals, attrs: dict[str, Any]):
        if self.arity is not None and len(avals) != self.arity:
            raise ShapeError(f"{self.name}: expected {self.arity} inputs, got {len(avals)}")
        if len(attrs) != len(self.attrs) or not all(a in attrs for a in self.attrs):
            missing = [a for a in self.attrs if a not in attrs]
            unknown = [a for a in attrs if a not in self.attrs]
            raise ShapeError(f"{self.name}: missing attributes {missing}, unknown attributes {unknown}")
        return self.shape_rule(avals, **attrs)


PRIMITIVES: dict[str, Primitive] = {}


def get_primitive(name: str) -> Primitive:
    """The primitive called `name`; KeyError lists the known ones."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}; known: {', '.join(sorted(PRIMITIVES))}") from None


def prims_with(prop: Prop) -> frozenset[str]:
    """Names of the primitives that have every property in `prop`."""
    if prop == Prop.NONE:
        raise ValueError("prims_with: give at least one property (every primitive has Prop.NONE)")
    return frozenset(n for n, p in PRIMITIVES.items() if p.has(prop))


def _check_saves(name: str, what: str, saves: str, arity: int | None) -> None:
    for ch in saves:
        if ch in "io":
            continue
        if not ch.isdigit() or (arity is not None and int(ch) >= arity):
            raise ValueError(f"register({name!r}): {what} {saves!r} may hold only 'i', 'o' and input indices "
                             f"below the arity {arity}")


def register(name: str, kind: str, shape_rule: Callable, impl: Callable, vjp: Callable | None,
             arity: int | None, attrs: tuple[str, ...] = (), *, saves: str | None = None,
             save_deps: dict[int, str] | None = None, props: Prop = Prop.NONE, doc: str = "") -> Primitive:
    """Add one primitive to the table with all of its rules.

    `saves` (required exactly when there is a `vjp`) says what the VJP rule reads besides
    shapes and dtypes: eager autograd saves only these and checks their versions.
    `save_deps[k]` refines it for input k's cotangent alone.
    `props` are the facts passes query through `prims_with` / `Primitive.has`.
    """
    if name in PRIMITIVES:
        raise ValueError(f"register: primitive {name!r} is already registered")
    if kind not in KINDS:
        raise ValueError(f"register({name!r}): unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    if vjp is None and (saves is not None or save_deps is not None):
        raise ValueError(f"register({name!r}): saves/save_deps describe a VJP rule, and there is none")
    if vjp is not None and saves is None:
        raise ValueError(f"register({name!r}): a primitive with a VJP rule must declare what it saves")
    _check_saves(name, "saves", saves or "", arity)
    for k, s in (save_deps or {}).items():
        if not isinstance(k, int) or k < 0 or (arity is not None and k >= arity):
            raise ValueError(f"register({name!r}): save_deps key {k!r} is not an input index below {arity}")
        _check_saves(name, f"save_deps[{k}]", s, arity)
    for p, needs in _IMPLIES.items():
        if p in props and needs not in props:
            raise ValueError(f"register({name!r}): property {p.name} needs {needs.name} as well")
    prim = Primitive(name, kind, shape_rule, impl, vjp, arity, tuple(attrs), doc, saves or "", save_deps, props)
    PRIMITIVES[name] = prim
    return prim


def fmt_shape(shape) -> str:
    """A shape as error messages spell it: `(2, 3)`."""
    return "(" + ", ".join(str(s) for s in shape) + ")"

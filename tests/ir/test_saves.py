"""Each primitive's declared `saves`/`save_deps` equals what its VJP rule actually reads.

Every rule runs on proxy values that carry only a shape, a dtype and the set of sources
(input k, or "o" for the output) they were computed from; binding a primitive unions its
operands' sources. Reading `.shape`/`.dtype` is free, as in eager autograd (unsaved values
are passed as shape-and-dtype stand-ins), so a cotangent's sources are exactly the values
that must be saved to compute it.
"""
from dataclasses import replace

import numpy as np
import pytest

import kiln
from kiln.ir import PRIMITIVES, RuleOps, get_primitive
from kiln.ir.dtypes import from_numpy_dtype

from helpers import CASES

# primitives with a VJP that the finite-difference CASES leave out
EXTRA_CASES = {
    "conv": ([np.zeros((2, 4, 5, 5)), np.zeros((6, 2, 3, 3))],
             {"strides": (2, 1), "padding": ((1, 0), (0, 1)), "dilation": (1, 2), "groups": 2}),
    "random_uniform": ([np.int64(0), np.int64(0)], {"shape": (3,), "dtype": kiln.float32}),
}
PROBE_CASES = {**CASES, **EXTRA_CASES}


class Probe:
    """What a VJP rule sees of a value: shape, dtype, and the sources it depends on."""

    def __init__(self, shape, dtype, sources):
        self.shape, self.dtype, self.sources = tuple(shape), dtype, frozenset(sources)


def _bind(name, *args, **attrs):
    for a in args:
        assert isinstance(a, Probe), f"{name}: operand {a!r} is not a value (rules bind only values)"
    shape, dtype = get_primitive(name).abstract_eval(args, attrs)
    return Probe(shape, dtype, frozenset().union(*(a.sources for a in args)))


def _declared(saves: str, arity: int) -> frozenset:
    out = set()
    for ch in saves:
        if ch == "i":
            out.update(range(arity))
        elif ch == "o":
            out.add("o")
        else:
            out.add(int(ch))
    return frozenset(out)


def probe_reads(prim, arrays, attrs) -> dict[int, frozenset]:
    """{input k: the sources its cotangent reads} for every input that gets a cotangent."""
    inputs = [Probe(np.shape(a), from_numpy_dtype(np.asarray(a).dtype), {k}) for k, a in enumerate(arrays)]
    shape, dtype = prim.abstract_eval(inputs, attrs)
    out = Probe(shape, dtype, {"o"})
    g = Probe(shape, dtype, ())
    cts = prim.vjp(RuleOps(_bind), g, inputs, out, **attrs)
    assert len(cts) == len(inputs), f"{prim.name}: VJP returned {len(cts)} cotangents for {len(inputs)} inputs"
    return {k: ct.sources for k, ct in enumerate(cts) if ct is not None}


def saves_problems(prim, arrays, attrs) -> list[str]:
    """How `prim`'s declared saves differ from what its VJP reads on these inputs (empty: they agree)."""
    n = len(arrays)
    reads = probe_reads(prim, arrays, attrs)
    problems = []
    for k, r in reads.items():
        allowed = _declared(prim.saved_for([k]), n)
        if not r <= allowed:
            problems.append(f"input {k}'s cotangent reads {sorted(map(str, r - allowed))}, which saved_for([{k}]) "
                            f"= {prim.saved_for([k])!r} does not save")
    used = frozenset().union(*reads.values())
    if used != _declared(prim.saves, n):
        problems.append(f"saves={prim.saves!r}, but the rule reads {sorted(map(str, used))}")
    for k, s in (prim.save_deps or {}).items():
        if k not in reads:
            problems.append(f"save_deps names input {k}, which gets no cotangent")
        elif reads[k] != _declared(s, n):
            problems.append(f"save_deps[{k}]={s!r}, but that cotangent reads {sorted(map(str, reads[k]))}")
    return problems


def test_every_primitive_with_a_vjp_has_a_probe_case():
    assert {n for n, p in PRIMITIVES.items() if p.vjp is not None} <= set(PROBE_CASES)


@pytest.mark.parametrize("name", sorted(PROBE_CASES))
def test_declared_saves_match_what_the_vjp_reads(name):
    arrays, attrs = PROBE_CASES[name]
    assert saves_problems(PRIMITIVES[name], arrays, attrs) == []


@pytest.mark.parametrize("name, wrong, expect", [
    ("mul", dict(saves="", save_deps=None), "cotangent reads ['1']"),  # too little: backward would fail
    ("exp", dict(saves="io"), "saves='io', but the rule reads ['o']"),  # too much: holds memory for nothing
    ("div", dict(save_deps={0: "1", 1: "1"}), "save_deps[1]='1'"),  # a refinement that drops a read
])
def test_the_probe_flags_wrong_declarations(name, wrong, expect):
    arrays, attrs = PROBE_CASES[name]
    problems = saves_problems(replace(PRIMITIVES[name], **wrong), arrays, attrs)
    assert any(expect in p for p in problems), problems

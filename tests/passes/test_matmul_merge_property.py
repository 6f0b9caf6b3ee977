"""Property tests of the matmul-merging passes: random graphs with sums of matmuls (any association,
transposed and zero operands, batched, other terms, matmuls with other uses) and groups of
matmuls sharing an operand (with random dependencies between them), float32 and float64. The
merged graph is well formed (so acyclic: the verifier checks that every operand is defined
first), computes what the reference interpreter computes on the unmerged graph, and has no more
matmuls; a recurrent chain never merges."""
from __future__ import annotations

import functools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.ir import dtypes as dt
from kiln.ir import verify
from kiln.ir.graph import Graph
from kiln.ir.primitives import get_primitive
from kiln.passes import cse, dce
from kiln.passes.matmul_merge import merge_matmul_sums, merge_shared_operand_matmuls
from kiln.passes.matmul_shared import plan_shared_merges
from kiln.passes.matmul_sums import merge_reduced_sums
from kiln.runtime.interpreter import run_graph

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
DTYPES = st.sampled_from([dt.float32, dt.float64])


def _emit(g: Graph, op: str, inputs, **attrs):
    shape, dtype = get_primitive(op).abstract_eval(list(inputs), attrs)
    return g.add_node(op, list(inputs), attrs, shape, dtype)


def _merge_all(g: Graph) -> Graph:
    """The merging group of the default pipeline, at any size, until nothing changes."""
    passes = [functools.partial(merge_matmul_sums, min_shared=0),
              functools.partial(merge_shared_operand_matmuls, min_shared=0),
              merge_reduced_sums, cse, dce]
    for _ in range(4):
        before = g
        for p in passes:
            g = verify(p(g))
        if g is before:
            break
    return g


def _check_same(g: Graph, out: Graph, seed: int) -> None:
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1, 1, n.shape).astype(n.dtype.np_dtype) for n in g.inputs]
    for k, (ref, got) in enumerate(zip(run_graph(g, args), run_graph(out, args))):
        assert ref.shape == got.shape and ref.dtype == got.dtype
        tol = 1e-12 if ref.dtype == np.float64 else 2e-5
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale, err_msg=f"output {k}\n{g}\n{out}")


def _count(g: Graph, op: str) -> int:
    return sum(1 for n in g.nodes if n.op == op)


@st.composite
def sum_graphs(draw):
    """`Σ_t A_t @ B_t (+ other terms)` in a random association, optionally reduced over rows (a bias
    gradient) beside it."""
    dtype = draw(DTYPES)
    batch = draw(st.sampled_from([(), (2,)]))
    m, n = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    equal_k = draw(st.booleans())
    k0 = draw(st.integers(1, 4))
    g = Graph("sums")
    terms, b_ops, extra_outputs = [], [], []
    for t in range(draw(st.integers(2, 6))):
        k = k0 if equal_k else draw(st.integers(1, 4))
        a_kind = draw(st.sampled_from(["input", "transposed", "zero"]))
        if a_kind == "input":
            a = g.add_input(batch + (m, k), dtype)
        elif a_kind == "transposed":
            rank = len(batch) + 2
            a = _emit(g, "permute", [g.add_input(batch + (k, m), dtype)],
                      perm=tuple(range(rank - 2)) + (rank - 1, rank - 2))
        else:
            a = _emit(g, "constant", [], value=0.0, shape=batch + (m, k), dtype=dtype)
        b = g.add_input(batch + (k, n), dtype)
        mm = _emit(g, "matmul", [a, b])
        if draw(st.integers(0, 5)) == 0:
            extra_outputs.append(mm)  # a term needed on its own too: it must not merge
        terms.append(mm)
        b_ops.append(b)
    for _ in range(draw(st.integers(0, 2))):
        terms.append(g.add_input(batch + (m, n), dtype))
    while len(terms) > 1:  # a random association (and order) of the adds
        i = draw(st.integers(0, len(terms) - 2))
        x, y = terms.pop(i), terms.pop(i)
        terms.insert(i, _emit(g, "add", [y, x] if draw(st.booleans()) else [x, y]))
    outputs = [terms[0]] + extra_outputs
    if not batch and equal_k and draw(st.booleans()):  # the rows' sum of the B_t: a bias gradient
        acc = b_ops[0]
        for b in b_ops[1:]:
            acc = _emit(g, "add", [acc, b])
        outputs.append(_emit(g, "reduce_sum", [acc], axes=(0,), keepdims=draw(st.booleans())))
    g.set_outputs(outputs)
    return verify(g)


@SETTINGS
@given(sum_graphs(), st.integers(0, 2 ** 16))
def test_merged_sums_compute_the_same(g, seed):
    text = str(g)
    out = _merge_all(g)
    assert str(g) == text, "a pass mutated its input"
    _check_same(g, out, seed)
    assert _count(out, "matmul") <= _count(g, "matmul") + (1 if _count(g, "reduce_sum") else 0)
    single_use = [n for n in g.nodes if n.op == "matmul" and n not in g.outputs]
    if len(single_use) >= 2:  # the sum's single-use terms became one matmul (plus the other uses)
        others = sum(1 for n in g.outputs if n.op == "matmul")
        bias = sum(1 for n in out.nodes if n.op == "matmul" and n.inputs[0].op == "constant"
                   and n.inputs[0].attrs.get("value") == 1.0)
        assert _count(out, "matmul") == 1 + others + bias, f"{g}\n{out}"


@st.composite
def shared_graphs(draw):
    """Matmuls `X_t @ W` (or `W @ X_t`) with one W, where each X_t is an input or computed from
    earlier members' results (a random dependency structure, chains included)."""
    dtype = draw(DTYPES)
    k = draw(st.integers(2, 6))
    left = draw(st.booleans())  # W @ X_t: W shared on the left
    g = Graph("shared")
    w = g.add_input((k, k), dtype)
    members, deps = [], []
    for t in range(draw(st.integers(2, 7))):
        rows = draw(st.integers(1, 3))
        earlier = draw(st.lists(st.integers(0, len(members) - 1), max_size=2, unique=True)) if members else []
        used = set()
        if earlier:  # depends on earlier results: tanh of one, plus the others of its shape
            x = _emit(g, "tanh", [members[earlier[0]]])
            used.add(earlier[0])
            for j in earlier[1:]:
                if members[j].shape == x.shape:
                    x = _emit(g, "add", [x, _emit(g, "tanh", [members[j]])])
                    used.add(j)
        else:
            x = g.add_input((k, rows) if left else (rows, k), dtype)
        mm = _emit(g, "matmul", [w, x] if left else [x, w])
        members.append(mm)
        deps.append(used)
    g.set_outputs(members)
    return verify(g), deps


def _depends(deps, i, j):
    """Does member i depend (transitively) on member j?"""
    stack, seen = list(deps[i]), set()
    while stack:
        d = stack.pop()
        if d == j:
            return True
        if d not in seen:
            seen.add(d)
            stack.extend(deps[d])
    return False


@SETTINGS
@given(shared_graphs(), st.integers(0, 2 ** 16))
def test_merged_shared_operands_compute_the_same_and_respect_dependencies(case, seed):
    g, deps = case
    index = {id(m): i for i, m in enumerate(g.outputs)}
    for merge in plan_shared_merges(g, min_shared=0, acyclic=False):  # the planned groups, unchecked
        idx = [index[id(m)] for m in merge.members]
        assert all(a == b or not _depends(deps, a, b) for a in idx for b in idx), f"{idx}\n{g}"
    out = verify(dce(merge_shared_operand_matmuls(g, min_shared=0)))
    _check_same(g, out, seed)
    # every merged matmul's members are pairwise independent
    name_to_index = {m.name: i for i, m in enumerate(g.outputs)}
    for mm in (n for n in out.nodes if n.op == "matmul" and n.name not in name_to_index):
        slices = [o for o in out.outputs if o.op == "slice" and o.inputs[0] is mm]
        idx = [name_to_index[s.name] for s in slices]
        assert len(idx) >= 2
        for a in idx:
            for b in idx:
                assert a == b or not _depends(deps, a, b), f"merged dependent matmuls {a}, {b}\n{g}\n{out}"


@SETTINGS
@given(st.integers(2, 8), st.integers(1, 6), DTYPES)
def test_a_recurrent_chain_never_merges(steps, width, dtype):
    g = Graph("chain")
    h, w = g.add_input((3, width), dtype), g.add_input((width, width), dtype)
    for _ in range(steps):
        h = _emit(g, "tanh", [_emit(g, "matmul", [h, w])])
    g.set_outputs([h])
    assert merge_shared_operand_matmuls(g, min_shared=0) is g
    assert merge_matmul_sums(g, min_shared=0) is g

"""Rewrites keep invalid inputs invalid: every rule of `kiln.passes.rewrites.RULES`, run on
nan, ±inf, negative, zero and positive inputs (and out-of-range indices), gives what the
unrewritten graph gives on the reference interpreter — the same nan/inf positions, the same
values up to rounding, or the same error. A rule whose pattern is valid only on a domain must
check it (in `match` or in its replacement), so this holds for every input."""
import math

import numpy as np
import pytest

from kiln.ir import parse_graph
from kiln.passes import dce
from kiln.passes.rewrites import ALL_INPUTS, RULES, Rewriter
from kiln.runtime.interpreter import run_graph

from conftest import F16_ATOL, F16_RTOL, F32_ATOL, F32_RTOL

#: float inputs are filled with these, cycled (exp overflows above ~88.7 and underflows below ~-104 in f32)
SPECIAL = [math.nan, math.inf, -math.inf, -2.5, -0.0, 0.0, 0.5, 3.0, 95.0, -120.0, 1e3, -1e3, 1e-30, -7e-3]
INTS = [0, -3, 7, 1, -(2 ** 31), 2 ** 31 - 1, 2, -1]

# rule name -> graphs (IR text) on which the rule fires
CASES = {
    "mul-one": ["""graph f(%x: f32[14]) {
        %one: f32[14] = constant() {dtype=f32, shape=(14,), value=1.0}
        %a: f32[14] = mul(%one, %x)
        %b: f32[14] = mul(%a, %one)
        return (%b)
    }"""],
    "mul-zero-int": ["""graph f(%x: i32[8]) {
        %z: i32[8] = constant() {dtype=i32, shape=(8,), value=0}
        %a: i32[8] = mul(%x, %z)
        return (%a)
    }"""],
    "add-zero": ["""graph f(%x: f32[14]) {
        %z: f32[14] = constant() {dtype=f32, shape=(14,), value=0.0}
        %nz: f32[14] = constant() {dtype=f32, shape=(14,), value=-0.0}
        %a: f32[14] = add(%z, %x)
        %b: f32[14] = add(%x, %nz)
        return (%a, %b)
    }"""],
    "sub-zero": ["""graph f(%x: f32[14]) {
        %z: f32[14] = constant() {dtype=f32, shape=(14,), value=0.0}
        %a: f32[14] = sub(%x, %z)
        %b: f32[14] = sub(%z, %x)
        return (%a, %b)
    }"""],
    "sub-self-int": ["""graph f(%x: i64[8]) {
        %a: i64[8] = sub(%x, %x)
        return (%a)
    }"""],
    "div-one": ["""graph f(%x: f32[14]) {
        %one: f32[14] = constant() {dtype=f32, shape=(14,), value=1}
        %a: f32[14] = div(%x, %one)
        return (%a)
    }"""],
    "neg-neg": ["""graph f(%x: f32[14]) {
        %a: f32[14] = neg(%x)
        %b: f32[14] = neg(%a)
        return (%b)
    }"""],
    "not-not": ["""graph f(%x: b1[6]) {
        %a: b1[6] = logical_not(%x)
        %b: b1[6] = logical_not(%a)
        return (%b)
    }"""],
    "exp-log": [f"""graph f(%x: {t}[14]) {{
        %a: {t}[14] = log(%x)
        %b: {t}[14] = exp(%a)
        return (%b)
    }}""" for t in ("f32", "f64", "f16")],
    "log-exp": [f"""graph f(%x: {t}[14]) {{
        %a: {t}[14] = exp(%x)
        %b: {t}[14] = log(%a)
        return (%b)
    }}""" for t in ("f32", "f64", "f16")],
    "select-same": ["""graph f(%c: b1[14], %x: f32[14]) {
        %a: f32[14] = select(%c, %x, %x)
        return (%a)
    }"""],
    "select-const": ["""graph f(%x: f32[14], %y: f32[14]) {
        %t: b1[14] = constant() {dtype=b1, shape=(14,), value=True}
        %f: b1[14] = constant() {dtype=b1, shape=(14,), value=False}
        %a: f32[14] = select(%t, %x, %y)
        %b: f32[14] = select(%f, %x, %y)
        return (%a, %b)
    }"""],
    "select-not": ["""graph f(%c: b1[14], %x: f32[14], %y: f32[14]) {
        %n: b1[14] = logical_not(%c)
        %a: f32[14] = select(%n, %x, %y)
        return (%a)
    }"""],
    "cast-noop": ["""graph f(%x: f32[14]) {
        %a: f32[14] = cast(%x) {dtype=f32}
        return (%a)
    }"""],
    "cast-cast": ["""graph f(%x: f32[14], %i: i32[8]) {
        %a: f64[14] = cast(%x) {dtype=f64}
        %b: f32[14] = cast(%a) {dtype=f32}
        %bb: b1[14] = cast(%a) {dtype=b1}
        %c: i64[8] = cast(%i) {dtype=i64}
        %d: f32[8] = cast(%c) {dtype=f32}
        return (%b, %bb, %d)
    }"""],
    "reshape-noop": ["""graph f(%x: f32[2,7]) {
        %a: f32[2,7] = reshape(%x) {shape=(2, 7)}
        return (%a)
    }"""],
    "reshape-reshape": ["""graph f(%x: f32[2,7]) {
        %a: f32[14] = reshape(%x) {shape=(14,)}
        %b: f32[7,2] = reshape(%a) {shape=(7, 2)}
        return (%b)
    }"""],
    "permute-identity": ["""graph f(%x: f32[2,7]) {
        %a: f32[2,7] = permute(%x) {perm=(0, 1)}
        return (%a)
    }"""],
    "permute-permute": ["""graph f(%x: f32[2,7,3]) {
        %a: f32[7,3,2] = permute(%x) {perm=(1, 2, 0)}
        %b: f32[3,7,2] = permute(%a) {perm=(1, 0, 2)}
        return (%b)
    }"""],
    "broadcast-noop": ["""graph f(%x: f32[2,7]) {
        %a: f32[2,7] = broadcast_to(%x) {shape=(2, 7)}
        return (%a)
    }"""],
    "broadcast-broadcast": ["""graph f(%x: f32[14]) {
        %a: f32[2,14] = broadcast_to(%x) {shape=(2, 14)}
        %b: f32[3,2,14] = broadcast_to(%a) {shape=(3, 2, 14)}
        return (%b)
    }"""],
    "movement-of-splat": [f"""graph f(%x: f32[14]) {{
        %s: f32[] = constant() {{dtype=f32, shape=(), value={v}}}
        %a: f32[14] = broadcast_to(%s) {{shape=(14,)}}
        %b: f32[14] = mul(%x, %a)
        return (%b)
    }}""" for v in ("nan", "-inf", "-0.0", "2.5")],
    "slice-noop": ["""graph f(%x: f32[14,1]) {
        %a: f32[14,1] = slice(%x) {starts=(0, 0), steps=(1, 5), stops=(14, 1)}
        return (%a)
    }"""],
    "pad-noop": ["""graph f(%x: f32[2,7]) {
        %a: f32[2,7] = pad(%x) {hi=(0, 0), interior=(0, 0), lo=(0, 0), value=0.0}
        return (%a)
    }"""],
    "concat-single": ["""graph f(%x: f32[2,7]) {
        %a: f32[2,7] = concat(%x) {axis=1}
        return (%a)
    }"""],
    "reduce-no-axes": [f"""graph f(%x: f32[2,7]) {{
        %a: f32[2,7] = {op}(%x) {{axes=(), keepdims=False}}
        return (%a)
    }}""" for op in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod")],
    "reduce-unit-axes": [f"""graph f(%x: f32[14,1]) {{
        %a: f32[14] = {op}(%x) {{axes=(1,), keepdims=False}}
        return (%a)
    }}""" for op in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod")],
    "transpose-matmul": ["""graph f(%x: f32[4,7], %g: f32[4,3]) {
        %xt: f32[7,4] = permute(%x) {perm=(1, 0)}
        %m: f32[7,3] = matmul(%xt, %g)
        %t: f32[3,7] = permute(%m) {perm=(1, 0)}
        return (%t)
    }"""],
    "pad-into-conv": ["""graph f(%x: f32[1,2,5,5], %w: f32[3,2,3,3]) {
        %p: f32[1,2,7,9] = pad(%x) {hi=(0, 0, 1, 2), interior=(0, 0, 0, 0), lo=(0, 0, 1, 2), value=0.0}
        %c: f32[1,3,7,7] = conv(%p, %w) {dilation=(1, 1), groups=1, padding=((1, 1), (0, 0)), strides=(1, 1)}
        return (%c)
    }"""],
    "scatter-one-hot": [f"""graph f(%x: f32[2,7], %i: i64[2,1], %s: f32[2,1]) {{
        %a: f32[2,7] = {op}(%x, %i, %s) {{axis=1}}
        return (%a)
    }}""" for op in ("scatter", "scatter_add")],
}

#: index inputs: in range, and each way out of range
INDEX_SETS = [[0, 6], [3, 1], [7, 0], [2, -1], [100, 2]]


def _inputs(graph, variant):
    rng = np.random.default_rng(variant)
    args = []
    for n in graph.inputs:
        shape, dt = tuple(n.shape), n.dtype.np_dtype
        size = int(np.prod(shape))
        if n.dtype.is_floating_point:
            vals = np.resize(np.roll(SPECIAL, variant), size)
        elif n.dtype.is_bool:
            vals = rng.integers(0, 2, size).astype(bool)
        elif n.name == "i":  # an index
            vals = np.resize(INDEX_SETS[variant % len(INDEX_SETS)], size)
        else:
            vals = np.resize(np.roll(INTS, variant), size)
        with np.errstate(over="ignore", invalid="ignore"):
            args.append(np.asarray(vals).astype(dt).reshape(shape))
    return args


def _outcome(graph, args):
    """The outputs, or the error type, of running `graph` on the reference interpreter."""
    with np.errstate(all="ignore"):
        try:
            return [np.asarray(o) for o in run_graph(graph, [a.copy() for a in args])]
        except (IndexError, ValueError, RuntimeError) as e:
            return type(e)


def _cases():
    for rule, texts in sorted(CASES.items()):
        for k, text in enumerate(texts):
            yield pytest.param(rule, text, id=f"{rule}-{k}")


def test_every_rule_has_a_case_and_states_its_domain():
    assert set(CASES) == {r.name for r in RULES}, "a rule needs a case in this table (and a domain)"
    for r in RULES:
        assert isinstance(r.domain, str) and r.domain, r.name
    restricted = {r.name for r in RULES if r.domain != ALL_INPUTS}
    assert {"exp-log", "log-exp", "mul-zero-int", "sub-self-int", "scatter-one-hot"} <= restricted


@pytest.mark.parametrize("rule,text", list(_cases()))
def test_rule_keeps_invalid_inputs_invalid(rule, text):
    graph = parse_graph(text)
    rw = Rewriter(graph)
    rewritten = dce(rw.run())
    assert rule in rw.fired, f"{rule} did not fire on its case; fired: {rw.fired}"
    for variant in range(len(INDEX_SETS)):
        args = _inputs(graph, variant)
        want, got = _outcome(graph, args), _outcome(rewritten, args)
        if isinstance(want, type) or isinstance(got, type):
            assert got == want, f"{rule}: the original gives {want}, the rewrite {got} on {args}"
            continue
        for w, g in zip(want, got):
            assert w.dtype == g.dtype and w.shape == g.shape
            if w.dtype.kind == "f":
                np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{rule}: nan positions differ")
                np.testing.assert_array_equal(np.isinf(g) * np.sign(g), np.isinf(w) * np.sign(w),
                                              err_msg=f"{rule}: inf positions differ")
                rtol, atol = (F16_RTOL, F16_ATOL) if w.dtype == np.float16 else (F32_RTOL, F32_ATOL)
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=rule)
            else:
                np.testing.assert_array_equal(g, w, err_msg=rule)


def test_out_of_range_scatter_index_still_fails_compiled():
    """scatter-one-hot used to turn an out-of-range index into "updates nothing"."""
    import kiln
    f = kiln.compile(lambda x, i, s: x.scatter_add(1, i, s))
    x, s = kiln.zeros(2, 4), kiln.ones(2, 1)
    with pytest.raises(IndexError, match="out of bounds"):
        f(x, kiln.tensor([[1], [4]]), s)
    assert f(x, kiln.tensor([[1], [3]]), s).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]

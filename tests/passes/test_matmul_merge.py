"""The matmul-merging passes (kiln/passes/matmul_merge.py, matmul_sums.py, matmul_shared.py) on small
IR programs: what merges, what must not (a recurrence, a matmul with another use, a copy that does
not pay, a product under the size threshold), and that the results stay the reference
interpreter's."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from passes_helpers import assert_unchanged, ir

from kiln.ir import verify
from kiln.passes import cse, dce, default_pipeline, rewrite
from kiln.passes.matmul_merge import merge_matmul_sums, merge_shared_operand_matmuls
from kiln.passes.matmul_sums import merge_reduced_sums
from kiln.runtime.interpreter import run_graph

sums = functools.partial(merge_matmul_sums, min_shared=0)
shared = functools.partial(merge_shared_operand_matmuls, min_shared=0)


def _args(g, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, n.shape).astype(n.dtype.np_dtype) for n in g.inputs]


def _same_results(g, out, rtol=1e-5):
    args = _args(g)
    for a, b in zip(run_graph(g, args), run_graph(out, args)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-6)


def _ops(g):
    return g.op_counts()


SUM3 = """
    graph f(%a1: f32[4,3], %b1: f32[3,5], %a2: f32[4,2], %b2: f32[2,5], %a3: f32[4,3], %b3: f32[3,5]) {
      %m1: f32[4,5] = matmul(%a1, %b1)
      %m2: f32[4,5] = matmul(%a2, %b2)
      %m3: f32[4,5] = matmul(%a3, %b3)
      %s1: f32[4,5] = add(%m1, %m2)
      %s: f32[4,5] = add(%s1, %m3)
      return (%s)
    }"""


def test_sum_of_matmuls_becomes_one_matmul_over_the_concatenated_contraction():
    g = ir(SUM3)
    out = verify(sums(g))
    assert str(out) == str(ir("""
        graph f(%a1: f32[4,3], %b1: f32[3,5], %a2: f32[4,2], %b2: f32[2,5], %a3: f32[4,3], %b3: f32[3,5]) {
          %0: f32[4,8] = concat(%a1, %a2, %a3) {axis=1}
          %1: f32[8,5] = concat(%b1, %b2, %b3) {axis=0}
          %s: f32[4,5] = matmul(%0, %1)
          return (%s)
        }"""))
    _same_results(g, out)


def test_any_association_of_the_adds_and_other_terms_kept():
    g = ir("""
        graph f(%a1: f32[4,3], %b1: f32[3,5], %a2: f32[4,3], %b2: f32[3,5], %c: f32[4,5], %a3: f32[4,3], %b3: f32[3,5]) {
          %m1: f32[4,5] = matmul(%a1, %b1)
          %m2: f32[4,5] = matmul(%a2, %b2)
          %m3: f32[4,5] = matmul(%a3, %b3)
          %l: f32[4,5] = add(%m1, %c)
          %r: f32[4,5] = add(%m3, %m2)
          %s: f32[4,5] = add(%l, %r)
          return (%s)
        }""")
    out = verify(sums(g))
    assert _ops(out) == {"concat": 2, "matmul": 1, "add": 1}
    assert out.outputs[0].name == "s" and out.outputs[0].op == "add"
    _same_results(g, out)


def test_transposed_operands_are_concatenated_untransposed_and_read_as_a_view():
    # the weight gradient of a recurrence: sum_t h_t^T @ g_t, with a zero initial state
    g = ir("""
        graph f(%h1: f32[6,4], %h2: f32[6,4], %g0: f32[6,5], %g1: f32[6,5], %g2: f32[6,5]) {
          %z: f32[4,6] = constant() {dtype=f32, shape=(4, 6), value=0.0}
          %t1: f32[4,6] = permute(%h1) {perm=(1, 0)}
          %t2: f32[4,6] = permute(%h2) {perm=(1, 0)}
          %m0: f32[4,5] = matmul(%z, %g0)
          %m1: f32[4,5] = matmul(%t1, %g1)
          %m2: f32[4,5] = matmul(%t2, %g2)
          %s1: f32[4,5] = add(%m0, %m1)
          %s: f32[4,5] = add(%s1, %m2)
          return (%s)
        }""")
    out = verify(dce(sums(g)))
    (mm,) = [n for n in out.nodes if n.op == "matmul"]
    a, b = mm.inputs
    assert a.op == "permute" and a.inputs[0].op == "concat" and a.inputs[0].shape == (18, 4)
    assert a.inputs[0].attrs["axis"] == 0 and b.op == "concat" and b.shape == (18, 5)
    _same_results(g, out)


def test_batched_matmul_sums_merge():
    g = ir("""
        graph f(%a1: f64[2,4,3], %b1: f64[2,3,5], %a2: f64[2,4,3], %b2: f64[2,3,5]) {
          %m1: f64[2,4,5] = matmul(%a1, %b1)
          %m2: f64[2,4,5] = matmul(%a2, %b2)
          %s: f64[2,4,5] = add(%m1, %m2)
          return (%s)
        }""")
    out = verify(sums(g))
    assert _ops(out) == {"concat": 2, "matmul": 1}
    _same_results(g, out, rtol=1e-12)


def test_a_matmul_with_another_use_stays():
    assert_unchanged(sums, """
        graph f(%a1: f32[4,3], %b1: f32[3,5], %a2: f32[4,3], %b2: f32[3,5]) {
          %m1: f32[4,5] = matmul(%a1, %b1)
          %m2: f32[4,5] = matmul(%a2, %b2)
          %s: f32[4,5] = add(%m1, %m2)
          return (%s, %m1)
        }""")


def test_a_shared_add_is_a_leaf_not_a_branch():
    # %s1 is used twice: its terms are needed on their own, so only the outer sum's matmuls merge
    g = ir("""
        graph f(%a1: f32[4,3], %b1: f32[3,5], %a2: f32[4,3], %b2: f32[3,5], %a3: f32[4,3], %b3: f32[3,5]) {
          %m1: f32[4,5] = matmul(%a1, %b1)
          %m2: f32[4,5] = matmul(%a2, %b2)
          %m3: f32[4,5] = matmul(%a3, %b3)
          %s1: f32[4,5] = add(%m1, %m2)
          %s: f32[4,5] = add(%s1, %m3)
          %u: f32[4,5] = mul(%s, %s1)
          return (%u)
        }""")
    out = verify(sums(g))
    s1 = [n for n in out.nodes if n.name == "s1"][0]
    assert s1.op == "matmul"  # m1 + m2 merged as the inner sum
    assert [n for n in out.nodes if n.name == "s"][0].op == "add"
    _same_results(g, out)


SHARED = """
    graph f(%x1: f32[4,3], %x2: f32[2,3], %x3: f32[4,3], %w: f32[3,5]) {
      %m1: f32[4,5] = matmul(%x1, %w)
      %m2: f32[2,5] = matmul(%x2, %w)
      %e: f32[4,3] = exp(%x3)
      %m3: f32[4,5] = matmul(%e, %w)
      %t: f32[4,5] = tanh(%m1)
      return (%t, %m2, %m3)
    }"""


def test_matmuls_sharing_an_operand_become_one_matmul_and_slices():
    g = ir(SHARED)
    out = verify(shared(g))
    assert str(out) == str(ir("""
        graph f(%x1: f32[4,3], %x2: f32[2,3], %x3: f32[4,3], %w: f32[3,5]) {
          %e: f32[4,3] = exp(%x3)
          %0: f32[10,3] = concat(%x1, %x2, %e) {axis=0}
          %1: f32[10,5] = matmul(%0, %w)
          %m1: f32[4,5] = slice(%1) {starts=(0, 0), steps=(1, 1), stops=(4, 5)}
          %m2: f32[2,5] = slice(%1) {starts=(4, 0), steps=(1, 1), stops=(6, 5)}
          %m3: f32[4,5] = slice(%1) {starts=(6, 0), steps=(1, 1), stops=(10, 5)}
          %t: f32[4,5] = tanh(%m1)
          return (%t, %m2, %m3)
        }"""))
    _same_results(g, out)


def test_a_shared_left_operand_concatenates_columns():
    g = ir("""
        graph f(%w: f32[4,3], %x1: f32[3,3], %x2: f32[3,2], %x3: f32[3,2]) {
          %m1: f32[4,3] = matmul(%w, %x1)
          %m2: f32[4,2] = matmul(%w, %x2)
          %m3: f32[4,2] = matmul(%w, %x3)
          return (%m1, %m2, %m3)
        }""")
    out = verify(shared(g))
    cat = [n for n in out.nodes if n.op == "concat"][0]
    assert cat.attrs["axis"] == 1 and cat.shape == (3, 7)
    _same_results(g, out)


RECURRENCE = """
    graph f(%h0: f32[4,8], %w: f32[8,8]) {
      %m1: f32[4,8] = matmul(%h0, %w)
      %h1: f32[4,8] = tanh(%m1)
      %m2: f32[4,8] = matmul(%h1, %w)
      %h2: f32[4,8] = tanh(%m2)
      %m3: f32[4,8] = matmul(%h2, %w)
      %h3: f32[4,8] = tanh(%m3)
      return (%h3)
    }"""


def test_a_recurrent_chain_does_not_merge():
    assert_unchanged(shared, RECURRENCE)


def test_only_the_independent_matmuls_of_a_group_merge():
    # m2 reads m1's result; m3 does not: m1 and m3 merge, m2 stays, and the merged matmul comes
    # before m2's operand
    g = ir("""
        graph f(%x1: f32[4,8], %x3: f32[4,8], %w: f32[8,8]) {
          %m1: f32[4,8] = matmul(%x1, %w)
          %h: f32[4,8] = tanh(%m1)
          %m2: f32[4,8] = matmul(%h, %w)
          %m3: f32[4,8] = matmul(%x3, %w)
          %s: f32[4,8] = mul(%m2, %m3)
          return (%s)
        }""")
    out = verify(shared(g))
    mms = [n for n in out.nodes if n.op == "matmul"]
    assert len(mms) == 2 and mms[0].shape == (8, 8) and mms[1].name == "m2"
    _same_results(g, out)


def test_two_groups_that_would_wait_on_each_other_merge_one():
    # group w: (a1, b1 @ w ... ) and group v: each group's second member reads the other group's
    # first result, so merging both would be a cycle; merging one alone is fine
    g = ir("""
        graph f(%x: f32[4,8], %y: f32[4,8], %w: f32[8,8], %v: f32[8,8]) {
          %a1: f32[4,8] = matmul(%x, %w)
          %b1: f32[4,8] = matmul(%y, %v)
          %ta: f32[4,8] = tanh(%a1)
          %tb: f32[4,8] = tanh(%b1)
          %a2: f32[4,8] = matmul(%tb, %w)
          %b2: f32[4,8] = matmul(%ta, %v)
          %s: f32[4,8] = mul(%a2, %b2)
          return (%s)
        }""")
    out = verify(shared(g))
    assert _ops(out)["matmul"] == 3 and _ops(out)["concat"] == 1
    _same_results(g, out)


def test_a_splat_shared_operand_is_not_shared():
    # zeros @ W1 and zeros @ W2 (a recurrence's first step in two layers) would copy both weights
    # to save reading a constant that is never read from memory
    assert_unchanged(shared, """
        graph f(%w1: f32[16,32], %w2: f32[16,32]) {
          %z: f32[2,16] = constant() {dtype=f32, shape=(2, 16), value=0.0}
          %m1: f32[2,32] = matmul(%z, %w1)
          %m2: f32[2,32] = matmul(%z, %w2)
          return (%m1, %m2)
        }""")


def test_a_shared_operand_under_the_size_threshold_is_not_shared():
    assert_unchanged(merge_shared_operand_matmuls, SHARED)  # %w has 15 elements
    g = ir(SHARED.replace("f32[3,5]", "f32[3,400]").replace(",5]", ",400]"))
    assert merge_shared_operand_matmuls(g) is not g  # 1200 elements


def test_the_merge_of_more_matmuls_wins_a_matmul_both_passes_want():
    # an LSTM-like forward step: x_t @ Wi + h_{t-1} @ Wh. The input projections of all 8 steps (one
    # shared-operand merge) beat per-step concatenations [x_t, h_{t-1}] @ [Wi; Wh] (2 matmuls each)
    lines, h = [], "h0"
    for t in range(8):
        lines += [f"%p{t}: f32[8,16] = matmul(%x{t}, %wi)", f"%q{t}: f32[8,16] = matmul(%{h}, %wh)",
                  f"%s{t}: f32[8,16] = add(%p{t}, %q{t})", f"%h{t + 1}: f32[8,16] = tanh(%s{t})"]
        h = f"h{t + 1}"
    src = ("graph f(%h0: f32[8,16], %wi: f32[8,16], %wh: f32[16,16], "
           + ", ".join(f"%x{t}: f32[8,8]" for t in range(8)) + ") {\n"
           + "\n".join(lines) + f"\nreturn (%{h})\n}}")
    g = ir(src)
    after_sums = verify(sums(g))
    assert after_sums is g  # the per-step sums are left alone
    out = verify(dce(shared(after_sums)))
    big = [n for n in out.nodes if n.op == "matmul" and n.shape == (64, 16)]
    assert len(big) == 1 and big[0].inputs[1].name == "wi"
    _same_results(g, out)


BIAS = """
        graph f(%h1: f32[6,4], %h2: f32[6,4], %g1: f32[6,5], %g2: f32[6,5]) {
          %t1: f32[4,6] = permute(%h1) {perm=(1, 0)}
          %t2: f32[4,6] = permute(%h2) {perm=(1, 0)}
          %m1: f32[4,5] = matmul(%t1, %g1)
          %m2: f32[4,5] = matmul(%t2, %g2)
          %dw: f32[4,5] = add(%m1, %m2)
          %gs: f32[6,5] = add(%g1, %g2)
          %db: f32[5] = reduce_sum(%gs) {axes=(0,), keepdims=False}
          return (%dw, %db)
        }"""


def test_bias_sum_over_the_concatenation_becomes_a_matrix_vector_product():
    g = ir(BIAS)
    merged = verify(sums(g))
    out = verify(dce(cse(merge_reduced_sums(merged))))
    (db,) = [n for n in out.nodes if n.name == "db"]
    assert db.op == "reshape" and db.inputs[0].op == "matmul"
    mat, ones = db.inputs[0].inputs
    assert ones.op == "constant" and ones.shape == (12, 1) and mat.op == "permute"
    assert mat.inputs[0].op == "concat" and mat.inputs[0].shape == (12, 5)
    assert _ops(out)["concat"] == 2  # the gradients' concatenation is shared with dw's matmul
    _same_results(g, out)
    # and the shared-operand merge makes the bias sum one more column of the weight gradient's GEMM
    # (once rewrite has moved dw's transpose into its operands: dw^T = g^T @ h)
    dwt = ir(BIAS.replace("return (%dw, %db)", "return (%dwt, %db)").replace(
        "          %gs:", "          %dwt: f32[5,4] = permute(%dw) {perm=(1, 0)}\n          %gs:"))
    out = dwt
    for _ in range(3):  # the pipeline's merging group, at this size
        for p in (sums, shared, merge_reduced_sums, rewrite, cse, dce):
            out = verify(p(out))
    mms = [n for n in out.nodes if n.op == "matmul"]
    assert len(mms) == 1 and mms[0].shape == (5, 5), out  # [dw^T | db]
    _same_results(dwt, out)


def test_bias_sum_without_a_concatenation_stays():
    assert_unchanged(merge_reduced_sums, """
        graph f(%g1: f32[6,5], %g2: f32[6,5]) {
          %gs: f32[6,5] = add(%g1, %g2)
          %db: f32[5] = reduce_sum(%gs) {axes=(0,), keepdims=False}
          return (%db)
        }""")


def test_row_sums_with_keepdims():
    g = ir("""
        graph f(%g1: f32[6,5], %g2: f32[6,3]) {
          %c: f32[6,8] = concat(%g1, %g2) {axis=1}
          %p: f32[6,5] = pad(%g2) {hi=(0, 0), interior=(0, 0), lo=(0, 2), value=0.0}
          %q: f32[6,5] = add(%g1, %p)
          %r: f32[6,1] = reduce_sum(%q) {axes=(1,), keepdims=True}
          return (%c, %r)
        }""")
    assert merge_reduced_sums(g) is g  # %q's terms are %g1 and a pad, not what %c concatenates
    g2 = ir("""
        graph f(%g1: f32[6,5], %g2: f32[6,5]) {
          %c: f32[6,10] = concat(%g1, %g2) {axis=1}
          %q: f32[6,5] = add(%g2, %g1)
          %r: f32[6,1] = reduce_sum(%q) {axes=(1,), keepdims=True}
          return (%c, %r)
        }""")
    out = verify(merge_reduced_sums(g2))
    (r,) = [n for n in out.nodes if n.name == "r"]
    assert r.inputs[0].op == "matmul" and r.inputs[0].inputs[1].shape == (10, 1)
    assert r.inputs[0].inputs[0].op == "concat"
    _same_results(g2, out)


@pytest.mark.parametrize("name", ["matmul-sums", "matmul-shared", "sum-reductions"])
def test_the_passes_are_in_the_default_pipeline(name):
    assert name in default_pipeline().names()

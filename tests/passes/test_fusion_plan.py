"""The fusion plan: IR text in, kernel assignment (and plan text) out; semantics via run_plan."""
import textwrap

import numpy as np
import pytest

from kiln.passes import KernelKind, plan_fusion
from kiln.runtime.interpreter import run_graph
from kiln.runtime.plan_runner import run_plan
from passes_helpers import ir


def assignment(plan) -> dict[str, int]:
    """value name -> kernel id for the nodes each kernel computes for itself."""
    out = {}
    for k in plan.kernels:
        rec = {id(n) for n in k.recomputed}
        for n in k.nodes:
            if id(n) not in rec:
                out[n.name] = k.id
    return out


def check_semantics(g, seed=0):
    plan = plan_fusion(g)
    plan.check()
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(n.shape).astype(n.dtype.np_dtype) if n.dtype.is_floating_point
            else rng.integers(0, 2, n.shape).astype(n.dtype.np_dtype) for n in g.inputs]
    for a, b in zip(run_graph(g, args), run_plan(plan, args)):
        np.testing.assert_array_equal(a, b)
    return plan


SOFTMAX = """
    graph softmax(%x: f32[4,8]) {
      %0: f32[4,1] = reduce_max(%x) {axes=(1,), keepdims=True}
      %1: f32[4,8] = broadcast_to(%0) {shape=(4, 8)}
      %2: f32[4,8] = sub(%x, %1)
      %3: f32[4,8] = exp(%2)
      %4: f32[4,1] = reduce_sum(%3) {axes=(1,), keepdims=True}
      %5: f32[4,8] = broadcast_to(%4) {shape=(4, 8)}
      %6: f32[4,8] = div(%3, %5)
      return (%6)
    }"""


def test_softmax_is_one_row_kernel_and_plan_text():
    plan = check_semantics(ir(SOFTMAX))
    assert str(plan) == textwrap.dedent("""\
        fusion plan for graph softmax: 7 nodes -> 1 kernels
        kernel 0 [reduction] domain=[4,8] reduce_axes=(1,)
          inputs:  %x: f32[4,8]
            %0: f32[4,1] = reduce_max(%x) {axes=(1,), keepdims=True}
            %1: f32[4,8] = broadcast_to(%0) {shape=(4, 8)}
            %2: f32[4,8] = sub(%x, %1)
            %3: f32[4,8] = exp(%2)
            %4: f32[4,1] = reduce_sum(%3) {axes=(1,), keepdims=True}
            %5: f32[4,8] = broadcast_to(%4) {shape=(4, 8)}
            %6: f32[4,8] = div(%3, %5)
          outputs: %6 (graph output)
        boundaries (values read from memory, and why they were not fused):
          %x (graph input) -> kernel 0: graph input
        """)


def test_elementwise_chain_with_broadcast_of_input_is_one_kernel():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,3], %b: f32[3]) {
          %bb: f32[4,3] = broadcast_to(%b) {shape=(4, 3)}
          %t: f32[3,4] = permute(%x) {perm=(1, 0)}
          %u: f32[4,3] = permute(%t) {perm=(1, 0)}
          %a: f32[4,3] = add(%u, %bb)
          %e: f32[4,3] = exp(%a)
          %n: f32[4,3] = neg(%e)
          return (%n)
        }"""))
    assert len(plan.kernels) == 1 and plan.kernels[0].kind == "elementwise"


def test_expensive_op_is_not_recomputed_through_broadcast():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,3], %b: f32[3]) {
          %e: f32[3] = exp(%b)
          %m: f32[3] = neg(%e)
          %bb: f32[4,3] = broadcast_to(%m) {shape=(4, 3)}
          %a: f32[4,3] = add(%x, %bb)
          return (%a)
        }"""))
    a = assignment(plan)
    assert a["m"] == a["a"] != a["e"]  # cheap neg recomputed per element, exp computed once
    reasons = [b.reason for b in plan.boundaries if b.value.name == "e"]
    assert reasons == ["exp would be recomputed 4x through a broadcast"]


def test_matmul_epilogue_and_view_prologue():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,8], %w: f32[16,8], %b: f32[16]) {
          %wt: f32[8,16] = permute(%w) {perm=(1, 0)}
          %m: f32[4,16] = matmul(%x, %wt)
          %bb: f32[4,16] = broadcast_to(%b) {shape=(4, 16)}
          %y: f32[4,16] = add(%m, %bb)
          %z: f32[4,16] = constant() {dtype=f32, shape=(4, 16), value=0.0}
          %c: b1[4,16] = gt(%y, %z)
          %r: f32[4,16] = select(%c, %y, %z)
          return (%r)
        }"""))
    assert len(plan.kernels) == 1
    k = plan.kernels[0]
    assert k.kind == "matmul" and k.anchor.name == "m" and [o.name for o in k.outputs] == ["r"]


def test_reduction_output_feeding_matmul_is_a_boundary():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,8,3], %w: f32[8,5]) {
          %s: f32[4,8] = reduce_sum(%x) {axes=(2,), keepdims=False}
          %m: f32[4,5] = matmul(%s, %w)
          %t: f32[4,5] = tanh(%m)
          return (%t)
        }"""))
    a = assignment(plan)
    assert a["s"] != a["m"] == a["t"]
    assert [b.reason for b in plan.boundaries if b.value.name == "s"] == ["reduction output used by a matmul"]


def test_multiple_consumers_materialised_once():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,8], %w: f32[8,8]) {
          %e: f32[4,8] = exp(%x)
          %m1: f32[4,8] = matmul(%e, %w)
          %s: f32[1,8] = reduce_sum(%e) {axes=(0,), keepdims=True}
          return (%m1, %s)
        }"""))
    a = assignment(plan)
    assert a["e"] == a["s"] != a["m1"]
    k_e = plan.kernels[a["e"]]
    assert {o.name for o in k_e.outputs} == {"e", "s"}


def test_movement_after_reduction_starts_a_new_kernel():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,8]) {
          %s: f32[4] = reduce_sum(%x) {axes=(1,), keepdims=False}
          %r: f32[2,2] = reshape(%s) {shape=(2, 2)}
          %p: f32[2,2] = permute(%r) {perm=(1, 0)}
          %q: f32[2,2] = neg(%p)
          return (%q)
        }"""))
    a = assignment(plan)
    assert a["s"] != a["q"]
    assert any("would read other rows" in b.reason or "across rows" in b.reason for b in plan.boundaries)


def test_scatter_consumers_start_new_kernel_and_constants_are_recomputed():
    plan = check_semantics(ir("""
        graph f(%i: i64[4,1], %g: f32[4,1], %x: f32[4,3]) {
          %z: f32[4,3] = constant() {dtype=f32, shape=(4, 3), value=0.0}
          %n: f32[4,1] = neg(%g)
          %s: f32[4,3] = scatter_add(%z, %i, %n) {axis=1}
          %y: f32[4,3] = add(%s, %x)
          %w: f32[4,3] = add(%y, %z)
          return (%w)
        }"""))
    a = assignment(plan)
    assert a["n"] == a["s"] != a["y"] == a["w"]
    assert plan.kernels[a["s"]].kind == "scatter"
    assert sum(1 for k in plan.kernels for n in k.recomputed if n.name == "z") == 2
    assert [b.reason for b in plan.boundaries if b.value.name == "s"] == [
        "scatter_add output is complete only after every update: its consumers start a new kernel"]


def test_kernel_kinds_are_an_enum_that_reads_as_its_value():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,8], %w: f32[8,5], %i: i64[4,1]) {
          %m: f32[4,5] = matmul(%x, %w)
          %s: f32[4,1] = reduce_sum(%m) {axes=(1,), keepdims=True}
          %g: f32[4,1] = gather(%m, %i) {axis=1}
          %e: f32[4,1] = exp(%s)
          %y: f32[4,1] = add(%e, %g)
          return (%y)
        }"""))
    kinds = [k.kind for k in plan.kernels]
    assert kinds == [KernelKind.MATMUL, KernelKind.REDUCTION]
    assert all(type(k) is KernelKind for k in kinds)
    assert kinds[0] == "matmul" and f"[{kinds[1]}]" == "[reduction]" and str(kinds[1]) == "reduction"
    assert "kernel 0 [matmul] domain=[4,5] anchor=%m" in str(plan)
    assert {k.value for k in KernelKind} == {"elementwise", "gather", "reduction", "matmul", "conv", "scatter"}


def test_cross_entropy_forward_and_backward_kernel_counts():
    g = ir("""
        graph ce(%logits: f32[4,3], %y: i64[4,1]) {
          %0: f32[4,1] = reduce_max(%logits) {axes=(1,), keepdims=True}
          %1: f32[4,3] = broadcast_to(%0) {shape=(4, 3)}
          %2: f32[4,3] = sub(%logits, %1)
          %3: f32[4,3] = exp(%2)
          %4: f32[4,1] = reduce_sum(%3) {axes=(1,), keepdims=True}
          %5: f32[4,1] = log(%4)
          %6: f32[4,3] = broadcast_to(%5) {shape=(4, 3)}
          %7: f32[4,3] = sub(%2, %6)
          %8: f32[4,1] = gather(%7, %y) {axis=1}
          %9: f32[] = reduce_sum(%8) {axes=(0, 1), keepdims=False}
          %10: f32[] = constant() {dtype=f32, shape=(), value=-0.25}
          %11: f32[] = mul(%9, %10)
          %12: f32[4,3] = exp(%7)
          %13: f32[4,3] = constant() {dtype=f32, shape=(4, 3), value=0.0}
          %14: f32[4,1] = constant() {dtype=f32, shape=(4, 1), value=1.0}
          %15: f32[4,3] = scatter(%13, %y, %14) {axis=1}
          %16: f32[4,3] = sub(%12, %15)
          %17: f32[4,3] = constant() {dtype=f32, shape=(4, 3), value=0.25}
          %18: f32[4,3] = mul(%16, %17)
          return (%11, %18)
        }""")
    plan = check_semantics(g)
    a = assignment(plan)
    fwd = {a[n] for n in "0 1 2 3 4 5 6 7 8 9 11".split()}
    bwd = {a[n] for n in ("12", "15", "16", "18")}
    assert len(fwd) <= 2 and len(bwd) <= 2 and len(plan.kernels) <= 4


def test_layer_norm_is_one_kernel():
    plan = check_semantics(ir("""
        graph ln(%x: f32[4,8], %w: f32[8], %b: f32[8]) {
          %0: f32[4,1] = reduce_sum(%x) {axes=(1,), keepdims=True}
          %1: f32[4,1] = constant() {dtype=f32, shape=(4, 1), value=0.125}
          %2: f32[4,1] = mul(%0, %1)
          %3: f32[4,8] = broadcast_to(%2) {shape=(4, 8)}
          %4: f32[4,8] = sub(%x, %3)
          %5: f32[4,8] = mul(%4, %4)
          %6: f32[4,1] = reduce_sum(%5) {axes=(1,), keepdims=True}
          %7: f32[4,1] = mul(%6, %1)
          %8: f32[4,1] = constant() {dtype=f32, shape=(4, 1), value=1e-05}
          %9: f32[4,1] = add(%7, %8)
          %10: f32[4,1] = rsqrt(%9)
          %11: f32[4,8] = broadcast_to(%10) {shape=(4, 8)}
          %12: f32[4,8] = mul(%4, %11)
          %13: f32[4,8] = broadcast_to(%w) {shape=(4, 8)}
          %14: f32[4,8] = mul(%12, %13)
          %15: f32[4,8] = broadcast_to(%b) {shape=(4, 8)}
          %16: f32[4,8] = add(%14, %15)
          return (%16, %2, %10)
        }"""))
    assert len(plan.kernels) == 1
    assert {o.name for o in plan.kernels[0].outputs} == {"16", "2", "10"}


def test_graph_output_that_is_an_input_and_dead_nodes():
    plan = check_semantics(ir("""
        graph f(%x: f32[3]) {
          %d: f32[3] = exp(%x)
          %c: f32[3] = constant() {dtype=f32, shape=(3,), value=1.0}
          return (%x, %c)
        }"""))
    assert sorted(assignment(plan)) == ["c", "d"]


def test_kernel_of():
    g = ir(SOFTMAX)
    plan = plan_fusion(g)
    assert plan.kernel_of(g.nodes[3]) is plan.kernels[0]
    assert plan.kernel_of(g.inputs[0]) is None


def test_maxpool_argmax_gather_is_one_row_kernel():
    plan = check_semantics(ir("""
        graph pool(%x: f32[2,3,4,4]) {
          %z: f32[2,3,4,4] = constant() {dtype=f32, shape=(2, 3, 4, 4), value=0.0}
          %r: f32[2,3,4,4] = maximum(%x, %z)
          %a: f32[2,3,2,2,2,2] = reshape(%r) {shape=(2, 3, 2, 2, 2, 2)}
          %b: f32[2,3,2,2,2,2] = permute(%a) {perm=(0, 1, 2, 4, 3, 5)}
          %c: f32[2,3,2,2,4] = reshape(%b) {shape=(2, 3, 2, 2, 4)}
          %i: i64[2,3,2,2,1] = argmax(%c) {axis=4, keepdims=True}
          %g: f32[2,3,2,2,1] = gather(%c, %i) {axis=4}
          %o: f32[2,3,2,2] = reshape(%g) {shape=(2, 3, 2, 2)}
          return (%o, %i)
        }"""))
    assert len(plan.kernels) == 1 and plan.kernels[0].kind == "reduction"


def test_independent_reductions_over_one_loop_share_a_kernel():
    plan = check_semantics(ir("""
        graph stats(%x: f32[8,16]) {
          %s: f32[16] = reduce_sum(%x) {axes=(0,), keepdims=False}
          %q: f32[8,16] = mul(%x, %x)
          %ss: f32[16] = reduce_sum(%q) {axes=(0,), keepdims=False}
          %m: f32[16] = reduce_max(%x) {axes=(0,), keepdims=False}
          return (%s, %ss, %m)
        }"""))
    assert len(plan.kernels) == 1
    assert {o.name for o in plan.kernels[0].outputs} == {"s", "ss", "m"}


def test_output_only_updates_join_their_producer():
    # running-statistics style update of a reduction result, and a step counter
    plan = check_semantics(ir("""
        graph bn(%x: f32[8,4], %run: f32[4], %step: i64[]) {
          %s: f32[1,4] = reduce_sum(%x) {axes=(0,), keepdims=True}
          %c: f32[1,4] = constant() {dtype=f32, shape=(1, 4), value=0.125}
          %mean: f32[1,4] = mul(%s, %c)
          %b: f32[8,4] = broadcast_to(%mean) {shape=(8, 4)}
          %y: f32[8,4] = sub(%x, %b)
          %r: f32[4] = reshape(%mean) {shape=(4,)}
          %k: f32[4] = constant() {dtype=f32, shape=(4,), value=0.9}
          %o: f32[4] = mul(%run, %k)
          %n: f32[4] = add(%o, %r)
          %one: i64[] = constant() {dtype=i64, shape=(), value=1}
          %st: i64[] = add(%step, %one)
          return (%y, %n, %st)
        }"""))
    assert len(plan.kernels) == 1 and plan.kernels[0].kind == "reduction"


def test_scalar_recomputed_in_two_kernels_keeps_its_input_written():
    # %c is a free scalar recomputed in both consumer kernels; %m must then be written by its kernel
    plan = check_semantics(ir("""
        graph f(%a: f32[1,2], %b: f32[2,1]) {
          %m: f32[1,1] = matmul(%a, %b)
          %z: f32[1,1] = constant() {dtype=f32, shape=(1, 1), value=0.0}
          %c: b1[1,1] = ne(%m, %z)
          %d: b1[1,1] = logical_and(%c, %c)
          %e: i64[1,1] = cast(%c) {dtype=i64}
          %s: i64[1] = reduce_sum(%e) {axes=(0,), keepdims=False}
          return (%d, %s)
        }"""))
    k = plan.kernel_of(plan.graph.nodes[0])
    assert [o.name for o in k.outputs if o.name == "m"] == ["m"] or len(plan.kernels) == 1


def test_dependent_same_loop_reductions_stay_apart():
    # batch-norm backward shape: the second column sum needs the first one's result everywhere
    plan = check_semantics(ir("""
        graph f(%x: f32[8,4]) {
          %s: f32[1,4] = reduce_sum(%x) {axes=(0,), keepdims=True}
          %t: f32[] = reduce_sum(%s) {axes=(0, 1), keepdims=False}
          %tb: f32[8,4] = broadcast_to(%t) {shape=(8, 4)}
          %y: f32[8,4] = mul(%x, %tb)
          %u: f32[4] = reduce_sum(%y) {axes=(0,), keepdims=False}
          return (%u)
        }"""))
    a = assignment(plan)
    assert a["s"] != a["u"] and len(plan.kernels) == 3


def test_output_only_kernel_that_would_move_rows_is_not_folded():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,8]) {
          %s: f32[4] = reduce_sum(%x) {axes=(1,), keepdims=False}
          %r: f32[2,2] = reshape(%s) {shape=(2, 2)}
          %p: f32[2,2] = permute(%r) {perm=(1, 0)}
          %e: f32[2,2] = exp(%p)
          return (%e, %s)
        }"""))
    a = assignment(plan)
    assert a["s"] != a["e"]


def test_check_accepts_recomputation_only_of_what_is_free():
    plan = check_semantics(ir("""
        graph f(%x: f32[4,3], %y: f32[4,3]) {
          %s: f32[] = reduce_sum(%x) {axes=(0, 1), keepdims=False}
          %e: f32[4,3] = exp(%x)
          %b: f32[4,3] = broadcast_to(%s) {shape=(4, 3)}
          %a: f32[4,3] = add(%e, %b)
          %m: f32[4,3] = mul(%a, %y)
          return (%m, %e)
        }"""))
    k = plan.kernels[-1]
    for name, free in (("b", True), ("s", False), ("e", False)):  # a view; a scalar reduction; exp
        node = next(n for n in plan.graph.nodes if n.name == name)
        k.recomputed.append(node)
        if free:
            plan.check()
        else:
            with pytest.raises(AssertionError, match=f"%{name} .* recomputed in kernel {k.id} but it is not free"):
                plan.check()
        k.recomputed.remove(node)


def test_kernel_as_graph_is_a_standalone_verified_graph():
    from kiln.ir import parse_graph, verify
    g = ir(SOFTMAX.replace("return (%6)", "return (%6, %4)"))
    plan = plan_fusion(g)
    kg = plan.kernels[0].as_graph()
    verify(kg)
    assert parse_graph(str(kg)) == kg
    assert [n.name for n in kg.inputs] == ["x"] and [o.name for o in kg.outputs] == ["4", "6"]
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(run_graph(kg, [x])[1], run_graph(g, [x])[0])


def test_conv_epilogue_through_a_permute():
    # a conv weight gradient comes out as (C_in, C_out, k); the SGD update runs in (C_out, C_in, k)
    plan = check_semantics(ir("""
        graph f(%x: f32[3,2,6], %g: f32[4,2,4], %w: f32[4,3,3]) {
          %c: f32[3,4,3] = conv(%x, %g) {dilation=(1,), groups=1, padding=((0, 0),), strides=(1,)}
          %t: f32[4,3,3] = permute(%c) {perm=(1, 0, 2)}
          %lr: f32[4,3,3] = constant() {dtype=f32, shape=(4, 3, 3), value=0.1}
          %s: f32[4,3,3] = mul(%t, %lr)
          %n: f32[4,3,3] = sub(%w, %s)
          return (%n, %t)
        }"""))
    assert len(plan.kernels) == 1 and plan.kernels[0].kind == "conv"
    assert {o.name for o in plan.kernels[0].outputs} == {"n", "t"}


def test_matmul_epilogue_cannot_broadcast_its_result():
    plan = check_semantics(ir("""
        graph f(%a: f32[4,3], %b: f32[3,1]) {
          %m: f32[4,1] = matmul(%a, %b)
          %bm: f32[4,5] = broadcast_to(%m) {shape=(4, 5)}
          %e: f32[4,5] = neg(%bm)
          return (%e)
        }"""))
    assert len(plan.kernels) == 2


def test_conv_reads_pads_from_memory_and_transposed_weights_in_place():
    # a weight gradient's operands: the input's view stays a prologue and its pad is written to
    # memory first (affine, vectorizable loads in the conv kernel); the transposed output
    # gradient is a prologue view too (no transposed copy: the conv indexes it in its layout)
    plan = check_semantics(ir("""
        graph f(%x: f32[2,1,6], %g: f32[2,3,6]) {
          %p: f32[2,1,8] = pad(%x) {hi=(0, 0, 1), interior=(0, 0, 0), lo=(0, 0, 1), value=0.0}
          %t: f32[1,2,8] = permute(%p) {perm=(1, 0, 2)}
          %q: f32[3,2,6] = permute(%g) {perm=(1, 0, 2)}
          %c: f32[1,3,3] = conv(%t, %q) {dilation=(1,), groups=1, padding=((0, 0),), strides=(1,)}
          return (%c)
        }"""))
    conv = [k for k in plan.kernels if k.kind == "conv"]
    assert len(plan.kernels) == 2 and len(conv) == 1
    assert {n.name for n in conv[0].nodes} == {"t", "q", "c"}
    reasons = {b.value.name: b.reason for b in plan.boundaries if b.dst == conv[0].id}
    assert "padded operand from memory" in reasons["p"]
    assert "q" not in reasons


def test_a_transposed_weight_shared_by_several_products_is_written_once():
    """`h1 @ W.T` and `h2 @ W.T` (a recurrence's steps): W.T would be packed by a transposing
    copy in each product, so it is materialized once and both GEMMs read it row-major. One
    product of a transposed weight keeps reading it in place, and so does a small weight."""
    plan = check_semantics(ir("""
        graph f(%x: f32[64,128], %w: f32[128,128]) {
          %wt: f32[128,128] = permute(%w) {perm=(1, 0)}
          %m1: f32[64,128] = matmul(%x, %wt)
          %h: f32[64,128] = tanh(%m1)
          %m2: f32[64,128] = matmul(%h, %wt)
          return (%m2)
        }"""))
    a = assignment(plan)
    assert a["wt"] not in (a["m1"], a["m2"]) and a["m1"] != a["m2"]
    assert not any(n.name == "wt" for k in plan.kernels for n in k.recomputed)
    assert [k.kind for k in plan.kernels if any(n.name == "wt" for n in k.nodes)] == ["elementwise"]
    one = plan_fusion(ir("""
        graph f(%x: f32[64,128], %w: f32[128,128]) {
          %wt: f32[128,128] = permute(%w) {perm=(1, 0)}
          %m1: f32[64,128] = matmul(%x, %wt)
          return (%m1)
        }"""))
    assert len(one.kernels) == 1
    small = plan_fusion(ir("""
        graph f(%x: f32[4,8], %w: f32[8,8]) {
          %wt: f32[8,8] = permute(%w) {perm=(1, 0)}
          %m1: f32[4,8] = matmul(%x, %wt)
          %m2: f32[4,8] = matmul(%m1, %wt)
          return (%m2)
        }"""))
    assert all(n.name != "wt" or id(n) in {id(r) for r in k.recomputed} for k in small.kernels for n in k.nodes)


def test_scalar_outputs_read_from_a_scatter_stay_out_of_its_kernel():
    """A scalar output computed from a scatter's result (`b = x[0]` read after `x` was updated
    in place through another view) is an output-only sink, but it cannot fold into the scatter's
    kernel: that kernel writes nothing but its scatter (found by the overlapping-views property
    test: `a = x.unsqueeze(0)`, `b = x.select(0, 0)`, `a.add_(1.5)`, return `b * 3 + 1`)."""
    plan = check_semantics(ir("""
        graph f(%a: f32[1,2], %c0: f32[2]) {
          %0: f32[1,2] = constant() {dtype=f32, shape=(1, 2), value=1.5}
          %1: f32[1,2] = add(%a, %0)
          %2: i64[2] = iota() {axis=0, dtype=i64, shape=(2,)}
          %7: f32[2] = reshape(%1) {shape=(2,)}
          %8: f32[2] = scatter(%c0, %2, %7) {axis=0}
          %11: f32[] = constant() {dtype=f32, shape=(), value=3.0}
          %12: f32[1] = slice(%8) {starts=(0,), steps=(1,), stops=(1,)}
          %13: f32[] = reshape(%12) {shape=()}
          %14: f32[] = mul(%13, %11)
          return (%14, %8)
        }"""))
    a = assignment(plan)
    assert a["14"] != a["8"]
    assert [o.name for o in plan.kernels[a["8"]].outputs] == ["8"]

"""dce and cse: IR text in, IR text out."""
from kiln.passes import cse, dce
from passes_helpers import assert_pass, assert_unchanged, ir


def test_dce_removes_unused_chain_keeps_inputs():
    assert_pass(dce, """
        graph f(%x: f32[3], %unused: f32[3]) {
          %a: f32[3] = exp(%x)
          %b: f32[3] = log(%a)
          %c: f32[3] = neg(%x)
          return (%c)
        }""", """
        graph f(%x: f32[3], %unused: f32[3]) {
          %c: f32[3] = neg(%x)
          return (%c)
        }""")


def test_dce_keeps_everything_live():
    assert_unchanged(dce, """
        graph f(%x: f32[3]) {
          %a: f32[3] = exp(%x)
          %b: f32[3] = add(%a, %x)
          return (%b, %a)
        }""")


def test_cse_merges_same_op_inputs_attrs():
    assert_pass(cse, """
        graph f(%x: f32[2,3]) {
          %a: f32[3,2] = permute(%x) {perm=(1, 0)}
          %b: f32[3,2] = permute(%x) {perm=(1, 0)}
          %c: f32[3,2] = add(%a, %b)
          %d: f32[3,2] = add(%b, %a)
          return (%c, %d)
        }""", """
        graph f(%x: f32[2,3]) {
          %a: f32[3,2] = permute(%x) {perm=(1, 0)}
          %c: f32[3,2] = add(%a, %a)
          return (%c, %c)
        }""")


def test_cse_distinguishes_attrs_and_constants():
    assert_unchanged(cse, """
        graph f(%x: f32[2,3]) {
          %a: f32[2] = reduce_sum(%x) {axes=(1,), keepdims=False}
          %b: f32[3] = reduce_sum(%x) {axes=(0,), keepdims=False}
          %c: f32[] = constant() {dtype=f32, shape=(), value=0.0}
          %d: f32[] = constant() {dtype=f32, shape=(), value=-0.0}
          %e: f32[] = constant() {dtype=f32, shape=(), value=nan}
          return (%a, %b, %c, %d, %e)
        }""")


def test_cse_normalises_constant_literals():
    assert_pass(cse, """
        graph f() {
          %a: f32[2] = constant() {dtype=f32, shape=(2,), value=0}
          %b: f32[2] = constant() {dtype=f32, shape=(2,), value=0.0}
          %c: f32[2] = add(%a, %b)
          return (%c)
        }""", """
        graph f() {
          %a: f32[2] = constant() {dtype=f32, shape=(2,), value=0}
          %c: f32[2] = add(%a, %a)
          return (%c)
        }""")


def test_cse_chains_collapse_in_one_pass():
    g = ir("""
        graph f(%x: f32[4]) {
          %a: f32[4] = exp(%x)
          %b: f32[4] = exp(%x)
          %c: f32[4] = neg(%a)
          %d: f32[4] = neg(%b)
          %e: f32[4] = mul(%c, %d)
          return (%e)
        }""")
    out = cse(g)
    assert out.op_counts() == {"exp": 1, "neg": 1, "mul": 1}

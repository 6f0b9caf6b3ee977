"""Constant folding: IR text in, IR text out."""
import numpy as np

from kiln.passes import fold
from kiln.passes.fold import MAX_LITERAL
from kiln.runtime.interpreter import run_graph
from passes_helpers import assert_pass, assert_unchanged, ir


def test_fold_splat_arithmetic_stays_splat():
    assert_pass(fold, """
        graph f(%x: f32[1000,1000]) {
          %a: f32[1000,1000] = constant() {dtype=f32, shape=(1000, 1000), value=2.0}
          %b: f32[1000,1000] = constant() {dtype=f32, shape=(1000, 1000), value=3.0}
          %c: f32[1000,1000] = mul(%a, %b)
          %d: f32[1000,1000] = add(%x, %c)
          return (%d)
        }""", """
        graph f(%x: f32[1000,1000]) {
          %a: f32[1000,1000] = constant() {dtype=f32, shape=(1000, 1000), value=2.0}
          %b: f32[1000,1000] = constant() {dtype=f32, shape=(1000, 1000), value=3.0}
          %c: f32[1000,1000] = constant() {dtype=f32, shape=(1000, 1000), value=6.0}
          %d: f32[1000,1000] = add(%x, %c)
          return (%d)
        }""")


def test_fold_movement_and_cast_of_constants():
    assert_pass(fold, """
        graph f() {
          %a: i64[2,3] = constant() {dtype=i64, shape=(2, 3), value=[1, 2, 3, 4, 5, 6]}
          %b: i64[3,2] = permute(%a) {perm=(1, 0)}
          %c: f32[3,2] = cast(%b) {dtype=f32}
          %s: f32[] = constant() {dtype=f32, shape=(), value=1.5}
          %t: f32[4] = broadcast_to(%s) {shape=(4,)}
          %u: b1[] = constant() {dtype=b1, shape=(), value=True}
          %v: b1[] = logical_not(%u)
          return (%c, %t, %v)
        }""", """
        graph f() {
          %a: i64[2,3] = constant() {dtype=i64, shape=(2, 3), value=[1, 2, 3, 4, 5, 6]}
          %b: i64[3,2] = constant() {dtype=i64, shape=(3, 2), value=[1, 4, 2, 5, 3, 6]}
          %c: f32[3,2] = constant() {dtype=f32, shape=(3, 2), value=[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]}
          %s: f32[] = constant() {dtype=f32, shape=(), value=1.5}
          %t: f32[4] = constant() {dtype=f32, shape=(4,), value=1.5}
          %u: b1[] = constant() {dtype=b1, shape=(), value=True}
          %v: b1[] = constant() {dtype=b1, shape=(), value=False}
          return (%c, %t, %v)
        }""")


def test_fold_reduction_of_literal_and_splat():
    assert_pass(fold, """
        graph f() {
          %a: f32[2,2] = constant() {dtype=f32, shape=(2, 2), value=[1.0, 2.0, 3.0, 4.0]}
          %b: f32[2] = reduce_sum(%a) {axes=(1,), keepdims=False}
          %c: f32[8,8] = constant() {dtype=f32, shape=(8, 8), value=0.5}
          %d: f32[] = reduce_sum(%c) {axes=(0, 1), keepdims=False}
          return (%b, %d)
        }""", """
        graph f() {
          %a: f32[2,2] = constant() {dtype=f32, shape=(2, 2), value=[1.0, 2.0, 3.0, 4.0]}
          %b: f32[2] = constant() {dtype=f32, shape=(2,), value=[3.0, 7.0]}
          %c: f32[8,8] = constant() {dtype=f32, shape=(8, 8), value=0.5}
          %d: f32[] = constant() {dtype=f32, shape=(), value=32.0}
          return (%b, %d)
        }""")


def test_fold_bounds_literal_size():
    n = MAX_LITERAL + 1
    g = ir(f"""
        graph f() {{
          %a: i64[{n}] = iota() {{axis=0, dtype=i64, shape=({n},)}}
          %b: i64[{n}] = constant() {{dtype=i64, shape=({n},), value={list(range(n))}}}
          %c: i64[{n}] = add(%b, %b)
          return (%c)
        }}""")
    assert fold(g) is g  # a 65-element non-splat literal is not created


def test_fold_leaves_non_constant_inputs_and_iota():
    assert_unchanged(fold, """
        graph f(%x: f32[3]) {
          %i: i64[3] = iota() {axis=0, dtype=i64, shape=(3,)}
          %c: f32[3] = constant() {dtype=f32, shape=(3,), value=1.0}
          %d: f32[3] = add(%x, %c)
          return (%d, %i)
        }""")


def test_fold_keeps_nan_inf_and_signed_zero():
    g = fold(ir("""
        graph f() {
          %a: f32[3] = constant() {dtype=f32, shape=(3,), value=[0.0, 1.0, -1.0]}
          %b: f32[3] = constant() {dtype=f32, shape=(3,), value=0.0}
          %c: f32[3] = div(%a, %b)
          %d: f32[] = constant() {dtype=f32, shape=(), value=-0.0}
          %e: f32[] = neg(%d)
          return (%c, %e)
        }"""))
    assert [n.op for n in g.nodes if n.name in ("c", "e")] == ["constant", "constant"]
    c, e = run_graph(g, [])
    assert np.isnan(c[0]) and c[1] == np.inf and c[2] == -np.inf
    assert e == 0.0 and not np.signbit(e)


def test_fold_out_of_range_gather_is_left_for_run_time():
    assert_unchanged(fold, """
        graph f() {
          %a: f32[3] = constant() {dtype=f32, shape=(3,), value=[1.0, 2.0, 3.0]}
          %i: i64[1] = constant() {dtype=i64, shape=(1,), value=[7]}
          %g: f32[1] = gather(%a, %i) {axis=0}
          return (%g)
        }""")


def test_fold_leaves_impl_errors_for_run_time():
    assert_unchanged(fold, """
        graph f() {
          %a: i64[2] = constant() {dtype=i64, shape=(2,), value=[2, 3]}
          %b: i64[2] = constant() {dtype=i64, shape=(2,), value=-1}
          %c: i64[2] = pow(%a, %b)
          return (%c)
        }""")

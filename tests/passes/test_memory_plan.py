"""The memory plan: buffer reuse, in-place reuse, and peak bytes computed by hand. Every plan
here is also checked by verify_memory_plan (verify=True)."""
import pytest

from kiln.passes import plan_fusion, plan_memory
from passes_helpers import ir


def chain(n: int, op: str = "exp") -> str:
    lines = ["graph chain(%x: f32[16]) {"]
    prev = "x"
    for i in range(n):
        lines.append(f"  %v{i}: f32[16] = {op}(%{prev})")
        prev = f"v{i}"
    return "\n".join(lines + [f"  return (%{prev})", "}"])


def test_chain_of_ten_needs_two_buffers_without_inplace():
    m = plan_memory(ir(chain(10)), inplace=False, verify=True)
    assert m.num_buffers == 2
    assert m.peak_bytes == 2 * 64 and m.total_bytes == 128 and m.naive_bytes == 640
    assert m.assignment["v0"] == m.assignment["v2"] != m.assignment["v1"]


def test_chain_of_ten_runs_in_one_buffer_in_place():
    m = plan_memory(ir(chain(10)), verify=True)
    assert m.num_buffers == 1 and m.peak_bytes == 64
    assert m.inplace[0] == ("v1", "v0") and len(m.inplace) == 9


def test_graph_input_is_not_overwritten_unless_donated():
    g = ir(chain(3))
    assert all(inp != "x" for _, inp in plan_memory(g, verify=True).inplace)
    m = plan_memory(g, donate=["x"], verify=True)
    assert ("v0", "x") in m.inplace and m.num_buffers == 0 and m.peak_bytes == 0


def test_peak_bytes_by_hand():
    g = ir("""
        graph f(%x: f32[8]) {
          %a: f32[8] = exp(%x)
          %b: f32[8] = neg(%x)
          %c: f32[8] = add(%a, %b)
          %d: f32[2] = slice(%c) {starts=(0,), steps=(1,), stops=(2,)}
          return (%d)
        }""")
    m = plan_memory(g, verify=True)
    # step 0: a (32 B); step 1: a, b (64 B); step 2: c overwrites a in place, b dies (64 B);
    # step 3: c (32 B) and d (8 B) reuses b's dead 32-byte buffer (64 B).
    assert m.step_bytes == [32, 64, 64, 64]
    assert m.peak_bytes == 64 and m.total_bytes == 64 and m.naive_bytes == 3 * 32 + 8
    assert m.inplace == [("c", "a")]
    assert m.assignment["d"] == m.assignment["b"]


def test_graph_outputs_are_never_reused():
    g = ir("""
        graph f(%x: f32[8]) {
          %a: f32[8] = exp(%x)
          %b: f32[8] = neg(%a)
          %c: f32[8] = neg(%b)
          return (%a, %c)
        }""")
    m = plan_memory(g, verify=True)
    assert m.assignment["a"] not in (m.assignment["b"], m.assignment["c"])
    assert m.lifetimes["a"][1] == 3


def test_no_inplace_through_a_reduction_or_movement():
    g = ir("""
        graph f(%x: f32[4,4]) {
          %a: f32[4,4] = exp(%x)
          %t: f32[4,4] = permute(%a) {perm=(1, 0)}
          %b: f32[4,4] = add(%a, %t)
          return (%b)
        }""")
    m = plan_memory(g, verify=True)
    assert ("b", "a") in m.inplace  # node by node: add reads a elementwise
    plan = plan_fusion(g)
    m2 = plan_memory(g, plan, verify=True)  # fused: the kernel reads x transposed, cannot overwrite it anyway
    assert m2.num_buffers == 1 and m2.inplace == []


def test_kernel_plan_softmax_then_matmul():
    g = ir("""
        graph f(%x: f32[4,8], %w: f32[8,8]) {
          %0: f32[4,1] = reduce_max(%x) {axes=(1,), keepdims=True}
          %1: f32[4,8] = broadcast_to(%0) {shape=(4, 8)}
          %2: f32[4,8] = sub(%x, %1)
          %3: f32[4,8] = exp(%2)
          %4: f32[4,1] = reduce_sum(%3) {axes=(1,), keepdims=True}
          %5: f32[4,8] = broadcast_to(%4) {shape=(4, 8)}
          %6: f32[4,8] = div(%3, %5)
          %7: f32[4,8] = matmul(%6, %w)
          %8: f32[4,8] = tanh(%7)
          %9: f32[4,8] = matmul(%8, %w)
          return (%9)
        }""")
    plan = plan_fusion(g)
    assert len(plan.kernels) == 3
    m = plan_memory(g, plan, verify=True)
    # kernel 0 writes %6 (128 B); kernel 1 reads it and writes %8 (128 B); kernel 2 writes %9 into %6's buffer
    assert m.step_bytes == [128, 256, 256] and m.num_buffers == 2
    assert m.assignment["9"] == m.assignment["6"]
    assert "peak 256 bytes" in str(m)


@pytest.mark.parametrize("inplace", [True, False])
def test_live_values_never_share_a_buffer(inplace):
    g = ir("""
        graph f(%x: f32[6], %y: f32[6]) {
          %a: f32[6] = exp(%x)
          %b: f32[6] = mul(%a, %y)
          %c: f32[3] = slice(%b) {starts=(0,), steps=(2,), stops=(6,)}
          %d: f32[6] = neg(%a)
          %e: f32[3] = slice(%d) {starts=(1,), steps=(2,), stops=(6,)}
          %f: f32[3] = add(%c, %e)
          return (%f, %b)
        }""")
    m = plan_memory(g, inplace=inplace, verify=True)
    names = list(m.lifetimes)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            if m.assignment[p] == m.assignment[q]:
                (s1, e1), (s2, e2) = m.lifetimes[p], m.lifetimes[q]
                overlap = max(s1, s2) <= min(e1, e2)
                handover = (q, p) in m.inplace or (p, q) in m.inplace
                assert not overlap or handover, (p, q)

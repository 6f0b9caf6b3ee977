"""verify_memory_plan: hand-built broken plans are rejected with messages naming the
buffer and the values; every plan plan_memory makes for random graphs is accepted, and
breaking one of them (a buffer too small, two live values in one buffer) is rejected."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiln.passes import MemoryPlan, MemoryPlanError, optimize, plan_fusion, plan_memory, verify_memory_plan
from kiln.passes.memory import Buffer, nbytes
from passes_helpers import ir
from test_pipeline_property import random_graphs

CHAIN = """
    graph f(%x: f32[8]) {
      %a: f32[8] = exp(%x)
      %b: f32[8] = neg(%a)
      %c: f32[8] = tanh(%b)
      return (%c)
    }"""

TWO_LIVE = """
    graph f(%x: f32[8]) {
      %a: f32[8] = exp(%x)
      %b: f32[8] = neg(%x)
      %c: f32[8] = add(%a, %b)
      return (%c)
    }"""


def plan(buffers, assignment, lifetimes, inplace=(), step_bytes=None, steps=0):
    return MemoryPlan([Buffer(i, size, origin) for i, (size, origin) in enumerate(buffers)], dict(assignment),
                      dict(lifetimes), list(inplace), step_bytes if step_bytes is not None else [0] * steps, 0)


def replace(m: MemoryPlan, **changes) -> MemoryPlan:
    return dataclasses.replace(m, **changes)


def test_a_value_larger_than_its_buffer_is_rejected():
    g = ir("""
        graph f(%x: f32[8]) {
          %a: f32[8] = exp(%x)
          return (%a)
        }""")
    m = plan([(16, "alloc")], {"a": 0}, {"a": (0, 1)}, step_bytes=[16])
    with pytest.raises(MemoryPlanError, match=r"buffer 0 \(16 bytes\) is too small for %a \(f32\[8\], 32 bytes\)"):
        verify_memory_plan(g, m)
    verify_memory_plan(g, plan([(32, "alloc")], {"a": 0}, {"a": (0, 1)}, step_bytes=[32]))  # the right size passes


def test_two_live_values_in_one_buffer_are_rejected():
    g = ir(TWO_LIVE)
    good = plan_memory(g, verify=True)
    assert good.assignment["a"] != good.assignment["b"]
    bad = replace(good, assignment={**good.assignment, "b": good.assignment["a"]})
    with pytest.raises(MemoryPlanError, match=r"%a \(f32\[8\], 32 bytes\) \(live at steps 0..2\) and %b .*"
                                              r"\(live at steps 1..2\) share buffer 0 while both are live"):
        verify_memory_plan(g, bad)


def test_a_graph_output_is_never_overwritten():
    g = ir("""
        graph f(%x: f32[8]) {
          %a: f32[8] = exp(%x)
          %b: f32[8] = neg(%a)
          return (%a, %b)
        }""")
    m = plan([(32, "alloc")], {"a": 0, "b": 0}, {"a": (0, 2), "b": (1, 2)}, [("b", "a")], [32, 32])
    with pytest.raises(MemoryPlanError, match=r"%a .* \(live at steps 0..2\) and %b .* share buffer 0"):
        verify_memory_plan(g, m)


def test_in_place_through_a_permute_is_rejected():
    g = ir("""
        graph f(%x: f32[4,4]) {
          %a: f32[4,4] = exp(%x)
          %t: f32[4,4] = permute(%a) {perm=(1, 0)}
          return (%t)
        }""")
    m = plan([(64, "alloc")], {"a": 0, "t": 0}, {"a": (0, 1), "t": (1, 2)}, [("t", "a")], [64, 64])
    with pytest.raises(MemoryPlanError, match=r"%t \(f32\[4,4\], 64 bytes\) overwrites %a \(f32\[4,4\], 64 bytes\) "
                                              r"in buffer 0 at step 1 \(%t = permute\), but the step does not "
                                              r"compute %t purely elementwise from %a"):
        verify_memory_plan(g, m)


def test_in_place_inside_a_kernel_that_reads_the_input_transposed_is_rejected():
    g = ir("""
        graph f(%x: f32[4,4], %w: f32[4,4]) {
          %a: f32[4,4] = matmul(%x, %w)
          %r: f32[4,4] = matmul(%a, %w)
          %t: f32[4,4] = permute(%a) {perm=(1, 0)}
          %b: f32[4,4] = add(%a, %t)
          %c: f32[4,4] = add(%b, %r)
          return (%c)
        }""")
    fusion = plan_fusion(g)
    good = plan_memory(g, fusion, verify=True)
    a_dies = [k for k in fusion.kernels if any(i.name == "a" for i in k.inputs)][-1]
    out = a_dies.outputs[0]
    assert good.lifetimes["a"][1] == a_dies.id and nbytes(out) == 64
    if good.assignment[out.name] == good.assignment["a"]:
        pytest.fail(f"the planner itself overwrote %a in place:\n{good}\n{fusion}")
    bid = good.assignment["a"]
    bad = replace(good, assignment={**good.assignment, out.name: bid}, inplace=[(out.name, "a")])
    with pytest.raises(MemoryPlanError, match=rf"%{out.name} .* overwrites %a .* in buffer {bid} at step "
                                              rf"{a_dies.id} \(kernel {a_dies.id} .*not compute .* purely elementwise"):
        verify_memory_plan(g, bad, fusion)


def test_in_place_with_a_wider_element_is_rejected():
    g = ir("""
        graph f(%x: i64[4]) {
          %a: i64[4] = neg(%x)
          %b: f32[4] = cast(%a) {dtype=f32}
          return (%b)
        }""")
    m = plan([(32, "alloc")], {"a": 0, "b": 0}, {"a": (0, 1), "b": (1, 2)}, [("b", "a")], [32, 32])
    with pytest.raises(MemoryPlanError, match="elements differ in count or size"):
        verify_memory_plan(g, m)


def test_legal_in_place_chain_is_accepted():
    g = ir(CHAIN)
    m = plan([(32, "alloc")], {"a": 0, "b": 0, "c": 0}, {"a": (0, 1), "b": (1, 2), "c": (2, 3)},
             [("b", "a"), ("c", "b")], [32, 32, 32])
    verify_memory_plan(g, m)
    assert m.assignment == plan_memory(g, verify=True).assignment


def test_in_place_pairs_must_match_the_buffers():
    g = ir(CHAIN)
    good = plan_memory(g, verify=True)
    with pytest.raises(MemoryPlanError, match=r"handed over but not listed \[\('c', 'b'\)\]"):
        verify_memory_plan(g, replace(good, inplace=good.inplace[:1]))
    apart = plan_memory(g, inplace=False, verify=True)
    with pytest.raises(MemoryPlanError, match=r"listed but not handed over \[\('b', 'a'\)\]"):
        verify_memory_plan(g, replace(apart, inplace=[("b", "a")]))


def test_graph_inputs_stay_in_their_own_memory():
    g = ir(CHAIN)
    donated = plan_memory(g, donate=["x"], verify=True)
    assert donated.buffers[0].origin == "input %x"
    with pytest.raises(MemoryPlanError, match=r"graph input %x .* is placed in buffer 0 \(alloc\)"):
        verify_memory_plan(g, replace(donated, buffers=[Buffer(0, 32)]))
    with pytest.raises(MemoryPlanError, match=r"buffer 0 \(64 bytes, input %x\) is not the memory of a graph input"):
        verify_memory_plan(g, replace(donated, buffers=[Buffer(0, 64, "input %x")]))
    with pytest.raises(MemoryPlanError, match=r"buffer 0 has origin 'heap'"):
        verify_memory_plan(g, replace(donated, buffers=[Buffer(0, 32, "heap")]))


def test_every_written_value_needs_a_buffer_and_only_written_values_have_one():
    g = ir(TWO_LIVE)
    good = plan_memory(g, verify=True)
    missing = {v: b for v, b in good.assignment.items() if v != "b"}
    with pytest.raises(MemoryPlanError, match=r"%b \(f32\[8\], 32 bytes\) is written by step 1 \(%b = neg\) "
                                              "but has no buffer"):
        verify_memory_plan(g, replace(good, assignment=missing))
    with pytest.raises(MemoryPlanError, match=r"buffer 0 holds %zz, which is not a value of graph f"):
        verify_memory_plan(g, replace(good, assignment={**good.assignment, "zz": 0}))
    with pytest.raises(MemoryPlanError, match=r"%b .* is placed in buffer 7, which the plan does not have"):
        verify_memory_plan(g, replace(good, assignment={**good.assignment, "b": 7}))


def test_a_value_kept_inside_a_kernel_has_no_buffer():
    g = ir(CHAIN)
    fusion = plan_fusion(g)
    assert len(fusion.kernels) == 1  # a and b never reach memory
    good = plan_memory(g, fusion, verify=True)
    bad = replace(good, buffers=good.buffers + [Buffer(len(good.buffers), 32)],
                  assignment={**good.assignment, "a": len(good.buffers)}, lifetimes={**good.lifetimes, "a": (0, 0)})
    with pytest.raises(MemoryPlanError, match=r"holds %a .*, which no step writes"):
        verify_memory_plan(g, bad, fusion)


def test_recorded_lifetimes_and_step_bytes_must_be_true():
    g = ir(TWO_LIVE)
    good = plan_memory(g, verify=True)
    with pytest.raises(MemoryPlanError, match=r"%a .* lives at steps 0..2, but the plan records \(0, 1\)"):
        verify_memory_plan(g, replace(good, lifetimes={**good.lifetimes, "a": (0, 1)}))
    with pytest.raises(MemoryPlanError, match=r"step 1 \(%b = neg\): the plan reports 32 bytes live, .* hold 64"):
        verify_memory_plan(g, replace(good, step_bytes=[32, 32, 32]))


def test_plan_and_fusion_plan_must_belong_together():
    g = ir(CHAIN)
    node_plan = plan_memory(g, verify=True)
    with pytest.raises(MemoryPlanError, match="memory plan has 3 steps but the fusion plan has 1"):
        verify_memory_plan(g, node_plan, plan_fusion(g))
    with pytest.raises(MemoryPlanError, match="fusion_plan was planned for a different graph"):
        verify_memory_plan(g, node_plan, plan_fusion(ir(CHAIN)))


def test_plan_memory_verify_flag_runs_the_verifier(monkeypatch):
    import kiln.passes.memory as memory
    seen = []
    monkeypatch.setattr(memory, "verify_memory_plan", lambda g, m, p: seen.append((g, m, p)))
    g = ir(CHAIN)
    plan_memory(g)
    assert seen == []
    m = plan_memory(g, verify=True)
    assert seen == [(g, m, None)]


@st.composite
def planned_graphs(draw):
    g = draw(random_graphs())
    if draw(st.booleans()):
        g = optimize(g)
    fusion = plan_fusion(g) if draw(st.booleans()) else None
    donate = draw(st.lists(st.sampled_from([n.name for n in g.inputs]), unique=True))
    return g, fusion, donate, draw(st.booleans())


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(planned_graphs(), st.data())
def test_random_plans_verify_and_broken_ones_do_not(case, data):
    g, fusion, donate, inplace = case
    m = plan_memory(g, fusion, donate=donate, inplace=inplace, verify=True)
    sized = [v for v, bid in m.assignment.items() if m.buffers[bid].origin == "alloc" and m.lifetimes[v][0] >= 0
             and nbytes(next(n for n in g.nodes if n.name == v)) > 0]
    if sized:  # shrink a buffer below the size of a value in it
        v = data.draw(st.sampled_from(sized))
        bid = m.assignment[v]
        need = nbytes(next(n for n in g.nodes if n.name == v))
        smaller = [dataclasses.replace(b, size=need - 1) if b.id == bid else b for b in m.buffers]
        with pytest.raises(MemoryPlanError, match=rf"buffer {bid} \({need - 1} bytes\) is too small for %"):
            verify_memory_plan(g, replace(m, buffers=smaller), fusion)
    clashes = [(p, q) for p in sized for q in sized
               if p < q and m.assignment[p] != m.assignment[q]
               and max(m.lifetimes[p][0], m.lifetimes[q][0]) < min(m.lifetimes[p][1], m.lifetimes[q][1])]
    if clashes:  # move a value into the buffer of another that is live at the same steps
        p, q = data.draw(st.sampled_from(clashes))
        with pytest.raises(MemoryPlanError, match=rf"%{p} |%{q} "):
            verify_memory_plan(g, replace(m, assignment={**m.assignment, q: m.assignment[p]}), fusion)

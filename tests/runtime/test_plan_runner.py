"""run_plan: a fusion plan evaluated kernel by kernel equals the whole graph."""
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from kiln.ir import parse_graph
from kiln.passes import plan_fusion
from kiln.runtime.interpreter import run_graph
from kiln.runtime.plan_runner import run_plan

TWO_KERNELS = textwrap.dedent("""
    graph f(%x: f32[4,8], %w: f32[8,5]) {
      %s: f32[4,1] = reduce_max(%x) {axes=(1,), keepdims=True}
      %b: f32[4,8] = broadcast_to(%s) {shape=(4, 8)}
      %d: f32[4,8] = sub(%x, %b)
      %m: f32[4,5] = matmul(%d, %w)
      return (%m, %x)
    }""")


def _args(g):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(n.shape).astype(np.float32) for n in g.inputs]


def test_kernel_by_kernel_equals_the_whole_graph():
    g = parse_graph(TWO_KERNELS)
    plan = plan_fusion(g)
    assert len(plan.kernels) == 2
    args = _args(g)
    got = run_plan(plan, args)
    for a, b in zip(run_graph(g, args), got):
        np.testing.assert_array_equal(a, b)
    assert got[1] is not None and got[1].shape == (4, 8)  # a graph input returned as an output


def test_a_kernel_reading_before_its_producer_ran_is_an_error():
    g = parse_graph(TWO_KERNELS)
    plan = plan_fusion(g)
    swapped = replace(plan, kernels=plan.kernels[::-1])
    with pytest.raises(ValueError, match=r"kernel 1 reads %d before any kernel writes it"):
        run_plan(swapped, _args(g))


def test_wrong_number_of_inputs():
    g = parse_graph(TWO_KERNELS)
    with pytest.raises(ValueError, match="graph f takes 2 inputs, got 1"):
        run_plan(plan_fusion(g), _args(g)[:1])


def test_an_unwritten_graph_output_is_an_error():
    g = parse_graph(TWO_KERNELS)
    plan = plan_fusion(g)
    with pytest.raises(ValueError, match="graph output %m is written by no kernel"):
        run_plan(replace(plan, kernels=plan.kernels[:1]), _args(g))

"""The kernel-IR evaluator runs an `If` branch only in the lanes whose condition selects it."""
import numpy as np
import pytest

from kiln.codegen.kir import Assign, BufferParam, Const, If, KernelFunc, Let, Load, Loop, Store, Var, idx, op
from kiln.codegen.kir_eval import KernelFailure, run_kernel
from kiln.codegen.kir_verify import verify_kernel
from kiln.ir import dtypes as dt

F32 = dt.float32
i, j = Var("i", dt.int64), Var("j", dt.int64)


def _kernel(body, n_in=4, n_out=8):
    k = KernelFunc("k", [BufferParam("in0", F32, n_in), BufferParam("out0", F32, n_out, "w")], body)
    verify_kernel(k)
    return k


def test_a_guarded_load_is_not_read_in_masked_out_lanes():
    # out[i] = i < 4 ? in[i] : -1 over 8 lanes of a 4-element input: the load at 4..7 never runs
    v = Var("v", F32)
    body = [Loop(i, idx(8), [If(op("lt", i, idx(4)),
                                [Let(v, op("add", Load("in0", i, F32), Const(1.0, F32))), Store("out0", i, v)],
                                [Store("out0", i, Load("in0", op("sub", i, idx(4)), F32))])])]
    xs = np.array([1, 2, 3, 4], np.float32)
    out = run_kernel(_kernel(body), {"in0": xs})["out0"]
    assert out.tolist() == [2, 3, 4, 5, 1, 2, 3, 4]


def test_nested_guards_and_an_inner_loop_run_in_the_selected_lanes():
    # for i < 4, j < 3: if i*3 + j < 8 (in has 8 elements) and j != 1: out[i*3+j] = in[i*3+j] * 2
    flat = op("add", op("mul", i, idx(3)), j)
    body = [Loop(i, idx(4), [If(op("lt", i, idx(3)), [Loop(j, idx(3), [
        If(op("lt", flat, idx(8)), [If(op("ne", j, idx(1)),
                                       [Store("out0", flat, op("mul", Load("in0", flat, F32), Const(2.0, F32)))])])])])])]
    xs = np.arange(8, dtype=np.float32)
    out = run_kernel(_kernel(body, n_in=8, n_out=12), {"in0": xs})["out0"]
    want = np.zeros(12, np.float32)
    for a in range(3):
        for b in range(3):
            if a * 3 + b < 8 and b != 1:
                want[a * 3 + b] = xs[a * 3 + b] * 2
    assert np.array_equal(out, want)


def test_an_assignment_under_a_guard_updates_only_its_lanes():
    # a per-row running value (the loop over j carries acc): acc = max(acc, in[i+j]) while i+j < 4
    acc = Var("acc", F32)
    ij = op("add", i, j)
    body = [Loop(i, idx(5), [Let(acc, Const(-1.0, F32)),
                             Loop(j, idx(4), [If(op("lt", ij, idx(4)), [Assign(acc, op("max", acc, Load("in0", ij, F32)))])]),
                             Store("out0", i, acc)])]
    xs = np.array([3, 1, 4, 1], np.float32)
    out = run_kernel(_kernel(body, n_out=5), {"in0": xs})["out0"]
    assert out.tolist() == [4, 4, 4, 1, -1]


def test_a_fail_reports_the_first_lane_whose_condition_holds():
    from kiln.codegen.kir import Fail
    body = [Loop(i, idx(8), [If(op("ge", Load("in0", op("rem", i, idx(4)), F32), Const(3.0, F32)),
                                [Fail(7, (i,))]), Store("out0", i, Const(0.0, F32))])]
    with pytest.raises(KernelFailure) as e:
        run_kernel(_kernel(body), {"in0": np.array([0, 5, 1, 9], np.float32)})
    assert (e.value.code, e.value.payload) == (7, (1,))


def test_an_unguarded_out_of_range_load_still_raises():
    body = [Loop(i, idx(8), [Store("out0", i, Load("in0", i, F32))])]
    with pytest.raises(IndexError, match=r"in0\[0\.\.7\] out of bounds \(size 4\)"):
        run_kernel(_kernel(body), {"in0": np.zeros(4, np.float32)})

"""`kir.var_names`: the one walker that collects kernel-IR variable names (decompose's fresh
names, loop partitioning's dead-let elimination)."""
import numpy as np

from kiln.codegen.decompose import decompose
from kiln.codegen.kir import (Assign, BufferParam, Const, If, KernelFunc, Let, Load, Loop, Store, Var, idx, op,
                              var_names, walk_stmts)
from kiln.codegen.kir_eval import run_kernel
from kiln.codegen.loop_partition import partition_kernel
from kiln.ir import dtypes as dt

F32 = dt.float32
i, j = Var("i", dt.int64), Var("j", dt.int64)
acc, unused, cond_v = Var("acc", F32), Var("_t0", F32), Var("flag", dt.bool_)


def _body():
    # i, j: loop variables; acc: let + assign; _t0: a let nobody reads; flag: read in an If only
    return [Loop(i, idx(4), [
        Let(acc, Const(0.0, F32)), Let(unused, Const(2.0, F32)),
        Loop(j, idx(3), [Assign(acc, op("add", acc, Load("in0", op("add", op("mul", i, idx(3)), j), F32)))]),
        Let(cond_v, op("lt", i, idx(2))),
        If(cond_v, [Store("out0", i, op("exp", acc))], [Store("out0", i, acc)])])]


def test_names_read_or_assigned_and_with_definitions():
    body = _body()
    assert var_names(body) == {"i", "j", "acc", "flag"}
    assert var_names(body, definitions=True) == {"i", "j", "acc", "flag", "_t0"}
    assert var_names(body[0].body[4:]) == {"flag", "acc", "i"}  # the If: its condition and branches
    assert var_names([]) == set()


def test_decompose_takes_fresh_names_past_every_defined_one():
    k = KernelFunc("k", [BufferParam("in0", F32, 12), BufferParam("out0", F32, 4, "w")], _body())
    d = decompose(k)
    defined = [s.var.name for s in walk_stmts(d.body) if isinstance(s, (Let, Loop))]
    assert len(defined) == len(set(defined)), defined  # "_t0" (defined, never read) is not reused
    xs = np.arange(12, dtype=np.float32) / 10
    want = run_kernel(k, {"in0": xs})["out0"]
    np.testing.assert_allclose(run_kernel(d, {"in0": xs})["out0"], want, rtol=1e-6)


def test_partition_drops_the_let_nothing_reads():
    k = KernelFunc("k", [BufferParam("in0", F32, 12), BufferParam("out0", F32, 4, "w")], _body())
    p = partition_kernel(k)
    lets = {s.var.name for s in walk_stmts(p.body) if isinstance(s, Let)}
    assert "_t0" not in lets and "acc" in lets

"""The static store-bounds check of the kernel IR (`kir_verify.check_store_bounds`, run on every
lowered kernel under KILN_VERIFY) and the lowering rule it caught: a value with no elements gets
no store (a zero-size domain once stored an empty side output at an outer loop's index)."""
from __future__ import annotations

import pytest

import kiln
from kiln.codegen.kir import BufferParam, Const, If, KernelFunc, Loop, Store, Var, idx, op
from kiln.codegen.kir_verify import KernelIRError, check_store_bounds
from kiln.ir import dtypes as dt


def _kernel(numel: int, extent: int, index=lambda i: i, inner: int | None = None) -> KernelFunc:
    i = Var("i1", dt.int64)
    store = Store("out0", index(i), Const(1.0, dt.float32))
    body = [store] if inner is None else [Loop(Var("i2", dt.int64), idx(inner), [store])]
    return KernelFunc("k", [BufferParam("out0", dt.float32, numel, "w")], [Loop(i, idx(extent), body)])


def test_a_store_past_the_end_is_named():
    with pytest.raises(KernelIRError, match=r"kernel k: store out0\[0\.\.4\] writes out of bounds "
                                            r"\(buffer size 0\)"):
        check_store_bounds(_kernel(numel=0, extent=5))
    with pytest.raises(KernelIRError, match=r"out0\[1\.\.8\].*size 8"):
        check_store_bounds(_kernel(numel=8, extent=8, index=lambda i: op("add", i, idx(1))))


def test_in_bounds_and_unreachable_stores_pass():
    check_store_bounds(_kernel(numel=5, extent=5))
    check_store_bounds(_kernel(numel=12, extent=4, index=lambda i: op("add", op("mul", i, idx(3)), idx(2))))
    check_store_bounds(_kernel(numel=0, extent=5, inner=0))  # inside a loop that runs zero times
    check_store_bounds(_kernel(numel=0, extent=0))


def test_guarded_and_data_dependent_stores_are_left_to_runtime_checks():
    i = Var("i1", dt.int64)
    guarded = KernelFunc("k", [BufferParam("out0", dt.float32, 3, "w")], [Loop(i, idx(8), [
        If(op("lt", i, idx(3)), [Store("out0", i, Const(1.0, dt.float32))])])])
    check_store_bounds(guarded)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_zero_size_domain_writes_no_empty_output(requires_grad):
    # flip of a (5, 0, 1) tensor: a gather over the domain [5, 0, 1] whose index (i64[0]) is a
    # side output when the backward saves it; lowered, no kernel may store into an empty buffer
    fn = kiln.compile(lambda a, b: (kiln.bmm(a, b), b.flip(1)), backend="llvm")
    a = kiln.ones(5, 1, 0, requires_grad=requires_grad)
    b = kiln.ones(5, 0, 1, requires_grad=requires_grad)
    prog = fn.lower(a, b)
    text = prog.as_text("kernels")
    assert "out0[i1] = " not in text.split("[gather]")[-1]
    mm, flipped = fn(a, b)
    assert mm.detach().numpy().tolist() == [[[0.0]]] * 5 and tuple(flipped.shape) == (5, 0, 1)

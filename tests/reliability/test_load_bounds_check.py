"""The static bounds check of the kernel IR (`kir_verify.check_bounds`, run on every lowered
kernel under KILN_VERIFY) on loads: a load past its buffer is named, a clamped or guarded one
passes, and a deliberately broken lowering rule is caught at compile time. A property test
compares the check with a scalar walk of random loop nests."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kiln
from kiln.codegen import index as ix
from kiln.codegen.kir import (BufferParam, Const, If, KernelFunc, Let, Load, Loop, Op, Store, TileMMA, Var,
                              idx, op)
from kiln.codegen.kir_eval import eval_expr
from kiln.codegen.kir_verify import KernelIRError, check_bounds, strided_spans
from kiln.ir import dtypes as dt

F32 = dt.float32


def _copy_kernel(n_in: int, extent: int, index=lambda i: i) -> KernelFunc:
    """out0[i] = x0[index(i)] for i < extent."""
    i = Var("i1", dt.int64)
    return KernelFunc("k", [BufferParam("x0", F32, n_in, "r"), BufferParam("out0", F32, extent, "w")],
                      [Loop(i, idx(extent), [Store("out0", i, Load("x0", index(i), F32))])])


def test_a_load_past_the_end_is_named():
    with pytest.raises(KernelIRError, match=r"kernel k: load x0\[1\.\.8\] reads out of bounds \(buffer size 8\)"):
        check_bounds(_copy_kernel(8, 8, lambda i: op("add", i, idx(1))))
    with pytest.raises(KernelIRError, match=r"load x0\[-1\.\.6\]"):
        check_bounds(_copy_kernel(8, 8, lambda i: op("sub", i, idx(1))))


def test_in_bounds_clamped_and_unreachable_loads_pass():
    check_bounds(_copy_kernel(8, 8))
    check_bounds(_copy_kernel(4, 4, lambda i: op("sub", idx(3), i)))  # a flip
    # a pad's load: the index is clamped where the point is outside the source
    check_bounds(_copy_kernel(5, 8, lambda i: op("select", op("lt", i, idx(5)), i, idx(0))))
    check_bounds(_copy_kernel(0, 0))  # a loop that runs zero times reads nothing


def test_both_operands_of_a_select_are_checked():
    # renderers evaluate both operands of a select: an unclamped load in the unselected one still runs
    i = Var("i1", dt.int64)
    inside = op("lt", i, idx(5))
    value = op("select", inside, Load("x0", i, F32), Const(0.0, F32))
    k = KernelFunc("k", [BufferParam("x0", F32, 5, "r"), BufferParam("out0", F32, 8, "w")],
                   [Loop(i, idx(8), [Store("out0", i, value)])])
    with pytest.raises(KernelIRError, match=r"load x0\[0\.\.7\]"):
        check_bounds(k)


def test_a_load_under_an_if_counts_where_the_condition_holds():
    i = Var("i1", dt.int64)

    def kernel(then_index, else_index):
        body = [If(op("lt", i, idx(3)), [Store("out0", i, Load("x0", then_index, F32))],
                   [Store("out0", i, Load("y0", else_index, F32))])]
        return KernelFunc("k", [BufferParam("x0", F32, 3, "r"), BufferParam("y0", F32, 5, "r"),
                                BufferParam("out0", F32, 8, "w")], [Loop(i, idx(8), body)])

    check_bounds(kernel(i, op("sub", i, idx(3))))  # x0[0..2] where i < 3, y0[0..4] elsewhere
    with pytest.raises(KernelIRError, match=r"load y0\[1\.\.5\]"):
        check_bounds(kernel(i, op("sub", i, idx(2))))
    with pytest.raises(KernelIRError, match=r"load x0\[1\.\.3\]"):
        check_bounds(kernel(op("add", i, idx(1)), op("sub", i, idx(3))))


def test_data_dependent_and_accumulated_indices_are_left_to_runtime_checks():
    i = Var("i1", dt.int64)
    j = Var("j", dt.int64)
    gathered = Load("x0", Load("ind0", i, dt.int64), F32)  # a gather's index: checked at run time
    k = KernelFunc("k", [BufferParam("x0", F32, 2, "r"), BufferParam("ind0", dt.int64, 8, "r"),
                         BufferParam("out0", F32, 8, "w")], [Loop(i, idx(8), [Store("out0", i, gathered)])])
    check_bounds(k)
    from kiln.codegen.kir import Assign
    acc = KernelFunc("k", [BufferParam("x0", F32, 1, "r"), BufferParam("out0", F32, 8, "w")],
                     [Let(j, idx(0)), Loop(i, idx(8), [Store("out0", i, Load("x0", j, F32)),
                                                       Assign(j, op("add", j, idx(1)))])])
    check_bounds(acc)  # j is an accumulator: not known statically, so not taken as 0
    with pytest.raises(KernelIRError, match=r"load ind0\[0\.\.8\]"):  # the index load itself is checked
        check_bounds(KernelFunc("k", k.params, [Loop(i, idx(9), [
            Store("out0", op("min", i, idx(7)), Load("x0", Load("ind0", i, dt.int64), F32))])]))


def test_a_tile_product_reading_past_its_panel_is_named():
    def tile(a_numel):
        return KernelFunc("k", [BufferParam("c0", F32, 16, "rw"), BufferParam("a0", F32, a_numel, "r"),
                                BufferParam("b0", F32, 16, "r")],
                          [TileMMA("c0", idx(0), 4, "a0", idx(0), "b0", idx(0), idx(4), 4, 4, Const(False, dt.bool_))])
    check_bounds(tile(16))
    with pytest.raises(KernelIRError, match=r"tile_mma a0\[0\.\.15\] reads out of bounds \(buffer size 15\)"):
        check_bounds(tile(15))


def test_a_strided_input_is_bounded_by_its_span():
    # a (3, 3) view with element strides (1, 4) (leaf.t()[:3, :3] of a (3, 4) leaf) is read in
    # place: offsets 0..10 of the caller's memory, though it has 9 elements
    from types import SimpleNamespace
    node = SimpleNamespace(shape=(3, 3))
    i, j = Var("i1", dt.int64), Var("i2", dt.int64)
    read = Load("in0", op("add", i, op("mul", j, idx(4))), F32)
    k = KernelFunc("k", [BufferParam("in0", F32, 9, "r"), BufferParam("out0", F32, 9, "w")],
                   [Loop(i, idx(3), [Loop(j, idx(3), [Store("out0", op("add", op("mul", i, idx(3)), j), read)])])])
    spans = strided_spans(k.params, [("in", node), ("out", node)], {id(node): (1, 4)})
    assert spans == {"in0": (0, 10)}
    check_bounds(k, spans=spans)
    with pytest.raises(KernelIRError, match=r"load in0\[0\.\.10\] reads out of bounds \(buffer size 9\)"):
        check_bounds(k)
    assert strided_spans(k.params, [("in", node)], {id(node): (-4, 1)}) == {"in0": (-8, 2)}  # a flipped view
    with pytest.raises(KernelIRError, match=r"offsets -8\.\.2"):
        check_bounds(k, spans={"in0": (-8, 2)})


def test_a_broken_lowering_rule_fails_at_compile_time(monkeypatch):
    # every slice reads one element further on: the first and last of x[1:] past the end
    slice_index = ix.slice_index
    monkeypatch.setattr(ix, "slice_index", lambda index, starts, steps: tuple(
        op("add", e, idx(1)) for e in slice_index(index, starts, steps)))
    fn = kiln.compile(lambda x: x[1:] * 2, backend="llvm")
    with kiln.config.override(verify=True):
        with pytest.raises(KernelIRError, match=r"load .*\[2\.\.7\] reads out of bounds \(buffer size 7\)"):
            fn.lower(kiln.ones(7))


def test_every_kernel_of_a_training_step_passes():
    # pad, concat, conv, pooling, matmul and reductions, forward and backward, lowered under the check
    model = kiln.nn.Sequential(kiln.nn.Conv2d(2, 3, 3, padding=1), kiln.nn.ReLU(), kiln.nn.MaxPool2d(2),
                               kiln.nn.Flatten(), kiln.nn.Linear(12, 5))
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)

    @kiln.compile(backend="llvm")
    def step(x, y):
        opt.zero_grad()
        loss = kiln.nn.functional.cross_entropy(model(kiln.cat([x, x.flip(3)], 1)[:, :2]), y)
        loss.backward()
        opt.step()
        return loss

    with kiln.config.override(verify=True):
        loss = step(kiln.randn(4, 1, 4, 4), kiln.tensor([0, 1, 2, 3]))
    assert np.isfinite(float(loss))


# -- the check against a scalar walk of random loop nests ----------------------------------

def _walk_reads(body, env, bufs, out):
    """Every (buffer, index) a kernel accesses, visiting each iteration point in turn."""
    for s in body:
        if isinstance(s, Loop):
            for v in range(int(eval_expr(s.extent, env))):
                _walk_reads(s.body, {**env, s.var.name: np.int64(v)}, bufs, out)
        elif isinstance(s, Let):
            env = {**env, s.var.name: eval_expr(s.value, env)}
        elif isinstance(s, If):
            _walk_reads(s.then if bool(eval_expr(s.cond, env)) else s.orelse, env, bufs, out)
        elif isinstance(s, Store):
            for e in (s.index, s.value):
                _loads_at(e, env, out)
            out.append((s.buf, int(eval_expr(s.index, env))))


def _loads_at(e, env, out):
    if isinstance(e, Load):
        _loads_at(e.index, env, out)
        out.append((e.buf, int(eval_expr(e.index, env))))
    elif isinstance(e, Op):
        for a in e.args:
            _loads_at(a, env, out)


@st.composite
def _nests(draw):
    depth = draw(st.integers(1, 3))
    vars_ = [Var(f"i{d + 1}", dt.int64) for d in range(depth)]
    extents = [draw(st.integers(0, 5)) for _ in vars_]

    def index():
        e = idx(draw(st.integers(-3, 3)))
        for v in vars_:
            c = draw(st.integers(-2, 3))
            if c:
                e = op("add", e, op("mul", v, idx(c)))
        kind = draw(st.sampled_from(["affine", "div", "rem", "clamp"]))
        if kind == "div":
            e = op("div", e, idx(draw(st.integers(1, 4))))
        elif kind == "rem":
            e = op("rem", e, idx(draw(st.integers(1, 4))))
        elif kind == "clamp":
            lim = draw(st.integers(1, 12))
            e = op("select", op("and", op("ge", e, idx(0)), op("lt", e, idx(lim))), e, idx(0))
        return e

    value = Load("x0", index(), F32)
    store = Store("out0", index(), value)
    inner = store
    if draw(st.booleans()):
        inner = If(op("lt", vars_[-1], idx(draw(st.integers(0, 5)))), [store],
                   [Store("out0", idx(0), Load("x0", index(), F32))])
    body = [Let(Var("t", dt.int64), op("mul", vars_[0], idx(2))), inner] if draw(st.booleans()) else [inner]
    for v, n in reversed(list(zip(vars_, extents))):
        body = [Loop(v, idx(n), body)]
    sizes = (draw(st.integers(0, 16)), draw(st.integers(0, 16)))
    return KernelFunc("k", [BufferParam("x0", F32, sizes[0], "r"), BufferParam("out0", F32, sizes[1], "w")], body)


@settings(max_examples=300, deadline=None)
@given(_nests())
def test_the_check_fails_exactly_when_an_access_is_out_of_bounds(k):
    sizes = {p.name: p.numel for p in k.params}
    accesses: list = []
    _walk_reads(k.body, {}, sizes, accesses)
    bad = [(b, i) for b, i in accesses if not 0 <= i < sizes[b]]
    if bad:
        with pytest.raises(KernelIRError, match="out of bounds"):
            check_bounds(k)
    else:
        check_bounds(k)

"""Loop partitioning (kiln/codegen/loop_partition.py): random kernels with the pad, concat and
slice conditions lowering produces (random offsets, sizes 1 and primes, nested and parallel
loops, guarded stores, conditions on two loop variables that must not be split on) run by the
kernel-IR evaluator before and after the pass; the facts the pass promises in the IR; compiled
programs with concat, pad and cat-of-slices against the reference interpreter; and the LSTM's
gate-gradient concat, partitioned so no load index holds a select."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kiln
from kiln.codegen import index as ix
from kiln.codegen.kir import (Assign, BufferParam, Const, Expr, If, KernelFunc, Let, Load, Loop, Op, Store, Var, idx, op,
                              stmt_exprs, walk_exprs, walk_stmts)
from kiln.codegen.kir_eval import run_kernel
from kiln.codegen.kir_verify import verify_kernel
from kiln.codegen.loop_partition import affine_in, breakpoints, partition_kernel
from kiln.ir import dtypes as dt
from helpers import train_step

SIZES = st.sampled_from([1, 2, 3, 5, 7, 8, 13])


def _loads_with_select(k: KernelFunc) -> list[Load]:
    roots = [e for s in walk_stmts(k.body) for e in stmt_exprs(s)]
    return [x for x in walk_exprs(*roots) if isinstance(x, Load)
            and any(isinstance(y, Op) and y.name == "select" for y in walk_exprs(x.index))]


def _single_var_conditions(k: KernelFunc) -> list[Op]:
    """Comparisons left in `k` that are affine in one loop variable alone."""
    loops = [s.var.name for s in walk_stmts(k.body) if isinstance(s, Loop)]
    roots = [e for s in walk_stmts(k.body) for e in stmt_exprs(s)]
    left = []
    for x in walk_exprs(*roots):
        if isinstance(x, Op) and x.name in ("lt", "le", "gt", "ge", "eq", "ne") and x.args[0].dtype == dt.int64:
            for v in loops:
                a, b = affine_in(x.args[0], v), affine_in(x.args[1], v)
                if a is not None and b is not None and a[0] != b[0]:
                    left.append(x)
    return left


class _Builder:
    """A random kernel: a nest over `shape`, one output element per point, its value a pad,
    concat or slice of input buffers along one axis (as kiln's lowering writes them)."""

    def __init__(self, draw, dtype):
        self.draw, self.dtype = draw, dtype
        self.params: list[BufferParam] = []
        self.inputs: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))

    def buffer(self, shape) -> str:
        name = f"in{len(self.params)}"
        n = max(math.prod(shape), 1)
        self.params.append(BufferParam(name, self.dtype, n, "r"))
        self.inputs[name] = self.rng.standard_normal(n).astype(self.dtype.np_dtype)
        return name

    def read(self, shape, index) -> Expr:
        return Load(self.buffer(shape), ix.linearize(index, shape), self.dtype)

    def value(self, shape, index, depth=0) -> Expr:
        kind = self.draw(st.sampled_from(["pad", "concat", "slice", "two_vars", "plain"] if depth < 2 else ["plain"]))
        axis = self.draw(st.integers(0, len(shape) - 1))
        n = shape[axis]
        if kind == "plain":
            return self.read(shape, index)
        if kind == "pad":
            lo = self.draw(st.integers(0, min(n, 4)))
            hi = self.draw(st.integers(0, min(n - lo, 4)))
            interior = self.draw(st.sampled_from([0, 0, 0, 1]))
            inner = (n - lo - hi + interior) // (interior + 1)
            if inner < 1:
                return self.read(shape, index)
            src = tuple(inner if d == axis else s for d, s in enumerate(shape))
            los = [lo if d == axis else 0 for d in range(len(shape))]
            his = [n - lo - ((inner - 1) * (interior + 1) + 1) if d == axis else 0 for d in range(len(shape))]
            its = [interior if d == axis else 0 for d in range(len(shape))]
            sub, cond = ix.pad_index(index, src, los, his, its)
            v = self.value(src, sub, depth + 1)
            return v if cond is None else op("select", cond, v, Const(0.0, self.dtype))
        if kind == "concat":  # lower.py's select chain over the parts
            cuts = sorted(self.draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=5, unique=True)))
            bounds = [0] + [c for c in cuts if 0 < c < n] + [n]
            result = None
            for a, b in reversed(list(zip(bounds, bounds[1:]))):
                local = op("sub", index[axis], idx(a))
                inside = op("and", op("ge", local, idx(0)), op("lt", local, idx(b - a)))
                part = tuple(b - a if d == axis else s for d, s in enumerate(shape))
                sub = tuple(op("select", inside, local, idx(0)) if d == axis else e for d, e in enumerate(index))
                v = self.value(part, sub, depth + 1)
                result = v if result is None else op("select", inside, v, result)
            return result
        if kind == "slice":
            start, step = self.draw(st.integers(0, 3)), self.draw(st.integers(1, 3))
            src = tuple(start + (n - 1) * step + 1 if d == axis else s for d, s in enumerate(shape))
            sub = ix.slice_index(tuple(index), [start if d == axis else 0 for d in range(len(shape))],
                                 [step if d == axis else 1 for d in range(len(shape))])
            return self.value(src, sub, depth + 1)
        # a condition on two loop variables (a triangle): never split on, kept as a select
        other = self.draw(st.integers(0, len(shape) - 1))
        c = self.draw(st.integers(0, sum(shape)))
        cond = op("lt", op("add", index[axis], index[other]), idx(c))
        if other == axis:
            cond = op("lt", op("add", index[axis], op("mul", index[axis], idx(0))), idx(c))  # still one variable
        return op("select", cond, self.read(shape, index), self.value(shape, index, depth + 1))


@st.composite
def kernels(draw):
    dtype = draw(st.sampled_from([dt.float32, dt.float64]))
    shape = tuple(draw(st.lists(SIZES, min_size=1, max_size=3)))
    b = _Builder(draw, dtype)
    vars_ = [Var(f"i{d + 1}", dt.int64) for d in range(len(shape))]
    value = b.value(shape, tuple(vars_))
    out = BufferParam("out0", dtype, math.prod(shape), "w")
    store: list = [Store("out0", ix.linearize(tuple(vars_), shape), value)]
    if draw(st.booleans()):  # a guarded second output (a bounds check's If)
        c = draw(st.integers(0, shape[-1]))
        store.append(If(op("lt", vars_[-1], idx(c)), [Store("out1", ix.linearize(tuple(vars_), shape), value)],
                        [Store("out1", ix.linearize(tuple(vars_), shape), Const(-1.0, dtype))]))
    params = b.params + [out] + ([BufferParam("out1", dtype, math.prod(shape), "w")] if len(store) > 1 else [])
    # lets as the emitter writes them: the value bound, then stored
    v = Var("v_val", dtype)
    body = [Let(v, value)] + [Store(s.buf, s.index, v) if isinstance(s, Store) else s for s in store[:1]] + store[1:]
    for var, n in reversed(list(zip(vars_, shape))):
        body = [Loop(var, idx(n), body)]
    k = KernelFunc("k", params, body)
    if draw(st.booleans()):
        k.schedule.of(vars_[0]).parallel = True
    return k, b.inputs


def _run(k, inputs):
    return run_kernel(k, {n: a.copy() for n, a in inputs.items()})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=kernels(), nested=st.booleans())
def test_partitioned_kernels_compute_the_same(case, nested):
    k, inputs = case
    verify_kernel(k)
    want = _run(k, inputs)
    parallel = {n for n, ls in k.schedule.loops.items() if ls.parallel}
    p = partition_kernel(copy.deepcopy(k), nested=nested)
    verify_kernel(p)
    try:
        got = _run(p, inputs)
    except IndexError as e:
        raise AssertionError(f"{e}: {k}\n->\n{p}") from e
    for name in want:
        assert np.array_equal(want[name], got[name]), f"{name}: {k}\n->\n{p}"
    # the outer loop's pieces keep its name and so its schedule
    for s in p.body:
        if isinstance(s, Loop) and s.var.name in parallel:
            assert p.schedule.loops[s.var.name].parallel
    # with the size limit lifted, every condition affine in one loop variable is resolved
    unlimited = partition_kernel(copy.deepcopy(k), nested=True, size_slack=1 << 30)
    assert not _single_var_conditions(unlimited), f"{k}\n->\n{unlimited}"
    got = _run(unlimited, inputs)
    for name in want:
        assert np.array_equal(want[name], got[name]), f"{name}: {k}\n->\n{unlimited}"


def test_concat_of_32_operands_becomes_32_copy_loops():
    parts, rows, cols = 32, 4, 6
    i1, i2 = Var("i1", dt.int64), Var("i2", dt.int64)
    params, result = [], None
    for p in reversed(range(parts)):
        local = op("sub", i1, idx(p * rows))
        inside = op("and", op("ge", local, idx(0)), op("lt", local, idx(rows)))
        v = Load(f"in{p}", op("add", op("mul", op("select", inside, local, idx(0)), idx(cols)), i2), dt.float32)
        result = v if result is None else op("select", inside, v, result)
    params = [BufferParam(f"in{p}", dt.float32, rows * cols) for p in range(parts)]
    params.append(BufferParam("out0", dt.float32, parts * rows * cols, "w"))
    k = KernelFunc("cat", params, [Loop(i1, idx(parts * rows), [Loop(i2, idx(cols), [
        Store("out0", op("add", op("mul", i1, idx(cols)), i2), result)])])])
    inputs = {f"in{p}": np.full(rows * cols, p, np.float32) + np.arange(rows * cols, dtype=np.float32) / 100
              for p in range(parts)}
    want = _run(k, inputs)["out0"]
    p = partition_kernel(copy.deepcopy(k))
    assert len(p.body) == parts and all(isinstance(s, Loop) and s.extent == idx(rows) for s in p.body)
    for n, s in enumerate(p.body):
        loads = [x for x in walk_exprs(*[e for t in walk_stmts([s]) for e in stmt_exprs(t)]) if isinstance(x, Load)]
        assert [x.buf for x in loads] == [f"in{n}"]  # one plain copy
    assert not any(isinstance(x, Op) and x.name == "select"
                   for t in walk_stmts(p.body) for x in walk_exprs(*stmt_exprs(t)))
    assert np.array_equal(_run(p, inputs)["out0"], want)


def test_conditions_on_two_variables_and_big_splits_are_left_alone():
    i1, i2 = Var("i1", dt.int64), Var("i2", dt.int64)
    tri = op("select", op("lt", op("add", i1, i2), idx(5)), Load("in0", i2, dt.float32), Const(0.0, dt.float32))
    k = KernelFunc("tri", [BufferParam("in0", dt.float32, 8), BufferParam("out0", dt.float32, 64, "w")],
                   [Loop(i1, idx(8), [Loop(i2, idx(8), [Store("out0", op("add", op("mul", i1, idx(8)), i2), tri)])])])
    assert breakpoints("i1", k.body[0].body, 8) == [] and breakpoints("i2", k.body[0].body[0].body, 8) == []
    p = partition_kernel(copy.deepcopy(k))
    assert str(p) == str(k)
    # a condition that changes at every point would need more than MAX_PIECES pieces
    i = Var("i", dt.int64)
    many = [Store("out0", i, op("select", op("eq", op("rem", i, idx(2)), idx(0)), Const(1.0, dt.float32),
                                Const(0.0, dt.float32)))]
    conds = op("select", op("lt", i, idx(1)), Const(2.0, dt.float32), Const(3.0, dt.float32))
    for t in range(2, 80):
        conds = op("select", op("lt", i, idx(t)), Const(float(t), dt.float32), conds)
    k2 = KernelFunc("many", [BufferParam("out0", dt.float32, 100, "w")],
                    [Loop(i, idx(100), [Store("out0", i, conds)] + many)])
    assert len(partition_kernel(copy.deepcopy(k2)).body) == 1


def test_breakpoints_of_each_comparison():
    i = Var("i", dt.int64)
    body = lambda c: [Store("o", i, op("select", c, Const(1.0, dt.float32), Const(0.0, dt.float32)))]
    assert breakpoints("i", body(op("ge", op("sub", i, idx(3)), idx(0))), 10) == [3]
    assert breakpoints("i", body(op("lt", i, idx(3))), 10) == [3]
    assert breakpoints("i", body(op("le", i, idx(3))), 10) == [4]
    assert breakpoints("i", body(op("gt", op("mul", i, idx(2)), idx(5))), 10) == [3]
    assert breakpoints("i", body(op("eq", i, idx(4))), 10) == [4, 5]
    assert breakpoints("i", body(op("eq", op("mul", i, idx(2)), idx(5))), 10) == []
    assert breakpoints("i", body(op("lt", op("sub", idx(7), i), idx(2))), 10) == [6]
    assert breakpoints("i", body(op("lt", i, idx(30))), 10) == []  # outside the loop


# ---------------------------------------------------------------------------------------
# compiled programs
# ---------------------------------------------------------------------------------------

def _cat_slices(x):
    return kiln.cat([x[:, 3:], x[:, :3] * 2.0, x[:, 1:2]], dim=1)


def _pad_cat(x, y):
    px = kiln.nn.functional.pad(x, (2, 1, 0, 3))
    return kiln.cat([px, y], dim=0).sum(1) + kiln.cat([y, y], dim=1)[:, 2:9].sum()


PROGRAMS = [
    ("cat_slices", _cat_slices, [(5, 7)]),
    ("pad_cat", _pad_cat, [(4, 7), (6, 10)]),
    ("concat_many", lambda *xs: kiln.cat(list(xs), dim=0) * 3.0, [(2, 9)] * 12),
    ("pad_2d", lambda x: kiln.nn.functional.pad(x, (1, 1, 2, 0)) + 1.0, [(1, 3, 5, 1)]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,fn,shapes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_compiled_against_reference(name, fn, shapes, dtype):
    rng = np.random.default_rng(7)
    args = [kiln.from_numpy(rng.standard_normal(s).astype(dtype)) for s in shapes]
    f = kiln.compile(fn)
    got = f(*args).numpy()
    want = kiln.compile(fn, backend="reference")(*args).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if name in ("cat_slices", "concat_many"):  # concat of slices / of 12 operands: no select left
        assert "select(" not in f.lower(*args).as_text("kernels")


def test_compiled_concat_kernel_is_partitioned():
    xs = [kiln.from_numpy(np.full((3, 8), float(k), np.float32)) for k in range(5)]
    f = kiln.compile(lambda *a: kiln.cat(list(a), dim=0) + 1.0)
    out = f(*xs).numpy()
    assert np.array_equal(out, np.repeat(np.arange(5, dtype=np.float32), 3)[:, None] + np.ones((15, 8), np.float32))
    text = f.lower(*xs).as_text("kernels")
    assert "select" not in text
    assert text.count("for i") >= 5


def test_the_switch_turns_the_pass_off():
    xs = [kiln.from_numpy(np.full((3, 8), float(k), np.float32)) for k in range(5)]
    want = np.repeat(np.arange(5, dtype=np.float32), 3)[:, None] + np.ones((15, 8), np.float32)
    with kiln.config.override(loop_partition=False):
        f = kiln.compile(lambda *a: kiln.cat(list(a), dim=0) + 1.0)
        assert np.array_equal(f(*xs).numpy(), want)
        text = f.lower(*xs).as_text("kernels")
        k = KernelFunc("k", [BufferParam("in0", dt.float32, 4), BufferParam("out0", dt.float32, 8, "w")],
                       [Loop(Var("i", dt.int64), idx(8), [Store("out0", Var("i", dt.int64), op(
                           "select", op("lt", Var("i", dt.int64), idx(4)), Load("in0", Var("i", dt.int64), dt.float32),
                           Const(0.0, dt.float32)))])])
        before = str(k)
        assert str(partition_kernel(k)) == before
    assert "select" in text  # the concat's operand choice stays a select per element
    assert str(partition_kernel(k)) != before  # switched on again: split at 4


def _lstm_step(hidden=16, batch=4, steps=3):
    class Net(kiln.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = kiln.nn.LSTM(5, hidden, 1, batch_first=True)
            self.fc = kiln.nn.Linear(hidden, 3)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1, :])
    kiln.manual_seed(0)
    model = Net()
    step = train_step(model, kiln.optim.SGD(model.parameters(), lr=0.1))
    rng = np.random.default_rng(1)
    x = kiln.from_numpy(rng.standard_normal((batch, steps, 5)).astype(np.float32))
    y = kiln.from_numpy(rng.integers(0, 3, size=(batch,)).astype(np.int64))
    return step, x, y


def test_lstm_gate_gradient_kernel_is_partitioned():
    step, x, y = _lstm_step()
    text = kiln.compile(step).lower(x, y).as_text("kernels")
    kernels = text.split("\nkernel ")
    # the gate gradient dgates = [di | df | dg | do], a sum of four pads along the gate axis (4 x 16)
    gates = [k for k in kernels if "domain=[4, 64]" in k and "[elementwise]" in k]
    assert gates, "no elementwise kernel over the gates"
    for k in gates:
        loops = [line for line in k.splitlines() if line.strip().startswith("for ")]
        assert len(loops) >= 4, k  # one loop per gate
        for line in k.splitlines():
            if "[" in line and "select(" in line:
                assert "select(" not in line.split("[", 1)[1].split("]")[0], line  # no select in a load index


def test_lstm_training_step_matches_the_reference():
    step, x, y = _lstm_step()
    losses = [float(kiln.compile(step)(x, y).item()) for _ in range(3)]
    step2, x2, y2 = _lstm_step()
    want = [float(kiln.compile(step2, backend="reference")(x2, y2).item()) for _ in range(3)]
    np.testing.assert_allclose(losses, want, rtol=1e-5, atol=1e-6)


def test_a_reduction_split_keeps_its_accumulator_and_order():
    # acc is assigned under a condition that the split resolves; its let lives outside the loop
    i, acc, last = Var("i", dt.int64), Var("acc", dt.float32), Var("last", dt.float32)
    x = Load("in0", i, dt.float32)
    body = [Let(acc, Const(0.0, dt.float32)), Let(last, Const(-1.0, dt.float32)),
            Loop(i, idx(7), [If(op("lt", i, idx(3)), [Assign(last, x)]),
                             Assign(acc, op("add", acc, op("select", op("ge", i, idx(5)), x, Const(0.5, dt.float32))))]),
            Store("out0", idx(0), acc), Store("out0", idx(1), last)]
    k = KernelFunc("red", [BufferParam("in0", dt.float32, 7), BufferParam("out0", dt.float32, 2, "w")], body)
    p = partition_kernel(copy.deepcopy(k))
    verify_kernel(p)
    assert [s.extent for s in p.body if isinstance(s, Loop)] == [idx(3), idx(2), idx(2)]
    xs = np.array([0.1, 1e8, -1e8, 3.0, 0.25, 7.0, -2.0], np.float32)
    assert np.array_equal(_run(k, {"in0": xs})["out0"], _run(p, {"in0": xs})["out0"])

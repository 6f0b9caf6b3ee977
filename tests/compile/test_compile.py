"""kiln.compile: tracing, caching by signature, captured tensors, write-backs, errors, dumps."""
import os
import warnings

import numpy as np
import pytest

import kiln
from kiln.ir import parse_graph


def test_compiled_equals_eager_and_caches():
    def f(x, y, scale):
        return (x * scale + y.exp()).sum(dim=0), x.max(dim=1).indices

    cf = kiln.compile(f)
    x, y = kiln.randn(3, 4), kiln.randn(3, 4)
    for _ in range(3):
        a, i = cf(x, y, 2.0)
    ea, ei = f(x, y, 2.0)
    np.testing.assert_allclose(a.numpy(), ea.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(i.numpy(), ei.numpy())
    info = cf.cache_info()
    assert (info.hits, info.misses, len(info.signatures)) == (2, 1, 1)
    cf(x, y, 3.0)  # new non-tensor value: retrace
    cf(kiln.randn(5, 4), kiln.randn(5, 4), 2.0)  # new shape: retrace
    cf(x.double(), y.double(), 2.0)  # new dtype: retrace
    assert cf.cache_info().misses == 4


def test_decorator_with_options_and_recompile_warning():
    @kiln.compile(recompile_limit=2)
    def f(x):
        return x + 1

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for n in range(1, 5):
            f(kiln.zeros(n))
    msgs = [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]
    assert len(msgs) == 1 and "recompile_limit=2" in msgs[0]


def test_captured_tensors_are_read_at_call_time():
    w = kiln.ones(3)

    @kiln.compile
    def f(x):
        return x * w

    x = kiln.tensor([1.0, 2.0, 3.0])
    assert f(x).tolist() == [1.0, 2.0, 3.0]
    with kiln.no_grad():
        w.mul_(2)
    assert f(x).tolist() == [2.0, 4.0, 6.0]
    w.copy_(kiln.tensor([0.0, 1.0, 0.0]))
    assert f(x).tolist() == [0.0, 2.0, 0.0]
    assert f.cache_info().misses == 1


def test_inplace_updates_are_written_back():
    state = kiln.zeros(2)

    @kiln.compile
    def f(x):
        state.add_(x)
        x.mul_(2)
        return state.sum()

    x = kiln.tensor([1.0, 2.0])
    v0 = state._vc[0]
    assert f(x).item() == 3.0
    assert x.tolist() == [2.0, 4.0] and state.tolist() == [1.0, 2.0]
    assert f(x).item() == 9.0
    assert state.tolist() == [3.0, 6.0] and x.tolist() == [4.0, 8.0]
    assert state._vc[0] > v0
    g = f.graph_for(x)
    assert len(g.outputs) == 3  # the result plus two write-backs


def test_setitem_inside_compile():
    @kiln.compile
    def f(x):
        y = x.clone()
        y[0, 1:] = 5.0
        y[:, 0] = y[:, 0] * 10
        return y

    x = kiln.randn(3, 4)
    e = x.clone()
    e[0, 1:] = 5.0
    e[:, 0] = e[:, 0] * 10
    np.testing.assert_allclose(f(x).numpy(), e.numpy())


def test_random_numbers_match_eager():
    @kiln.compile
    def f(x):
        return x + kiln.rand(3) + kiln.randn(3)

    x = kiln.zeros(3)
    kiln.manual_seed(7)
    a1, a2 = f(x), f(x)
    kiln.manual_seed(7)
    b1 = x + kiln.rand(3) + kiln.randn(3)
    b2 = x + kiln.rand(3) + kiln.randn(3)
    np.testing.assert_allclose(a1.numpy(), b1.numpy(), rtol=1e-6)
    np.testing.assert_allclose(a2.numpy(), b2.numpy(), rtol=1e-6)
    assert not np.allclose(a1.numpy(), a2.numpy())


def test_shape_control_flow_specialises():
    @kiln.compile
    def f(x, mode):
        if x.shape[0] > 2 and mode == "sum":
            return x.sum()
        return x.mean()

    assert f(kiln.ones(3), "sum").item() == 3.0
    assert f(kiln.ones(3), "mean").item() == 1.0
    assert f(kiln.ones(2), "sum").item() == 1.0


@pytest.mark.parametrize("expr", ["bool", "int", "item", "numpy", "if"])
def test_data_dependent_control_flow_names_the_user_line(expr):
    def f(x):
        if expr == "bool":
            return bool(x.sum() > 0)
        if expr == "int":
            return int(x.sum())
        if expr == "item":
            return x.sum().item()
        if expr == "numpy":
            return x.numpy()
        if x.sum() > 0:  # noqa: the line the error must name
            return x
        return -x

    with pytest.raises(kiln.TracingError) as ei:
        kiln.compile(f)(kiln.ones(2))
    msg = str(ei.value)
    assert os.path.basename(__file__) in msg and "kiln.where" in msg


def test_shape_errors_in_trace_name_the_user_line():
    def f(x, y):
        return x + y

    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        kiln.compile(f)(kiln.ones(2, 3), kiln.ones(3, 2))


def test_make_graph_does_not_run_and_kiln_dump(tmp_path):
    with kiln.config.override(dump=str(tmp_path)):
        calls = []

        def f(x):
            calls.append(1)
            return (x * 2).tanh()

        g = kiln.make_graph(f)(kiln.ones(4))
        assert [n.op for n in g.nodes] == ["constant", "mul", "tanh"]
        assert len(calls) == 1
        assert sorted(os.listdir(tmp_path)) == ["001-f-traced.txt"]
        kiln.compile(f)(kiln.ones(4))
        files = sorted(os.listdir(tmp_path))
        assert files[1] == "002-f-traced.txt"
        assert parse_graph((tmp_path / files[1]).read_text()) == g
        # then the graph after every pass, numbered in pipeline order, the plans, a summary, and
        # the compiled program's stages (native backend)
        rest = files[2:]
        assert [int(fn[:3]) for fn in rest] == list(range(3, 3 + len(rest)))
        stages = ["plan", "kernels", "llvm", "llvm-opt", "asm"]
        assert [fn[4:] for fn in rest[-5:]] == [f"f-{s}.txt" for s in stages]
        passes = rest[:-5]
        assert passes[0] == "003-f-dce.txt" and passes[-1] == f"{2 + len(passes):03d}-f-summary.txt"
        assert any(fn.endswith("-f-fusion-plan.txt") for fn in passes)
        assert any(fn.endswith("-memory-plan.txt") for fn in passes)
        for fn in passes:
            if not fn.endswith(("plan.txt", "summary.txt")):
                parse_graph((tmp_path / fn).read_text())
        assert "kernel " in (tmp_path / rest[-4]).read_text() and "define" in (tmp_path / rest[-3]).read_text()


def test_pytree_arguments_and_outputs():
    @kiln.compile
    def f(batch, n):
        return {"sum": batch["a"] + batch["b"][0], "n": n, "pair": (batch["b"][1] * n,)}

    a, b0, b1 = kiln.ones(2), kiln.ones(2), kiln.ones(2)
    out = f({"a": a, "b": [b0, b1]}, 3)
    assert out["n"] == 3 and out["sum"].tolist() == [2.0, 2.0] and out["pair"][0].tolist() == [3.0, 3.0]


def test_escaped_tracer_is_an_error():
    leaked = []

    @kiln.compile
    def f(x):
        y = x * 2
        leaked.append(y)
        return y

    f(kiln.ones(2))
    with pytest.raises(RuntimeError, match="escaped"):
        leaked[0] + 1


def test_training_step_with_backward_inside_compile():
    kiln.manual_seed(0)
    w = kiln.randn(4, 3, requires_grad=True)
    w_e = w.detach().clone().requires_grad_()
    x, y = kiln.randn(8, 4), kiln.randn(8, 3)

    def step(w):
        w.grad = None
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with kiln.no_grad():
            w.sub_(0.1 * w.grad)
        return loss

    cstep = kiln.compile(lambda: step(w))
    for _ in range(4):
        lc = cstep()
        le = step(w_e)
        assert abs(lc.item() - le.item()) <= 1e-6 * abs(le.item())
    np.testing.assert_allclose(w.detach().numpy(), w_e.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), w_e.grad.numpy(), rtol=1e-6)
    assert cstep.cache_info().misses == 1


def test_guarded_python_state_retraces_and_caches_both():
    from kiln.frontend.trace import guard_attr

    class Cfg:
        double = True

    cfg = Cfg()

    @kiln.compile
    def f(x):
        return x * 2 if guard_attr(cfg, "double") else x * 3

    x = kiln.ones(2)
    assert f(x).tolist() == [2.0, 2.0]
    cfg.double = False
    assert f(x).tolist() == [3.0, 3.0]
    cfg.double = True
    assert f(x).tolist() == [2.0, 2.0]
    info = f.cache_info()
    assert (info.misses, info.hits, len(info.signatures)) == (2, 1, 2)


def test_gradient_accumulation_across_compiled_calls():
    w = kiln.ones(3, requires_grad=True)

    @kiln.compile
    def accumulate(x):
        loss = (w * x).sum()
        loss.backward()
        return loss

    x = kiln.tensor([1.0, 2.0, 3.0])
    accumulate(x)  # w.grad was None: assigned
    assert w.grad.tolist() == [1.0, 2.0, 3.0]
    accumulate(x)  # w.grad exists: accumulated (a second trace, guarded on grad presence)
    accumulate(x)
    assert w.grad.tolist() == [3.0, 6.0, 9.0]
    assert accumulate.cache_info().misses == 2


def test_grads_computed_outside_are_read_through_their_owner():
    """backward() outside the compiled function makes new .grad objects each step; the
    compiled update must read the current ones, not the ones seen while tracing."""
    import warnings
    w = kiln.ones(3, requires_grad=True)

    @kiln.compile
    def update():
        with kiln.no_grad():
            w.sub_(w.grad * 0.5)

    for k in range(3):
        w.grad = None
        (w * kiln.tensor([1.0, 2.0, 3.0]) * (k + 1)).sum().backward()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            update()
    assert w.tolist() == [1 - 0.5 * 6, 1 - 1.0 * 6, 1 - 1.5 * 6]
    assert update.cache_info().misses == 1


def test_random_streams_are_decorrelated():
    kiln.manual_seed(0)
    y = kiln.randint(0, 4, (1024,))
    p = kiln.randperm(1024, generator=kiln.Generator().manual_seed(0))
    assert len(set(y[p][:40].tolist())) > 1  # the permutation is not the label order
    assert kiln.Generator().manual_seed(0).uniform((1,), kiln.float64).item() != 0.0
    kiln.manual_seed(3)
    a = kiln.rand(1000)
    kiln.manual_seed(3)
    b = kiln.randint(0, 2, (1000,))
    assert abs(np.corrcoef(a.numpy(), b.numpy())[0, 1]) < 0.2


def test_interpreter_program_is_cached_and_frees_dead_values():
    from kiln.runtime.interpreter import _program, run_graph
    g = kiln.make_graph(lambda x: ((x * 2).exp() + 1).sum())(kiln.ones(3))
    a = np.ones(3, dtype=np.float32)
    out = run_graph(g, [a])
    assert _program(g) is _program(g)
    np.testing.assert_allclose(out[0], 3 * (np.exp(2) + 1), rtol=1e-6)
    # every intermediate is released after its last use (only inputs and outputs survive)
    prog = _program(g)
    freed = {s for *_, dead in prog.steps for s in dead}
    assert freed == set(range(1, prog.n_slots)) - set(prog.outputs)
    with pytest.raises(ValueError, match="expects f"):
        run_graph(g, [np.ones(4, dtype=np.float32)])

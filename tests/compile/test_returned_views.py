"""A compiled function that returns one of its arguments or a view of one (`x`, `x[1:]`, `x.T`,
`x.detach()`, a chain of those) returns a view of the call's own tensor on every backend, as
PyTorch (eager and torch.compile) does: it shares the argument's memory and version counter, so
an in-place update of either shows in the other, and its gradient reaches the argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import kiln

BACKENDS = ["reference", "llvm"]

PROGRAMS = {
    "itself": lambda x: x,
    "tail": lambda x: x[1:],
    "transpose": lambda x: x.T,
    "detach": lambda x: x.detach(),
    "detached_tail": lambda x: x[1:].detach(),
    "tail_of_detached": lambda x: x.detach()[1:],
    "row_and_new": lambda x: (x[0], x * 2),
    "strided_view": lambda x: x[:, ::2].unsqueeze(0),
    "after_update": lambda x: x.add_(1)[1:],
}


def _arg(lib, requires_grad=False):
    return lib.tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4), requires_grad=requires_grad)


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_returned_view_follows_its_argument(backend, name):
    program = PROGRAMS[name]
    compiled = kiln.compile(program, backend=backend)
    for _ in range(2):  # the trace, then the cache hit
        x, tx = _arg(kiln), _arg(torch)
        got, want = _tuple(compiled(x)), _tuple(program(tx))
        x.mul_(-1)  # through the argument: the views see it
        tx.mul_(-1)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
            shares = w.untyped_storage().data_ptr() == tx.untyped_storage().data_ptr()
            assert np.shares_memory(g.numpy(), x.numpy()) == shares
            assert (g._version == x._version) == (w._version == tx._version) == shares
        for g, w in zip(got, want):  # through the output: the argument sees it
            if w.untyped_storage().data_ptr() == tx.untyped_storage().data_ptr():
                g.add_(100)
                w.add_(100)
        np.testing.assert_array_equal(x.numpy(), tx.numpy())
    assert compiled.cache_info().misses == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_returned_view_carries_the_gradient_to_its_argument(backend):
    def program(x):
        return x[1:].T, (x * x).sum()

    compiled = kiln.compile(program, backend=backend)
    x, tx = _arg(kiln, True), _arg(torch, True)
    (v, s), (tv, ts) = compiled(x), program(tx)
    assert v.requires_grad and v.grad_fn is not None
    ((v * 3).sum() + s).backward()
    ((tv * 3).sum() + ts).backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_returned_view_of_a_module_parameter(backend):
    lin = kiln.nn.Linear(3, 2)
    compiled = kiln.compile(lambda x: (lin(x), lin.weight.T), backend=backend)
    _, wt = compiled(kiln.ones(1, 3))
    assert wt._base is lin.weight and wt.requires_grad
    with kiln.no_grad():
        lin.weight.mul_(2)
    np.testing.assert_array_equal(wt.detach().numpy(), lin.weight.detach().numpy().T)


# -- a property: random view chains returned from a compiled function ------------------------------
@st.composite
def _view_chains(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    chain, cur = [], list(shape)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["slice", "transpose", "unsqueeze", "select", "detach", "view", "whole"]))
        if kind == "slice" and cur:
            d = draw(st.integers(0, len(cur) - 1))
            start = draw(st.integers(0, cur[d] - 1))
            step = draw(st.integers(1, 2))
            chain.append(("slice", d, start, step))
            cur[d] = len(range(start, cur[d], step))
        elif kind == "transpose" and len(cur) >= 2:
            chain.append(("transpose",))
            cur[0], cur[-1] = cur[-1], cur[0]
        elif kind == "unsqueeze" and len(cur) < 4:
            chain.append(("unsqueeze",))
            cur.insert(0, 1)
        elif kind == "select" and len(cur) >= 2:
            chain.append(("select", draw(st.integers(0, cur[0] - 1))))
            cur.pop(0)
        elif kind == "view":
            chain.append(("view",))
        elif kind in ("detach", "whole"):
            chain.append((kind,))
    return shape, chain


def _apply(t, chain):
    for op in chain:
        if op[0] == "slice":
            _, d, start, step = op
            t = t[(slice(None),) * d + (slice(start, None, step),)]
        elif op[0] == "transpose":
            t = t.transpose(0, t.ndim - 1)
        elif op[0] == "unsqueeze":
            t = t.unsqueeze(0)
        elif op[0] == "select":
            t = t[op[1]]
        elif op[0] == "detach":
            t = t.detach()
        elif op[0] == "view":
            t = t.view(tuple(t.shape))
        else:
            t = t[...]
    return t


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_view_chains(), bump=st.booleans())
def test_random_view_chains_returned_match_pytorch(backend, case, bump):
    shape, chain = case
    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) - 2

    def program(x):
        if bump:
            x.add_(0.5)
        return _apply(x, chain), x.sum()

    compiled = kiln.compile(program, backend=backend)
    for _ in range(2):
        x, tx = kiln.tensor(data.copy()), torch.tensor(data.copy())
        (v, s), (tv, ts) = compiled(x), program(tx)
        np.testing.assert_array_equal(v.numpy(), tv.numpy())
        assert s.item() == pytest.approx(ts.item())
        x.sub_(3)  # an update of the argument shows in the returned view
        tx.sub_(3)
        np.testing.assert_array_equal(v.numpy(), tv.numpy())
        if tv.numel():
            v.mul_(2)  # and an update of the view shows in the argument
            tv.mul_(2)
            np.testing.assert_array_equal(x.numpy(), tx.numpy())
        assert (v._version == x._version) and (tv._version == tx._version)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("returned", ["itself", "view"])
def test_an_argument_updated_with_a_differentiable_value_carries_its_new_history(backend, returned):
    def program(a, b):
        a.add_(b * 2)  # a now requires grad, through b
        return a if returned == "itself" else a[1:]

    compiled = kiln.compile(program, backend=backend)
    a, b = kiln.ones(3), kiln.ones(3, requires_grad=True)
    ta, tb = torch.ones(3), torch.ones(3, requires_grad=True)
    out, want = compiled(a, b), program(ta, tb)
    assert out.requires_grad
    (out * kiln.arange(out.shape[0] * 1.0)).sum().backward()
    (want * torch.arange(want.shape[0] * 1.0)).sum().backward()
    np.testing.assert_array_equal(a.numpy(), ta.detach().numpy())
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy())
